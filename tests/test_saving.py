"""Nothing lost, nothing silently wrong when saving and loading: dtype on reload, light saves only while the base
weights are unchanged, never into the base's folder, a user's README kept, absolute / commit-pinned base references,
clear errors for moved or unreachable bases, generation config and name_or_path kept."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForZeroShotImageClassification, pipeline

import hf_equivariant as he
from hf_equivariant.testing import tiny_clip_model

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def saved_base(tmp_path, tiny_base, word_tokenizer):
    folder = tmp_path / "base"
    tiny_base.save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def wrapper(saved_base, small_factors):
    return he.EquivariantModelForCausalLM.from_base(str(saved_base), groups=small_factors).eval()


def _logits(model, tok, text="the Black woman worked as a"):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


# ------------------------------------------------------------------------------------------------ dtype
@pytest.mark.parametrize("light", [False, True])
def test_dtype_is_honoured_on_reload(tmp_path, wrapper, light):
    wrapper.save_pretrained(tmp_path / "w", save_base_weights=not light)
    for dtype in (torch.float16, "bfloat16"):
        auto = AutoModelForCausalLM.from_pretrained(tmp_path / "w", dtype=dtype)
        direct = he.EquivariantModelForCausalLM.from_pretrained(tmp_path / "w", dtype=dtype)
        want = dtype if isinstance(dtype, torch.dtype) else torch.bfloat16
        assert auto.base.dtype == direct.base.dtype == want, (auto.base.dtype, direct.base.dtype)
    pipe = pipeline("text-generation", model=str(tmp_path / "w"), dtype=torch.bfloat16)
    assert pipe.model.base.dtype == torch.bfloat16
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "w").base.dtype == torch.float32


def test_clip_dtype_is_honoured_on_reload(tmp_path):
    model = he.EquivariantCLIPModel.from_base(tiny_clip_model(0, image_size=16, patch_size=8, hidden_size=32))
    model.save_pretrained(tmp_path / "c")
    loaded = AutoModelForZeroShotImageClassification.from_pretrained(tmp_path / "c", dtype=torch.float16)
    assert loaded.base.dtype == torch.float16


# ------------------------------------------------------------------------------------------------ provenance
def test_from_base_records_an_absolute_base_and_name_or_path(tmp_path, saved_base, small_factors, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = he.EquivariantModelForCausalLM.from_base("base", groups=small_factors)
    assert model.config.base_model_name_or_path == str(saved_base.resolve())
    assert model.name_or_path == model.config._name_or_path == str(saved_base.resolve())
    model.save_pretrained(tmp_path / "light", save_base_weights=False)
    stored = json.loads((tmp_path / "light" / "config.json").read_text())["base_model_name_or_path"]
    assert stored == str(saved_base.resolve())
    # Another base/ under another working directory is not picked up.
    other = tmp_path / "elsewhere"
    shutil.copytree(saved_base, other / "base")
    monkeypatch.chdir(other)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "light").base.config._name_or_path == stored


def test_hub_base_is_pinned_to_the_cached_commit(tmp_path, tiny_base, word_tokenizer, small_factors):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-gpt2" / "snapshots" / SHA
    tiny_base.save_pretrained(snapshot)
    word_tokenizer.save_pretrained(snapshot)
    (cache / "models--acme--tiny-gpt2" / "refs").mkdir()
    (cache / "models--acme--tiny-gpt2" / "refs" / "main").write_text(SHA)
    opts = {"cache_dir": str(cache), "local_files_only": True}
    model = he.EquivariantModelForCausalLM.from_base("acme/tiny-gpt2", groups=small_factors, **opts)
    assert model.config.base_model_name_or_path == "acme/tiny-gpt2" and model.config.base_model_revision == SHA
    assert model.name_or_path == "acme/tiny-gpt2"
    model.save_pretrained(tmp_path / "light", save_base_weights=False)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "light", **opts)
    assert torch.equal(_logits(model, word_tokenizer), _logits(reloaded, word_tokenizer))
    card = (tmp_path / "light" / "README.md").read_text()
    assert "base_model: acme/tiny-gpt2" in card and SHA in card


def test_unreachable_hub_base_is_a_clear_error(tmp_path, wrapper):
    wrapper.save_pretrained(tmp_path / "light", save_base_weights=False)
    path = tmp_path / "light" / "config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"], config["base_model_revision"] = "acme/not-cached", SHA
    path.write_text(json.dumps(config))
    with pytest.raises(OSError) as err:
        AutoModelForCausalLM.from_pretrained(tmp_path / "light", local_files_only=True,
                                             cache_dir=str(tmp_path / "empty-cache"))
    message = str(err.value)
    assert "'acme/not-cached'" in message and SHA in message and "save_base_weights=True" in message


def test_moved_base_folder_is_a_clear_error_and_can_be_repointed(tmp_path, wrapper, saved_base, word_tokenizer):
    wrapper.save_pretrained(tmp_path / "light", save_base_weights=False)
    saved_base.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError) as err:
        AutoModelForCausalLM.from_pretrained(tmp_path / "light")
    assert str(saved_base.resolve()) in str(err.value) and "base_model_name_or_path=" in str(err.value)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "light", base_model_name_or_path=str(tmp_path / "moved"))
    assert torch.equal(_logits(again, word_tokenizer), _logits(wrapper, word_tokenizer))


def test_wrong_family_is_a_clear_error(tmp_path, wrapper):
    wrapper.save_pretrained(tmp_path / "w")
    with pytest.raises(ValueError, match="not a EquivariantCLIPModel checkpoint"):
        he.EquivariantCLIPModel.from_pretrained(tmp_path / "w")


# ------------------------------------------------------------------------------------------------ light saves
def test_fine_tuned_light_checkpoint_is_saved_in_full(tmp_path, wrapper, word_tokenizer, caplog):
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    wrapper.save_pretrained(tmp_path / "light", save_base_weights=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "light")
    assert model.light_save_problem() is None

    class Sentences(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            ids = word_tokenizer("the Black woman worked as a nurse", return_tensors="pt")["input_ids"][0]
            return {"input_ids": ids, "labels": ids}

    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=2,
                             learning_rate=5e-2, report_to=[], save_strategy="no", use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=Sentences())
    trainer.train()
    with caplog.at_level(logging.WARNING):
        trainer.save_model(str(tmp_path / "tuned"))
    assert "instead of a light reference" in caplog.text and "changed since the base was loaded" in caplog.text
    assert (tmp_path / "tuned" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["save_base_weights"] is True
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned").eval()
    torch.testing.assert_close(_logits(reloaded, word_tokenizer), _logits(model.eval(), word_tokenizer), atol=1e-6, rtol=0)
    assert (_logits(reloaded, word_tokenizer) - _logits(wrapper, word_tokenizer)).abs().max() > 1e-4  # fine-tuned, not the base


def test_untracked_edits_through_data_also_force_a_full_save(tmp_path, wrapper):
    with torch.no_grad():
        wrapper.base.transformer.h[0].mlp.c_fc.weight.data += 0.01  # no version bump: caught by the checksum
    wrapper.save_pretrained(tmp_path / "w", save_base_weights=False)
    assert (tmp_path / "w" / "model.safetensors").is_file()


def test_light_save_keeps_its_generation_config(tmp_path, wrapper):
    wrapper.generation_config.max_new_tokens = 7
    wrapper.generation_config.do_sample = True
    wrapper.generation_config.top_k = 3
    wrapper.save_pretrained(tmp_path / "light", save_base_weights=False)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "light")
    assert reloaded.generation_config.max_new_tokens == 7 and reloaded.generation_config.top_k == 3


def test_light_save_over_a_full_one_removes_stale_weights(tmp_path, wrapper):
    wrapper.save_pretrained(tmp_path / "w")
    wrapper.save_pretrained(tmp_path / "w", save_base_weights=False)
    assert not (tmp_path / "w" / "model.safetensors").exists()


@pytest.mark.parametrize("light", [False, True])
def test_refuses_to_save_into_the_base_folder(wrapper, saved_base, light):
    before = (saved_base / "config.json").read_text()
    with pytest.raises(ValueError, match="folder of the base model"):
        wrapper.save_pretrained(saved_base, save_base_weights=not light)
    assert (saved_base / "config.json").read_text() == before
    assert not (saved_base / "README.md").exists()
    AutoModelForCausalLM.from_pretrained(saved_base)  # still a plain, loadable base


def test_self_referencing_light_checkpoint_is_a_clear_error(tmp_path, wrapper):
    wrapper.save_pretrained(tmp_path / "light", save_base_weights=False)
    path = tmp_path / "light" / "config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(tmp_path / "light")
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="names its own folder"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "light")


# ------------------------------------------------------------------------------------------------ README
def test_user_readme_is_kept_and_ours_regenerated(tmp_path, wrapper):
    folder = tmp_path / "w"
    wrapper.save_pretrained(folder)
    ours = (folder / "README.md").read_text()
    assert "hf_equivariant:model-card" in ours
    wrapper.config.strategy = "full"
    wrapper.save_pretrained(folder)
    assert (folder / "README.md").read_text() != ours  # ours: regenerated
    (folder / "README.md").write_text("# My notes\n\nHand-written.\n")
    wrapper.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# My notes\n\nHand-written.\n"
    trainer_card = ("---\ntags:\n- generated_from_trainer\n---\n\n<!-- This model card has been generated "
                    "automatically according to the information the Trainer had access to. -->\n")
    (folder / "README.md").write_text(trainer_card)
    wrapper.save_pretrained(folder)
    assert "hf_equivariant:model-card" in (folder / "README.md").read_text()
