"""The one way copies' outputs are combined, in log space, for every wrapper.

Each copy's logits are mapped to an aggregation *space* once (log-probabilities for the probability aggregations,
raw values for ``mean_logits``), copies are combined there with their weights, and the result is mapped back to
logits. Nothing is exponentiated outside a log-sum-exp, so tails stay exact down to the float's range: two copies
with log-probabilities -120 and -125 combine to -120.69, never to a clamped floor.

Aggregations:

- ``mean_prob`` (default): the log of the weighted mean probability. Anything that applies a softmax (sigmoid)
  afterwards (``generate``, pipelines) sees equitune's probability average exactly.
- ``mean_logits``: the weighted mean of the raw logits (the research code of the paper's SCAN and GPT-2 runs).
- ``max_prob``: the element-wise maximum probability over copies (equizero-style), renormalised over classes for a
  softmax, kept per class for a sigmoid.

Links: ``softmax`` (classes exclusive: language models, CLIP), ``sigmoid`` (classes scored independently: SigLIP),
``identity`` (features, regression outputs: only ``mean_logits`` applies).

Combining is associative: :meth:`Aggregation.combine` reduces a block of copies to a *partial* result and
:meth:`Aggregation.merge` joins partials, so copies can be streamed in chunks with bounded memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["AGGREGATIONS", "LINKS", "Aggregation", "get_aggregation", "check_aggregation", "segment_combine"]

AGGREGATIONS = ("mean_prob", "mean_logits", "max_prob")
LINKS = ("softmax", "sigmoid", "identity")


def check_aggregation(name: str) -> str:
    """Return ``name`` if it is a known aggregation, else raise a clear error."""
    if not isinstance(name, str) or name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {AGGREGATIONS}")
    return name


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _log_weights(weights: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    w = weights.to(device=like.device, dtype=like.dtype)
    shape = [1] * like.dim()
    shape[dim] = w.shape[0]
    return w.log().view(shape) if w.dim() == 1 else w.log()


class Aggregation:
    """An aggregation with a link; see the module docstring for the semantics."""

    def __init__(self, name: str, link: str = "softmax") -> None:
        self.name = check_aggregation(name)
        if link not in LINKS:
            raise ValueError(f"unknown link {link!r}; choose one of {LINKS}")
        if link == "identity" and name != "mean_logits":
            raise ValueError(f"aggregation {name!r} needs probabilities; outputs with an identity link (features) "
                             "can only be averaged with 'mean_logits'")
        self.link = link

    def __repr__(self) -> str:
        return f"Aggregation({self.name!r}, link={self.link!r})"

    # ------------------------------------------------------------------ per copy
    def to_space(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-copy values in aggregation space (float32 at least): log-probabilities for a softmax link's
        probability aggregations, the logits themselves otherwise."""
        values = _upcast(logits)
        if self.name != "mean_logits" and self.link == "softmax":
            return values.log_softmax(dim=-1)
        return values

    def pool_orbits(self, values: torch.Tensor, index: torch.Tensor, num_orbits: int) -> torch.Tensor:
        """Average ``values [..., K]`` over orbits (ids ``index [..., K]`` broadcastable) and spread the pooled
        value back to every member: the output symmetrised over a subgroup, in aggregation space."""
        index = index.expand(values.shape)
        shape = (*values.shape[:-1], num_orbits)
        if self.name == "max_prob":
            pooled = values.new_full(shape, -math.inf).scatter_reduce_(-1, index, values, reduce="amax")
            return pooled.gather(-1, index)
        counts = values.new_zeros(shape).scatter_add_(-1, index, torch.ones_like(values))
        if self.name == "mean_logits" or self.link != "softmax":
            sums = values.new_zeros(shape).scatter_add_(-1, index, values)
            return (sums / counts.clamp_min(1)).gather(-1, index)
        peak = values.new_full(shape, -math.inf).scatter_reduce_(-1, index, values, reduce="amax")
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        sums = values.new_zeros(shape).scatter_add_(-1, index, (values - peak.gather(-1, index)).exp())
        pooled = peak + sums.log() - counts.clamp_min(1).log()
        return pooled.gather(-1, index)

    # ------------------------------------------------------------------ across copies
    def combine(self, values: torch.Tensor, weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Reduce copies along ``dim`` (weights ``[C]``, or broadcastable to ``values``) to a partial result."""
        if self.name == "max_prob":
            if self.link == "sigmoid":
                return values.amax(dim)
            keep = (weights.to(values.device) > 0)
            if weights.dim() == 1:
                shape = [1] * values.dim()
                shape[dim] = weights.shape[0]
                keep = keep.view(shape)
            return torch.where(keep, values, torch.full_like(values, -math.inf)).amax(dim)
        if self.name == "mean_logits":
            w = weights.to(device=values.device, dtype=values.dtype)
            if w.dim() == 1:
                shape = [1] * values.dim()
                shape[dim] = w.shape[0]
                w = w.view(shape)
            return (w * values).sum(dim)
        log_w = _log_weights(weights, values, dim)
        if self.link == "sigmoid":
            return torch.stack([torch.logsumexp(F.logsigmoid(values) + log_w, dim),
                                torch.logsumexp(F.logsigmoid(-values) + log_w, dim)])
        return torch.logsumexp(values + log_w, dim)

    def merge(self, a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
        """Join two partial results (``a`` may be ``None``: nothing combined yet)."""
        if a is None:
            return b
        if self.name == "max_prob":
            return torch.maximum(a, b)
        if self.name == "mean_logits":
            return a + b
        return torch.logaddexp(a, b)

    def finish(self, partial: torch.Tensor) -> torch.Tensor:
        """Map a complete partial result back to logits whose softmax (sigmoid) is the aggregate."""
        if self.name == "mean_prob" and self.link == "sigmoid":
            return partial[0] - partial[1]
        if self.name == "max_prob" and self.link == "softmax":
            return partial - torch.logsumexp(partial, dim=-1, keepdim=True)
        return partial

    def __call__(self, logits: torch.Tensor, weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Aggregate per-copy logits along ``dim`` in one go."""
        return self.finish(self.combine(self.to_space(logits), weights, dim))


def get_aggregation(name: str, link: str = "softmax") -> Aggregation:
    """The aggregation ``name`` for outputs with the given link."""
    return Aggregation(name, link)


def segment_combine(aggregation: Aggregation, values: torch.Tensor, weights: torch.Tensor, segment: torch.Tensor,
                    num_segments: int) -> torch.Tensor:
    """Combine rows ``values [R, ...]`` with weights ``[R]`` (or ``[R, ...]`` broadcastable) into ``num_segments``
    groups given by ``segment [R]``: a partial result ``[num_segments, ...]`` (``[2, num_segments, ...]`` for
    ``mean_prob`` with a sigmoid link: the log mean probabilities of each class being on and off)."""
    if aggregation.link == "sigmoid" and aggregation.name == "mean_prob":
        softmax_like = Aggregation("mean_prob")  # the same weighted log-sum-exp, applied to each side
        return torch.stack([segment_combine(softmax_like, F.logsigmoid(values), weights, segment, num_segments),
                            segment_combine(softmax_like, F.logsigmoid(-values), weights, segment, num_segments)])
    w = weights.to(device=values.device, dtype=values.dtype)
    w = w.view(w.shape[0], *([1] * (values.dim() - 1))) if w.dim() == 1 else w
    segment = segment.to(values.device)
    if bool((segment[1:] >= segment[:-1]).all()):  # the shared layout's order: dense slices, no scatters
        return _sorted_segments(aggregation, values, w, segment, num_segments)
    index = segment.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    shape = (num_segments, *values.shape[1:])
    if aggregation.name == "max_prob":
        masked = torch.where(w > 0, values, torch.full_like(values, -math.inf))
        return values.new_full(shape, -math.inf).scatter_reduce_(0, index, masked, reduce="amax")
    if aggregation.name == "mean_logits":
        return values.new_zeros(shape).scatter_add_(0, index, w * values)
    shifted = values + w.log()
    peak = values.new_full(shape, -math.inf).scatter_reduce_(0, index, shifted, reduce="amax")
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    sums = values.new_zeros(shape).scatter_add_(0, index, (shifted - peak.gather(0, index)).exp())
    return peak + sums.log()


def _sorted_segments(aggregation: Aggregation, values: torch.Tensor, w: torch.Tensor, segment: torch.Tensor,
                     num_segments: int) -> torch.Tensor:
    """:func:`segment_combine` for rows sorted by segment (the shared layout's order): dense reductions over
    each segment's slice, much faster than scatters on wide rows. Missing segments are left empty (-inf / 0)."""
    counts = torch.bincount(segment, minlength=num_segments).tolist()
    if num_segments == 1 and aggregation.name not in ("max_prob", "mean_logits") and counts[0] > 1:
        return _weighted_logsumexp(values, w.log())[None]  # one input row: no output buffer to fill
    fill = 0.0 if aggregation.name == "mean_logits" else -math.inf
    out = values.new_full((num_segments, *values.shape[1:]), fill)
    start = 0
    for k, count in enumerate(counts):  # one slice per input row of the batch, never per group element
        if count:
            rows, weight = values[start:start + count], w[start:start + count]  # weights stay broadcast, not expanded
            if aggregation.name == "max_prob":
                out[k] = torch.where(weight > 0, rows, torch.full_like(rows, -math.inf)).amax(0)
            elif aggregation.name == "mean_logits":
                out[k] = (weight * rows).sum(0)
            elif count == 1:
                out[k] = rows[0] + weight[0].log()
            else:
                out[k] = _weighted_logsumexp(rows, weight.log())
        start += count
    return out


def _weighted_logsumexp(rows: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """``log sum_r exp(rows[r] + log_weights[r])`` over the first dim, exact in the tails (shifted by the
    element-wise maximum) and with fewer passes over memory than ``torch.logsumexp`` on a short leading dim: this is
    the widest reduction of a scoring forward (rows x positions x vocabulary)."""
    shifted = rows + log_weights
    if shifted.requires_grad:  # training: the out-of-place reduction, which autograd can differentiate
        return torch.logsumexp(shifted, 0)
    peak = shifted.amax(0).clamp_(min=torch.finfo(shifted.dtype).min)  # all -inf: stays -inf below, never NaN
    return shifted.sub_(peak).exp_().sum(0).log_().add_(peak)
