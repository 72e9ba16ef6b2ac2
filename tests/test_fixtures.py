"""Checkpoints saved by hf_equivariant 0.1.0 (tests/fixtures/v0_1_0, built by build_fixtures.py) still load, through
the Auto classes, with the same config and the same outputs."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForZeroShotImageClassification

import hf_equivariant as he

ROOT = os.path.join(os.path.dirname(__file__), "fixtures", "v0_1_0")
ATOL = 1e-5


def _expected(name: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(ROOT, name, "expected.safetensors"))


def test_causal_lm_fixture_loads_with_identical_logits():
    folder = os.path.join(ROOT, "causal_lm")
    expected = _expected("causal_lm")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert isinstance(model, he.EquivariantModelForCausalLM)
    assert model.config.strategy == "multi" and model.config.group_names == ["gender", "race", "religion"]
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).logits
    torch.testing.assert_close(logits, expected["logits_multi"], atol=ATOL, rtol=0)
    for strategy in ("full", "canonical"):
        other = he.EquivariantModelForCausalLM.from_base(model.base, tokenizer=model.tokenizer,
                                                         groups=model.config.groups, strategy=strategy).eval()
        with torch.no_grad():
            logits = other(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).logits
        want = expected[f"logits_{strategy}"]
        if strategy == "canonical":  # 0.1.0 oriented every position by the whole row; the last position is unchanged
            logits, want = logits[:, -1], want[:, -1]
        torch.testing.assert_close(logits, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name, cls", [("clip", "EquivariantCLIPModel"), ("siglip", "EquivariantSiglipModel")])
def test_clip_fixtures_load_with_identical_scores(name, cls):
    expected = _expected(name)
    model = AutoModelForZeroShotImageClassification.from_pretrained(os.path.join(ROOT, name)).eval()
    assert type(model).__name__ == cls
    with torch.no_grad():
        scores = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"],
                       pixel_values=expected["pixel_values"]).logits_per_image
    torch.testing.assert_close(scores, expected["logits_per_image"], atol=ATOL, rtol=0)


def test_multi_input_fixture_loads_with_identical_logits():
    expected = _expected("multi_input")
    model = AutoModel.from_pretrained(os.path.join(ROOT, "multi_input")).eval()
    assert isinstance(model, he.MultiInputEquivariantModel)
    with torch.no_grad():
        logits = model(pixel_values=expected["pixel_values"]).logits
    torch.testing.assert_close(logits, expected["logits"], atol=ATOL, rtol=0)
