"""Strategies turn a product group G1 x ... x GN into a plan: which transformed copies of the input to run.

A plan is plain data (tensors of factor indices, branch ids and weights) so it can be printed, counted and tested
without a model. Actions (token permutations, image transforms) interpret it.

- ``full``: equitune over the whole product, one copy per element: prod |Gi| copies, one branch.
- ``multi``: the paper's design 2. Branch i canonicalises the other factors, runs the |Gi| elements of factor i and
  symmetrises its output over the other factors: sum |Gi| copies, N branches.
- ``canonical``: one copy of the canonicalised input; the action orients or symmetrises the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["STRATEGIES", "BRANCH_WEIGHTINGS", "Plan", "make_plan"]

STRATEGIES = ("full", "multi", "canonical")
BRANCH_WEIGHTINGS = ("size", "equal")


@dataclass(frozen=True)
class Plan:
    """The copies a strategy runs.

    Attributes:
        strategy: one of :data:`STRATEGIES`.
        factor_orders: ``|Gi|`` for each factor.
        parts: ``[C, N]`` factor indices of the element applied to each copy (after canonicalisation).
        branch: ``[C]`` branch of each copy.
        weights: ``[C]`` averaging weight of each copy; they sum to 1.
        canonicalise: ``[num_branches, N]`` factors whose action is removed from the input of each branch.
        symmetrise: ``[num_branches, N]`` factors each branch's output is averaged over.
    """

    strategy: str
    factor_orders: tuple[int, ...]
    parts: torch.Tensor
    branch: torch.Tensor
    weights: torch.Tensor
    canonicalise: torch.Tensor
    symmetrise: torch.Tensor

    @property
    def num_copies(self) -> int:
        """Base-model rows per input row (before any sharing of identical copies)."""
        return int(self.parts.shape[0])

    @property
    def num_branches(self) -> int:
        return int(self.canonicalise.shape[0])

    def describe(self, factor_names: Sequence[str] | None = None) -> str:
        """A readable table of the plan's copies."""
        names = list(factor_names) if factor_names else [f"G{i}" for i in range(len(self.factor_orders))]
        lines = [f"strategy={self.strategy} copies={self.num_copies} branches={self.num_branches}"]
        for b in range(self.num_branches):
            canon = [n for n, c in zip(names, self.canonicalise[b].tolist()) if c]
            sym = [n for n, s in zip(names, self.symmetrise[b].tolist()) if s]
            lines.append(f"  branch {b}: canonicalise {canon or '-'}; symmetrise output over {sym or '-'}")
        for c in range(self.num_copies):
            element = ", ".join(f"{n}^{p}" for n, p in zip(names, self.parts[c].tolist()))
            lines.append(f"  copy {c}: branch {int(self.branch[c])} element ({element}) weight {float(self.weights[c]):.4f}")
        return "\n".join(lines)


def make_plan(factor_orders: Sequence[int], strategy: str, branch_weighting: str = "size") -> Plan:
    """Build the plan of ``strategy`` for factors of the given orders.

    ``branch_weighting`` (multi only): ``"size"`` weighs every copy equally, so branch i gets ``|Gi| / sum |Gj|``
    (the CLIP research code); ``"equal"`` gives every branch ``1/N`` (the SCAN research code). Both are exact.
    """
    orders = tuple(int(o) for o in factor_orders)
    if not orders or any(o < 1 for o in orders):
        raise ValueError(f"factor orders must be positive, got {orders}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if branch_weighting not in BRANCH_WEIGHTINGS:
        raise ValueError(f"unknown branch weighting {branch_weighting!r}; choose one of {BRANCH_WEIGHTINGS}")
    n = len(orders)
    if strategy == "full":
        grids = torch.meshgrid(*[torch.arange(o) for o in orders], indexing="ij")
        parts = torch.stack([g.reshape(-1) for g in grids], dim=-1)
        c = parts.shape[0]
        return Plan(strategy, orders, parts, torch.zeros(c, dtype=torch.long), torch.full((c,), 1.0 / c),
                    torch.zeros(1, n, dtype=torch.bool), torch.zeros(1, n, dtype=torch.bool))
    if strategy == "canonical":
        return Plan(strategy, orders, torch.zeros(1, n, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                    torch.ones(1), torch.ones(1, n, dtype=torch.bool), torch.ones(1, n, dtype=torch.bool))
    parts, branch, weights = [], [], []
    total = sum(orders)
    for i, order in enumerate(orders):
        for h in range(order):
            row = [0] * n
            row[i] = h
            parts.append(row)
            branch.append(i)
            weights.append(1.0 / total if branch_weighting == "size" else 1.0 / (n * order))
    others = ~torch.eye(n, dtype=torch.bool)
    return Plan(strategy, orders, torch.tensor(parts, dtype=torch.long), torch.tensor(branch),
                torch.tensor(weights), others.clone(), others.clone())
