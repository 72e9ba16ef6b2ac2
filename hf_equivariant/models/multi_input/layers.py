"""Design-1 layers: equivariant branches, invariant-symmetric (IS) fusion and the multi-input layer.

Tensors flowing through these layers are ``[B, ..., H, W]`` feature maps on which input ``i``'s group acts by moving
pixels of the last two axes (``spatial_output=True``), or ``[B, D]`` vectors on which it acts trivially
(``spatial_output=False``: the layer's outputs are invariant). Every forward pass stacks all transformed copies of all
inputs into one call of each shared module; there is no Python loop over group elements.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...actions.base import GroupAction
from ...aggregation import Aggregation
from ...executor import Stream, run_dense_streams
from ...plans import Plan, make_plan
from ...actions.registry import input_action as input_group
from ...actions.registry import input_actions as input_groups

InputAction = GroupAction

__all__ = ["symmetrize", "EquivariantBranch", "InvariantSymmetricLayer", "MultiInputLayer", "run_on_orbits"]

_MEAN = Aggregation("mean_logits", "identity")
_PLANS: dict[tuple[int, str], Plan] = {}


def _full_plan(action: GroupAction, output: str) -> Plan:
    """Equitune over one input's group (cached per action and output kind)."""
    key = (id(action.group), output)
    if key not in _PLANS:
        _PLANS[key] = make_plan(action.group, "full", output=output)
    return _PLANS[key]


def _equitune(modules: nn.Module | Sequence[nn.Module], xs: Sequence[torch.Tensor],
              actions: Sequence[GroupAction], output: str, what: str = "the branch module") -> list[torch.Tensor]:
    """``mean_g g^-1 . M_i(g . x_i)`` for every input (``mean_g M_i(g . x_i)`` for invariant outputs).

    One shared module runs every input's whole orbit in ONE call; one module per input runs its orbit in one call.
    """
    for x, action in zip(xs, actions):
        if x.dim() >= 2:
            action.check_shape(int(x.shape[-2]), int(x.shape[-1]))
    streams = [Stream(_full_plan(a, output), a, x) for a, x in zip(actions, xs)]

    def checked(module: nn.Module, acting: Sequence[GroupAction]):
        if output != "equivariant":
            return module

        def call(batch: torch.Tensor) -> torch.Tensor:
            y = module(batch)
            _check_spatial(y, acting, what)
            return y
        return call

    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList):
        shapes = {tuple(x.shape[1:]) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"a shared module needs inputs of one shape, got {sorted(shapes)}")
        runs = run_dense_streams(streams, checked(modules, actions), _MEAN, output=output)
    else:
        runs = [run_dense_streams([s], checked(m, [a]), _MEAN, output=output)[0]
                for s, m, a in zip(streams, modules, actions)]
    return [r.output for r in runs]


def symmetrize(y: torch.Tensor, action: InputAction) -> torch.Tensor:
    """``P_G(y) = mean_g g.y`` over the last two axes: a G-fixed tensor (one gather, no forward passes)."""
    return action.symmetrise_outputs(y, torch.ones(max(1, len(action.factor_orders)), dtype=torch.bool))


def _check_spatial(y: torch.Tensor, actions: Sequence[InputAction], what: str) -> None:
    if y.dim() < 3:
        raise ValueError(
            f"{what} returned shape {tuple(y.shape)}, but spatial_output=True needs [B, ..., H, W] feature maps; "
            "pass spatial_output=False for vector outputs (they are then made invariant)"
        )
    for action in actions:
        action.check_shape(int(y.shape[-2]), int(y.shape[-1]))


def _as_list(xs: torch.Tensor | Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Inputs as a list of ``n`` tensors: a sequence, or a stacked tensor ``[B, n, ...]``."""
    if torch.is_tensor(xs):
        if xs.dim() < 2 or xs.shape[1] != n:
            raise ValueError(f"expected {n} inputs stacked on dim 1 ([B, {n}, ...]), got shape {tuple(xs.shape)}")
        return list(xs.unbind(dim=1))
    xs = list(xs)
    if len(xs) != n:
        raise ValueError(f"expected {n} inputs (one per group), got {len(xs)}")
    return xs


def run_on_orbits(
    modules: nn.Module | Sequence[nn.Module], xs: Sequence[torch.Tensor], actions: Sequence[InputAction]
) -> list[torch.Tensor]:
    """``out[i][g] = M_i(g . xs[i])`` for every element ``g`` of input ``i``'s group: a list of ``[|Gi|, B, ...]``.

    With one shared module, all ``sum_i |Gi| * B`` copies go through a single call (so batch statistics and cost
    are those of one batch); with one module per input, each module gets its input's whole orbit in one call.
    """
    orbits = []
    for x, action in zip(xs, actions):
        if x.dim() >= 2:
            action.check_shape(int(x.shape[-2]), int(x.shape[-1]))
        orbits.append(action.orbit(x))
    if isinstance(modules, nn.Module) and not isinstance(modules, nn.ModuleList):
        shapes = {tuple(o.shape[2:]) for o in orbits}
        if len(shapes) != 1:
            raise ValueError(f"a shared module needs inputs of one shape, got {sorted(shapes)}")
        sizes = [o.shape[0] * o.shape[1] for o in orbits]
        out = modules(torch.cat([o.reshape(-1, *o.shape[2:]) for o in orbits]))
        chunks = out.split(sizes)
    else:
        chunks = [m(o.reshape(-1, *o.shape[2:])) for m, o in zip(modules, orbits)]
    return [c.reshape(o.shape[0], o.shape[1], *c.shape[1:]) for c, o in zip(chunks, orbits)]


def _module_for_inputs(
    module: nn.Module | Sequence[nn.Module], n: int, name: str
) -> nn.Module | nn.ModuleList:
    """One shared module, or a ``ModuleList`` with one module per input (checked against ``n``)."""
    if isinstance(module, nn.Module) and not isinstance(module, nn.ModuleList):
        return module
    modules = nn.ModuleList(module)
    if len(modules) != n:
        raise ValueError(f"{name}: got {len(modules)} modules for {n} inputs (give one shared module or one per input)")
    return modules


class EquivariantBranch(nn.Module):
    """Equitune of a module over each input's own group: ``out_i = mean_g g^-1 . M_i(g . x_i)``.

    Why: any module (not itself equivariant) becomes exactly ``Gi``-equivariant on input ``i``. With vector outputs
    (``spatial_output=False``) the inverse action is trivial and the branch is ``Gi``-invariant. ``module`` is shared
    by all inputs, or a list with one module per input.
    """

    def __init__(
        self,
        module: nn.Module | Sequence[nn.Module],
        groups: Sequence[str | InputAction],
        spatial_output: bool = True,
    ) -> None:
        super().__init__()
        self.actions = input_groups(groups)
        self.module = _module_for_inputs(module, len(self.actions), "EquivariantBranch")
        self.spatial_output = spatial_output

    @property
    def passes_per_example(self) -> int:
        """Module evaluations per example: ``sum_i |Gi|``."""
        return sum(a.order for a in self.actions)

    def forward(self, xs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        xs = _as_list(xs, len(self.actions))
        return _equitune(self.module, xs, self.actions, "equivariant" if self.spatial_output else "invariant")


class InvariantSymmetricLayer(nn.Module):
    """IS layer from input ``j`` to output slot ``i``: ``P_Gi( mean_{h in Gj} M(h . x_j) )``.

    The inner average makes it invariant to the source group ``Gj``; the outer average makes its output fixed by the
    target group ``Gi`` (so adding it to slot ``i``'s equivariant features keeps them ``Gi``-equivariant). Costs
    ``|Gj|`` module evaluations; the outer average only moves pixels.
    """

    def __init__(
        self,
        module: nn.Module,
        source: str | InputAction,
        target: str | InputAction,
        spatial_output: bool = True,
    ) -> None:
        super().__init__()
        self.module = module
        self.source = input_group(source)
        self.target = input_group(target)
        self.spatial_output = spatial_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _equitune(self.module, [x], [self.source], "invariant")[0]
        if not self.spatial_output:
            return y
        _check_spatial(y, [self.target], "the IS module")
        return symmetrize(y, self.target)


class MultiInputLayer(nn.Module):
    """One design-1 layer: ``Y_i = Eq_Gi(M_i)(X_i) + c * Sym_Gi( reduce_{j != i} Inv_Gj(F_j)(X_j) )``.

    ``branch`` and ``fusion`` are each one module shared by all inputs (weight sharing) or a list with one module per
    input; pass ``fusion=None`` for no fusion. The fusion term of slot ``i`` is built from the *fusion* features of
    the other inputs (the total minus slot ``i``'s own fusion feature), reduced by ``"sum"`` or ``"mean"``, then
    symmetrised under ``Gi``; ``c`` is a learned scalar (``fusion_scale``). Groups may differ per input. Cost per
    example: ``sum_i |Gi|`` branch plus ``sum_i |Gi|`` fusion evaluations, against ``prod_i |Gi|`` evaluations of a
    joint network for equitune over the product group.
    """

    def __init__(
        self,
        branch: nn.Module | Sequence[nn.Module],
        fusion: nn.Module | Sequence[nn.Module] | None,
        groups: Sequence[str | InputAction],
        spatial_output: bool = True,
        fusion_reduction: str = "sum",
        fusion_scale_init: float = 1.0,
    ) -> None:
        super().__init__()
        if fusion_reduction not in ("sum", "mean"):
            raise ValueError(f"fusion_reduction must be 'sum' or 'mean', got {fusion_reduction!r}")
        self.actions = input_groups(groups)
        n = len(self.actions)
        self.equivariant = EquivariantBranch(branch, self.actions, spatial_output=spatial_output)
        self.fusion = None if fusion is None else _module_for_inputs(fusion, n, "MultiInputLayer fusion")
        self.fusion_scale = nn.Parameter(torch.tensor(float(fusion_scale_init))) if fusion is not None else None
        self.fusion_scale_init = float(fusion_scale_init)
        self.spatial_output = spatial_output
        self.fusion_reduction = fusion_reduction

    @property
    def num_inputs(self) -> int:
        return len(self.actions)

    @property
    def passes_per_example(self) -> int:
        """Sub-network evaluations per example: ``2 * sum_i |Gi|`` with fusion, ``sum_i |Gi|`` without."""
        total = sum(a.order for a in self.actions)
        return total * (2 if self.fusion is not None else 1)

    def fused_features(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The IS fusion term of every output slot (before the learned scale)."""
        n = len(xs)
        invariant = _equitune(self.fusion, xs, self.actions, "invariant")  # Gj-invariant
        if n == 1:
            return [torch.zeros_like(invariant[0])]
        total = torch.stack(invariant).sum(dim=0)
        result = []
        for own, action in zip(invariant, self.actions):
            others = total - own  # sum over j != i of the fusion features (not the branch features)
            if self.fusion_reduction == "mean":
                others = others / (n - 1)
            if self.spatial_output:
                _check_spatial(others, [action], "the fusion module")
                others = symmetrize(others, action)
            result.append(others)
        return result

    def forward(self, xs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        xs = _as_list(xs, self.num_inputs)
        outs = self.equivariant(xs)
        if self.fusion is None:
            return outs
        fused = self.fused_features(xs)
        return [y + self.fusion_scale * f for y, f in zip(outs, fused)]
