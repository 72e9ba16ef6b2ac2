"""The shared core: one group interface, the import rule (dependencies flow one way, no cycles), the single
log-space aggregation through every wrapper, and the 0.1.0 import paths."""

from __future__ import annotations

import ast
import math
import pathlib
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.modeling_outputs import CausalLMOutputWithPast

import hf_equivariant as he
from hf_equivariant.aggregation import Aggregation
from hf_equivariant.groups import DirectProductGroup, PermutationGroup, cyclic_group
from hf_equivariant.testing import tiny_clip_model

PACKAGE = pathlib.Path(he.__file__).resolve().parent

# ------------------------------------------------------------------------------------------------ import rule
# Layers, lowest first: a module may import only from its own layer or lower ones (and never upwards lazily either).
LAYERS = [
    {"_version", "_memo", "hub", "checks", "testing", "data"},
    {"groups"},
    {"actions"},
    {"plans", "aggregation", "datasets", "row_plans"},
    {"sharing"},
    {"executor"},
    {"models.provenance", "models.remote_code"},
    {"models.base", "models.config_utils", "models.kv_cache"},
    {"models.causal_lm", "models.clip", "models.multi_input", "models.sequence_classification",
     "models.seq2seq"},
    {"models"},  # the package __init__ imports every family (registration)
    {"eval", "demo"},
    {"cli"},
    {"__init__", "__main__", "_registration", "multi_input", "open_clip_support"},
]


def _layer_of(module: str) -> tuple[int, str]:
    for depth, layer in enumerate(LAYERS):
        for name in sorted(layer, key=len, reverse=True):
            if module == name or (module.startswith(name + ".") and name != "models"):
                return depth, name
    raise AssertionError(f"module {module!r} is not assigned to a layer in tests/test_architecture.py")


def _package_imports(path: pathlib.Path, module: str) -> set[str]:
    """hf_equivariant modules imported anywhere in ``path`` (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
            elif node.module and node.module.startswith("hf_equivariant"):
                targets = [node.module[len("hf_equivariant."):] if "." in node.module else "__init__"]
            else:
                continue
            found.update(_existing(t) for t in targets)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hf_equivariant."):
                    found.add(alias.name[len("hf_equivariant."):])
    return found


def _existing(target: str) -> str:
    """The module a dotted target names (an imported attribute resolves to the module that holds it)."""
    parts = [p for p in target.split(".") if p]
    while parts and not ((PACKAGE.joinpath(*parts).with_suffix(".py")).is_file() or PACKAGE.joinpath(*parts).is_dir()):
        parts.pop()
    return ".".join(parts) or "__init__"


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        out.append((".".join(parts), path))
    return out


def test_dependencies_flow_one_way():
    violations = []
    for module, path in _modules():
        if module.startswith("demo.checkpoint"):
            continue
        depth, own = _layer_of(module)
        for target in _package_imports(path, module):
            target_depth, target_layer = _layer_of(target)
            if target_depth > depth:
                violations.append(f"{module} (layer {depth}) imports {target} (layer {target_depth})")
            elif target_depth == depth == 8 and target_layer != own:
                violations.append(f"model family {module} imports another family {target}")
    assert not violations, "\n".join(violations)


def test_hub_and_version_are_leaves():
    assert _package_imports(PACKAGE / "hub.py", "hub") <= {"_version"}
    assert _package_imports(PACKAGE / "_version.py", "_version") == set()


def test_any_submodule_can_be_imported_first():
    """Each module imported first into a process with no hf_equivariant module loaded (no import cycle)."""
    names = [m for m, _ in _modules() if not m.startswith("demo.checkpoint") and m not in ("__init__", "__main__")]
    script = "\n".join([
        "import importlib, sys, torch, transformers",
        f"names = {names!r}",
        "failed = []",
        "for name in names:",
        "    for key in [k for k in sys.modules if k == 'hf_equivariant' or k.startswith('hf_equivariant.')]:",
        "        del sys.modules[key]",
        "    try:",
        "        importlib.import_module('hf_equivariant.' + name)",
        "    except Exception as err:",
        "        failed.append(f'{name}: {type(err).__name__}: {err}')",
        "print('\\n'.join(failed))",
        "sys.exit(1 if failed else 0)",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_old_import_paths_still_work():
    from hf_equivariant.models.clip.core import InvariantImageScorer as old_scorer
    from hf_equivariant.models.clip.scorer import InvariantImageScorer
    from hf_equivariant.multi_input import MultiInputEquivariantModel, input_groups
    from hf_equivariant.multi_input.data import load_digit_splits
    from hf_equivariant.multi_input.layers import MultiInputLayer
    from hf_equivariant.open_clip_support import EquivariantOpenCLIP

    assert old_scorer is InvariantImageScorer
    assert MultiInputEquivariantModel is he.MultiInputEquivariantModel and EquivariantOpenCLIP is he.EquivariantOpenCLIP
    assert MultiInputLayer is he.MultiInputLayer and callable(load_digit_splits) and callable(input_groups)


# ------------------------------------------------------------------------------------------------ groups
def test_one_group_interface_for_cyclic_products_and_dihedral():
    d4 = he.ImageGroupAction(["rot90", "flip"]).group
    product = DirectProductGroup([cyclic_group(2, "a"), cyclic_group(3, "b")])
    for group in (cyclic_group(5), product, d4):
        assert isinstance(group, he.Group)
        idx = torch.arange(group.order)
        assert torch.equal(group.compose_elements(idx, group.inverse_elements(idx)), torch.zeros_like(idx))
        assert sorted(group.subgroup(group.generators)) == list(range(group.order))
    assert isinstance(d4, PermutationGroup) and not d4.is_direct_product and not d4.factors_commute
    assert d4.num_factor_subgroups == 2 and [len(d4.factor_elements(i)) for i in range(2)] == [4, 2]
    assert product.is_direct_product and product.factors_commute and product.factor_orders == (2, 3)
    klein = he.ImageGroupAction(["flip", "vflip"]).group
    assert not klein.is_direct_product and klein.factors_commute  # generated, but its generators commute


def test_product_table_is_built_factorwise():
    big = DirectProductGroup([cyclic_group(7, "a"), cyclic_group(11, "b"), cyclic_group(13, "c")])
    a, b = torch.tensor([5, 17, 900]), torch.tensor([3, 1000, 2])
    for x, y in zip(a.tolist(), b.tolist()):
        expected = big.combine([(p + q) % n for p, q, n in zip(big.split(x), big.split(y), big.shape)])
        assert int(big.compose_elements(torch.tensor(x), torch.tensor(y))) == expected


# ------------------------------------------------------------------------------------------------ aggregation
TWO_COPIES = torch.tensor([[0.0, -120.0, -130.0], [0.0, -125.0, -200.0]])
EXPECTED = torch.tensor([0.0, -120.69, -130.69])


def test_log_space_aggregation_keeps_tails():
    out = Aggregation("mean_prob")(TWO_COPIES, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out, EXPECTED, atol=1e-2, rtol=0)


class _TableLM(GPT2LMHeadModel):
    """A causal LM whose next-token logits at a position are a fixed row per input token (for exact checks)."""

    def __init__(self, config: GPT2Config, table: torch.Tensor) -> None:
        super().__init__(config)
        self.register_buffer("table", table, persistent=False)

    def forward(self, input_ids=None, **kwargs):
        return CausalLMOutputWithPast(logits=self.table[input_ids])


def test_two_copy_tails_through_the_causal_lm_wrapper():
    # Tokens 0-2 are outputs fixed by the group; 3 <-> 4 is the swapped pair. Copy of "3" sees row 3, copy of "4"
    # row 4; their support columns are negligible, so the off-support columns are the two-copy example.
    table = torch.full((5, 5), -1000.0)
    table[3, :3], table[4, :3] = TWO_COPIES[0], TWO_COPIES[1]
    base = _TableLM(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=5), table).eval()
    swap = he.WordSwap(name="pair", words=[["x", "y"]], token_cycles=[[3, 4]])
    model = he.EquivariantModelForCausalLM.from_base(base, groups=[swap], strategy="full").eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[3]])).logits[0, -1, :3]
    torch.testing.assert_close(logits, EXPECTED, atol=1e-2, rtol=0)


def test_two_copy_tails_through_the_clip_wrapper():
    base = tiny_clip_model(0, vocab_size=16, image_size=8, patch_size=4, hidden_size=32, layers=1, projection_dim=3)
    scale = 1000.0

    def unit_logits(row: torch.Tensor) -> torch.Tensor:  # [a, a+d1, a+d2] with unit norm / scale
        d = row - row[0]
        # solve |a + d| = scale for a (the larger root), so softmax(scale * f) has these log-ratios
        qa, qb, qc = 3.0, 2 * float(d.sum()), float((d ** 2).sum()) - scale ** 2
        a = (-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
        return (a + d) / scale

    upright = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    features = {True: unit_logits(TWO_COPIES[0]), False: unit_logits(TWO_COPIES[1])}

    def image_features(pixel_values, **kwargs):
        same = (pixel_values - upright).abs().flatten(1).amax(1) < 1e-6
        return torch.stack([features[bool(s)] for s in same])

    base.get_image_features = image_features
    with torch.no_grad():
        base.logit_scale.fill_(math.log(scale))
    model = he.EquivariantCLIPModel.from_base(base, groups=["flip"], strategy="full").eval()
    scores = model.zero_shot_logits(upright, torch.eye(3))
    torch.testing.assert_close(scores[0], EXPECTED, atol=1e-2, rtol=0)


@pytest.mark.parametrize("name", ["mean_prob", "mean_logits", "max_prob"])
def test_streamed_partials_equal_one_combine(name):
    agg = Aggregation(name)
    values = agg.to_space(torch.randn(6, 4, 11) * 30)
    weights = torch.softmax(torch.randn(6), 0)
    whole = agg.finish(agg.combine(values, weights))
    parts = None
    for chunk in (slice(0, 2), slice(2, 5), slice(5, 6)):
        parts = agg.merge(parts, agg.combine(values[chunk], weights[chunk]))
    torch.testing.assert_close(agg.finish(parts), whole)
