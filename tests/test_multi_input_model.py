"""MultiInputEquivariantModel: exact invariance, cost, errors, save/load, Auto classes, HF backbone and Trainer."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, ViTConfig

import hf_equivariant as he
from hf_equivariant.models.multi_input import ConvBlock, MultiInputEquivariantConfig, MultiInputEquivariantModel, input_groups
from hf_equivariant.datasets.digits import MultiViewDigits, load_digit_splits, make_views, sample_view_tuples

ATOL = 1e-5




def tiny(groups: list[str], **kwargs) -> MultiInputEquivariantModel:
    torch.manual_seed(0)
    defaults = dict(conv_channels=[4, 6], hidden_size=8, num_labels=3)
    return MultiInputEquivariantModel(MultiInputEquivariantConfig(groups=groups, **{**defaults, **kwargs})).eval()


def tiny_vit_config() -> dict:
    return ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32).to_dict()


def random_per_input_transform(model: MultiInputEquivariantModel, x: torch.Tensor, seed: int) -> torch.Tensor:
    """An independent random element of each input's group for every example."""
    gen = torch.Generator().manual_seed(seed)
    views = []
    for i, action in enumerate(model.actions):
        views.append(action.apply(x[:, i], torch.randint(action.order, (x.shape[0],), generator=gen)))
    return torch.stack(views, dim=1)


@pytest.mark.parametrize("kwargs", [
    dict(groups=["rot90", "flip", "id"]),
    dict(groups=["rot90", "flip", "id"], share_weights=False, fusion_reduction="mean"),
    dict(groups=["rot90_flip", "rot90"], readout="sum"),
    dict(groups=["rot90", "rot90", "rot90", "rot90"], fusion=False),
    dict(groups=["rot90", "flip"], norm="batch"),
    dict(groups=["rot90", "flip"], norm="none", pool=False),
])
def test_model_is_exactly_invariant(kwargs: dict) -> None:
    model = tiny(**kwargs)
    x = torch.randn(4, len(kwargs["groups"]), 1, 8, 8)
    report = he.check_equivariance(model, {"pixel_values": x}, max_elements=16)
    assert report.passed(ATOL), str(report)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
        for seed in range(2):
            assert (model(pixel_values=random_per_input_transform(model, x, seed)).logits - ref).abs().max() < ATOL


def test_plain_cnn_is_not_invariant_so_the_check_can_fail() -> None:
    model = tiny(groups=["id", "id"])
    x = torch.randn(4, 2, 1, 8, 8)
    rot = input_groups(["rot90"])[0]
    with torch.no_grad():
        moved = torch.stack([rot.apply(x[:, 0], 1), x[:, 1]], dim=1)
        assert (model(pixel_values=moved).logits - model(pixel_values=x).logits).abs().max() > 1e-3


def test_sum_readout_is_exchangeable() -> None:
    model = tiny(groups=["rot90", "rot90", "rot90"], readout="sum")
    x = torch.randn(3, 3, 1, 8, 8)
    with torch.no_grad():
        assert (model(pixel_values=x[:, [2, 0, 1]]).logits - model(pixel_values=x).logits).abs().max() < ATOL


def test_branch_passes_counted_per_example() -> None:
    groups = ["rot90"] * 4
    model = tiny(groups=groups)
    rows = {"n": 0}
    for module in model.modules():
        if isinstance(module, ConvBlock):
            module.register_forward_hook(lambda m, inp, out: rows.__setitem__("n", rows["n"] + inp[0].shape[0]))
    batch = 5
    with torch.no_grad():
        model(pixel_values=torch.randn(batch, 4, 1, 8, 8))
    per_layer = rows["n"] / batch / len(model.layers)
    assert per_layer == 2 * 16 == model.branch_passes_per_example / len(model.layers)
    assert model.joint_equitune_passes_per_example == 256


def test_hf_backbone_model_is_invariant_and_round_trips(tmp_path) -> None:
    model = tiny(groups=["rot90", "flip"], backbone_config=tiny_vit_config())
    x = torch.randn(3, 2, 1, 8, 8)
    assert he.check_equivariance(model, {"pixel_values": x}).passed(ATOL)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=x).logits, model(pixel_values=x).logits, atol=1e-6)


def test_save_load_through_auto_classes(tmp_path) -> None:
    model = tiny(groups=["rot90", "flip", "id"], num_labels=3, norm="batch")
    with torch.no_grad():  # make BN running stats non-trivial so they are known to be saved
        model.train()(pixel_values=torch.randn(8, 3, 1, 8, 8))
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    x = torch.randn(2, 3, 1, 8, 8)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, MultiInputEquivariantConfig) and config.groups == ["rot90", "flip", "id"]
    for cls in (MultiInputEquivariantModel, AutoModel, AutoModelForImageClassification):
        loaded = cls.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, MultiInputEquivariantModel)
        with torch.no_grad():
            assert torch.equal(loaded(pixel_values=x).logits, model(pixel_values=x).logits)


def test_trainer_fine_tunes_and_invariance_survives(tmp_path) -> None:
    from transformers import Trainer, TrainingArguments

    splits = load_digit_splits()
    train = MultiViewDigits(*splits["train"], k=2, n_tuples=32, seed=0)
    model = tiny(groups=["rot90", "flip"], num_labels=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-2,
                             report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True)
    result = Trainer(model=model, args=args, train_dataset=train).train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    x = train.pixel_values[:4]
    assert he.check_equivariance(model, {"pixel_values": x}).passed(ATOL)


def test_batchnorm_in_training_mode_is_still_exact() -> None:
    """Batch statistics over all group copies do not change when an input is transformed."""
    model = tiny(groups=["rot90", "flip", "id"], norm="batch").train()
    model.classifier[2].p = 0.0  # no dropout randomness
    x = torch.randn(4, 3, 1, 8, 8)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
        moved = model(pixel_values=random_per_input_transform(model, x, seed=4)).logits
    assert (moved - ref).abs().max() < ATOL


def test_loss_and_output_format() -> None:
    model = tiny(groups=["rot90", "id"])
    out = model(pixel_values=torch.randn(3, 2, 1, 8, 8), labels=torch.tensor([0, 1, 2]))
    assert out.loss.ndim == 0 and out.logits.shape == (3, 3) and out.view_features.shape == (3, 2, 6)
    out.loss.backward()
    as_tuple = model(pixel_values=torch.randn(3, 2, 1, 8, 8), return_dict=False)
    assert isinstance(as_tuple, tuple)


# ------------------------------------------------------------------------------------------------------- errors
def test_clear_errors_for_bad_inputs() -> None:
    model = tiny(groups=["rot90", "flip"])
    with pytest.raises(ValueError, match="has 2 inputs"):
        model(pixel_values=torch.randn(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"input 0 \(group 'rot90'\).*square"):
        model(pixel_values=torch.randn(1, 2, 1, 8, 6))
    with pytest.raises(ValueError, match="channel"):
        model(pixel_values=torch.randn(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[batch, 2 inputs"):
        model(pixel_values=torch.randn(2, 1, 8, 8))


def test_config_rejects_unknown_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown group name"):
        MultiInputEquivariantConfig(groups=["rot90", "rot45"])
    with pytest.raises(ValueError, match="readout"):
        MultiInputEquivariantConfig(readout="max")
    with pytest.raises(ValueError, match="norm"):
        MultiInputEquivariantConfig(norm="layer")
    # a saved config that names an unknown group fails at load time with the same message
    MultiInputEquivariantConfig(groups=["rot90"]).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(path.read_text().replace('"rot90"', '"spin"'))
    with pytest.raises(ValueError, match="unknown group name"):
        AutoConfig.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------------- data
def test_multiview_digits_tuples_are_same_class_distinct_and_splits_disjoint() -> None:
    splits = load_digit_splits()
    sizes = {name: len(y) for name, (_, y) in splits.items()}
    assert sum(sizes.values()) == 1797
    flat = {name: {tuple(img.flatten().tolist()) for img in x} for name, (x, _) in splits.items()}
    # sklearn digits hold a few exact duplicates; nearly all images must be unique to one split
    assert len(flat["train"] & flat["test"]) <= 5
    images, labels = splits["test"]
    tuples = sample_view_tuples(labels, 4, 200, torch.Generator().manual_seed(0))
    assert (labels[tuples] == labels[tuples[:, :1]]).all()
    assert all(len(set(row.tolist())) == 4 for row in tuples)
    rotated = make_views(images, tuples, torch.full((200, 4), 2))
    assert torch.equal(rotated, images[tuples].flip(-1).flip(-2))
