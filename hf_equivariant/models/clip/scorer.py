"""Invariant zero-shot scoring shared by the transformers CLIP/SigLIP wrapper and the open_clip wrapper.

:class:`InvariantImageScorer` holds the image group and the canonicaliser's reference tensor (a buffer saved with
the model, drawn from a seed), asks :mod:`hf_equivariant.plans` for the copies of a strategy and lets the executor
run one batched encoder call over them; scores are aggregated by :mod:`hf_equivariant.aggregation` with a softmax
(CLIP) or sigmoid (SigLIP) link. The settings both wrappers accept are declared once, in :class:`ScoringSettings`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from ...actions.image import ImageGroupAction, make_reference
from ...actions.registry import image_action
from ...aggregation import Aggregation, check_aggregation
from ...executor import run_dense
from ...plans import Plan, check_branch_weighting, make_plan

__all__ = ["IMAGE_STRATEGIES", "ScoringSettings", "InvariantImageScorer", "is_sigmoid_model", "check_image_strategy"]

#: Strategies of the image wrappers; ``none`` is the base model itself (for comparisons).
IMAGE_STRATEGIES = ("none", "full", "multi", "canonical")


def check_image_strategy(name: str) -> str:
    """Return ``name`` if it is an image strategy, else raise a clear error."""
    if not isinstance(name, str) or name not in IMAGE_STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {IMAGE_STRATEGIES}")
    return name


@dataclass(frozen=True)
class ScoringSettings:
    """How images are scored: the knobs shared by every CLIP-style wrapper (and their configs).

    Attributes:
        strategy: ``"full"`` (every group element), ``"multi"`` (design 2), ``"canonical"`` (one copy) or ``"none"``.
        aggregation: ``"mean_prob"`` (equitune), ``"max_prob"`` (equizero) or ``"mean_logits"``.
        branch_weighting: ``"size"`` (every copy equal, as the paper's CLIP code) or ``"equal"`` (multi only).
        deduplicate: run identical copies once (multi with non-commuting factors shares the canonical image).
        max_batch: cap on images per encoder call (``None`` = all copies in one call).
    """

    strategy: str = "multi"
    aggregation: str = "mean_prob"
    branch_weighting: str = "size"
    deduplicate: bool = True
    max_batch: int | None = None

    def __post_init__(self) -> None:
        check_image_strategy(self.strategy)
        check_aggregation(self.aggregation)
        check_branch_weighting(self.branch_weighting)
        if not isinstance(self.deduplicate, bool):
            raise ValueError(f"deduplicate must be true or false, got {self.deduplicate!r}")
        if self.max_batch is not None and (isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int)
                                           or self.max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer or None, got {self.max_batch!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_object(cls, obj: Any, **overrides: Any) -> ScoringSettings:
        """The settings stored as attributes of ``obj`` (a config or a wrapper), with ``overrides`` applied."""
        values = {name: getattr(obj, name) for name in cls.names()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> ScoringSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def is_sigmoid_model(model: Any) -> bool:
    """Whether a dual encoder scores classes with independent sigmoids (SigLIP) rather than a softmax."""
    model_type = getattr(getattr(model, "config", None), "model_type", "") or ""
    return "siglip" in model_type or getattr(model, "logit_bias", None) is not None


class InvariantImageScorer(nn.Module):
    """Copies, one batched encoder call and aggregation for rot90/flip-invariant image scoring.

    The canonicaliser's reference tensor is a persistent buffer drawn from ``seed``: canonical poses are the same
    in every call, process and reload.
    """

    def __init__(self, groups: Sequence[str], image_shape: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        self.action: ImageGroupAction = image_action(list(groups))
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {self.image_shape}")
        self.action.check_shape(*self.image_shape[-2:])
        self.seed = int(seed)
        self.register_buffer("reference", make_reference(self.seed, self.image_shape), persistent=True)
        self._other_references: dict[tuple[int, ...], torch.Tensor] = {}
        self._plans: dict[tuple, Plan] = {}
        self.last_encoded_images = 0  # images sent to the encoder by the latest call (cost accounting)

    def reset_reference(self) -> None:
        """Rebuild the reference from the seed (used when a checkpoint does not carry it)."""
        with torch.no_grad():
            self.reference.copy_(make_reference(self.seed, self.image_shape).to(self.reference.device))

    def reference_for(self, images: torch.Tensor) -> torch.Tensor:
        """The reference for images of this shape: the stored buffer, or one drawn from the same seed."""
        shape = tuple(images.shape[1:])
        if shape == tuple(self.reference.shape):
            return self.reference.to(images.device)
        if shape not in self._other_references:
            self.action.check_shape(*shape[-2:])
            self._other_references[shape] = make_reference(self.seed, shape)
        return self._other_references[shape].to(images.device)

    def plan(self, settings: ScoringSettings) -> Plan:
        """The plan of the settings' strategy for invariant scores (cached)."""
        key = (settings.strategy, settings.branch_weighting, settings.deduplicate)
        if key not in self._plans:
            self._plans[key] = make_plan(self.action.group, settings.strategy, settings.branch_weighting,
                                         output="invariant", deduplicate=settings.deduplicate)
        return self._plans[key]

    def images_per_input(self, settings: ScoringSettings) -> int:
        """Images the encoder runs per input image."""
        return self.plan(settings).num_copies

    def _check(self, images: torch.Tensor) -> None:
        if images is None or not torch.is_tensor(images) or images.dim() != 4:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"pixel_values must be [batch, channels, height, width], got {shape}")
        self.action.check_shape(*images.shape[-2:])

    def encode(self, encode_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
               settings: ScoringSettings) -> torch.Tensor:
        """Invariant image features ``[B, D]``: the weighted mean of every copy's features."""
        self._check(images)
        run = run_dense(self.plan(settings), self.action, images, encode_fn, Aggregation("mean_logits", "identity"),
                        max_batch=settings.max_batch, reference=self.reference_for(images))
        self.last_encoded_images = run.rows
        return run.output

    def zero_shot_logits(
        self,
        encode_fn: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        class_embeds: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        settings: ScoringSettings = ScoringSettings(),
        sigmoid: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant class scores ``[B, K]`` and invariant (pooled, normalised) image embeddings ``[B, D]``.

        ``class_embeds`` (``[K, D]``) must be L2-normalised; ``logit_scale`` is the multiplier itself (already
        exponentiated). Each copy is scored as ``scale * cos + bias`` and the copies are aggregated.
        """
        self._check(images)
        features: list[torch.Tensor] = []

        def score(batch: torch.Tensor) -> torch.Tensor:
            f = encode_fn(batch)
            f = f / f.norm(dim=-1, keepdim=True)
            features.append(f)
            logits = f @ class_embeds.to(device=f.device, dtype=f.dtype).T * logit_scale
            return logits if logit_bias is None else logits + logit_bias

        aggregation = Aggregation(settings.aggregation, "sigmoid" if sigmoid else "softmax")
        run = run_dense(self.plan(settings), self.action, images, score, aggregation, max_batch=settings.max_batch,
                        reference=self.reference_for(images))
        self.last_encoded_images = run.rows
        c, b = run.copies.input_elements.shape
        stacked = torch.cat(features).reshape(c, b, -1)
        pooled = torch.einsum("c,cbd->bd", run.copies.weights.to(device=stacked.device, dtype=stacked.dtype), stacked)
        return run.output.to(stacked.dtype), pooled / pooled.norm(dim=-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"groups={[t.name for t in self.action.transforms]}, image_shape={self.image_shape}, seed={self.seed}"
