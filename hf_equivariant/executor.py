"""Batched execution of a plan on token inputs: expand rows into transformed copies, map outputs back, aggregate.

Everything is vectorised over copies and rows; there is no Python loop over group elements. The model call itself
is left to the caller (a model wrapper), which passes base-model rows in and gets aggregated logits back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .actions.tokens import TokenPermutationAction
from .aggregation import from_aggregation_space
from .plans import Plan

__all__ = ["TokenCopies", "expand_token_copies", "transform_token_copies", "aggregate_token_values"]


@dataclass
class TokenCopies:
    """Per copy and input row: the element applied, the factors canonicalised first, the factors symmetrised.

    Shapes: ``parts``, ``canonicalise`` and ``symmetrise`` are ``[C, N, F]`` (or broadcastable ``[C, 1, F]``);
    ``weights`` is ``[C]``. Copy ``c`` of row ``n`` runs the base model on
    ``parts[c, n] . canon_{canonicalise[c, n]}(x_n)``; its output is mapped back by ``parts[c, n]^-1`` and then
    averaged over the orbits of the factors in ``symmetrise[c, n]``.
    """

    parts: torch.Tensor
    canonicalise: torch.Tensor
    symmetrise: torch.Tensor
    weights: torch.Tensor

    @property
    def num_copies(self) -> int:
        return int(self.parts.shape[0])


def expand_token_copies(
    plan: Plan,
    action: TokenPermutationAction,
    context_ids: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None,
) -> TokenCopies:
    """The copies of ``plan`` for a batch.

    ``full`` and ``multi`` copies are the same for every row. ``canonical`` orients each row by the first token of
    each factor in ``context_ids`` (``[N, T]``, the whole sequence so far; padding marked by ``context_mask``): it runs
    ``h^-1 . x`` and maps the output back with ``h``, which is exactly equivariant because ``h(g.x) = g.h(x)``;
    factors with no token in the row are symmetrised instead.
    """
    if plan.strategy != "canonical":
        branch_canon = plan.canonicalise[plan.branch][:, None, :]
        branch_sym = plan.symmetrise[plan.branch][:, None, :]
        return TokenCopies(plan.parts[:, None, :], branch_canon, branch_sym, plan.weights)
    if context_ids is None:
        raise ValueError("the canonical strategy needs the whole sequence (context_ids) to orient each row")
    pos, found = action.first_positions(context_ids, context_mask)
    parts = action.inverse_parts(pos)[None]  # h^-1, [1, N, F]
    no_canon = torch.zeros_like(found)[None]
    return TokenCopies(parts, no_canon, ~found[None], plan.weights.to(pos.device))


def transform_token_copies(action: TokenPermutationAction, ids: torch.Tensor, copies: TokenCopies) -> torch.Tensor:
    """``[C, N, T]`` transformed token ids of every copy of every row of ``ids`` (``[N, T]``)."""
    c = copies.num_copies
    expanded = ids[None].expand(c, *ids.shape)
    canon = copies.canonicalise.to(ids.device)
    if bool(canon.any()):
        expanded = action.canonicalise(expanded, canon)
    return action.act(expanded, copies.parts.to(ids.device))


def _symmetrise(values: torch.Tensor, index: torch.Tensor, num_orbits: int, reduce: str) -> torch.Tensor:
    """Average (or max) ``values [..., T, V]`` over orbits given per leading entry by ``index [..., V]``."""
    expanded = index[..., None, :].expand(values.shape)
    pooled_shape = (*values.shape[:-1], num_orbits)
    if reduce == "mean":
        sums = values.new_zeros(pooled_shape).scatter_add_(-1, expanded, values)
        counts = values.new_zeros((*index.shape[:-1], num_orbits)).scatter_add_(
            -1, index, torch.ones_like(index, dtype=values.dtype))
        pooled = sums / counts.clamp_min(1)[..., None, :]
    else:
        pooled = values.new_full(pooled_shape, float("-inf")).scatter_reduce_(-1, expanded, values, reduce="amax")
    return pooled.gather(-1, expanded)


def aggregate_token_values(
    values: torch.Tensor, action: TokenPermutationAction, copies: TokenCopies, aggregation: str
) -> torch.Tensor:
    """Combine per-copy values ``[C, N, T, V]`` (already in aggregation space: probabilities or logits, see
    :func:`to_aggregation_space`) into equivariant logits ``[N, T, V]``.

    Each copy's output is mapped back by the inverse of its element (``y[..., g.w]``), symmetrised over its
    ``symmetrise`` factors and combined with its weight (mean aggregations) or by element-wise max (``max_prob``).
    Callers that share base rows between copies convert each row once, then expand rows to copies.
    """
    c, n, t, width = values.shape
    # Maps and orbit tables are [C, 1, V] when the copies are the same for every row (full, multi): computed once
    # per plan and reused, then broadcast over rows and positions.
    device = values.device
    maps = action.cached_vocabulary_maps(copies.parts, device, width)  # w -> g.w
    values = values.gather(-1, maps[:, :, None, :].expand(c, n, t, width))
    reduce = "amax" if aggregation == "max_prob" else "mean"
    if bool(copies.symmetrise.any()):
        index, num_orbits = action.cached_orbit_index(copies.symmetrise, device, width)
        values = _symmetrise(values, index, num_orbits, reduce)
    if reduce == "amax":
        combined = values.amax(dim=0)
    else:
        weights = copies.weights.to(device=device, dtype=values.dtype)
        combined = torch.einsum("c,cntv->ntv", weights, values)
    return from_aggregation_space(combined, aggregation)
