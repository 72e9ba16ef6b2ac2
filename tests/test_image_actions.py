"""Image transforms, the group they generate, the canonicaliser and the image strategies (no model needed)."""

from __future__ import annotations

import pytest
import torch

from hf_equivariant.actions.image import Flip, ImageGroupAction, Rot90, image_transform_by_name, make_reference
from hf_equivariant.executor import symmetrise_function
from hf_equivariant.plans import check_strategy, make_plan

ALL = torch.ones(2, dtype=torch.bool)  # canonicalise over both transforms: the whole group


@pytest.fixture(scope="module")
def d4():
    return ImageGroupAction(["rot90", "flip"])


def test_transforms_are_the_real_ones():
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(Flip("h").apply_generator(x), x.flip(-1))  # "flip" is a left-right mirror
    assert torch.equal(image_transform_by_name("flip").apply_generator(x), x.flip(-1))
    assert torch.equal(image_transform_by_name("vflip").apply_generator(x), x.flip(-2))
    sq = torch.arange(9.0).view(3, 3)
    assert torch.equal(Rot90().apply_generator(sq), torch.rot90(sq, 1, (0, 1)))


def test_composition_table_is_the_dihedral_group(d4):
    assert d4.order == 8
    assert not d4.factors_commute
    assert not d4.group.is_abelian()
    r, f = d4.factor_elements[0][1], d4.factor_elements[1][1]
    mul = d4.group.mul
    # r^4 = f^2 = e and f r f = r^-1
    assert d4.factor_elements[0] == [0, r, int(mul[r, r]), int(mul[r, mul[r, r]])]
    assert int(mul[f, f]) == 0
    assert int(mul[f, mul[r, f]]) == d4.group.inv(r)
    # The table agrees with applying the transforms: (a*b).x == a.(b.x) for all pairs.
    x = torch.randn(2, 3, 5, 5)
    for a in range(8):
        for b in range(8):
            assert torch.equal(d4.apply(x, int(mul[a, b])), d4.apply(d4.apply(x, b), a))
    klein = ImageGroupAction(["flip", "vflip"])
    assert klein.order == 4 and klein.factors_commute


def test_apply_is_per_image_and_never_mutates(d4):
    x = torch.randn(8, 3, 4, 4)
    before = x.clone()
    elements = torch.arange(8)
    out = d4.apply(x, elements)
    assert torch.equal(x, before)
    for b in range(8):
        assert torch.equal(out[b], d4.apply(x[b:b + 1], b)[0])


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown image transform 'rotate'"):
        ImageGroupAction(["rotate"])
    with pytest.raises(ValueError, match="needs square images, got 4x6"):
        ImageGroupAction(["rot90"]).apply(torch.randn(1, 3, 4, 6), 1)
    ImageGroupAction(["flip"]).apply(torch.randn(1, 3, 4, 6), 1)  # flips work on any shape
    with pytest.raises(ValueError, match="needs commuting factors for an equivariant output"):
        check_strategy("multi", ImageGroupAction(["rot90", "flip"]).group, output="equivariant")
    check_strategy("multi", ImageGroupAction(["rot90", "flip"]).group, output="invariant")
    check_strategy("multi", ImageGroupAction(["flip", "vflip"]).group, output="equivariant")
    with pytest.raises(ValueError, match="unknown strategy"):
        check_strategy("average", ImageGroupAction(["flip"]).group)


def test_canonicaliser_same_image_for_whole_orbit(d4):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 7, 7)
    reference = make_reference(3, (3, 7, 7))
    before = x.clone()
    canonical = d4.canonicalise(x, ALL, reference=reference)
    assert torch.equal(x, before)  # the caller's tensor is not touched
    for g in range(d4.order):
        assert torch.equal(d4.canonicalise(d4.apply(x, g), ALL, reference=reference), canonical), g
    # Deterministic: the reference is a pure function of the seed.
    assert torch.equal(make_reference(3, (3, 7, 7)), reference)
    assert not torch.equal(make_reference(4, (3, 7, 7)), reference)
    # It really chooses different poses for different images (not a constant map).
    assert len(set(d4.canonical_elements(x, reference).tolist())) > 1


def test_copy_counts(d4):
    def plan(strategy, deduplicate=True):
        return make_plan(d4.group, strategy, output="invariant", deduplicate=deduplicate)

    assert plan("full").num_copies == 8  # prod |Gi|
    assert plan("multi", deduplicate=False).num_copies == 6  # sum |Gi|
    assert plan("multi").num_copies == 5  # the shared canonical image runs once
    assert plan("canonical").num_copies == 1
    for strategy in ("full", "multi", "canonical"):
        assert torch.isclose(plan(strategy).weights.sum(), torch.tensor(1.0))


def _conv():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv2d(4, 2, 3, padding=1))


@pytest.mark.parametrize("groups,strategies", [
    (["flip", "vflip"], ["full", "multi", "canonical"]),
    (["rot90", "flip"], ["full", "canonical"]),
    (["rot90"], ["full", "multi", "canonical"]),
])
def test_symmetrise_equivariant_outputs(groups, strategies):
    action = ImageGroupAction(groups)
    net = _conv()
    x = torch.randn(4, 3, 6, 6)
    reference = make_reference(1, (3, 6, 6))
    with torch.no_grad():
        base_gap = max((net(action.apply(x, g)) - action.apply(net(x), g)).abs().max().item()
                       for g in range(action.order))
        assert base_gap > 1e-2  # the test would catch a non-equivariant output
        for strategy in strategies:
            y = symmetrise_function(net, action, x, strategy, reference=reference)
            for g in range(action.order):
                moved = symmetrise_function(net, action, action.apply(x, g), strategy, reference=reference)
                assert torch.allclose(moved, action.apply(y, g), atol=1e-5), (strategy, g)


@pytest.mark.parametrize("groups", [["rot90", "flip"], ["flip", "vflip"], ["rot90", "vflip"]])
def test_symmetrise_invariant_outputs_every_strategy(groups):
    action = ImageGroupAction(groups)
    net = _conv()

    def head(z):
        return net(z)[..., :3, :2].flatten(1)  # a position-dependent, non-invariant readout

    x = torch.randn(4, 3, 6, 6)
    reference = make_reference(1, (3, 6, 6))
    with torch.no_grad():
        assert max((head(action.apply(x, g)) - head(x)).abs().max().item() for g in range(action.order)) > 1e-2
        for strategy in ("full", "multi", "canonical"):
            y = symmetrise_function(head, action, x, strategy, output="invariant", reference=reference)
            for g in range(action.order):
                moved = symmetrise_function(head, action, action.apply(x, g), strategy, output="invariant",
                                            reference=reference)
                assert torch.allclose(moved, y, atol=1e-5), (strategy, g)


def test_multi_refused_for_noncommuting_equivariant_output():
    action = ImageGroupAction(["rot90", "flip"])
    with pytest.raises(ValueError, match="do not commute"):
        symmetrise_function(_conv(), action, torch.randn(1, 3, 4, 4), "multi", reference=make_reference(0, (3, 4, 4)))
