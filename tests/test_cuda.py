"""Device checks, run only where CUDA exists (CI has none): the wrapper's tables follow the input's device."""

import pytest
import torch

import hf_equivariant as he

from conftest import make_tiny_gpt2

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("strategy", ["full", "multi", "canonical"])
def test_causal_lm_on_cuda_matches_cpu(word_tokenizer, small_factors, strategy):
    base = make_tiny_gpt2(len(word_tokenizer))
    cpu = he.EquivariantModelForCausalLM.from_base(base, tokenizer=word_tokenizer, groups=small_factors,
                                                   strategy=strategy).eval()
    enc = word_tokenizer(["the Black woman worked as a", "he said"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = cpu(**enc).logits
        gpu = cpu.to("cuda")
        got = gpu(**{k: v.cuda() for k, v in enc.items()}).logits
    assert torch.allclose(got.cpu(), expected, atol=1e-4)
    single = {k: v.cuda() for k, v in word_tokenizer("the Muslim man", return_tensors="pt").items()}
    report = he.check_equivariance(gpu, single)
    assert report.passed(1e-4)
    out = gpu.generate(**{k: v.cuda() for k, v in enc.items()}, max_new_tokens=5, num_beams=2, pad_token_id=0)
    assert out.device.type == "cuda"
