"""Robustness evaluation and the ``eval-clip`` CLI, offline on a tiny random CLIP and scikit-learn's digits."""

from __future__ import annotations

import json

import pytest
import torch

import hf_equivariant as he
from hf_equivariant import cli
from hf_equivariant.eval.robustness import (ImageSet, digits_image_set, evaluate_robustness,
                                            random_transform_elements)
from hf_equivariant.testing import tiny_clip_model, tiny_image_processor, word_level_tokenizer

WORDS = "a photo of the digit zero one two three four five six seven eight nine handwritten number an image .".split()
SIZE = 16


@pytest.fixture(scope="module")
def tokenizer():
    return word_level_tokenizer(WORDS)


@pytest.fixture(scope="module")
def model():
    base = tiny_clip_model(0, vocab_size=len(WORDS) + 8, image_size=SIZE, patch_size=4)
    return he.EquivariantCLIPModel.from_base(base).eval()


def test_condition_draws():
    g = torch.Generator().manual_seed(0)
    from hf_equivariant.eval.robustness import _D4

    assert set(random_transform_elements("rot90", 200, g).tolist()) == set(_D4.factor_elements[0])
    assert set(random_transform_elements("flip", 200, g).tolist()) == set(_D4.factor_elements[1])
    assert set(random_transform_elements("rot90+flip", 400, g).tolist()) == set(range(8))
    assert random_transform_elements("none", 5, g).eq(0).all()
    with pytest.raises(ValueError, match="unknown condition"):
        random_transform_elements("shear", 3, g)


def test_evaluate_robustness(model, tokenizer):
    torch.manual_seed(0)
    pixels = torch.randn(24, 3, SIZE, SIZE)
    data = ImageSet(pixels, torch.randint(10, (24,)), [str(i) for i in range(10)])
    class_embeds = model.class_embeddings(tokenizer, ["zero", "one", "two", "three", "four", "five", "six", "seven",
                                                      "eight", "nine"], ["a photo of the digit {}.", "the number {}."])
    report = evaluate_robustness(model, class_embeds, data, batch_size=10, progress=False, seed=3)
    assert len(report.rows) == 5 * 4
    for method in ("full", "multi", "canonical", "max_prob"):
        accs = {report.get(method, c)["top1"] for c in ("none", "rot90", "flip", "rot90+flip")}
        assert len(accs) == 1, method  # invariant methods: the same accuracy under every condition
    assert report.get("full", "none")["encodes_per_image"] == 8
    assert report.get("multi", "none")["encodes_per_image"] == 5
    assert report.get("canonical", "none")["encodes_per_image"] == 1
    assert all(0 <= r["top1"] <= r["top5"] <= 1 and r["images_per_s"] > 0 for r in report.rows)
    assert "| multi | 5 |" in report.to_markdown()
    again = evaluate_robustness(model, class_embeds, data, ["base"], batch_size=7, progress=False, seed=3)
    assert again.get("base", "rot90+flip")["top1"] == report.get("base", "rot90+flip")["top1"]  # seeded draws
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_robustness(model, class_embeds, data, ["median"], progress=False)


def test_digits_split_is_stratified_and_disjoint():
    train = digits_image_set(None, "train")
    test = digits_image_set(None, "test")
    assert len(train) + len(test) == 1797
    assert torch.bincount(test.labels, minlength=10).min() >= 50
    assert train.items[0].size == (8, 8) and train.items[0].mode == "RGB"


@pytest.fixture(scope="module")
def saved(model, tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(folder, tokenizer=tokenizer, image_processor=tiny_image_processor(SIZE))
    return folder


def _main(argv, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("eval_clip",))
    return cli.main(argv)


def test_cli_runs_offline_on_digits(saved, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    code = _main(["eval-clip", "--model", str(saved), "--data", "digits", "--limit", "20", "--methods",
                  "base,multi,canonical", "--conditions", "none,rot90+flip", "--no-progress", "--output", str(out),
                  "--markdown", str(md)], monkeypatch)
    assert code == 0
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed and "| canonical | 1 |" in printed
    rows = json.loads(out.read_text())["rows"]
    assert {(r["method"], r["condition"]) for r in rows} == {(m, c) for m in ("base", "multi", "canonical")
                                                             for c in ("none", "rot90+flip")}
    assert md.read_text().count("| multi |") == 3


def test_cli_help_and_errors(saved, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        _main(["eval-clip", "--help"], monkeypatch)
    assert exc.value.code == 0
    assert "--conditions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _main(["eval-clip", "--data", "digits"], monkeypatch)  # neither --model nor --open-clip
    assert exc.value.code == 2
    code = _main(["eval-clip", "--model", str(saved), "--data", "digits", "--methods", "median", "--no-progress"],
                 monkeypatch)
    captured = capsys.readouterr()
    assert code == 1 and "unknown method/condition ['median']" in captured.err and captured.out == ""
    code = _main(["eval-clip", "--model", str(saved), "--data", str(saved / "missing"), "--no-progress"],
                 monkeypatch)
    assert code == 1 and "image folder not found" in capsys.readouterr().err
