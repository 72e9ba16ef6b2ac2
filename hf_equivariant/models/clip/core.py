"""Moved to :mod:`hf_equivariant.models.clip.scorer` and :mod:`hf_equivariant.aggregation` (kept for 0.1.x)."""

from __future__ import annotations

import torch

from ...aggregation import Aggregation
from .scorer import IMAGE_STRATEGIES, InvariantImageScorer, check_image_strategy  # noqa: F401

__all__ = ["InvariantImageScorer", "aggregate_copy_logits", "check_image_strategy", "IMAGE_STRATEGIES"]


def aggregate_copy_logits(logits: torch.Tensor, weights: torch.Tensor, aggregation: str,
                          sigmoid: bool = False) -> torch.Tensor:
    """Combine per-copy logits ``[C, B, K]`` (0.1.x helper; use :class:`~hf_equivariant.aggregation.Aggregation`)."""
    return Aggregation(aggregation, "sigmoid" if sigmoid else "softmax")(logits, weights).to(logits.dtype)
