"""Saved wrappers of every family load in a fresh process: after ``import hf_equivariant`` through the Auto classes,
and in a process that never imports the package through ``trust_remote_code=True`` (the ``auto_map`` and the
``modeling_hf_equivariant.py`` written by every save), pipelines included; a missing package is a clear error."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import hf_equivariant as he
from hf_equivariant.testing import tiny_clip_model, tiny_image_processor, word_level_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLIP_WORDS = "a photo of the cat dog car tree".split()


def run_python(code: str, tmp_path: pathlib.Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that finds this checkout's package, offline, with its own module cache."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
           "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, gpt2_tokenizer) -> dict[str, pathlib.Path]:
    """One saved wrapper per family, with the inputs and outputs it must reproduce."""
    from conftest import make_tiny_gpt2

    root = tmp_path_factory.mktemp("families")
    out: dict[str, pathlib.Path] = {}
    # causal LM (full) with its tokenizer
    tok = word_level_tokenizer("the man woman he she worked as a doctor nurse".split())
    base = make_tiny_gpt2(len(tok))
    lm = he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=[
        he.WordSwap.from_words(tok, [["man", "woman"], ["he", "she"]], name="gender")]).eval()
    ids = tok("the woman worked as a", return_tensors="pt")
    with torch.no_grad():
        logits = lm(**ids).logits
    lm.save_pretrained(root / "causal_lm")
    save_file({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "logits": logits},
              root / "causal_lm" / "expected.safetensors")
    out["causal_lm"] = root / "causal_lm"
    # CLIP and SigLIP with tokenizer + image processor (pipeline by folder)
    clip_tok = word_level_tokenizer(CLIP_WORDS)
    for name, sigmoid in (("clip", False), ("siglip", True)):
        clip = he.EquivariantCLIPModel.from_base(
            tiny_clip_model(0, vocab_size=len(CLIP_WORDS) + 8, image_size=16, patch_size=8, hidden_size=32,
                            max_positions=64, sigmoid=sigmoid)).eval()
        text = clip_tok(["a photo of a cat", "a photo of a dog"], padding="max_length", max_length=8,
                        return_tensors="pt")
        pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            scores = clip(pixel_values=pixels, **text).logits_per_image
        clip.save_pretrained(root / name, tokenizer=clip_tok, image_processor=tiny_image_processor(16))
        save_file({"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], "pixel_values": pixels,
                   "scores": scores}, root / name / "expected.safetensors")
        out[name] = root / name
    # multi-input
    torch.manual_seed(0)
    multi = he.MultiInputEquivariantModel(he.MultiInputEquivariantConfig(
        groups=["rot90", "flip"], conv_channels=[4], hidden_size=8, num_labels=3)).eval()
    pixels = torch.randn(2, 2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = multi(pixel_values=pixels).logits
    multi.save_pretrained(root / "multi_input")
    save_file({"pixel_values": pixels, "logits": logits}, root / "multi_input" / "expected.safetensors")
    out["multi_input"] = root / "multi_input"
    # text classifier (span swaps need a real subword tokenizer: GPT-2's BPE) with its tokenizer
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    head = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=50257,
                                                    num_labels=2, pad_token_id=gpt2_tokenizer.pad_token_id)).eval()
    clf = he.EquivariantModelForSequenceClassification.from_base(head, tokenizer=gpt2_tokenizer,
                                                                 groups=["gender_extended"]).eval()
    enc = gpt2_tokenizer(["The woman was rude.", "A man said hello."], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = clf(**enc).logits
    clf.save_pretrained(root / "classifier")
    save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "logits": logits},
              root / "classifier" / "expected.safetensors")
    out["classifier"] = root / "classifier"
    return out


LOAD_ALL = """
import sys
{prelude}
import torch
from safetensors.torch import load_file
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForImageClassification,
                          AutoModelForSequenceClassification, AutoModelForZeroShotImageClassification)
folders = {folders!r}
kw = {kwargs}
report = {{}}
e = load_file(folders["causal_lm"] + "/expected.safetensors")
m = AutoModelForCausalLM.from_pretrained(folders["causal_lm"], **kw).eval()
with torch.no_grad():
    report["causal_lm"] = (m(input_ids=e["input_ids"], attention_mask=e["attention_mask"]).logits
                           - e["logits"]).abs().max().item()
for name in ("clip", "siglip"):
    e = load_file(folders[name] + "/expected.safetensors")
    m = AutoModelForZeroShotImageClassification.from_pretrained(folders[name], **kw).eval()
    with torch.no_grad():
        out = m(input_ids=e["input_ids"], attention_mask=e["attention_mask"], pixel_values=e["pixel_values"])
    report[name] = (out.logits_per_image - e["scores"]).abs().max().item()
e = load_file(folders["multi_input"] + "/expected.safetensors")
for auto in (AutoModel, AutoModelForImageClassification):
    m = auto.from_pretrained(folders["multi_input"], **kw).eval()
    with torch.no_grad():
        report["multi_input_" + auto.__name__] = (m(pixel_values=e["pixel_values"]).logits - e["logits"]).abs().max().item()
e = load_file(folders["classifier"] + "/expected.safetensors")
c = AutoModelForSequenceClassification.from_pretrained(folders["classifier"], **kw).eval()
with torch.no_grad():
    report["classifier"] = (c(input_ids=e["input_ids"], attention_mask=e["attention_mask"]).logits
                            - e["logits"]).abs().max().item()
report["classes"] = type(m).__module__
print("REPORT", __import__("json").dumps(report))
"""


def _report(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def test_every_family_loads_in_a_fresh_process_after_import(saved, tmp_path):
    folders = {k: str(v) for k, v in saved.items()}
    # hf_equivariant first (its face is lazy: registration happens when transformers is imported next)
    prelude = "import hf_equivariant; assert 'transformers' not in sys.modules"
    report = _report(run_python(LOAD_ALL.format(prelude=prelude, folders=folders, kwargs="{}"), tmp_path))
    assert all(v < 1e-5 for k, v in report.items() if k != "classes"), report


def test_every_family_loads_without_importing_the_package(saved, tmp_path):
    """``trust_remote_code=True`` alone: the saved module imports the installed package (as lm-eval's loader does)."""
    folders = {k: str(v) for k, v in saved.items()}
    prelude = "assert 'hf_equivariant' not in sys.modules"
    report = _report(run_python(LOAD_ALL.format(prelude=prelude, folders=folders,
                                                kwargs="{'trust_remote_code': True}"), tmp_path))
    assert all(v < 1e-5 for k, v in report.items() if k != "classes"), report
    assert report["classes"].startswith("hf_equivariant.")
    for folder in saved.values():
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"]["AutoConfig"].startswith("modeling_hf_equivariant.")
        assert (folder / "modeling_hf_equivariant.py").is_file()
        assert not (folder / "modeling.py").exists() and not (folder / "configuration.py").exists()


def test_pipelines_by_folder_without_importing_the_package(saved, tmp_path):
    code = f"""
import sys
from PIL import Image
from transformers import pipeline
text = pipeline("text-generation", model={str(saved['causal_lm'])!r}, trust_remote_code=True)
out = text("the woman worked as a", max_new_tokens=3, do_sample=False)
assert out[0]["generated_text"].startswith("the woman worked as a"), out
image = Image.new("RGB", (16, 16), (120, 30, 200))
for name in ("clip", "siglip"):
    clf = pipeline("zero-shot-image-classification", model={str(saved['clip'])!r}.replace("clip", name),
                   trust_remote_code=True)
    scores = clf(image, candidate_labels=["a photo of a cat", "a photo of a dog"])
    rotated = clf(image.transpose(Image.Transpose.ROTATE_90), candidate_labels=["a photo of a cat", "a photo of a dog"])
    assert {{r["label"]: round(r["score"], 5) for r in scores}} == {{r["label"]: round(r["score"], 5) for r in rotated}}
    assert type(clf.model).__name__.startswith("Equivariant"), type(clf.model)
print("OK", type(text.model).__name__)
"""
    result = run_python(code, tmp_path)
    assert result.returncode == 0 and "OK EquivariantModelForCausalLM" in result.stdout, result.stderr[-3000:]


def test_missing_package_error_says_how_to_install(saved, tmp_path):
    code = f"""
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_equivariant" or name.startswith("hf_equivariant."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
from transformers import AutoModelForCausalLM
try:
    AutoModelForCausalLM.from_pretrained({str(saved['causal_lm'])!r}, trust_remote_code=True)
except ImportError as err:
    print("ERROR", err)
"""
    result = run_python(code, tmp_path)
    assert "ERROR This checkpoint was saved by hf_equivariant" in result.stdout, result.stdout + result.stderr
    assert "pip install" in result.stdout


def test_remote_load_does_not_mark_classes_for_source_copying(saved, tmp_path):
    """A trust_remote_code load calls register_for_auto_class; later saves must not copy the package's source files."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(saved["causal_lm"], trust_remote_code=True)
    model.save_pretrained(tmp_path / "again")
    names = {p.name for p in (tmp_path / "again").iterdir()}
    assert "modeling_hf_equivariant.py" in names and "modeling.py" not in names and "configuration.py" not in names
