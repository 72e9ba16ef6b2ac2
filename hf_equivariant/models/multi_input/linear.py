"""The exact linear IS layer for permutation representations: ``W = P_Gi A P_Gj`` with ``A`` learned.

Section 2.2 of the method: a linear map from input ``j`` to output slot ``i`` of an equivariant multi-input network
must be invariant to ``Gj`` and fixed by ``Gi``. Every such map is ``P_Gi A P_Gj`` for some ``A``, where ``P_G`` is
the group average of the permutation matrices; the free parameters are one number per (output orbit, input orbit)
pair. The layer applies the two averages as gathers, so it never builds ``d x d`` matrices in its forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ...actions.base import GroupAction, TrivialAction
from ...actions.registry import input_action as input_group

InputAction = GroupAction

__all__ = ["LinearISLayer", "permutation_table", "count_orbits", "projection_matrix"]


def permutation_table(action: InputAction, shape: Sequence[int]) -> torch.Tensor:
    """``[|G|, d]`` table of the action on flattened tensors of ``shape``: ``(g.x)[p] = x[table[g, p]]``.

    Image actions move the last two axes and leave leading (channel) axes alone; the identity group fixes all.
    """
    shape = tuple(int(s) for s in shape)
    d = math.prod(shape)
    if isinstance(action, TrivialAction) or action.order == 1:
        return torch.arange(d).unsqueeze(0)
    if len(shape) < 2:
        raise ValueError(f"{action!r} acts on the last two axes; shape {shape} has fewer than two")
    height, width = shape[-2:]
    pixels = action.source_index(height, width)  # [G, HW], validates squareness for rot90
    lead = d // (height * width)
    offsets = (torch.arange(lead) * height * width).view(1, lead, 1)
    return (pixels.unsqueeze(1) + offsets).reshape(action.order, d)


def count_orbits(table: torch.Tensor) -> int:
    """Number of orbits of the group on the coordinates (an orbit is named by its smallest coordinate)."""
    return int(table.min(dim=0).values.unique().numel())


def projection_matrix(table: torch.Tensor) -> torch.Tensor:
    """``P_G = mean_g R(g)`` as a dense ``[d, d]`` matrix, with ``R(g)[p, table[g, p]] = 1`` (for checks only)."""
    order, d = table.shape
    matrix = torch.zeros(d, d, dtype=torch.float64)
    rows = torch.arange(d).expand(order, d)
    matrix.index_put_((rows.reshape(-1), table.reshape(-1)), torch.full((order * d,), 1.0 / order, dtype=torch.float64),
                      accumulate=True)
    return matrix


class LinearISLayer(nn.Module):
    """Linear map from ``in_shape`` tensors (acted on by ``source``) to ``out_shape`` tensors (acted on by ``target``).

    ``forward(x) = P_target(A P_source(x)) + P_target(b)``: invariant to the source group, fixed by the target group,
    and able to express every such linear map (see :meth:`effective_weight`).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        source: str | InputAction,
        target: str | InputAction,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.source = input_group(source)
        self.target = input_group(target)
        # Validate shapes now (clear error for non-square rot90), tables are rebuilt lazily per device.
        permutation_table(self.source, self.in_shape)
        permutation_table(self.target, self.out_shape)
        self.linear = nn.Linear(math.prod(self.in_shape), math.prod(self.out_shape), bias=bias)
        self._tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Source and target permutation tables on ``device`` (cached)."""
        key = str(device)
        if key not in self._tables:
            self._tables[key] = (
                permutation_table(self.source, self.in_shape).to(device),
                permutation_table(self.target, self.out_shape).to(device),
            )
        return self._tables[key]

    @property
    def num_free_parameters(self) -> int:
        """Dimension of the space of IS maps: (#target orbits) x (#source orbits)."""
        src, tgt = permutation_table(self.source, self.in_shape), permutation_table(self.target, self.out_shape)
        return count_orbits(tgt) * count_orbits(src)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            shape = ", ".join(map(str, self.in_shape))
            raise ValueError(f"expected inputs of shape [B, {shape}], got {tuple(x.shape)}")
        src, tgt = self.tables(x.device)
        flat = x.reshape(x.shape[0], -1)
        pooled = flat[:, src].mean(dim=1)  # P_source x
        y = self.linear(pooled)
        y = y[:, tgt].mean(dim=1)  # P_target (A P_source x + b)
        return y.reshape(x.shape[0], *self.out_shape)

    def effective_weight(self) -> torch.Tensor:
        """The ``[d_out, d_in]`` matrix ``P_target A P_source`` this layer applies (float64, for checks)."""
        src, tgt = permutation_table(self.source, self.in_shape), permutation_table(self.target, self.out_shape)
        weight = self.linear.weight.detach().to(torch.float64).cpu()
        return projection_matrix(tgt) @ weight @ projection_matrix(src)
