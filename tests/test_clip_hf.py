"""EquivariantCLIPModel / EquivariantSiglipModel on tiny random HF models: exact invariance for every element of
rot90 x flip, copy counts, pipeline, save/load through the Auto class, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import hf_equivariant as he
from hf_equivariant.testing import tiny_clip_model, tiny_image_processor, word_level_tokenizer

WORDS = "a photo of the cat dog car tree bird rotated satellite image".split()
LABELS = ["a photo of a cat", "a photo of a dog", "a tree", "a satellite image of a car"]
SIZE = 32


@pytest.fixture(scope="module")
def tokenizer():
    return word_level_tokenizer(WORDS)


@pytest.fixture(scope="module")
def base():
    return tiny_clip_model(0, vocab_size=len(WORDS) + 8, image_size=SIZE)


@pytest.fixture(scope="module")
def text(tokenizer):
    return tokenizer(LABELS, padding=True, return_tensors="pt")


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def _scores(model, images, text):
    with torch.no_grad():
        return model(pixel_values=images, **text).logits_per_image


def test_base_is_not_invariant(base, text, images):
    """The same setup with the base model shows large differences: the invariance tests below can fail."""
    model = he.EquivariantCLIPModel.from_base(base, strategy="none").eval()
    action = model.action
    ref = _scores(model, images, text)
    gaps = [(_scores(model, action.apply(images, g), text) - ref).abs().max().item() for g in range(1, 8)]
    assert min(gaps) > 1e-2


@pytest.mark.parametrize("strategy", ["full", "multi", "canonical"])
@pytest.mark.parametrize("aggregation", ["mean_prob", "max_prob", "mean_logits"])
def test_scores_invariant_for_every_element(base, text, images, strategy, aggregation):
    model = he.EquivariantCLIPModel.from_base(base, strategy=strategy, aggregation=aggregation).eval()
    ref = _scores(model, images, text)
    assert ref.shape == (3, len(LABELS))
    report = he.check_equivariance(model, {"pixel_values": images, **text})
    assert len(report.errors) == 8
    assert report.passed(atol=1e-5), str(report)


def test_encoded_image_counts(base, text, images):
    """full runs prod |Gi| images per input, multi sum |Gi| (5 with the shared canonical image), canonical 1."""
    seen = []
    hook = base.vision_model.embeddings.patch_embedding.register_forward_hook(
        lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        expected = {("full", True): 8, ("multi", False): 6, ("multi", True): 5, ("canonical", True): 1,
                    ("none", True): 1}
        for (strategy, dedupe), per_image in expected.items():
            model = he.EquivariantCLIPModel.from_base(base, strategy=strategy, deduplicate=dedupe).eval()
            seen.clear()
            _scores(model, images, text)
            assert seen == [per_image * images.shape[0]], (strategy, dedupe, seen)  # one batched encoder call
            assert model.images_per_input == per_image
        model = he.EquivariantCLIPModel.from_base(base, strategy="full", max_batch=10).eval()
        seen.clear()
        _scores(model, images, text)
        assert seen == [10, 10, 4]
    finally:
        hook.remove()


def test_multi_equals_weighted_branches(base, text, images):
    """multi (deduplicated) and multi with all sum|Gi| copies give the same scores."""
    a = he.EquivariantCLIPModel.from_base(base, strategy="multi").eval()
    b = he.EquivariantCLIPModel.from_base(base, strategy="multi", deduplicate=False).eval()
    assert torch.allclose(_scores(a, images, text), _scores(b, images, text), atol=1e-5)


def test_mean_prob_is_log_mean_probability(base, text, images):
    model = he.EquivariantCLIPModel.from_base(base, strategy="full").eval()
    action = model.action
    with torch.no_grad():
        probs = torch.stack([base(pixel_values=action.apply(images, g), **text).logits_per_image.softmax(-1)
                             for g in range(8)]).mean(0)
        assert torch.allclose(_scores(model, images, text).softmax(-1), probs, atol=1e-6)
        with model.using(aggregation="max_prob"):
            top = torch.stack([base(pixel_values=action.apply(images, g), **text).logits_per_image.softmax(-1)
                               for g in range(8)]).amax(0)
            assert torch.allclose(_scores(model, images, text).softmax(-1), top / top.sum(-1, keepdim=True),
                                  atol=1e-6)


def test_inputs_not_mutated_and_reference_deterministic(base, text, images):
    model = he.EquivariantCLIPModel.from_base(base, strategy="multi").eval()
    before = images.clone()
    _scores(model, images, text)
    assert torch.equal(images, before)
    other = he.EquivariantCLIPModel.from_base(base, strategy="multi", canonicaliser_seed=0).eval()
    assert torch.equal(model.scorer.reference, other.scorer.reference)
    assert torch.equal(_scores(model, images, text), _scores(other, images, text))


def test_image_features_invariant_and_typed(base, images):
    model = he.EquivariantCLIPModel.from_base(base, strategy="full").eval()
    with torch.no_grad():
        expected_type = type(base.get_image_features(pixel_values=images))
        out = model.get_image_features(pixel_values=images)
        assert type(out) is expected_type
        feats = out if torch.is_tensor(out) else out.pooler_output
        moved = model.get_image_features(pixel_values=model.action.apply(images, 5))
        moved = moved if torch.is_tensor(moved) else moved.pooler_output
    assert torch.allclose(feats, moved, atol=1e-5)


def test_text_features_cached_per_label_set(base, text, images, tokenizer):
    model = he.EquivariantCLIPModel.from_base(base, strategy="canonical").eval()
    calls = []
    hook = base.text_model.register_forward_hook(lambda *a: calls.append(1))
    try:
        _scores(model, images, text)
        _scores(model, images[:1], text)
        assert len(calls) == 1
        _scores(model, images, tokenizer(LABELS[:2], padding=True, return_tensors="pt"))
        assert len(calls) == 2
        with torch.no_grad():
            base.text_projection.weight.mul_(1.5)  # in-place weight update invalidates the cache
        _scores(model, images, text)
        assert len(calls) == 3
    finally:
        hook.remove()
        with torch.no_grad():
            base.text_projection.weight.div_(1.5)


def test_token_type_ids_are_dropped(base, text, images):
    model = he.EquivariantCLIPModel.from_base(base).eval()
    with torch.no_grad():
        a = model(pixel_values=images, **text).logits_per_image
        b = model(pixel_values=images, token_type_ids=torch.zeros_like(text["input_ids"]), **text).logits_per_image
    assert torch.equal(a, b)


def test_errors(base, tokenizer):
    with pytest.raises(ValueError, match="unknown image transform 'rot45'"):
        he.EquivariantCLIPModel.from_base(base, groups=["rot90", "rot45"])
    with pytest.raises(ValueError, match="unknown strategy"):
        he.EquivariantCLIPModel.from_base(base, strategy="average")
    with pytest.raises(ValueError, match="unknown aggregation"):
        he.EquivariantCLIPModel.from_base(base, aggregation="median")
    model = he.EquivariantCLIPModel.from_base(base).eval()
    text = tokenizer(LABELS, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="needs square images, got 32x40"):
        model(pixel_values=torch.randn(1, 3, 32, 40), **text)
    with pytest.raises(ValueError, match="pixel_values are required"):
        model(**text)


def test_gradients_flow(base, text, images):
    model = he.EquivariantCLIPModel.from_base(base, strategy="multi")
    out = model(pixel_values=images, return_loss=False, **text).logits_per_image
    out.logsumexp(-1).sum().backward()
    grad = base.vision_model.embeddings.patch_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    base.zero_grad()


def _pil(seed: int) -> Image.Image:
    array = (np.random.RandomState(seed).rand(SIZE, SIZE, 3) * 255).astype("uint8")
    return Image.fromarray(array)


def test_pipeline_save_load_auto(base, tokenizer, tmp_path, caplog):
    from transformers import AutoImageProcessor, AutoModelForZeroShotImageClassification, AutoTokenizer, pipeline

    model = he.EquivariantCLIPModel.from_base(base, strategy="multi").eval()
    processor = tiny_image_processor(SIZE)
    model.save_pretrained(tmp_path, tokenizer=tokenizer, image_processor=processor)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    card = (tmp_path / "README.md").read_text()
    assert "zero-shot-image-classification" in card and "rot90" in card

    loaded = AutoModelForZeroShotImageClassification.from_pretrained(tmp_path)
    assert type(loaded) is he.EquivariantCLIPModel
    assert torch.equal(loaded.scorer.reference, model.scorer.reference)  # saved, not garbage from the meta device
    labels = ["a photo of a cat", "a photo of a dog", "a tree"]
    with caplog.at_level(logging.ERROR, logger="transformers"):
        pipe = pipeline("zero-shot-image-classification", model=loaded,
                        tokenizer=AutoTokenizer.from_pretrained(tmp_path),
                        image_processor=AutoImageProcessor.from_pretrained(tmp_path))
    assert "not supported" not in caplog.text
    direct = pipeline("zero-shot-image-classification", model=model, tokenizer=tokenizer, image_processor=processor)
    transposes = [None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
                  Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
                  Image.Transpose.TRANSVERSE]
    base_pipe = pipeline("zero-shot-image-classification", model=base, tokenizer=tokenizer, image_processor=processor)
    for seed in range(2):
        image = _pil(seed)
        reference = {r["label"]: r["score"] for r in pipe(image, candidate_labels=labels)}
        # Save/load reproduces the scores exactly.
        assert reference == {r["label"]: r["score"] for r in direct(image, candidate_labels=labels)}
        base_scores = {r["label"]: r["score"] for r in base_pipe(image, candidate_labels=labels)}
        base_gap = 0.0
        for t in transposes[1:]:
            moved = image.transpose(t)
            scores = {r["label"]: r["score"] for r in pipe(moved, candidate_labels=labels)}
            assert max(abs(scores[k] - reference[k]) for k in labels) < 1e-5, t
            moved_base = {r["label"]: r["score"] for r in base_pipe(moved, candidate_labels=labels)}
            base_gap = max(base_gap, max(abs(moved_base[k] - base_scores[k]) for k in labels))
        assert base_gap > 1e-3  # the base pipeline is not invariant on the same images


def test_push_to_hub_keeps_card(hub_online, base, tokenizer, monkeypatch, tmp_path):
    import huggingface_hub

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, folder_path, repo_id, **kwargs):
            import os

            uploaded["files"] = sorted(os.listdir(folder_path))
            uploaded["card"] = open(os.path.join(folder_path, "README.md")).read()
            return f"https://hf.co/{repo_id}"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = he.EquivariantCLIPModel.from_base(base)
    url = model.push_to_hub("me/clip-rot", tokenizer=tokenizer, image_processor=tiny_image_processor(SIZE))
    assert url == "https://hf.co/me/clip-rot"
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json",
            "preprocessor_config.json"} <= set(uploaded["files"])
    assert "library_name: transformers" in uploaded["card"]


def test_siglip_sigmoid_wrapper(tokenizer, tmp_path):
    from transformers import AutoModelForZeroShotImageClassification, pipeline

    base = tiny_clip_model(1, vocab_size=len(WORDS) + 8, image_size=SIZE, sigmoid=True, max_positions=64)
    model = he.EquivariantCLIPModel.from_base(base, strategy="full")
    assert type(model) is he.EquivariantSiglipModel
    assert "siglip" in model.config.model_type
    text = tokenizer(LABELS, padding="max_length", max_length=16, return_tensors="pt")
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        probs = torch.stack([base(pixel_values=model.action.apply(images, g), **text).logits_per_image.sigmoid()
                             for g in range(8)]).mean(0)
        scores = model(pixel_values=images, **text).logits_per_image
    assert torch.allclose(scores.sigmoid(), probs, atol=1e-6)  # logit of the mean sigmoid probability
    for strategy in ("full", "multi", "canonical"):
        with model.using(strategy=strategy):
            assert he.check_equivariance(model, {"pixel_values": images, **text}).passed(1e-5), strategy
    model.save_pretrained(tmp_path, tokenizer=tokenizer, image_processor=tiny_image_processor(SIZE))
    loaded = AutoModelForZeroShotImageClassification.from_pretrained(tmp_path)
    assert type(loaded) is he.EquivariantSiglipModel
    pipe = pipeline("zero-shot-image-classification", model=loaded, tokenizer=tokenizer,
                    image_processor=tiny_image_processor(SIZE))
    out = pipe(_pil(0), candidate_labels=["a cat", "a dog"])
    assert abs(sum(r["score"] for r in out) - 1.0) > 1e-6  # sigmoid scores: independent, not a softmax
