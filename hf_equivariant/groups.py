"""Finite groups as index tables, and direct products of them.

A group here is pure algebra: elements are the integers ``0..order-1`` with ``0`` the identity, and the group law
is a multiplication table. Actions (how a group moves tokens or pixels) live in :mod:`hf_equivariant.actions`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["FiniteGroup", "ProductGroup", "cyclic_group", "group_from_permutations", "trivial_group"]


@dataclass(frozen=True, eq=False)
class FiniteGroup:
    """A finite group given by its multiplication table.

    ``mul[a, b]`` is the index of ``a * b`` (apply ``b`` first, then ``a``), ``inverse[a]`` the index of ``a^-1``.
    ``labels`` names each element for printing (for example ``"r1"`` or ``"man->woman"``).
    """

    name: str
    mul: torch.Tensor
    labels: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        mul = torch.as_tensor(self.mul, dtype=torch.long)
        object.__setattr__(self, "mul", mul)
        n = mul.shape[0]
        if mul.shape != (n, n):
            raise ValueError(f"group {self.name!r}: multiplication table must be square, got {tuple(mul.shape)}")
        if not self.labels:
            object.__setattr__(self, "labels", tuple(f"{self.name}[{i}]" for i in range(n)))
        if len(self.labels) != n:
            raise ValueError(f"group {self.name!r}: {len(self.labels)} labels for {n} elements")
        _validate_table(self.name, mul)
        inverse = (mul == 0).long().argmax(dim=1)
        object.__setattr__(self, "_inverse", inverse)

    @property
    def order(self) -> int:
        """Number of elements."""
        return int(self.mul.shape[0])

    def __len__(self) -> int:
        return self.order

    @property
    def inverse(self) -> torch.Tensor:
        """``inverse[a]`` is the index of ``a^-1``."""
        return self._inverse  # type: ignore[attr-defined]

    def compose(self, a: int, b: int) -> int:
        """Index of ``a * b`` (``b`` acts first)."""
        return int(self.mul[a, b])

    def inv(self, a: int) -> int:
        """Index of ``a^-1``."""
        return int(self.inverse[a])

    def is_abelian(self) -> bool:
        """Whether every pair of elements commutes."""
        return bool(torch.equal(self.mul, self.mul.T))

    def random_elements(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` elements drawn uniformly (with replacement)."""
        return torch.randint(self.order, (n,), generator=generator)

    def __repr__(self) -> str:
        return f"FiniteGroup(name={self.name!r}, order={self.order})"


def _validate_table(name: str, mul: torch.Tensor) -> None:
    """Check identity at 0, Latin-square rows/columns (so inverses exist) and associativity."""
    n = mul.shape[0]
    arange = torch.arange(n)
    if not (torch.equal(mul[0], arange) and torch.equal(mul[:, 0], arange)):
        raise ValueError(f"group {name!r}: element 0 must be the identity")
    if not torch.equal(mul.sort(dim=1).values, arange.expand(n, n)) or not torch.equal(
        mul.sort(dim=0).values, arange[:, None].expand(n, n)
    ):
        raise ValueError(f"group {name!r}: multiplication table is not a Latin square")
    # (a*b)*c == a*(b*c) for all a, b, c, checked at once with [n, n, n] index tensors.
    left = mul[mul]  # left[a, b, c] = mul[mul[a, b], c]
    right = mul[:, mul]  # right[a, b, c] = mul[a, mul[b, c]]
    if not torch.equal(left, right):
        raise ValueError(f"group {name!r}: multiplication table is not associative")


def trivial_group(name: str = "trivial") -> FiniteGroup:
    """The group with one element."""
    return FiniteGroup(name, torch.zeros(1, 1, dtype=torch.long), ("e",))


def cyclic_group(order: int, name: str | None = None, labels: Sequence[str] | None = None) -> FiniteGroup:
    """Z_n: element ``k`` is the k-th power of a generator."""
    if order < 1:
        raise ValueError(f"cyclic group order must be >= 1, got {order}")
    idx = torch.arange(order)
    mul = (idx[:, None] + idx[None, :]) % order
    name = name or f"C{order}"
    return FiniteGroup(name, mul, tuple(labels) if labels else tuple(f"{name}^{k}" for k in range(order)))


def group_from_permutations(
    generators: Sequence[Sequence[int]] | torch.Tensor, name: str = "G"
) -> tuple[FiniteGroup, torch.Tensor]:
    """Close a set of permutations of ``0..n-1`` under composition.

    Returns the group and its faithful permutation representation ``perms`` of shape ``[order, n]`` with
    ``perms[0]`` the identity and ``perms[g][i] = g(i)``. Elements are numbered in breadth-first order from the
    generators, so the numbering is deterministic.
    """
    gens = torch.as_tensor(generators, dtype=torch.long)
    if gens.dim() != 2:
        raise ValueError("generators must be a [k, n] array of permutations")
    n = gens.shape[1]
    for g in gens:
        if not torch.equal(g.sort().values, torch.arange(n)):
            raise ValueError(f"generator {g.tolist()} is not a permutation of 0..{n - 1}")
    elements = [torch.arange(n)]
    index = {tuple(range(n)): 0}
    frontier = [0]
    while frontier:
        nxt = []
        for e in frontier:
            for g in gens:
                composed = g[elements[e]]  # apply elements[e] first, then g
                key = tuple(composed.tolist())
                if key not in index:
                    index[key] = len(elements)
                    elements.append(composed)
                    nxt.append(index[key])
        frontier = nxt
    perms = torch.stack(elements)
    order = perms.shape[0]
    # mul[a, b] = index of perms[a] o perms[b]  (b first)
    composed = perms[:, None, :].expand(order, order, n).gather(2, perms[None, :, :].expand(order, order, n))
    mul = torch.tensor([[index[tuple(composed[a, b].tolist())] for b in range(order)] for a in range(order)])
    return FiniteGroup(name, mul), perms


class ProductGroup:
    """Direct product G1 x ... x GN, with elements numbered in row-major (C) order of the factor indices.

    The product element with factor indices ``(g1, ..., gN)`` has index ``sum_i g_i * stride_i``; the identity is 0.
    """

    def __init__(self, factors: Sequence[FiniteGroup], name: str | None = None) -> None:
        if not factors:
            raise ValueError("a product group needs at least one factor")
        names = [f.name for f in factors]
        if len(set(names)) != len(names):
            raise ValueError(f"factor names must be distinct, got {names}")
        self.factors: tuple[FiniteGroup, ...] = tuple(factors)
        self.name = name or " x ".join(names)
        self.shape = tuple(f.order for f in factors)
        # elements[k] = factor indices of product element k, shape [order, N]
        grids = torch.meshgrid(*[torch.arange(s) for s in self.shape], indexing="ij")
        self.elements = torch.stack([g.reshape(-1) for g in grids], dim=-1)

    @property
    def order(self) -> int:
        """Number of elements, the product of the factor orders."""
        return int(self.elements.shape[0])

    def __len__(self) -> int:
        return self.order

    @property
    def num_factors(self) -> int:
        return len(self.factors)

    def split(self, index: int) -> tuple[int, ...]:
        """Factor indices of a product element."""
        return tuple(int(v) for v in self.elements[index])

    def combine(self, parts: Sequence[int]) -> int:
        """Product element with the given factor indices."""
        if len(parts) != self.num_factors:
            raise ValueError(f"expected {self.num_factors} factor indices, got {len(parts)}")
        index = 0
        for part, size in zip(parts, self.shape):
            if not 0 <= part < size:
                raise ValueError(f"factor index {part} out of range for a factor of order {size}")
            index = index * size + int(part)
        return index

    def embed(self, factor: int, element: int) -> int:
        """The product element that is ``element`` in factor ``factor`` and the identity elsewhere."""
        parts = [0] * self.num_factors
        parts[factor] = element
        return self.combine(parts)

    def inverse_elements(self, indices: torch.Tensor) -> torch.Tensor:
        """Factor-wise inverses of product elements given as a tensor of indices."""
        parts = self.elements[indices]
        inv = torch.stack([f.inverse[parts[..., i]] for i, f in enumerate(self.factors)], dim=-1)
        return self._combine_tensor(inv)

    def _combine_tensor(self, parts: torch.Tensor) -> torch.Tensor:
        index = torch.zeros(parts.shape[:-1], dtype=torch.long)
        for i, size in enumerate(self.shape):
            index = index * size + parts[..., i]
        return index

    def random_elements(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` product elements drawn uniformly (with replacement)."""
        return torch.randint(self.order, (n,), generator=generator)

    def label(self, index: int) -> str:
        """Readable name of a product element, e.g. ``"gender[1]*race[2]"``."""
        parts = self.split(index)
        named = [f.labels[p] for f, p in zip(self.factors, parts) if p != 0]
        return "*".join(named) if named else "e"

    def all_parts(self) -> list[tuple[int, ...]]:
        """Factor indices of every element, in index order."""
        return list(itertools.product(*[range(s) for s in self.shape]))

    def __repr__(self) -> str:
        return f"ProductGroup({self.name!r}, order={self.order}, factors={[f.order for f in self.factors]})"
