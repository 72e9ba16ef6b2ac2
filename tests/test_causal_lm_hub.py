"""Saving and loading: full and light saves, Auto classes, pipelines by path, model cards, malformed configs,
and fine-tuning through the wrapper with Trainer."""

import json
import logging

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, pipeline

import hf_equivariant as he


@pytest.fixture
def saved_base(tmp_path, tiny_base, word_tokenizer):
    folder = tmp_path / "base"
    tiny_base.save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


def _logits(model, tok, text="the Black woman worked as a"):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


@pytest.mark.parametrize("full", [True, False])
def test_save_and_reload_reproduce_logits(tmp_path, saved_base, word_tokenizer, small_factors, full):
    model = he.EquivariantModelForCausalLM.from_base(str(saved_base), groups=small_factors, strategy="multi").eval()
    assert model.tokenizer is not None  # loaded from the folder when not given
    out = tmp_path / "wrapped"
    model.save_pretrained(out, save_base_weights=full)
    files = {p.name for p in out.iterdir()}
    assert "config.json" in files and "README.md" in files and "tokenizer.json" in files
    assert ("model.safetensors" in files) == full
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert isinstance(reloaded, he.EquivariantModelForCausalLM)
    assert reloaded.config.strategy == "multi" and reloaded.config.save_base_weights == full
    torch.testing.assert_close(_logits(model, word_tokenizer), _logits(reloaded, word_tokenizer), atol=1e-6, rtol=0)
    # through a pipeline by path, with the tokenizer saved beside it
    pipe = pipeline("text-generation", model=str(out))
    ids = pipe("the man worked as a", max_new_tokens=4, do_sample=False, return_tensors=True)[0]
    enc = word_tokenizer("the man worked as a", return_tensors="pt")  # no token_type_ids, like the pipeline
    direct = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=4,
                            do_sample=False, pad_token_id=0)
    assert list(ids["generated_token_ids"]) == direct[0].tolist()


def test_light_save_needs_base_name(tmp_path, tiny_base, word_tokenizer, small_factors):
    tiny_base.config._name_or_path = ""
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    with pytest.raises(ValueError, match="base_model_name_or_path"):
        model.save_pretrained(tmp_path / "light", save_base_weights=False)


def test_model_card_and_config_contents(tmp_path, tiny_base, word_tokenizer, small_factors):
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors,
                                                     strategy="full", aggregation="max_prob")
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    assert "pipeline_tag: text-generation" in card and "| race | 3 | Black/White/Asian" in card
    assert "Base-model rows per token: 18" in card
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "hf_equivariant_causal_lm" and config["strategy"] == "full"
    assert config["groups"][1]["name"] == "race" and config["groups"][1]["token_ids"]
    assert config["text_config"]["model_type"] == "gpt2"


def test_malformed_saved_group_spec_is_a_clear_error(tmp_path, tiny_base, word_tokenizer, small_factors):
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config["groups"][0]["token_ids"] = [[5, 5]]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="more than one place"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    config["groups"] = [{"type": "word_swap", "name": "gender"}]
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="malformed group spec"):
        AutoConfig.from_pretrained(tmp_path / "m")
    config["groups"] = "gender"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="malformed group spec"):
        AutoConfig.from_pretrained(tmp_path / "m")
    config["groups"] = []
    config["strategy"] = "everything"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown strategy"):
        AutoConfig.from_pretrained(tmp_path / "m")


def test_pipeline_with_instance_logs_no_unsupported_error(tiny_base, word_tokenizer, small_factors, caplog):
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    with caplog.at_level(logging.WARNING):
        pipe = pipeline("text-generation", model=model, tokenizer=word_tokenizer)
        out = pipe("the Black woman worked as a", max_new_tokens=5, do_sample=True, top_k=10)
    assert "not supported" not in caplog.text
    assert out[0]["generated_text"].startswith("the Black woman worked as a")


def test_base_weights_unchanged_and_tied(tiny_base, word_tokenizer, small_factors):
    before = {k: v.clone() for k, v in tiny_base.state_dict().items()}
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    for key, value in model.base.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.base.lm_head.weight.data_ptr() == model.base.transformer.wte.weight.data_ptr()


def test_trainer_fine_tunes_base_through_wrapper(tmp_path, tiny_base, word_tokenizer, small_factors):
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    class Sentences(Dataset):
        def __init__(self):
            texts = ["the Black woman worked as a nurse", "the man worked as a doctor", "she said that he"] * 4
            self.items = [word_tokenizer(t, return_tensors="pt")["input_ids"][0] for t in texts]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return {"input_ids": self.items[i], "labels": self.items[i]}

    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    before = model.base.transformer.h[0].attn.c_attn.weight.detach().clone()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=1, max_steps=3,
                             learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True)
    result = Trainer(model=model, args=args, train_dataset=Sentences()).train()
    assert result.training_loss > 0
    assert not torch.equal(before, model.base.transformer.h[0].attn.c_attn.weight)
    report = he.check_equivariance(model.eval(), word_tokenizer("the White man", return_tensors="pt"))
    assert report.passed(1e-5)


def test_push_to_hub_uploads_the_save_folder_with_our_card(monkeypatch, hub_online, tiny_base, word_tokenizer,
                                                           small_factors):
    import huggingface_hub

    uploaded = {}

    def fake_create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, repo_id, folder_path, **kwargs):
        import os

        uploaded["repo"] = repo_id
        uploaded["files"] = sorted(os.listdir(folder_path))
        uploaded["card"] = open(os.path.join(folder_path, "README.md")).read()
        return "commit"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    model = he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors)
    assert model.push_to_hub("me/fair-gpt2") == "commit"
    assert uploaded["repo"] == "me/fair-gpt2"
    assert "model.safetensors" in uploaded["files"] and "tokenizer.json" in uploaded["files"]
    assert "library_name: transformers" in uploaded["card"] and "| gender | 2 |" in uploaded["card"]


def test_loading_options_pass_through_to_the_base(saved_base, small_factors, word_tokenizer):
    model = he.EquivariantModelForCausalLM.from_base(str(saved_base), groups=small_factors, dtype=torch.float64,
                                                     device_map="cpu")
    assert model.base.dtype == torch.float64 and model.base.device.type == "cpu"
    report = he.check_equivariance(model.eval(), word_tokenizer("the Black man", return_tensors="pt"))
    assert report.passed(1e-10)


def test_full_save_of_a_rotary_model_reloads_exactly(tmp_path, word_tokenizer, small_factors):
    """Llama-style bases keep derived (non-persistent) rotary buffers; they must survive a meta-device reload."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(word_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=2, eos_token_id=2, pad_token_id=0)
    base = LlamaForCausalLM(config).eval()
    model = he.EquivariantModelForCausalLM.from_base(base, tokenizer=word_tokenizer, groups=small_factors,
                                                     strategy="full").eval()
    model.save_pretrained(tmp_path / "llama")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    torch.testing.assert_close(_logits(model, word_tokenizer), _logits(reloaded, word_tokenizer), atol=1e-6, rtol=0)
    assert he.check_equivariance(reloaded, word_tokenizer("the Black man said", return_tensors="pt")).passed(1e-5)
