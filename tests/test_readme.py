"""The README's quick starts run as written, against local folders standing in for the Hub ids they name (the Hub
cannot be reached here), with a mocked Hub API for ``push_to_hub``."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_gpt2

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
    """The first ```python block after a ``## heading`` line."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {heading}")
    match = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


class _FakeHub:
    """Records what a push uploads instead of talking to the Hub."""

    uploads: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        pass

    def create_repo(self, repo_id, **kwargs):
        return type("Repo", (), {"repo_id": repo_id})()

    def create_branch(self, *args, **kwargs) -> None:
        pass

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        _FakeHub.uploads.append(repo_id)
        return type("Commit", (), {"commit_url": f"https://hf.co/{repo_id}", "oid": "0" * 40})()

    def whoami(self, *args, **kwargs):
        return {"name": "me"}


@pytest.fixture
def hub(monkeypatch, hub_online):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHub)
    _FakeHub.uploads = []
    return _FakeHub


def test_causal_lm_quick_start(tmp_path, monkeypatch, gpt2_tokenizer, hub):
    gpt2 = tmp_path / "gpt2"
    make_tiny_gpt2(50257).save_pretrained(gpt2)
    gpt2_tokenizer.save_pretrained(gpt2)
    code = _block("Quick start: fair generation with a causal LM").replace('"gpt2"', repr(str(gpt2)))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "README quick start (causal LM)", "exec"), {})
    assert (tmp_path / "gpt2-fair" / "model.safetensors").is_file()
    assert hub.uploads == ["me/gpt2-fair-intersectional"]


def test_clip_quick_start(tmp_path, monkeypatch, hub):
    import open_clip

    from hf_equivariant.testing import tiny_clip_model, tiny_image_processor, word_level_tokenizer

    words = "a satellite photo of the harbour forest".split()
    clip = tmp_path / "clip"
    tiny_clip_model(0, vocab_size=len(words) + 8, image_size=32).save_pretrained(clip)
    word_level_tokenizer(words).save_pretrained(clip)
    tiny_image_processor(32).save_pretrained(clip)
    tiny_open_clip = open_clip.model.CLIP(
        embed_dim=32, vision_cfg=open_clip.model.CLIPVisionCfg(image_size=32, layers=1, width=64, head_width=32,
                                                               patch_size=8),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=1)).eval()
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *args, **kwargs: (tiny_open_clip, None, None))
    import open_clip.zero_shot_metadata as metadata

    monkeypatch.setattr(metadata, "IMAGENET_CLASSNAMES", metadata.IMAGENET_CLASSNAMES[:12])  # keep the test fast
    monkeypatch.setattr(metadata, "OPENAI_IMAGENET_TEMPLATES", metadata.OPENAI_IMAGENET_TEMPLATES[:2])
    code = _block("Quick start: invariant zero-shot CLIP").replace('"openai/clip-vit-base-patch32"', repr(str(clip)))
    image = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8"))
    images = torch.randn(2, 3, 32, 32)
    monkeypatch.chdir(tmp_path)
    scope = {"image": image, "images": images}
    exec(compile(code, "README quick start (CLIP)", "exec"), scope)
    assert (tmp_path / "clip-rot-inv" / "model.safetensors").is_file()
    logits = scope["logits"]
    rotated = scope["zero_shot"](torch.rot90(images, 1, (-2, -1)))
    assert logits.shape == (2, 12) and torch.allclose(rotated, logits, atol=1e-5)


def test_multi_input_quick_start():
    code = _block("Quick start: multi-input networks")
    scope: dict = {}
    exec(compile(code, "README quick start (multi-input)", "exec"), scope)
    assert scope["logits"].shape == (4, 10)


def test_classifier_quick_start(tmp_path, monkeypatch, gpt2_tokenizer):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    folder = tmp_path / "my-toxicity-model"
    torch.manual_seed(0)
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64, vocab_size=50257,
                                             num_labels=2, pad_token_id=gpt2_tokenizer.pad_token_id)
                                  ).save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    code = _block("Quick start: counterfactually fair text classifiers").replace('"my-toxicity-model"',
                                                                                repr(str(folder)))
    code = code.replace("clf([", "scores = clf([")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README quick start (classifier)", "exec"), scope)
    first, second = scope["scores"]
    assert first["label"] == second["label"] and abs(first["score"] - second["score"]) < 1e-6
    assert (tmp_path / "fair-model" / "tokenizer.json").is_file()


def test_seq2seq_quick_start():
    scope: dict = {}
    exec(compile(_block("Quick start: sequence-to-sequence models"), "README quick start (seq2seq)", "exec"), scope)
    assert scope["out"].shape[0] == 1 and scope["model"].copies_per_row == 6
