"""Per-input plans for invariant outputs: the copies each input row runs, with weights that may depend on the row.

:func:`~hf_equivariant.plans.make_plan` gives every input the same copies. An invariant output allows more, as long
as whatever depends on the input is a group-invariant function of it (or moves with it, for an orientation):

- ``multi`` with ``canonicalization="neutral"`` (anchor-free design 2): branch i's weight is
  ``w_i ∝ |Gi| · [factor i occurs in the input]`` (:func:`presence_weights`), and the action replaces the other
  factors' spans by a neutral form instead of a member. ``"representative"`` keeps the paper's constant weights and
  first-member canonicaliser, for reproduction.
- ``canonical``: one copy, the element that brings the first match of every factor to its set's first member
  (:func:`canonical_parts`); an absent factor needs nothing, the output being invariant.
- ``auto``: per input, ``full`` (the exact orbit average) when its distinct copies, the product of the orders of the
  factors present, are no more than anchor-free ``multi``'s, their sum; else anchor-free ``multi``
  (:func:`auto_uses_full`). The choice depends only on the set of factors present, a group-invariant statistic.

Plans here are data like :class:`~hf_equivariant.plans.Plan`; the executor carries them out
(:func:`~hf_equivariant.executor.run_sequences`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .plans import Plan, check_branch_weighting, make_plan

__all__ = ["CANONICALIZATIONS", "ROW_STRATEGIES", "RowCopies", "row_copies", "presence_weights", "auto_uses_full",
           "canonical_parts", "restrict_to_present", "check_canonicalization", "nominal_copies"]

#: How design 2 removes the other factors from a branch's input.
CANONICALIZATIONS = ("neutral", "representative")
#: Strategies :func:`row_copies` builds.
ROW_STRATEGIES = ("none", "full", "multi", "canonical", "auto")


def check_canonicalization(name: str) -> str:
    """``name`` if it is a known canonicalization, else a clear error."""
    if not isinstance(name, str) or name not in CANONICALIZATIONS:
        raise ValueError(f"unknown canonicalization {name!r}; choose one of {CANONICALIZATIONS}")
    return name


@dataclass
class RowCopies:
    """The copies of a batch of ``N`` inputs.

    Attributes:
        strategy: the strategy that built them.
        parts: ``[C, N, F]`` factor indices of the element each copy applies to each input.
        canonicalise: ``[C, N, F]`` factors whose spans each copy replaces instead of moving.
        weights: ``[C, N]`` weight of each copy for each input (they sum to 1 per input; 0: not run).
        canonicalization: how ``canonicalise`` replaces spans (``"neutral"`` or ``"representative"``).
        uses_full: ``[N]`` for ``auto``: whether the input runs ``full`` (else anchor-free ``multi``).
    """

    strategy: str
    parts: torch.Tensor
    canonicalise: torch.Tensor
    weights: torch.Tensor
    canonicalization: str = "neutral"
    uses_full: torch.Tensor | None = None

    @property
    def num_copies(self) -> int:
        return int(self.parts.shape[0])

    def copies_per_input(self) -> torch.Tensor:
        """``[N]`` copies each input runs (nonzero weight), before identical copies are merged."""
        return (self.weights > 0).sum(0)


@functools.lru_cache(maxsize=64)
def _plan(orders: tuple[int, ...], strategy: str, branch_weighting: str) -> Plan:
    return make_plan(orders, strategy, branch_weighting, output="invariant")


def presence_weights(plan: Plan, present: torch.Tensor) -> torch.Tensor:
    """``[C, N]`` copy weights of a ``multi`` plan with absent factors' branches switched off.

    Branch i keeps its plan weight (``|Gi| / sum |Gj|`` for size weighting) when factor i occurs in input ``n`` and
    gets 0 otherwise; weights are renormalised per input. An element moves spans but never adds or removes one, so
    ``present`` is group-invariant and so are the weights. With no factor present every copy is the input itself:
    all weight goes to the first copy (the identity), which is the base model's output.
    """
    branch = plan.branch.to(present.device)
    on = present[:, branch].t()  # [C, N]
    w = plan.weights.to(present.device)[:, None] * on
    total = w.sum(0, keepdim=True)
    identity_only = torch.zeros_like(w)
    identity_only[0] = 1.0
    return torch.where(total > 0, w / total.clamp_min(1e-30), identity_only)


def auto_uses_full(factor_orders: Sequence[int], present: torch.Tensor) -> torch.Tensor:
    """``[N]``: ``prod |Gi| <= sum |Gi|`` over the factors present in each input (no factor: ``True``).

    ``full`` then costs no more distinct copies than anchor-free ``multi`` (one factor present: the same copies;
    two factors of order 2: 4 and 4), so the exact orbit average is taken. With orders of at least 2 these are the
    only cases, and with one factor present anchor-free ``multi`` is the orbit average already: ``auto`` differs
    from it only on inputs with exactly two order-2 factors.
    """
    orders = torch.tensor(list(factor_orders), dtype=torch.float64, device=present.device)
    prod = torch.where(present, orders, torch.ones_like(orders)).prod(-1)
    total = (present.double() * orders).sum(-1)
    return prod <= total.clamp_min(1.0)


def restrict_to_present(parts: torch.Tensor, weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``[C, N]`` weights of a ``full`` plan moved onto the copies that fix every absent factor.

    Copies that differ only on factors absent from an input run the same text, so this is the same average with
    ``prod |Gi|`` over the factors present instead of all factors; which copies keep weight depends only on the set
    of factors present (group-invariant).
    """
    idle = (parts != 0) & ~present[None]  # [C, N, F]: moves a factor the input does not contain
    w = weights * ~idle.any(-1)
    return w / w.sum(0, keepdim=True)


def canonical_parts(factor_orders: Sequence[int], first_member: torch.Tensor) -> torch.Tensor:
    """``[N, F]``: the element moving the first match of each factor to its set's first member (absent: 0).

    Element ``g`` adds ``g_i`` to every member index of factor i, so the first match of ``g.x`` is the first match of
    ``x`` shifted by ``g_i``, and the oriented input ``k(g.x) . g.x`` equals ``k(x) . x``: exactly invariant.
    """
    orders = torch.tensor(list(factor_orders), dtype=torch.long, device=first_member.device)
    return torch.where(first_member >= 0, (-first_member) % orders, torch.zeros_like(first_member))


def nominal_copies(factor_orders: Sequence[int], strategy: str, canonicalization: str = "neutral") -> int:
    """Most copies an input can run before de-duplication: ``prod |Gi|`` (full), ``sum |Gi|`` (multi), 1 (canonical,
    none); for ``auto`` the largest ``min(prod, sum)`` over the sets of factors an input can contain (at most
    ``sum |Gi|``)."""
    orders = [int(o) for o in factor_orders]
    if strategy == "full":
        return math.prod(orders)
    if strategy == "multi":
        return sum(orders)
    if strategy == "auto":  # min(prod, sum) over the factors present, at worst
        return max(min(math.prod(s), sum(s)) for k in range(1, len(orders) + 1)
                   for s in itertools.combinations(orders, k))
    return 1


def row_copies(factor_orders: Sequence[int], strategy: str, present: torch.Tensor, first_member: torch.Tensor,
               branch_weighting: str = "size", canonicalization: str = "neutral") -> RowCopies:
    """The copies ``strategy`` runs for each input, given which factors occur (``present [N, F]``) and the member
    index of each factor's first match (``first_member [N, F]``, -1 where absent)."""
    orders = tuple(int(o) for o in factor_orders)
    check_branch_weighting(branch_weighting)
    check_canonicalization(canonicalization)
    n, f = present.shape
    device = present.device
    if strategy in ("none", "canonical"):
        parts = torch.zeros(1, n, f, dtype=torch.long, device=device)
        if strategy == "canonical":
            parts = canonical_parts(orders, first_member)[None]
        return RowCopies(strategy, parts, torch.zeros_like(parts, dtype=torch.bool),
                         torch.ones(1, n, device=device))
    if strategy == "full":
        plan = _plan(orders, "full", branch_weighting)
        c = plan.num_copies
        return RowCopies("full", plan.parts.to(device)[:, None].expand(c, n, f),
                         torch.zeros(c, n, f, dtype=torch.bool, device=device),
                         plan.weights.to(device)[:, None].expand(c, n))
    if strategy == "multi":
        plan = _plan(orders, "multi", branch_weighting)
        c = plan.num_copies
        weights = (presence_weights(plan, present) if canonicalization == "neutral"
                   else plan.weights.to(device)[:, None].expand(c, n))
        return RowCopies("multi", plan.parts.to(device)[:, None].expand(c, n, f),
                         plan.copy_canonicalise().to(device)[:, None].expand(c, n, f), weights, canonicalization)
    if strategy == "auto":
        full = row_copies(orders, "full", present, first_member, branch_weighting)
        full.weights = restrict_to_present(full.parts, full.weights, present)
        multi = row_copies(orders, "multi", present, first_member, branch_weighting, "neutral")
        choose = auto_uses_full(orders, present)
        weights = torch.cat([full.weights * choose, multi.weights * ~choose])
        return RowCopies("auto", torch.cat([full.parts, multi.parts]),
                         torch.cat([full.canonicalise, multi.canonicalise]), weights, "neutral", choose)
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {ROW_STRATEGIES}")
