"""LoRA (PEFT) on a wrapper: the adapter records the wrapper's name, reloads by that name alone, and the adapted
model stays exactly equivariant."""

from __future__ import annotations

import json

import pytest
import torch

import hf_equivariant as he

peft = pytest.importorskip("peft")


def test_lora_on_a_wrapper_saves_and_reloads_by_name(tmp_path, tiny_base, word_tokenizer, small_factors):
    from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tiny_base.save_pretrained(tmp_path / "base")
    word_tokenizer.save_pretrained(tmp_path / "base")
    built = he.EquivariantModelForCausalLM.from_base(str(tmp_path / "base"), groups=small_factors)
    assert built.name_or_path == str((tmp_path / "base").resolve())  # set by from_base (was empty)
    built.save_pretrained(tmp_path / "wrapper", save_base_weights=False)
    wrapper = AutoModelForCausalLM.from_pretrained(tmp_path / "wrapper")
    assert wrapper.name_or_path == str(tmp_path / "wrapper")

    lora = get_peft_model(wrapper, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn"], lora_alpha=8,
                                              init_lora_weights=False))
    inputs = word_tokenizer("the Black woman said that he", return_tensors="pt")
    lora.eval()
    with torch.no_grad():
        adapted = lora(**inputs).logits
        with lora.disable_adapter():
            plain = lora(**inputs).logits
    assert not torch.allclose(adapted, plain)  # the adapter changes the model
    assert he.check_equivariance(lora.base_model.model, dict(inputs)).passed(1e-5)
    lora.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "wrapper")

    reloaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter").eval()
    assert isinstance(reloaded.base_model.model, he.EquivariantModelForCausalLM)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, adapted)
    assert he.check_equivariance(reloaded.base_model.model, dict(inputs)).passed(1e-5)
