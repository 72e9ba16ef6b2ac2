"""Model cards: rendered from the templates in model_cards/ (shipped identically in the package), golden files for
every family, the demo model's example card kept up to date, metadata rules (Hub base only, inherited license).

Regenerate the golden files after an intended change with ``HFE_UPDATE_GOLDEN=1 python -m pytest
tests/test_model_cards.py``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re

import pytest
import torch

import hf_equivariant as he
from hf_equivariant.hub import CARD_MARKER
from hf_equivariant.testing import tiny_clip_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "cards"
UPDATE = os.environ.get("HFE_UPDATE_GOLDEN") == "1"


def _normalised(card: str) -> str:
    return re.sub(r"hf_equivariant \d+\.\d+\.\d+\S*", "hf_equivariant VERSION", card)


def _check(name: str, card: str, folder: pathlib.Path = GOLDEN) -> None:
    path = folder / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(card)
    assert path.is_file(), f"missing golden file {path}; run with HFE_UPDATE_GOLDEN=1"
    assert _normalised(card) == _normalised(path.read_text()), f"{name} changed; rerun with HFE_UPDATE_GOLDEN=1"


def test_packaged_templates_equal_the_top_level_folder():
    top = {p.name: p.read_text() for p in (ROOT / "model_cards").glob("*.md")}
    packaged = {p.name: p.read_text() for p in (ROOT / "hf_equivariant" / "data" / "model_cards").glob("*.md")}
    assert top == packaged and set(top) == {"causal_lm.md", "clip.md", "multi_input.md", "sections.md"}


def test_causal_lm_card_golden(tiny_base, word_tokenizer, small_factors):
    tiny_base.config._name_or_path = "acme/tiny-gpt2"
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    model.config.base_model_revision = "0123456789abcdef0123456789abcdef01234567"
    card = model.model_card("me/fair-gpt2", license="mit", language="en", tags=["demo"])
    assert card.startswith("---\nbase_model: acme/tiny-gpt2\n") and CARD_MARKER in card
    _check("causal_lm.md", card)


def test_clip_and_siglip_cards_golden():
    for name, sigmoid in (("clip", False), ("siglip", True)):
        base = tiny_clip_model(0, image_size=16, patch_size=8, hidden_size=32, sigmoid=sigmoid)
        base.config._name_or_path = f"acme/tiny-{name}"
        model = he.EquivariantCLIPModel.from_base(base, groups=["rot90", "flip"])
        _check(f"{name}.md", model.model_card(f"me/robust-{name}"))


def test_multi_input_card_golden(tmp_path):
    torch.manual_seed(0)
    model = he.MultiInputEquivariantModel(he.MultiInputEquivariantConfig(groups=["rot90", "flip"], conv_channels=[4]))
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and 'from_pretrained("m"' in card
    _check("multi_input.md", card)


def test_demo_model_example_card_is_current():
    """model_cards/demo/README.md is the card of the demo model wrapped as in the README's demo."""
    from hf_equivariant.demo import load_demo_model

    base, tokenizer = load_demo_model()
    base.config._name_or_path = "hf_equivariant/demo-gpt2"
    model = he.EquivariantModelForCausalLM.from_base(base, tokenizer=tokenizer, groups=["gender", "race", "religion"])
    _check("README.md", model.model_card("hf_equivariant/demo-gpt2-fair"), ROOT / "model_cards" / "demo")


def test_local_base_is_omitted_with_a_warning_when_pushing(tmp_path, tiny_base, word_tokenizer, small_factors,
                                                           caplog):
    tiny_base.save_pretrained(tmp_path / "base")
    (tmp_path / "base" / "README.md").write_text("---\nlicense: cc-by-4.0\nlanguage:\n- en\n---\n# base\n")
    word_tokenizer.save_pretrained(tmp_path / "base")
    model = he.EquivariantModelForCausalLM.from_base(str(tmp_path / "base"), groups=small_factors)
    with caplog.at_level(logging.WARNING):
        card = model.model_card("me/fair")
    assert "base_model" not in card.split("---")[1] and "omits base_model" in caplog.text
    assert "license: cc-by-4.0" in card and "- en" in card  # inherited from the base's card
    assert "# base, equivariant to gender x race x religion" in card  # folder name, never the whole path
    assert str(tmp_path) not in card
