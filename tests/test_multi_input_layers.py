"""Property tests for the design-1 layers: exact equivariance / invariance under independent per-input elements."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hf_equivariant.groups import FiniteGroup, ProductGroup
from hf_equivariant.models.multi_input import (
    EquivariantBranch,
    InvariantSymmetricLayer,
    LinearISLayer,
    MultiInputLayer,
    count_orbits,
    input_group,
    input_groups,
    permutation_table,
    projection_matrix,
)
from hf_equivariant.models.multi_input import layers as layers_module

ATOL = 1e-5


MIXED = ["rot90", "flip", "id"]  # orders 4, 2, 1 on different inputs
WITH_D4 = ["rot90_flip", "rot90", "vflip"]  # non-abelian order-8 group: catches g vs g^-1 mistakes


class Scrambler(nn.Module):
    """A deliberately non-equivariant module: conv plus a learned position-dependent offset, square output."""

    def __init__(self, c_in: int = 2, c_out: int = 3, size: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.offset = nn.Parameter(torch.randn(c_out, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x) + self.offset) * (1 + x.mean(dim=1, keepdim=True))


class Counting(nn.Module):
    """Wraps a module and counts the rows (examples x copies) and calls it sees."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.rows = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        self.calls += 1
        return self.module(x)


def random_elements(groups: list[str], batch: int, seed: int) -> list[torch.Tensor]:
    """An independent random element per input and per example."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(a.order, (batch,), generator=gen) for a in input_groups(groups)]


def act(groups: list[str], xs: list[torch.Tensor], elements: list[torch.Tensor]) -> list[torch.Tensor]:
    return [a.apply(x, g) for a, x, g in zip(input_groups(groups), xs, elements)]


def make_inputs(n: int, batch: int = 3, channels: int = 2, size: int = 6, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, size, size, generator=gen) for _ in range(n)]


def max_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def equivariance_error(layer: nn.Module, groups: list[str], xs: list[torch.Tensor], seed: int,
                       invariant: bool = False) -> float:
    elements = random_elements(groups, xs[0].shape[0], seed)
    with torch.no_grad():
        moved = layer(act(groups, xs, elements))
        ref = layer(xs)
    expected = ref if invariant else act(groups, ref, elements)
    return max_err(moved, expected)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------- equivariant branch
@pytest.mark.parametrize("groups", [MIXED, WITH_D4, ["rot90"] * 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_equivariant_branch_is_exactly_equivariant(groups: list[str], seed: int) -> None:
    branch = EquivariantBranch(Scrambler(), groups).eval()
    xs = make_inputs(len(groups))
    assert equivariance_error(branch, groups, xs, seed) < ATOL


def test_unsymmetrised_module_fails_the_same_check() -> None:
    """The check can fail: the raw module is far from equivariant under rot90 and flip."""
    module = Scrambler().eval()
    xs = make_inputs(2)
    groups = ["rot90", "flip"]
    elements = [torch.tensor([1, 2, 3]), torch.tensor([1, 1, 1])]
    with torch.no_grad():
        moved = [module(x) for x in act(groups, xs, elements)]
        expected = act(groups, [module(x) for x in xs], elements)
    assert max_err(moved, expected) > 1e-2


def test_branch_with_unshared_modules_and_vector_outputs_is_invariant() -> None:
    groups = MIXED
    modules = [nn.Sequential(Scrambler(), nn.Flatten(), nn.Linear(3 * 36, 5)) for _ in groups]
    branch = EquivariantBranch(modules, groups, spatial_output=False).eval()
    assert equivariance_error(branch, groups, make_inputs(3), seed=3, invariant=True) < ATOL


# ----------------------------------------------------------------------------------------------------- IS layer
@pytest.mark.parametrize(("source", "target"), [("rot90", "flip"), ("flip", "rot90"), ("rot90_flip", "rot90"),
                                                 ("id", "rot90"), ("rot90", "id")])
def test_is_layer_invariant_in_source_and_fixed_by_target(source: str, target: str) -> None:
    layer = InvariantSymmetricLayer(Scrambler(), source, target).eval()
    x = make_inputs(1, batch=4)[0]
    src, tgt = input_group(source), input_group(target)
    gen = torch.Generator().manual_seed(7)
    h = torch.randint(src.order, (4,), generator=gen)
    g = torch.randint(tgt.order, (4,), generator=gen)
    with torch.no_grad():
        y = layer(x)
        assert (layer(src.apply(x, h)) - y).abs().max() < ATOL  # invariant to the source group
        assert (tgt.apply(y, g) - y).abs().max() < ATOL  # fixed by the target group
        for e in range(tgt.order):  # fixed by every target element, not just the sampled ones
            assert (tgt.apply(y, e) - y).abs().max() < ATOL


def test_is_layer_without_averaging_fails() -> None:
    module = Scrambler().eval()
    x = make_inputs(1)[0]
    rot = input_group("rot90")
    with torch.no_grad():
        y = module(x)
        assert (module(rot.apply(x, 1)) - y).abs().max() > 1e-2
        assert (rot.apply(y, 1) - y).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------- multi-input layer
@pytest.mark.parametrize("groups", [MIXED, WITH_D4, ["rot90", "rot90"]])
@pytest.mark.parametrize(("share", "reduction"), [(True, "sum"), (False, "mean")])
def test_multi_input_layer_is_exactly_equivariant(groups: list[str], share: bool, reduction: str) -> None:
    n = len(groups)
    branch = Scrambler() if share else [Scrambler() for _ in range(n)]
    fusion = Scrambler() if share else [Scrambler() for _ in range(n)]
    layer = MultiInputLayer(branch, fusion, groups, fusion_reduction=reduction, fusion_scale_init=0.7).eval()
    xs = make_inputs(n)
    for seed in range(2):
        assert equivariance_error(layer, groups, xs, seed) < ATOL


def test_stacked_layers_stay_equivariant() -> None:
    groups = ["rot90", "flip", "id", "rot90"]
    first = MultiInputLayer(Scrambler(2, 3), Scrambler(2, 3), groups)
    second = MultiInputLayer(Scrambler(3, 4), Scrambler(3, 4), groups)
    stack = nn.Sequential(first, second).eval()
    assert equivariance_error(stack, groups, make_inputs(4), seed=5) < ATOL


def test_fusion_matches_pairwise_is_reference() -> None:
    """Y_i = Eq(X_i) + c * sum_{j != i} IS_{j->i}(X_j), using the *fusion* features of the others (bug 9 fixed)."""
    groups = MIXED
    branch, fusion = Scrambler(), Scrambler()
    layer = MultiInputLayer(branch, fusion, groups, fusion_scale_init=0.5).eval()
    xs = make_inputs(3)
    with torch.no_grad():
        out = layer(xs)
        eq = EquivariantBranch(branch, groups)(xs)
        for i, gi in enumerate(groups):
            fused = sum(InvariantSymmetricLayer(fusion, gj, gi)(xs[j]) for j, gj in enumerate(groups) if j != i)
            assert (out[i] - (eq[i] + 0.5 * fused)).abs().max() < ATOL


def test_missing_target_symmetrisation_breaks_equivariance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipping the outer average of the IS term must be caught by the property check."""
    groups = MIXED
    layer = MultiInputLayer(Scrambler(), Scrambler(), groups, fusion_scale_init=1.0).eval()
    xs = make_inputs(3)
    monkeypatch.setattr(layers_module, "symmetrize", lambda y, action: y)
    assert equivariance_error(layer, groups, xs, seed=0) > 1e-3


def test_layer_accepts_stacked_tensor_and_is_differentiable() -> None:
    layer = MultiInputLayer(Scrambler(), Scrambler(), MIXED)
    x = torch.randn(2, 3, 2, 6, 6, requires_grad=True)
    out = layer(x)
    sum(o.sum() for o in out).backward()
    assert x.grad is not None and layer.fusion_scale.grad is not None
    assert all(p.grad is not None for p in layer.parameters())


# ----------------------------------------------------------------------------------------------------------- cost
@pytest.mark.parametrize("groups", [["rot90"] * 4, ["rot90", "flip", "id"], ["rot90_flip", "rot90", "rot90"]])
def test_branch_passes_are_two_sum_not_product(groups: list[str]) -> None:
    batch = 3
    branch, fusion = Counting(Scrambler()), Counting(Scrambler())
    layer = MultiInputLayer(branch, fusion, groups).eval()
    with torch.no_grad():
        layer(make_inputs(len(groups), batch=batch))
    orders = [a.order for a in input_groups(groups)]
    # one batched call per shared module, sum_i |Gi| copies per example each
    assert (branch.calls, fusion.calls) == (1, 1)
    assert (branch.rows + fusion.rows) / batch == 2 * sum(orders) == layer.passes_per_example

    # Reference: equitune of a joint network over the product group evaluates it on every element of G1 x ... x GN.
    joint = Counting(nn.Identity())
    product = ProductGroup([FiniteGroup(f"f{i}", input_group(g).group.mul) for i, g in enumerate(groups)])
    xs = make_inputs(len(groups), batch=batch)
    parts = product.elements  # [prod |Gi|, N]
    copies = [input_group(g).orbit(x)[parts[:, i]] for i, (g, x) in enumerate(zip(groups, xs))]
    joint(torch.stack(copies, dim=2).reshape(-1, len(groups), *xs[0].shape[1:]))
    assert joint.rows / batch == math.prod(orders)
    if groups == ["rot90"] * 4:
        assert (layer.passes_per_example, math.prod(orders)) == (32, 256)


# ------------------------------------------------------------------------------------------------ linear IS layer
LINEAR_CASES = [((1, 4, 4), (2, 3, 3), "rot90", "flip"), ((2, 3, 3), (1, 4, 4), "flip", "rot90"),
                ((1, 4, 4), (1, 4, 4), "rot90_flip", "rot90"), ((3,), (1, 4, 4), "id", "rot90")]


@pytest.mark.parametrize(("in_shape", "out_shape", "source", "target"), LINEAR_CASES)
def test_linear_is_layer_is_invariant_and_symmetric(in_shape, out_shape, source, target) -> None:
    layer = LinearISLayer(in_shape, out_shape, source, target)
    x = torch.randn(5, *in_shape)
    src, tgt = input_group(source), input_group(target)
    with torch.no_grad():
        y = layer(x)
        if len(in_shape) >= 2:
            assert (layer(src.apply(x, torch.randint(src.order, (5,)))) - y).abs().max() < ATOL
        for e in range(tgt.order):
            assert (tgt.apply(y, e) - y).abs().max() < ATOL
        # the gather implementation equals the matrix P_i A P_j (+ P_i b)
        dense = x.reshape(5, -1).double() @ layer.effective_weight().T
        bias = projection_matrix(permutation_table(tgt, out_shape)) @ layer.linear.bias.double()
        assert (dense + bias - y.reshape(5, -1).double()).abs().max() < ATOL


@pytest.mark.parametrize(("in_shape", "out_shape", "source", "target"), LINEAR_CASES)
def test_linear_is_layer_spans_exactly_the_is_maps(in_shape, out_shape, source, target) -> None:
    """dim{P_i A P_j} == dim{L : R_i(g) L = L, L R_j(h) = L} == #orbits_out x #orbits_in."""
    src = permutation_table(input_group(source), in_shape)
    tgt = permutation_table(input_group(target), out_shape)
    p_in, p_out = projection_matrix(src), projection_matrix(tgt)
    d_in, d_out = p_in.shape[0], p_out.shape[0]
    expected = count_orbits(tgt) * count_orbits(src)
    # image of A -> P_out A P_in, as a matrix on vec(A) (column-major vec: kron(P_in^T, P_out))
    param_rank = torch.linalg.matrix_rank(torch.kron(p_in.T.contiguous(), p_out)).item()
    # solution space of the IS constraints, one block per generator-free element (all elements, to be safe)
    constraints = []
    eye_in, eye_out = torch.eye(d_in, dtype=torch.float64), torch.eye(d_out, dtype=torch.float64)
    for row in tgt:  # R(g) L - L = 0
        r = eye_out[row]
        constraints.append(torch.kron(eye_in, r - eye_out))
    for row in src:  # L R(h) - L = 0
        r = eye_in[row]
        constraints.append(torch.kron((r.T - eye_in).contiguous(), eye_out))
    solution_dim = d_in * d_out - torch.linalg.matrix_rank(torch.cat(constraints)).item()
    assert param_rank == solution_dim == expected
    layer = LinearISLayer(in_shape, out_shape, source, target)
    assert layer.num_free_parameters == expected
    # every IS map is reached: project a random matrix, load it as A, get it back unchanged
    target_map = p_out @ torch.randn(d_out, d_in, dtype=torch.float64) @ p_in
    with torch.no_grad():
        layer.linear.weight.copy_(target_map.float())
    assert (layer.effective_weight() - target_map).abs().max() < ATOL


def test_orbit_counts_are_known_values() -> None:
    assert count_orbits(permutation_table(input_group("rot90"), (1, 4, 4))) == 4
    assert count_orbits(permutation_table(input_group("flip"), (2, 3, 3))) == 12
    assert count_orbits(permutation_table(input_group("rot90_flip"), (1, 4, 4))) == 3
    assert count_orbits(permutation_table(input_group("id"), (5,))) == 5


def test_plain_linear_map_is_not_is() -> None:
    layer = nn.Linear(16, 16)
    rot = input_group("rot90")
    x = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        assert (layer(rot.apply(x, 1).reshape(2, -1)) - layer(x.reshape(2, -1))).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------------------- errors
def test_rot90_rejects_non_square_inputs() -> None:
    layer = MultiInputLayer(nn.Conv2d(2, 2, 1), None, ["rot90", "id"])
    with pytest.raises(ValueError, match="square"):
        layer([torch.randn(1, 2, 6, 5), torch.randn(1, 2, 6, 5)])
    with pytest.raises(ValueError, match="square"):
        LinearISLayer((1, 4, 3), (2,), "rot90", "id")


def test_flip_accepts_non_square_inputs() -> None:
    layer = MultiInputLayer(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), ["flip", "id"]).eval()
    xs = [torch.randn(2, 2, 4, 7), torch.randn(2, 2, 4, 7)]
    assert equivariance_error(layer, ["flip", "id"], xs, seed=1) < ATOL


def test_wrong_number_of_inputs_and_modules() -> None:
    layer = MultiInputLayer(Scrambler(), Scrambler(), MIXED)
    with pytest.raises(ValueError, match="expected 3 inputs"):
        layer(make_inputs(2))
    with pytest.raises(ValueError, match="expected 3 inputs"):
        layer(torch.randn(2, 4, 2, 6, 6))
    with pytest.raises(ValueError, match="2 modules for 3 inputs"):
        MultiInputLayer([Scrambler(), Scrambler()], None, MIXED)


def test_unknown_group_name_and_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown input group 'rot45'"):
        MultiInputLayer(Scrambler(), None, ["rot90", "rot45"])
    with pytest.raises(ValueError, match="fusion_reduction"):
        MultiInputLayer(Scrambler(), None, ["rot90"], fusion_reduction="max")
    with pytest.raises(ValueError, match="one group per input"):
        EquivariantBranch(Scrambler(), "rot90")


def test_shared_module_needs_one_input_shape() -> None:
    layer = EquivariantBranch(nn.Conv2d(2, 2, 1), ["id", "id"])
    with pytest.raises(ValueError, match="one shape"):
        layer([torch.randn(1, 2, 4, 4), torch.randn(1, 2, 6, 6)])


def test_vector_output_with_spatial_flag_is_a_clear_error() -> None:
    layer = EquivariantBranch(nn.Sequential(nn.Flatten(), nn.Linear(72, 4)), ["rot90"])
    with pytest.raises(ValueError, match="spatial_output=False"):
        layer([torch.randn(2, 2, 6, 6)])
