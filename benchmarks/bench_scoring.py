"""Benchmark: scoring long prompts (full-sequence forwards) and generating after them, per strategy.

GPT-2-small-sized model (124M parameters, random weights) with the real GPT-2 vocabulary, gender x race x religion.
Prompts of 128, 512 and 1,000 tokens of neutral filler text with no demographic word, one (" woman") or several
(" Black", " woman", " Muslim") placed at 10 %, 50 % or 90 % of the prompt. For the base model and each strategy:
distinct base rows, wall time relative to the base model, relative to the *floor* (the base model run on the same
number of distinct rows, batched: what sharing alone could cost at best without forking) and the peak memory growth.
Full-sequence forwards (what evaluation harnesses, perplexity and ``labels`` losses do) and greedy generation of a
few tokens after the prompt. Times are medians of interleaved repeats after a warm-up, all in one run.

    python -m benchmarks scoring                    # writes outputs/benchmarks/scoring_<device>.{json,md}
    python -m benchmarks scoring --update-results   # ... to benchmarks/results/ (what the README quotes)
    python -m benchmarks scoring --quick            # 128-token prompts only (smoke test)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent
STRATEGIES: dict[str, dict[str, Any]] = {
    "full": dict(strategy="full"),
    "multi": dict(strategy="multi", canonicalization="representative"),
    "multi-neutral": dict(strategy="multi", canonicalization="neutral"),
    "auto": dict(strategy="auto"),
}
FILLER = ("The committee met in the old hall to discuss the budget for the coming year and the plans for the new "
          "library, which had been delayed by the weather and by a long argument about the roof and the windows. ")
WORDS = {"one": [" woman"], "several": [" Black", " woman", " Muslim"]}


def build_prompt(tok: Any, length: int, kind: str, where: float, support: set[int]) -> torch.Tensor:
    """``length`` filler tokens (none of them moved by the group) with the demographic words of ``kind`` at
    ``where`` (fraction of the prompt)."""
    ids = [t for t in tok(FILLER * (length // 20 + 2))["input_ids"] if t not in support][:length]
    if kind != "none":
        words = [tok(w, add_special_tokens=False)["input_ids"][0] for w in WORDS[kind]]
        at = int(where * length)
        ids[at:at + len(words)] = words
    return torch.tensor([ids])


def median_time(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", default="128,512,1000", help="prompt lengths (default: 128,512,1000)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed repeats (default: 2)")
    parser.add_argument("--full-up-to", type=int, default=128,
                        help="run the full strategy (prod |Gi| rows) only on prompts up to this length (default: 128)")
    parser.add_argument("--several-at-10-up-to", type=int, default=512,
                        help="several words at 10%% only on prompts up to this length (default: 512)")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated after the prompt (default: 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="128-token prompts, 1 repeat (smoke test)")
    parser.add_argument("--small", action="store_true", help="a tiny model instead of GPT-2 small")
    parser.add_argument("--output", default=str(ROOT.parent / "outputs" / "benchmarks"),
                        help="folder for the results (default: outputs/benchmarks)")
    parser.add_argument("--update-results", action="store_true", help="write to benchmarks/results/")
    args = parser.parse_args(argv)
    from transformers import GPT2Config, GPT2LMHeadModel

    import hf_equivariant as he
    from benchmarks.bench_generation import PeakMemory, count_rows, gpt2_tokenizer

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4) if args.small else GPT2Config(n_positions=1024)
    base = GPT2LMHeadModel(config).to(device).eval()
    models = {name: he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=["gender", "race", "religion"],
                                                             **opts).eval() for name, opts in STRATEGIES.items()}
    support = set(models["full"].action.support("cpu").tolist())
    rows_seen = count_rows(base)
    lengths = [128] if args.quick else [int(x) for x in args.lengths.split(",")]
    repeats = 1 if args.quick else args.repeats
    cases = [("none", 0.0)] + [(kind, where) for kind in ("one", "several") for where in (0.1, 0.5, 0.9)]
    gen_kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                      pad_token_id=tok.eos_token_id)
    rows_out: list[dict[str, Any]] = []
    total = len(lengths) * len(cases)
    bar = tqdm(total=total, desc="scoring", unit="prompt")
    with torch.no_grad():
        for length in lengths:
            for kind, where in cases:
                if kind == "several" and where == 0.1 and length > args.several_at_10_up_to:
                    bar.update()
                    continue
                ids = build_prompt(tok, length, kind, where, support).to(device)
                chosen = {name: m for name, m in models.items() if name != "full" or length <= args.full_up_to}
                mask = torch.ones_like(ids)
                tasks = {
                    "forward": {name: (lambda m=m: m(input_ids=ids, attention_mask=mask))
                                for name, m in {"base": base, **chosen}.items()},
                    "generate": {name: (lambda m=m: m.generate(input_ids=ids, attention_mask=mask, **gen_kwargs))
                                 for name, m in {"base": base, **chosen}.items()},
                }
                for task, fns in tasks.items():
                    distinct, memory, outputs = {}, {}, {}
                    for name, fn in fns.items():  # warm up, count rows, peak memory, reference output
                        rows_seen.clear()
                        with PeakMemory(device) as peak:
                            out = fn()
                        distinct[name] = max(rows_seen) if rows_seen else 1
                        memory[name] = peak.peak_mb
                        outputs[name] = out if task == "generate" else None
                    floors = {}
                    for name, r in distinct.items():
                        batch_ids = ids.expand(r, -1)
                        batch_mask = mask.expand(r, -1)
                        floors[name] = (lambda b=batch_ids, mk=batch_mask: base(input_ids=b, attention_mask=mk)) \
                            if task == "forward" else \
                            (lambda b=batch_ids, mk=batch_mask: base.generate(input_ids=b, attention_mask=mk,
                                                                              **gen_kwargs))
                    times: dict[str, list[float]] = {k: [] for k in fns}
                    floor_times: dict[int, list[float]] = {}
                    for round_ in range(repeats):  # interleaved: every configuration once per round
                        for name, fn in fns.items():
                            times[name].append(median_time(fn, device))
                        if round_ == 0:  # the floor once per distinct row count (base on r rows, batched)
                            for r in sorted(set(distinct.values())):
                                floor_times.setdefault(r, []).append(
                                    median_time(floors[next(n for n, v in distinct.items() if v == r)], device))
                    base_time = statistics.median(times["base"])
                    for name in fns:
                        t = statistics.median(times[name])
                        floor = statistics.median(floor_times[distinct[name]])
                        rows_out.append({
                            "length": length, "words": kind, "where": where, "task": task, "config": name,
                            "distinct_rows": distinct[name], "seconds": t, "vs_base": t / base_time,
                            "vs_floor": t / floor, "peak_memory_mb": memory[name],
                            "same_tokens_as_auto": (bool(torch.equal(outputs[name], outputs["auto"]))
                                                    if task == "generate" and name in ("full", "auto") else None),
                        })
                bar.update()
    bar.close()
    out = Path(ROOT / "results" if args.update_results else args.output)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(), "model_parameters": sum(p.numel() for p in base.parameters()),
            "repeats": repeats, "new_tokens": args.new_tokens, "strategies": STRATEGIES}
    stem = out / f"scoring_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows_out}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(render(rows_out, meta) + "\n")
    print(render(rows_out, meta))
    return 0


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Scoring benchmark ({meta['device']}, {meta['threads']} threads, GPT-2-small size, "
             f"{meta['model_parameters'] / 1e6:.0f}M parameters, random weights, real GPT-2 vocabulary; gender x race "
             "x religion). Time vs base = wall time / base model's; vs floor = wall time / base model on the same "
             "number of distinct rows, batched.", "",
             "| prompt | words | task | config | distinct rows | time vs base | time vs floor | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        where = "" if r["words"] == "none" else f" at {int(100 * r['where'])}%"
        lines.append(f"| {r['length']} | {r['words']}{where} | {r['task']} | {r['config']} | {r['distinct_rows']} | "
                     f"{r['vs_base']:.2f}x | {r['vs_floor']:.2f}x | {r['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
