"""One push implementation for every path (push_to_hub, save_pretrained(push_to_hub=True), light, the Trainer),
tested against a mocked Hub API: our card and the tokenizer land, every huggingface_hub argument is honoured, the
folder is saved before the repository is created, light pushes of local bases are refused, offline is a clear
error."""

from __future__ import annotations

import os
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch

import hf_equivariant as he
from hf_equivariant.hub import HubPushError

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(monkeypatch, hub_online):
    """A fake HfApi recording calls (in order) and the uploaded files."""
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, "token": self.token, **kwargs}))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")  # the Hub adds the user

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {}
        for name in sorted(os.listdir(folder_path)):
            path = os.path.join(folder_path, name)
            if name.endswith((".md", ".json", ".py")):
                files[name] = open(path, encoding="utf-8").read()
            else:
                files[name] = os.path.getsize(path)
        calls.append(("upload_folder", {"repo_id": repo_id, "files": files, **kwargs}))
        return "commit-info"

    for name, fn in (("create_repo", create_repo), ("create_branch", create_branch),
                     ("upload_folder", upload_folder)):
        monkeypatch.setattr(huggingface_hub.HfApi, name, fn)
    return calls


@pytest.fixture
def model(tiny_base, word_tokenizer, small_factors):
    return he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)


def _upload(calls):
    return next(c for name, c in calls if name == "upload_folder")


def test_push_to_hub_honours_every_hub_argument(hub, model):
    result = model.push_to_hub("me/fair", commit_message="msg", commit_description="why", private=True, token=False,
                               revision="dev", tags=["demo"], license="mit", language="en")
    assert result == "commit-info"
    assert [name for name, _ in hub] == ["create_repo", "create_branch", "upload_folder"]
    assert hub[0][1]["private"] is True and hub[0][1]["token"] is False
    upload = _upload(hub)
    assert (upload["commit_message"], upload["commit_description"], upload["revision"]) == ("msg", "why", "dev")
    assert upload["token"] is False and upload["create_pr"] is False
    files = upload["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "modeling_hf_equivariant.py"} <= set(files)
    card = files["README.md"]
    assert "library_name: transformers" in card and "license: mit" in card and "language: en" in card
    assert "- demo" in card and "- gender" in card and "- race" in card and "- fairness" in card
    assert 'from_pretrained("me/fair"' in card and "<this repo" not in card


def test_create_pr_skips_the_branch(hub, model):
    model.push_to_hub("me/fair", create_pr=True, revision="main")
    assert [name for name, _ in hub] == ["create_repo", "upload_folder"] and _upload(hub)["create_pr"] is True


def test_save_pretrained_push_saves_first_then_pushes(hub, model, tmp_path):
    model.save_pretrained(tmp_path / "fair-gpt2", push_to_hub=True, commit_description="d", private=False)
    assert (tmp_path / "fair-gpt2" / "model.safetensors").is_file()
    upload = _upload(hub)
    assert hub[0][1]["repo_id"] == "fair-gpt2" and upload["repo_id"] == "me/fair-gpt2"
    assert upload["commit_description"] == "d"
    assert 'from_pretrained("me/fair-gpt2"' in upload["files"]["README.md"]  # the id the Hub assigned
    model.save_pretrained(tmp_path / "other", push_to_hub=True, repo_id="me/explicit")
    assert hub[-1][1]["repo_id"] == "me/explicit"


def test_failed_save_creates_no_repository(hub, model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        model.push_to_hub("me/fair")
    assert hub == []


def test_light_push_of_a_hub_base(hub, tiny_base, word_tokenizer, small_factors):
    tiny_base.config._name_or_path = "acme/tiny-gpt2"
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    model.config.base_model_revision = SHA
    model.push_to_hub("me/fair-light", save_base_weights=False)
    files = _upload(hub)["files"]
    assert "model.safetensors" not in files and "tokenizer.json" in files
    assert '"save_base_weights": false' in files["config.json"] and SHA in files["config.json"]
    assert "base_model: acme/tiny-gpt2" in files["README.md"] and "Light:" in files["README.md"]


def test_light_push_of_a_local_base_is_refused(hub, tmp_path, tiny_base, word_tokenizer, small_factors):
    tiny_base.save_pretrained(tmp_path / "base")
    word_tokenizer.save_pretrained(tmp_path / "base")
    model = he.EquivariantModelForCausalLM.from_base(str(tmp_path / "base"), groups=small_factors)
    with pytest.raises(ValueError, match="local folder"):
        model.push_to_hub("me/fair", save_base_weights=False)
    assert hub == []


def test_offline_push_is_a_clear_error(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubPushError, match="me/fair.*offline mode"):
        model.push_to_hub("me/fair")


def test_connection_error_is_a_clear_error(model, hub_online, monkeypatch, tmp_path):
    def unreachable(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", unreachable)
    with pytest.raises(HubPushError) as err:
        model.save_pretrained(tmp_path / "w", push_to_hub=True, repo_id="me/fair")
    assert "me/fair" in str(err.value) and str(tmp_path / "w") in str(err.value)


def test_trainer_push_to_hub_uploads_our_card_and_tokenizer(hub, model, word_tokenizer, tmp_path):
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    class Sentences(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            ids = word_tokenizer("the man worked as a doctor", return_tensors="pt")["input_ids"][0]
            return {"input_ids": ids, "labels": ids}

    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=1,
                             report_to=[], save_strategy="no", use_cpu=True, hub_model_id="me/fair-tuned")
    trainer = Trainer(model=model, args=args, train_dataset=Sentences())
    trainer.train()
    trainer.push_to_hub(commit_message="tuned", license="apache-2.0")
    upload = _upload(hub)
    card = upload["files"]["README.md"]
    assert "hf_equivariant:model-card" in card and "fine-tuned version of []()" not in card
    assert "- generated_from_trainer" in card and "- gender" in card and "license: apache-2.0" in card
    assert "## Training (recorded by the transformers Trainer)" in card and "learning_rate" in card
    assert 'from_pretrained("me/fair-tuned"' in card
    assert "tokenizer.json" in upload["files"] and "modeling_hf_equivariant.py" in upload["files"]
    # Trainer.create_model_card alone (no push) writes the same card.
    trainer.create_model_card()
    assert "hf_equivariant:model-card" in (tmp_path / "run" / "README.md").read_text()


def test_push_keeps_a_users_card(hub, model, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "README.md").write_text("# Mine\n")
    model.save_pretrained(folder, push_to_hub=True, repo_id="me/fair")
    assert _upload(hub)["files"]["README.md"] == "# Mine\n"
    torch.manual_seed(0)
