"""Benchmark: peak memory of the causal-LM wrapper with and without ``max_rows``, and of a 1000-word set.

Each configuration runs in a fresh subprocess that reports the growth of its peak resident memory (``VmHWM`` minus
the resident memory before the measured work), so configurations cannot reuse each other's freed memory. The capped
and uncapped runs must produce the same logits (checked).

- ``copies``: 5 custom factors of order 3 (243 copies with the ``full`` strategy, every factor present in the
  prompt, so all 243 rows are distinct), a 15-token prompt, a tiny GPT-2 with the real GPT-2 vocabulary size
  (50,257), ``max_rows`` unbounded vs 4.
- ``word_set``: one factor cycling 1000 words (a cyclic group of order 1000): build it, wrap a tiny model and run a
  forward with one of the words.

    python -m benchmarks memory                     # writes outputs/benchmarks/memory_cpu.{json,md}
    python -m benchmarks memory --update-results    # ... to benchmarks/results/ (what the README quotes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

_PRELUDE = r'''
import json, sys, torch
torch.set_num_threads(1)
def rss_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
import hf_equivariant as he
from transformers import GPT2Config, GPT2LMHeadModel
from hf_equivariant.testing import word_level_tokenizer
'''

_COPIES = _PRELUDE + r'''
max_rows, out_path, n_factors = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
words = [f"a{i}" for i in range(15)] + [f"f{k}m{j}" for k in range(5) for j in range(3)]
tok = word_level_tokenizer(words)
torch.manual_seed(0)
base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=50257)).eval()
factors = [he.WordSwap.from_words(tok, [[f"f{k}m{j}" for j in range(3)]], name=f"f{k}") for k in range(n_factors)]
model = he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=factors, strategy="full",
                                                 max_rows=max_rows).eval()
text = " ".join(["a0", "f0m1", "a1", "f1m2", "a2", "f2m0", "a3", "f3m1", "a4", "f4m2", "a5", "a6", "a7", "a8"])
ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
before = rss_mb("VmRSS")
with torch.no_grad():
    logits = model(input_ids=ids).logits
peak = rss_mb("VmHWM") - before
torch.save(logits, out_path)
print(json.dumps({"peak_mb": peak, "rows": model.last_row_count, "copies": model.copies_per_row,
                  "tokens": int(ids.shape[1])}))
'''

_WORD_SET = _PRELUDE + r'''
before = rss_mb("VmRSS")
words = [f"w{i}" for i in range(1000)]
tok = word_level_tokenizer(words + ["the", "said"])
swap = he.WordSwap.from_words(tok, [words], name="many")
torch.manual_seed(0)
base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok))).eval()
model = he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=[swap], strategy="multi").eval()
ids = tok("the w17 said", return_tensors="pt", add_special_tokens=False)["input_ids"]
with torch.no_grad():
    model(input_ids=ids)
print(json.dumps({"peak_mb": rss_mb("VmHWM") - before, "group_order": swap.order, "rows": model.last_row_count}))
'''


def run(script: str, *args: str) -> dict[str, Any]:
    """Run a measurement script in a fresh interpreter and return its JSON line."""
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_copies(max_rows: int | None, logits_path: str, factors: int = 5) -> dict[str, Any]:
    return run(_COPIES, json.dumps(max_rows), logits_path, str(factors))


def measure_word_set() -> dict[str, Any]:
    return run(_WORD_SET)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT.parent / "outputs" / "benchmarks"),
                        help="folder for the results (default: outputs/benchmarks)")
    parser.add_argument("--update-results", action="store_true",
                        help="write to benchmarks/results/, the files the README quotes")
    args = parser.parse_args(argv)
    import torch

    out = Path(ROOT / "results" if args.update_results else args.output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        free = measure_copies(None, f"{tmp}/free.pt")
        capped = measure_copies(4, f"{tmp}/capped.pt")
        same = torch.allclose(torch.load(f"{tmp}/free.pt"), torch.load(f"{tmp}/capped.pt"), atol=1e-5, rtol=0)
    words = measure_word_set()
    result = {"copies": {"unbounded": free, "max_rows_4": capped, "ratio": capped["peak_mb"] / free["peak_mb"],
                         "identical_logits": bool(same)},
              "word_set_1000": words}
    lines = [
        "| configuration | copies / distinct rows | peak memory growth (MB) |",
        "|---|---|---|",
        f"| 5 factors of order 3, full, 15 tokens, max_rows=None | {free['copies']} / {free['rows']} | "
        f"{free['peak_mb']:.0f} |",
        f"| same, max_rows=4 | {capped['copies']} / {capped['rows']} | {capped['peak_mb']:.0f} "
        f"({100 * result['copies']['ratio']:.0f}% of unbounded; identical logits: {same}) |",
        f"| one 1000-word set (order 1000), multi, build + wrap + forward | {words['group_order']} / {words['rows']} | "
        f"{words['peak_mb']:.0f} |",
    ]
    table = "\n".join(lines)
    print(table)
    (out / "memory_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "memory_cpu.md").write_text("Peak resident-memory growth per configuration, each in a fresh process "
                                       "(CPU, 1 thread; `python -m benchmarks memory`).\n\n" + table + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
