"""Groups as index tables, direct products, and the copy counts of each strategy's plan."""

import pytest
import torch

from hf_equivariant import FiniteGroup, ProductGroup, cyclic_group, group_from_permutations, make_plan


def test_cyclic_group_table_and_inverse():
    g = cyclic_group(5)
    assert g.order == 5 and g.is_abelian()
    assert g.compose(3, 4) == 2
    assert [g.inv(k) for k in range(5)] == [0, 4, 3, 2, 1]


def test_closure_builds_full_symmetric_group():
    # A 3-cycle and a transposition generate S3 (order 6, not abelian); subset-products would miss elements.
    group, perms = group_from_permutations([[1, 2, 0], [1, 0, 2]], name="S3")
    assert group.order == 6 and not group.is_abelian()
    for a in range(6):
        for b in range(6):
            assert torch.equal(perms[group.compose(a, b)], perms[a][perms[b]])
        assert torch.equal(perms[a][perms[group.inv(a)]], torch.arange(3))


def test_invalid_tables_are_rejected():
    with pytest.raises(ValueError, match="identity"):
        FiniteGroup("bad", torch.tensor([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="Latin square"):
        FiniteGroup("bad", torch.tensor([[0, 1, 2], [1, 1, 0], [2, 0, 1]]))
    with pytest.raises(ValueError, match="not a permutation"):
        group_from_permutations([[0, 0, 1]])


def test_non_associative_table_is_rejected():
    # A Latin square with identity 0 that is not associative (order 5 loop).
    table = torch.tensor([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
    with pytest.raises(ValueError, match="associative"):
        FiniteGroup("loop", table)


def test_product_group_split_combine_inverse():
    p = ProductGroup([cyclic_group(2, "a"), cyclic_group(3, "b"), cyclic_group(4, "c")])
    assert p.order == 24
    for k in range(p.order):
        assert p.combine(p.split(k)) == k
    inv = p.inverse_elements(torch.arange(p.order))
    for k in range(p.order):
        parts, inv_parts = p.split(k), p.split(int(inv[k]))
        assert all((x + y) % n == 0 for x, y, n in zip(parts, inv_parts, (2, 3, 4)))
    assert p.embed(1, 2) == p.combine((0, 2, 0))
    with pytest.raises(ValueError, match="distinct"):
        ProductGroup([cyclic_group(2, "a"), cyclic_group(3, "a")])


@pytest.mark.parametrize("orders", [(2,), (2, 3), (2, 3, 3), (4, 2, 5, 3)])
def test_plan_copy_counts(orders):
    prod, total = 1, sum(orders)
    for o in orders:
        prod *= o
    full, multi, canon = (make_plan(orders, s) for s in ("full", "multi", "canonical"))
    assert full.num_copies == prod and multi.num_copies == total and canon.num_copies == 1
    for plan in (full, multi, canon):
        assert torch.isclose(plan.weights.sum(), torch.tensor(1.0))
    # multi: branch i moves only factor i and canonicalises/symmetrises every other factor
    for c in range(multi.num_copies):
        b = int(multi.branch[c])
        moved = (multi.parts[c] != 0).nonzero().flatten().tolist()
        assert moved in ([], [b])
        assert not multi.canonicalise[b, b] and multi.canonicalise[b].sum() == len(orders) - 1
    equal = make_plan(orders, "multi", branch_weighting="equal")
    per_branch = torch.zeros(len(orders)).index_add_(0, equal.branch, equal.weights)
    assert torch.allclose(per_branch, torch.full((len(orders),), 1 / len(orders)))
    assert "branch 0" in multi.describe()


def test_plan_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown strategy"):
        make_plan((2, 3), "fastest")
    with pytest.raises(ValueError, match="branch weighting"):
        make_plan((2, 3), "multi", branch_weighting="random")
