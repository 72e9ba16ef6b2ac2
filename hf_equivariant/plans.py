"""Strategies turn a group into a plan: which transformed copies of an input to run, and how to combine them.

A plan is plain data (element ids, branch ids, weights, masks) so it can be printed, counted and tested without a
model; the executor carries it out with an action. The factor subgroups a plan refers to are the factors of a
direct product, or the cyclic subgroups of the generating transforms of any other group (rot90 and a flip).

- ``full``: equitune over the whole group, one copy per element (prod |Gi| copies), one branch.
- ``multi``: the paper's design 2. Branch i canonicalises the other factors away, runs the |Gi| elements of
  factor i and symmetrises its output over the other factors: sum |Gi| copies, N branches. When the factors do
  not commute (rot90 x flip) it is exact only for invariant outputs, and every branch canonicalises the whole group.
- ``canonical``: one copy of the input moved to its canonical pose (orientation); the output is moved back, and
  factors the orientation cannot see (a word absent from the text) are symmetrised.
- ``none``: the base model itself (one identity copy), for comparisons.
- ``auto``: per position, the exact orbit average (``full``) while its distinct copies are no more than anchor-free
  ``multi``'s, else anchor-free ``multi``; the choice depends only on which factors occur in the context so far,
  a group-invariant statistic, so every position stays exact and causal.

Design 2 has two canonicalisations. ``representative`` (the paper's) replaces the other factors' words by the first
member of their set, so every variant of a prompt is answered like the variant of that member (the anchor effect,
docs/fairness.md). ``neutral`` replaces them by an input that privileges no member (the action decides: the mean
embedding of the word's orbit for tokens), weighs each branch by whether its factor occurs in the context
(a group-invariant weight; absent factors get none) and routes the split within each factor's orbits to that
factor's own branch.

New strategies register a builder with :func:`register_strategy`; the rules of which strategy is valid for which
group and output kind are in :func:`check_strategy`, here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .groups import DirectProductGroup, Group, cyclic_group

__all__ = ["STRATEGIES", "BRANCH_WEIGHTINGS", "OUTPUT_KINDS", "CANONICALIZATIONS", "Plan", "Copies", "make_plan",
           "realise", "check_canonicalization", "drop_idle_copies",
           "check_strategy", "register_strategy", "strategy_names", "check_branch_weighting"]

BRANCH_WEIGHTINGS = ("size", "equal")
OUTPUT_KINDS = ("equivariant", "invariant")
CANONICALIZATIONS = ("representative", "neutral")


@dataclass(frozen=True)
class Plan:
    """The copies a strategy runs for one input.

    Attributes:
        strategy: the strategy's name.
        factor_orders: ``|Gi|`` of each factor subgroup.
        elements: ``[C]`` group element applied to each copy (after canonicalisation).
        branch: ``[C]`` branch of each copy.
        weights: ``[C]`` averaging weight of each copy; they sum to 1.
        canonicalise: ``[num_branches, N]`` factors whose action is removed from the input of each branch.
        symmetrise: ``[num_branches, N]`` factors each branch's output is averaged over.
        orient: the input is first moved to its canonical pose by the action (the ``canonical`` strategy).
        parts: ``[C, N]`` factor indices of ``elements`` (direct products), else ``None``.
    """

    strategy: str
    factor_orders: tuple[int, ...]
    elements: torch.Tensor
    branch: torch.Tensor
    weights: torch.Tensor
    canonicalise: torch.Tensor
    symmetrise: torch.Tensor
    orient: bool = False
    parts: torch.Tensor | None = None
    canonicalization: str = "representative"
    branch_weights: str = "fixed"
    route: bool = False
    auto: bool = False
    branch_weighting: str = "size"

    @property
    def num_copies(self) -> int:
        """Base-model rows per input (before any sharing of identical copies)."""
        return int(self.elements.shape[0])

    @property
    def num_branches(self) -> int:
        return int(self.canonicalise.shape[0])

    def copy_canonicalise(self) -> torch.Tensor:
        """``[C, N]``: the canonicalisation mask of each copy's branch."""
        return self.canonicalise[self.branch]

    def copy_symmetrise(self) -> torch.Tensor:
        """``[C, N]``: the symmetrisation mask of each copy's branch."""
        return self.symmetrise[self.branch]

    def describe(self, factor_names: Sequence[str] | None = None) -> str:
        """A readable table of the plan's copies."""
        names = list(factor_names) if factor_names else [f"G{i}" for i in range(len(self.factor_orders))]
        head = f"strategy={self.strategy} copies={self.num_copies} branches={self.num_branches}"
        lines = [head + (" (oriented per input)" if self.orient else "")]
        for b in range(self.num_branches):
            canon = [n for n, c in zip(names, self.canonicalise[b].tolist()) if c]
            sym = [n for n, s in zip(names, self.symmetrise[b].tolist()) if s]
            lines.append(f"  branch {b}: canonicalise {canon or '-'}; symmetrise output over {sym or '-'}")
        for c in range(self.num_copies):
            if self.parts is not None:
                element = ", ".join(f"{n}^{p}" for n, p in zip(names, self.parts[c].tolist()))
            else:
                element = f"element {int(self.elements[c])}"
            lines.append(f"  copy {c}: branch {int(self.branch[c])} ({element}) weight {float(self.weights[c]):.4f}")
        return "\n".join(lines)


StrategyBuilder = Callable[..., Plan]
_STRATEGIES: dict[str, StrategyBuilder] = {}


def register_strategy(name: str) -> Callable[[StrategyBuilder], StrategyBuilder]:
    """Decorator registering ``builder(group, branch_weighting, output, canonicalization) -> Plan`` under ``name``."""
    def decorate(builder: StrategyBuilder) -> StrategyBuilder:
        _STRATEGIES[name] = builder
        return builder
    return decorate


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy."""
    return tuple(_STRATEGIES)


def check_branch_weighting(name: str) -> str:
    if name not in BRANCH_WEIGHTINGS:
        raise ValueError(f"unknown branch weighting {name!r}; choose one of {BRANCH_WEIGHTINGS}")
    return name


def check_canonicalization(name: str) -> str:
    if not isinstance(name, str) or name not in CANONICALIZATIONS:
        raise ValueError(f"unknown canonicalization {name!r}; choose one of {CANONICALIZATIONS}")
    return name


def check_strategy(strategy: str, group: Group | None = None, output: str = "equivariant",
                   can_orient: bool = True, allowed: Sequence[str] | None = None) -> str:
    """Return ``strategy`` if it can be exact for ``group`` and this kind of output, else raise a clear error.

    ``allowed`` narrows the choice for a wrapper (for example, strategies a config accepts).
    """
    names = tuple(allowed) if allowed is not None else strategy_names()
    if not isinstance(strategy, str) or strategy not in names:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {names}")
    if output not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {output!r}; choose one of {OUTPUT_KINDS}")
    if strategy == "canonical" and not can_orient:
        raise ValueError("strategy 'canonical' needs an action that can orient its inputs")
    if group is not None and strategy == "auto" and not group.is_direct_product:
        raise ValueError(f"strategy 'auto' needs a direct product of factors, got {group.name!r}")
    if group is not None and strategy == "multi" and output == "equivariant" and not group.factors_commute:
        raise ValueError(
            f"strategy 'multi' needs commuting factors for an equivariant output, but the generators of "
            f"{group.name!r} do not commute (they generate a non-abelian group of order {group.order}); use "
            "strategy 'full' or 'canonical', or an invariant output")
    return strategy


def _as_group(group_or_orders: Group | Sequence[int]) -> Group:
    if isinstance(group_or_orders, Group):
        return group_or_orders
    orders = tuple(int(o) for o in group_or_orders)
    if not orders or any(o < 1 for o in orders):
        raise ValueError(f"factor orders must be positive, got {orders}")
    return DirectProductGroup([cyclic_group(o, name=f"G{i}") for i, o in enumerate(orders)])


def _factor_orders(group: Group) -> tuple[int, ...]:
    return tuple(len(group.factor_elements(i)) for i in range(group.num_factor_subgroups)) or (1,)


def _plan(group: Group, strategy: str, elements: list[int], branch: list[int], weights: list[float],
          canonicalise: torch.Tensor, symmetrise: torch.Tensor, orient: bool = False, **options: Any) -> Plan:
    elements_t = torch.tensor(elements, dtype=torch.long)
    parts = group.elements[elements_t] if isinstance(group, DirectProductGroup) else None
    return Plan(strategy, _factor_orders(group), elements_t, torch.tensor(branch, dtype=torch.long),
                torch.tensor(weights, dtype=torch.float32), canonicalise, symmetrise, orient, parts, **options)


@register_strategy("none")
def _none_plan(group: Group, branch_weighting: str, output: str, canonicalization: str = "representative") -> Plan:
    n = len(_factor_orders(group))
    off = torch.zeros(1, n, dtype=torch.bool)
    return _plan(group, "none", [0], [0], [1.0], off, off.clone())


@register_strategy("full")
def _full_plan(group: Group, branch_weighting: str, output: str, canonicalization: str = "representative") -> Plan:
    n = len(_factor_orders(group))
    c = group.order
    off = torch.zeros(1, n, dtype=torch.bool)
    return _plan(group, "full", list(range(c)), [0] * c, [1.0 / c] * c, off, off.clone())


@register_strategy("canonical")
def _canonical_plan(group: Group, branch_weighting: str, output: str, canonicalization: str = "representative") -> Plan:
    n = len(_factor_orders(group))
    return _plan(group, "canonical", [0], [0], [1.0], torch.zeros(1, n, dtype=torch.bool),
                 torch.ones(1, n, dtype=torch.bool), orient=True)


@register_strategy("multi")
def _multi_plan(group: Group, branch_weighting: str, output: str, canonicalization: str = "representative") -> Plan:
    n = group.num_factor_subgroups
    if n == 0:  # the trivial group: one identity copy
        return _full_plan(group, branch_weighting, output)
    orders = _factor_orders(group)
    total = sum(orders)
    elements, branch, weights = [], [], []
    for i in range(n):
        for element in group.factor_elements(i):
            elements.append(element)
            branch.append(i)
            weights.append(1.0 / total if branch_weighting == "size" else 1.0 / (n * orders[i]))
    others = ~torch.eye(n, dtype=torch.bool)
    canonicalise = others.clone() if group.factors_commute else torch.ones(n, n, dtype=torch.bool)
    neutral = canonicalization == "neutral"
    return _plan(group, "multi", elements, branch, weights, canonicalise, others.clone(),
                 canonicalization=canonicalization, branch_weights="present" if neutral else "fixed", route=neutral,
                 branch_weighting=branch_weighting)


@register_strategy("auto")
def _auto_plan(group: Group, branch_weighting: str, output: str, canonicalization: str = "neutral") -> Plan:
    """Anchor-free multi's copies (branches 0..N-1) followed by the full orbit (branch N); ``realise`` weighs them per
    position: the orbit where its distinct copies are no more than multi's, multi elsewhere."""
    multi = _multi_plan(group, branch_weighting, output, "neutral")
    full = _full_plan(group, branch_weighting, output)
    n = multi.num_branches
    return Plan("auto", multi.factor_orders, torch.cat([multi.elements, full.elements]),
                torch.cat([multi.branch, torch.full_like(full.elements, n)]),
                torch.cat([multi.weights, full.weights]),
                torch.cat([multi.canonicalise, torch.zeros(1, n, dtype=torch.bool)]),
                torch.cat([multi.symmetrise, torch.zeros(1, n, dtype=torch.bool)]),
                parts=None if multi.parts is None else torch.cat([multi.parts, full.parts]),
                canonicalization="neutral", branch_weights="present", route=True, auto=True,
                branch_weighting=branch_weighting)


#: The built-in strategies (see :func:`strategy_names` for everything registered).
STRATEGIES = ("full", "multi", "canonical")


def make_plan(group_or_orders: Group | Sequence[int], strategy: str, branch_weighting: str = "size",
              output: str = "equivariant", deduplicate: bool = False,
              canonicalization: str = "representative") -> Plan:
    """The plan of ``strategy`` for a group (or for a direct product of cyclic groups of the given orders).

    ``branch_weighting`` (multi only): ``"size"`` weighs every copy equally, so branch i gets ``|Gi| / sum |Gj|``
    (the CLIP research code); ``"equal"`` gives every branch ``1/N`` (the SCAN research code). Both are exact.
    ``deduplicate`` merges copies that run the same input (same canonicalisation and element) into one, summing
    their weights: exact for invariant outputs, where copies are not mapped back per branch.
    """
    group = _as_group(group_or_orders)
    check_strategy(strategy, group, output)
    check_branch_weighting(branch_weighting)
    check_canonicalization(canonicalization)
    plan = _STRATEGIES[strategy](group, branch_weighting, output, canonicalization)
    if deduplicate and output == "invariant" and plan.num_copies > 1:
        plan = _deduplicate(plan)
    return plan


def _deduplicate(plan: Plan) -> Plan:
    """Merge copies with the same canonicalisation mask and element (they run the same transformed input)."""
    keys = torch.cat([plan.copy_canonicalise().long(), plan.elements[:, None]], dim=1)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    if unique.shape[0] == plan.num_copies:
        return plan
    first = torch.full((unique.shape[0],), plan.num_copies, dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(plan.num_copies), reduce="amin")
    first = first.sort().values  # keep the original copy order
    remap = torch.empty(unique.shape[0], dtype=torch.long)
    remap[inverse[first]] = torch.arange(first.numel())
    weights = torch.zeros(first.numel()).index_add_(0, remap[inverse], plan.weights)
    return dataclasses.replace(plan, elements=plan.elements[first], branch=plan.branch[first], weights=weights,
                               parts=None if plan.parts is None else plan.parts[first])


# ---------------------------------------------------------------------------------------------------- realisation
@dataclass
class Copies:
    """A plan realised for a batch of ``N`` inputs: what each copy runs and how its output comes back.

    Attributes:
        plan: the plan.
        canonicalise: ``[C, F]`` (or per row ``[C, N, F]``) factors removed from the input of each copy before its
            element is applied.
        input_elements: ``[C, N]`` element applied to (the canonicalised) input row ``n`` by copy ``c``.
        output_elements: ``[C, N]`` or ``[C, N, T]``: the output of copy ``c`` is mapped back by the inverse of this
            element (per position for oriented sequences).
        symmetrise: ``[C, 1|N, F]`` or ``[C, N, T, F]`` factors each copy's output is averaged over.
        weights: ``[C]`` weight of each copy, or ``[C, N, T]`` per row and position.
        route_mask: ``[N, T]`` positions whose support columns are routed to each factor's own branch
            (anchor-free multi), or ``None``.
    """

    plan: Plan
    canonicalise: torch.Tensor
    input_elements: torch.Tensor
    output_elements: torch.Tensor
    symmetrise: torch.Tensor
    weights: torch.Tensor
    route_mask: torch.Tensor | None = None

    @property
    def num_copies(self) -> int:
        return int(self.input_elements.shape[0])

    @property
    def per_position(self) -> bool:
        """Whether outputs are mapped back per position (an oriented sequence)."""
        return self.output_elements.dim() == 3


def realise(plan: Plan, action: Any, x: torch.Tensor, *, valid: torch.Tensor | None = None,
            **context: Any) -> Copies:
    """The copies of ``plan`` for the inputs ``x`` (``[N, ...]``); ``valid`` marks padding of sequences.

    ``full`` and representative ``multi`` run the same copies with the same weights for every input. ``canonical``
    asks the action to orient each input (per position for sequences, so the result stays causal). Anchor-free
    ``multi`` and ``auto`` weigh copies per position by which factors occur in the context so far (the action's
    ``presence``), a group-invariant statistic.
    """
    n = x.shape[0]
    device = x.device
    if plan.orient:
        o = action.orient(x, valid=valid, **context)
        f = plan.canonicalise.shape[1]
        unresolved = o.unresolved if o.unresolved is not None else torch.zeros(
            (*o.output_elements.shape, f), dtype=torch.bool, device=device)
        return Copies(plan, torch.zeros(1, f, dtype=torch.bool, device=device), o.input_elements[None],
                      o.output_elements[None], unresolved[None], plan.weights.to(device))
    elements = plan.elements.to(device)[:, None].expand(-1, n)
    copies = Copies(plan, plan.copy_canonicalise().to(device), elements, elements,
                    plan.copy_symmetrise().to(device)[:, None, :], plan.weights.to(device))
    if plan.branch_weights == "present":
        _presence_weights(plan, copies, action.presence(x, valid))
    return copies


def _presence_weights(plan: Plan, copies: Copies, present: torch.Tensor) -> None:
    """Per-position copy weights ``[C, N, T]`` from factor presence ``[N, T, F]`` (and, for ``auto``, the mode).

    Anchor-free multi: branch i gets ``|Gi| [i present]`` (size weighting; ``[i present]`` for equal weighting),
    normalised over present factors, shared equally by its copies; where no factor is present every copy coincides
    and the plan's fixed weights are used. ``auto`` also compares, per position, the distinct copies of the orbit
    average over the present factors (prod |Gi|) with those of anchor-free multi (sum |Gi| plus one row shared by
    the absent factors' branches) and gives the orbit copies all the weight where it is not larger; routing applies
    only where multi is used.
    """
    device = present.device
    orders = torch.tensor(plan.factor_orders, device=device, dtype=torch.float32)
    branch = plan.branch.to(device)
    nf = orders.numel()
    n_rows, n_pos = present.shape[:2]
    presence = present.float()  # [N, T, F]
    is_multi = branch < nf
    branch_of = branch.clamp_max(nf - 1)
    pb = presence[..., branch_of].permute(2, 0, 1)  # [C, N, T]: is the copy's factor present?
    if plan.branch_weighting == "size":
        multi_w = pb / (presence * orders).sum(-1).clamp_min(1)[None]
    else:
        multi_w = pb / (orders[branch_of].view(-1, 1, 1) * presence.sum(-1).clamp_min(1)[None])
    fixed = plan.weights.to(device) * is_multi
    fixed = fixed / fixed.sum()
    none_present = ~present.any(-1)  # [N, T]: every multi copy coincides here
    multi_w = torch.where(none_present[None], fixed.view(-1, 1, 1).expand_as(multi_w), multi_w) * is_multi.view(-1, 1, 1)
    route = torch.ones(n_rows, n_pos, dtype=torch.bool, device=device)
    weights = multi_w
    if plan.auto:
        full_rows = torch.where(present, orders, torch.ones_like(orders)).prod(-1)  # [N, T]
        multi_rows = (presence * orders).sum(-1) + (present.sum(-1) < nf).float()
        orbit_mode = full_rows <= multi_rows
        orbit_w = (~is_multi).float() / max(1, int((~is_multi).sum()))
        weights = torch.where(orbit_mode[None], orbit_w.view(-1, 1, 1).expand_as(multi_w), multi_w)
        route = ~orbit_mode
        # Orbit copies only need the factors present at the last orbit-mode position (P*): restrict their elements
        # there. Every orbit-mode position stays exact, and sharing merges copies that differ only beyond it.
        last = (orbit_mode.long() * torch.arange(1, n_pos + 1, device=device)).argmax(-1)  # [N]
        p_star = present.gather(1, last.view(-1, 1, 1).expand(-1, 1, nf))[:, 0].long()  # [N, F]
        parts = plan.parts.to(device)  # [C, F]
        strides = torch.tensor([int(torch.tensor(plan.factor_orders[i + 1:]).prod()) for i in range(nf)],
                               device=device)
        restricted = ((parts[:, None, :] * p_star[None]) * strides).sum(-1)  # [C, N]
        # Inputs use the restricted element; outputs are still mapped back by the whole element, which is what
        # symmetrises the orbit average over factors absent from the text.
        copies.input_elements = torch.where(is_multi[:, None], copies.input_elements, restricted)
        elements = copies.input_elements
    copies.weights = weights  # [C, N, T]
    copies.route_mask = route if plan.route else None


def drop_idle_copies(copies: Copies) -> None:
    """Turn copies that contribute nothing to a row into copies of the input itself (free under sharing).

    A copy is idle in a row when its weight is zero at every position and, for a routed plan, it is not a branch
    copy needed by a routed position. Used by ``auto``: orbit copies are idle where multi is used, multi copies
    where the orbit average is.
    """
    weights = copies.weights
    if weights.dim() != 3:
        return
    plan = copies.plan
    n_rows = copies.input_elements.shape[1]
    branch = plan.branch.to(weights.device)
    idle = ~(weights > 0).any(-1)  # [C, N]
    if copies.route_mask is not None:
        routed = copies.route_mask.any(-1)  # [N]
        is_branch = branch < len(plan.factor_orders)
        idle = idle & ~(is_branch[:, None] & routed[None, :])
    if not bool(idle.any()):
        return
    zero = torch.zeros_like(copies.input_elements)
    copies.input_elements = torch.where(idle, zero, copies.input_elements)
    copies.output_elements = torch.where(idle, zero, copies.output_elements)
    canon = copies.canonicalise if copies.canonicalise.dim() == 3 else copies.canonicalise[:, None, :].expand(
        -1, n_rows, -1)
    copies.canonicalise = canon & ~idle[..., None]
    copies.symmetrise = copies.symmetrise.expand(-1, n_rows, -1) & ~idle[..., None]
