"""The part of invariant zero-shot classification that does not depend on the CLIP implementation.

Given images, an image encoder and normalised class (text) embeddings, :class:`InvariantImageScorer` builds the
transformed copies a strategy needs (one gather), encodes them in one batched call (optionally chunked), scores
every copy against the classes and aggregates the copies. The HF wrapper and the open_clip wrapper both use it,
so the two backends cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...actions.image import IMAGE_STRATEGIES, ImageCopies, ImageGroupAction, make_reference
from ...aggregation import check_aggregation

__all__ = ["InvariantImageScorer", "aggregate_copy_logits", "check_image_strategy"]


def check_image_strategy(name: str) -> str:
    """Return ``name`` if it is an image strategy (``none`` = the base model), else raise a clear error."""
    if name not in IMAGE_STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {IMAGE_STRATEGIES}")
    return name


def aggregate_copy_logits(
    logits: torch.Tensor, weights: torch.Tensor, aggregation: str, sigmoid: bool = False
) -> torch.Tensor:
    """Combine per-copy logits ``[C, B, K]`` into ``[B, K]`` "logits" whose softmax (or sigmoid) is the aggregate.

    Softmax models (CLIP): ``mean_prob`` returns ``log(sum_c w_c softmax(l_c))``, ``max_prob`` the log of the
    element-wise maximum probability renormalised over classes, ``mean_logits`` the weighted mean of logits.
    Sigmoid models (SigLIP, each class scored independently): ``mean_prob`` returns the logit of the weighted mean
    sigmoid probability, ``max_prob`` the logit of the maximum probability (the maximum logit; no
    renormalisation, classes are not exclusive). A single copy returns its logits unchanged.
    """
    check_aggregation(aggregation)
    if logits.shape[0] == 1:
        return logits[0]
    values = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    w = weights.to(device=values.device, dtype=values.dtype).view(-1, *([1] * (values.dim() - 1)))
    if aggregation == "mean_logits":
        out = (w * values).sum(0)
    elif sigmoid:
        if aggregation == "max_prob":
            out = values.amax(0)
        else:  # logit(p) = log p - log(1 - p), both as stable log-sum-exps of log-sigmoids
            log_w = w.log()
            out = torch.logsumexp(nn.functional.logsigmoid(values) + log_w, 0) - torch.logsumexp(
                nn.functional.logsigmoid(-values) + log_w, 0)
    else:
        log_probs = values.log_softmax(-1)
        if aggregation == "max_prob":
            best = log_probs.amax(0)
            out = best - torch.logsumexp(best, -1, keepdim=True)
        else:
            out = torch.logsumexp(log_probs + w.log(), 0)
    return out.to(logits.dtype)


class InvariantImageScorer(nn.Module):
    """Copies, batched encoding and aggregation for rot90/flip-invariant image scoring.

    Holds the image group and the canonicaliser's reference tensor, a persistent buffer (saved with the model)
    drawn from ``seed``: canonical poses are the same in every call, process and reload. Strategy and aggregation
    are arguments of each call so a wrapper can read them from its (mutable) config.
    """

    def __init__(self, groups: Sequence[str], image_shape: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        with torch.device("cpu"):  # group tables are small CPU data, also when the model is built on meta
            self.action = ImageGroupAction(list(groups))
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {self.image_shape}")
        self.action.check_shape(*self.image_shape[-2:])
        self.seed = int(seed)
        self.register_buffer("reference", make_reference(self.seed, self.image_shape), persistent=True)
        self._other_references: dict[tuple[int, ...], torch.Tensor] = {}
        self.last_encoded_images = 0  # images sent to the encoder by the latest call (cost accounting, tests)

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

    def copies(self, images: torch.Tensor, strategy: str, branch_weighting: str = "size",
               deduplicate: bool = True) -> ImageCopies:
        """The copies ``strategy`` runs for ``images`` (``[B, C, H, W]``)."""
        check_image_strategy(strategy)
        if images.dim() != 4:
            raise ValueError(f"pixel_values must be [batch, channels, height, width], got shape {tuple(images.shape)}")
        self.action.check_shape(*images.shape[-2:])
        reference = None if strategy in ("none", "full") else self.reference_for(images)
        return self.action.copies(images, strategy, reference, invariant_output=True,
                                  branch_weighting=branch_weighting, deduplicate=deduplicate)

    def encode(
        self,
        encode_fn: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        strategy: str,
        *,
        branch_weighting: str = "size",
        deduplicate: bool = True,
        max_batch: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode every copy: features ``[C, B, D]`` and copy weights ``[C]``.

        All copies go through ``encode_fn`` in one call, or in chunks of ``max_batch`` images to bound memory.
        """
        copies = self.copies(images, strategy, branch_weighting, deduplicate)
        count, batch = copies.elements.shape
        stacked = images if strategy == "none" else self.action.expand_copies(images, copies)
        if max_batch is None or stacked.shape[0] <= max_batch:
            features = encode_fn(stacked)
        else:
            features = torch.cat([encode_fn(chunk) for chunk in stacked.split(int(max_batch))])
        self.last_encoded_images = int(stacked.shape[0])
        return features.reshape(count, batch, *features.shape[1:]), copies.weights

    @staticmethod
    def pool(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Invariant features: the weighted mean over copies of ``[C, B, D]`` features."""
        if features.shape[0] == 1:
            return features[0]
        return torch.einsum("c,cbd->bd", weights.to(device=features.device, dtype=features.dtype), features)

    def zero_shot_logits(
        self,
        encode_fn: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        class_embeds: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        *,
        strategy: str = "multi",
        aggregation: str = "mean_prob",
        sigmoid: bool = False,
        branch_weighting: str = "size",
        deduplicate: bool = True,
        max_batch: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant class scores ``[B, K]`` and invariant (pooled, normalised) image embeddings ``[B, D]``.

        ``class_embeds`` (``[K, D]``) must be L2-normalised; ``logit_scale`` is the multiplier itself (already
        exponentiated). Each copy is scored as ``scale * cos + bias`` and the copies are aggregated.
        """
        check_aggregation(aggregation)
        features, weights = self.encode(encode_fn, images, strategy, branch_weighting=branch_weighting,
                                        deduplicate=deduplicate, max_batch=max_batch)
        features = features / features.norm(dim=-1, keepdim=True)
        class_embeds = class_embeds.to(device=features.device, dtype=features.dtype)
        logits = torch.einsum("cbd,kd->cbk", features, class_embeds) * logit_scale
        if logit_bias is not None:
            logits = logits + logit_bias
        scores = aggregate_copy_logits(logits, weights, aggregation, sigmoid=sigmoid)
        pooled = self.pool(features, weights)
        return scores, pooled / pooled.norm(dim=-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"groups={[t.name for t in self.action.transforms]}, image_shape={self.image_shape}, seed={self.seed}"
