"""EquivariantOpenCLIP / InvariantZeroShotClassifier on a tiny random open_clip model (offline BPE tokenizer)."""

from __future__ import annotations

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

import hf_equivariant as he  # noqa: E402

SIZE = 32
CLASSES = ["cat", "dog", "car", "satellite", "cell"]
TEMPLATES = ["a photo of a {}.", lambda c: f"an aerial image of a {c}"]


@pytest.fixture(scope="module")
def model():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return CLIP(embed_dim=32,
                vision_cfg=CLIPVisionCfg(image_size=SIZE, layers=2, width=64, head_width=32, patch_size=8),
                text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=2)).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer("ViT-B-32")  # bundled BPE, offline


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def classifier(model, tokenizer):
    return he.InvariantZeroShotClassifier(model, tokenizer, CLASSES, TEMPLATES)


def test_base_not_invariant(classifier, images):
    action = classifier.wrapper.action
    with torch.no_grad():
        ref = classifier(images, "none")
        assert min((classifier(action.apply(images, g), "none") - ref).abs().max().item() for g in range(1, 8)) > 1e-2


@pytest.mark.parametrize("strategy", ["full", "multi", "canonical"])
@pytest.mark.parametrize("aggregation", ["mean_prob", "max_prob"])
def test_invariant_every_element(classifier, images, strategy, aggregation):
    action = classifier.wrapper.action
    with torch.no_grad():
        ref = classifier(images, strategy, aggregation)
        assert ref.shape == (4, len(CLASSES))
        for g in range(action.order):
            assert torch.allclose(classifier(action.apply(images, g), strategy, aggregation), ref, atol=1e-5), g
    report = he.check_equivariance(classifier.wrapper, {"images": images, "class_embeds": classifier.class_embeds})
    assert report.passed(1e-5)


def test_copy_counts_and_features(classifier, model, images):
    wrapper = classifier.wrapper
    seen = []
    hook = model.visual.conv1.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            for strategy, per_image in (("full", 8), ("multi", 5), ("canonical", 1), ("none", 1)):
                seen.clear()
                classifier(images, strategy)
                assert seen == [per_image * 4], strategy
            undeduplicated = he.EquivariantOpenCLIP(model, strategy="multi", deduplicate=False)
            seen.clear()
            undeduplicated.encode_image(images)
            assert seen == [6 * 4] and undeduplicated.images_per_input == 6
            feats = wrapper.encode_image(images, normalize=True)
            assert torch.allclose(wrapper.encode_image(wrapper.action.apply(images, 3), normalize=True), feats,
                                  atol=1e-5)
            assert torch.allclose(feats.norm(dim=-1), torch.ones(4), atol=1e-5)
    finally:
        hook.remove()


def test_class_embeddings_match_manual_prompt_average(classifier, model, tokenizer):
    with torch.no_grad():
        manual = []
        for c in CLASSES:
            prompts = [t(c) if callable(t) else t.format(c) for t in TEMPLATES]
            e = model.encode_text(tokenizer(prompts), normalize=True).mean(0)
            manual.append(e / e.norm())
    assert torch.allclose(classifier.class_embeds, torch.stack(manual), atol=1e-6)


def test_mean_prob_semantics(classifier, model, images):
    wrapper = classifier.wrapper
    with torch.no_grad():
        scale = model.logit_scale.exp()
        probs = []
        for g in range(8):
            f = model.encode_image(wrapper.action.apply(images, g), normalize=True)
            probs.append((scale * f @ classifier.class_embeds.T).softmax(-1))
        expected = torch.stack(probs).mean(0)
        assert torch.allclose(classifier(images, "full", "mean_prob").softmax(-1), expected, atol=1e-6)


def test_sigmoid_models_and_errors(model, tokenizer, images):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(2)
    siglip_like = CLIP(embed_dim=32, init_logit_bias=-5.0,
                       vision_cfg=CLIPVisionCfg(image_size=SIZE, layers=1, width=64, head_width=32, patch_size=8),
                       text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=1)).eval()
    clf = he.InvariantZeroShotClassifier(siglip_like, tokenizer, CLASSES, strategy="multi")
    assert clf.wrapper.sigmoid
    with torch.no_grad():
        ref = clf(images)
        for g in range(8):
            assert torch.allclose(clf(clf.wrapper.action.apply(images, g)), ref, atol=1e-5)
    with pytest.raises(ValueError, match="unknown image transform 'shear'"):
        he.EquivariantOpenCLIP(model, groups=["shear"])
    with pytest.raises(ValueError, match="needs square images"):
        he.EquivariantOpenCLIP(model, image_size=(32, 48))
    with pytest.raises(TypeError, match="expected an open_clip CLIP model"):
        he.EquivariantOpenCLIP(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown template set"):
        he.InvariantZeroShotClassifier.imagenet(model, tokenizer, templates="fancy")
