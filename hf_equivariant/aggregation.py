"""How the outputs of transformed copies are averaged.

- ``mean_prob`` (default): average the probabilities (softmax of each copy's logits) and return their log. Anything
  that applies a softmax afterwards (``generate``, pipelines) then sees equitune's probability average exactly.
- ``mean_logits``: average the raw logits (the EquiGPT2 research code).
- ``max_prob``: element-wise maximum probability over copies (equizero-style), renormalised, as log-probabilities.
"""

from __future__ import annotations

import torch

__all__ = ["AGGREGATIONS", "check_aggregation", "to_aggregation_space", "from_aggregation_space"]

AGGREGATIONS = ("mean_prob", "mean_logits", "max_prob")


def check_aggregation(name: str) -> str:
    """Return ``name`` if it is a known aggregation, else raise a clear error."""
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {AGGREGATIONS}")
    return name


def to_aggregation_space(logits: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Map per-copy logits to the space where copies are combined (float32 at least)."""
    values = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if aggregation == "mean_logits":
        return values
    return values.softmax(dim=-1)


def from_aggregation_space(values: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Map combined values back to logits: log-probabilities for the probability aggregations."""
    if aggregation == "mean_logits":
        return values
    if aggregation == "max_prob":
        values = values / values.sum(dim=-1, keepdim=True)
    return values.clamp_min(torch.finfo(values.dtype).tiny).log()
