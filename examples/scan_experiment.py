"""SCAN-II add-primitive experiment (paper §5.2): pretrain a small encoder-decoder, then fine-tune it through a wrapper.

Protocol (docs/scan.md):
1. Data: SCAN-II generated from its grammar; the paper's shared training set (no command with "jump", "turn left"
   or "turn up", plus each of the three isolated primitives repeated); validation and an in-distribution
   "random" test set are seeded shares of the primitive-free commands. The test set is every command containing a
   held-out primitive; accuracy is reported on its jump / turn_left / turn_up subsets and on the union.
2. Pretraining: a randomly initialised BART (d_model 64, 2+2 layers) trained with AdamW; the checkpoint with the best
   validation exact match is kept (the test set is never used for selection).
3. Fine-tuning: ``wrap(model)`` for each strategy (``none`` = no wrapper, ``full`` = equitune over the product group,
   ``multi`` = the paper's design 2 with its representative canonicalisation, ``multi_neutral`` = anchor-free
   design 2, ``canonical`` = one copy oriented by the first occurrence of each factor in the command), through
   ``hf_equivariant.EquivariantModelForSeq2SeqLM``, the same number of steps for each,
   checkpoint again chosen on validation.
4. Evaluation: greedy generation, exact match of the whole action sequence; optionally on a fixed seeded sample of
   each primitive's test set (``--test-per-primitive``), with inclusion weights for the estimates.

    python examples/scan_experiment.py                      # 3 seeds, strategy none (~21-25 min on 1 CPU thread)
    python examples/scan_experiment.py --strategies none full multi multi_neutral --test-per-primitive 1000 \
        --random-test-size 1000 --pretrained-dir tmp/scan_pretrained   # the comparison (about an hour)
    python examples/scan_experiment.py --quick              # smoke run, about a minute

Writes ``scan_experiment.json`` (config, every run, summary) and ``scan_experiment.md`` (tables) to ``--out``;
an existing result there is only overwritten with ``--update-results`` (otherwise the run goes to ``tmp/scan/``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # use this checkout's package

import hf_equivariant  # noqa: E402
from hf_equivariant.datasets.scan import (  # noqa: E402
    SCAN_FACTORS,
    Example,
    ScanSplit,
    add_primitive_split,
    build_tokenizer,
    contains_primitive,
    factor_order,
)

SPLIT = "turn_up_jump_turn_left"  # the paper's shared training set; its test set is the union of the three
REPORTED = ("jump", "turn_left", "turn_up", SPLIT)  # test subsets reported
STRATEGY_NAMES = ("none", "full", "multi", "multi_neutral", "canonical", "full_logits", "multi_logits")
WRAPPER_SETTINGS = {  # name -> (strategy, canonicalization, aggregation)
    "full": ("full", "representative", "mean_prob"),
    "multi": ("multi", "representative", "mean_prob"),
    "multi_neutral": ("multi", "neutral", "mean_prob"),
    "canonical": ("canonical", "representative", "mean_prob"),
    "full_logits": ("full", "representative", "mean_logits"),  # the paper's averaging of log-softmax outputs
    "multi_logits": ("multi", "representative", "mean_logits"),
}
RESULT_STEM = "scan_experiment"
Wrap = Callable[[torch.nn.Module], torch.nn.Module]


def copies_per_example(strategy: str) -> int:
    """Forward passes of the base model per example before sharing: 1 (none, canonical), Π|Gi| (full), Σ|Gi|
    (multi)."""
    orders = [factor_order(f) for f in SCAN_FACTORS.values()]
    if strategy in ("none", "canonical"):
        return 1
    return math.prod(orders) if WRAPPER_SETTINGS[strategy][0] == "full" else sum(orders)


# ----------------------------------------------------------------------------------------------- wrappers


def identity_wrap(model: torch.nn.Module) -> torch.nn.Module:
    """Strategy ``none``: the base model itself."""
    return model


def equivariant_wrap(strategy: str, tokenizer: Any) -> Wrap:
    """The wrap function of an equivariant strategy; the one place that connects the experiment to the wrapper.

    The group is ``SCAN_FACTORS`` (verb x left-right x up-down; run, right and down are each cycle's first member,
    so the representative canonicalisation feeds the backbone trained words). One shared vocabulary: each factor is
    one permutation of it moving a command word and its action together. Aggregation is the wrapper's default
    ``mean_prob`` except for the ``*_logits`` variants: ``mean_logits`` averages the copies' logits, which is the
    paper's average of log-softmax outputs up to normalisation. Branch weighting is the default ``size`` (equal to
    the paper's 1/N here, every factor having order 2).
    """
    if not hasattr(hf_equivariant, "EquivariantModelForSeq2SeqLM"):
        raise RuntimeError(f"strategy {strategy!r} needs hf_equivariant.EquivariantModelForSeq2SeqLM, which this "
                           "version of the package does not provide yet; run with --strategies none")
    cls = hf_equivariant.EquivariantModelForSeq2SeqLM
    name, canonicalization, aggregation = WRAPPER_SETTINGS[strategy]

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return cls.from_base(model, tokenizer=tokenizer, factors=SCAN_FACTORS, strategy=name,
                             canonicalization=canonicalization, aggregation=aggregation)

    return wrap


def make_wrap(strategy: str, tokenizer: Any) -> Wrap:
    """``wrap(model) -> model`` for a strategy name."""
    if strategy not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGY_NAMES}")
    return identity_wrap if strategy == "none" else equivariant_wrap(strategy, tokenizer)


# ----------------------------------------------------------------------------------------------- model and data


def build_model(vocab_size: int, tokenizer: Any, args: argparse.Namespace, seed: int) -> torch.nn.Module:
    """A small BART with random weights (seeded)."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=vocab_size, d_model=args.d_model, encoder_layers=args.layers, decoder_layers=args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads, encoder_ffn_dim=4 * args.d_model,
        decoder_ffn_dim=4 * args.d_model, max_position_embeddings=64, dropout=args.dropout,
        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id, forced_eos_token_id=None)
    torch.manual_seed(seed)
    return BartForConditionalGeneration(config)


def generation_config(tokenizer: Any) -> Any:
    """Greedy decoding, up to 48 actions plus end of sequence."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=50, num_beams=1, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                            decoder_start_token_id=tokenizer.bos_token_id)


def encode(tokenizer: Any, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Commands as padded ``input_ids``/``attention_mask``; actions + ``</s>`` as ``labels`` (-100 on padding)."""
    enc = tokenizer([c for c, _ in examples], padding=True, return_tensors="pt")
    labels = tokenizer([a for _, a in examples], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def batches(examples: Sequence[Example], batch_size: int, rng: random.Random) -> Iterator[list[Example]]:
    """Endless shuffled mini-batches (a new permutation every epoch)."""
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield [examples[j] for j in order[i:i + batch_size]]


@torch.no_grad()
def exact_matches(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], batch_size: int,
                  desc: str = "eval") -> list[bool]:
    """Whether greedy decoding reproduces each target action sequence exactly (cut at the first ``</s>``)."""
    model.eval()
    gen_config, eos = generation_config(tokenizer), tokenizer.eos_token_id
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0].split()))  # less padding
    correct = [False] * len(examples)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=len(order) <= batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([examples[i][0] for i in idx], padding=True, return_tensors="pt")
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             generation_config=gen_config)[:, 1:].tolist()  # drop the decoder start token
        for i, ids in zip(idx, out):
            predicted = ids[:ids.index(eos)] if eos in ids else None  # no </s>: wrong
            target = tokenizer(examples[i][1], add_special_tokens=False)["input_ids"]
            correct[i] = predicted == target
    return correct


def accuracy(flags: Sequence[bool], weights: Sequence[float] | None = None) -> float:
    """Exact match in %; with ``weights`` (inverse inclusion probabilities of a sample), the weighted estimate."""
    if weights is None:
        return 100.0 * sum(flags) / max(1, len(flags))
    return 100.0 * sum(w for f, w in zip(flags, weights) if f) / max(1e-12, sum(weights))


# ----------------------------------------------------------------------------------------------- training


def train(model: torch.nn.Module, tokenizer: Any, split: ScanSplit, *, steps: int, lr: float, batch_size: int,
          eval_every: int, seed: int, warmup: int, eval_start: bool, desc: str,
          eval_batch_size: int) -> dict[str, Any]:
    """AdamW with linear warm-up and decay; every ``eval_every`` steps the validation exact match is measured and
    the best state is kept (ties keep the earlier step). Loads the best state into ``model`` before returning."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * max(0.0, (steps - s) / max(1, steps - warmup)))
    rng, history = random.Random(seed), []
    best: dict[str, Any] = {"step": -1, "val": -1.0, "state": None}
    train_seconds = eval_seconds = train_cpu_seconds = 0.0
    rows = []  # base-model rows per example in each training step (after the wrapper's sharing)

    def evaluate(step: int) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        val = accuracy(exact_matches(model, tokenizer, split.validation, eval_batch_size, desc=f"{desc} val"))
        eval_seconds += time.perf_counter() - t
        history.append({"step": step, "val_exact_match": val})
        if val > best["val"]:
            best.update(step=step, val=val, state=copy.deepcopy(model.state_dict()))

    if eval_start:
        evaluate(0)
    stream = batches(split.train, batch_size, rng)
    bar = tqdm(range(1, steps + 1), desc=desc, leave=False)
    for step in bar:
        model.train()
        t, c = time.perf_counter(), time.process_time()
        loss = model(**encode(tokenizer, next(stream))).loss
        rows.append(getattr(model, "last_row_count", batch_size) / batch_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - t
        train_cpu_seconds += time.process_time() - c
        bar.set_postfix(loss=f"{loss.item():.3f}", best_val=f"{best['val']:.1f}")
        if step % eval_every == 0 or step == steps:
            evaluate(step)
    model.load_state_dict(best["state"])
    return {"best_step": best["step"], "best_val_exact_match": best["val"], "history": history,
            "train_seconds": train_seconds, "train_cpu_seconds": train_cpu_seconds, "val_eval_seconds": eval_seconds,
            "train_rows_per_example": statistics.fmean(rows) if rows else 0.0}


def evaluate_test(model: torch.nn.Module, tokenizer: Any, split: ScanSplit, batch_size: int,
                  desc: str, weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Exact match on each reported test subset and on the random (in-distribution) test set, with timing.

    ``weights`` (command -> inverse inclusion probability) turns a sampled test set into estimates of the full
    sets' exact match (see :func:`sample_test`)."""
    t = time.perf_counter()
    flags = exact_matches(model, tokenizer, split.test, batch_size, desc=f"{desc} test")
    w = None if weights is None else [weights[c] for c, _ in split.test]
    scores = {SPLIT: accuracy(flags, w)}
    for name in REPORTED[:-1]:
        primitive = name.replace("_", " ")
        keep = [i for i, (c, _) in enumerate(split.test) if contains_primitive(c, primitive)]
        scores[name] = accuracy([flags[i] for i in keep], None if w is None else [w[i] for i in keep])
    if split.random_test:
        scores["random"] = accuracy(exact_matches(model, tokenizer, split.random_test, batch_size,
                                                  desc=f"{desc} random"))
    return {"exact_match": scores, "test_eval_seconds": time.perf_counter() - t}


# ----------------------------------------------------------------------------------------------- one seed


def pretrained_path(args: argparse.Namespace, seed: int) -> Path | None:
    """Where the pretrained model of ``seed`` is cached (``--pretrained-dir``), keyed by every setting it depends
    on; ``None`` without a cache folder."""
    if args.pretrained_dir is None:
        return None
    keys = ("data_seed", "validation_fraction", "random_test_fraction", "primitive_fraction", "d_model", "layers",
            "heads", "dropout", "batch_size", "pretrain_steps", "lr", "warmup", "eval_every", "eval_batch_size")
    digest = hashlib.sha256(json.dumps({k: getattr(args, k) for k in keys}, sort_keys=True).encode()).hexdigest()
    return Path(args.pretrained_dir) / f"seed{seed}-{digest[:12]}.pt"


def pretrain(seed: int, split: ScanSplit, tokenizer: Any, args: argparse.Namespace,
             common: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The pretrained model of ``seed`` and its training record (reused from ``--pretrained-dir`` if there)."""
    base = build_model(len(tokenizer), tokenizer, args, seed)
    path = pretrained_path(args, seed)
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=True)
        base.load_state_dict(saved["state"])
        return base, {**json.loads(saved["record"]), "reused_from": str(path)}
    pre = train(base, tokenizer, split, steps=args.pretrain_steps, lr=args.lr, seed=seed, warmup=args.warmup,
                eval_start=False, desc=f"seed {seed} pretrain", **common)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": base.state_dict(), "record": json.dumps(pre)}, path)
    return base, pre


def run_seed(seed: int, split: ScanSplit, tokenizer: Any, wraps: dict[str, Wrap],
             args: argparse.Namespace, weights: dict[str, float] | None = None,
             evaluate_pretrained: bool = True) -> dict[str, Any]:
    """Pretrain once, evaluate, then fine-tune a copy of the pretrained model through each wrapper."""
    common = dict(batch_size=args.batch_size, eval_every=args.eval_every, eval_batch_size=args.eval_batch_size)
    base, pre = pretrain(seed, split, tokenizer, args, common)
    result: dict[str, Any] = {"seed": seed, "pretrain": pre, "strategies": {}}
    if evaluate_pretrained:
        result["strategies"]["pretrained"] = {
            **evaluate_test(base, tokenizer, split, args.eval_batch_size, f"seed {seed} pretrained", weights),
            "copies_per_example": 1}
    for name, wrap in wraps.items():
        model = wrap(copy.deepcopy(base))
        fine = train(model, tokenizer, split, steps=args.finetune_steps, lr=args.finetune_lr, seed=seed + 1000,
                     warmup=0, eval_start=True, desc=f"seed {seed} fine-tune {name}", **common)
        result["strategies"][name] = {**fine, **evaluate_test(model, tokenizer, split, args.eval_batch_size,
                                                               f"seed {seed} {name}", weights),
                                      "copies_per_example": copies_per_example(name)}
    return result


# ----------------------------------------------------------------------------------------------- reporting


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per strategy: exact match per test set and timings."""
    summary: dict[str, Any] = {}
    for name in runs[0]["strategies"]:
        rows = [r["strategies"][name] for r in runs]
        entry = {"exact_match": {k: mean_std([r["exact_match"][k] for r in rows]) for k in rows[0]["exact_match"]},
                 "copies_per_example": rows[0]["copies_per_example"],
                 "test_eval_seconds": mean_std([r["test_eval_seconds"] for r in rows])}
        if "train_seconds" in rows[0]:
            entry["finetune_train_seconds"] = mean_std([r["train_seconds"] for r in rows])
            entry["finetune_train_cpu_seconds"] = mean_std([r["train_cpu_seconds"] for r in rows])
            entry["finetune_val_eval_seconds"] = mean_std([r["val_eval_seconds"] for r in rows])
            entry["best_step"] = [r["best_step"] for r in rows]
            entry["train_rows_per_example"] = mean_std([r.get("train_rows_per_example", 1.0) for r in rows])
        summary[name] = entry
    summary["pretrain"] = {"train_seconds": mean_std([r["pretrain"]["train_seconds"] for r in runs]),
                           "train_cpu_seconds": mean_std([r["pretrain"]["train_cpu_seconds"] for r in runs]),
                           "best_val_exact_match": mean_std([r["pretrain"]["best_val_exact_match"] for r in runs]),
                           "best_step": [r["pretrain"]["best_step"] for r in runs]}
    return summary


def _cell(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def markdown(results: dict[str, Any]) -> str:
    """The result tables as markdown."""
    summary, cfg = results["summary"], results["config"]
    strategies = [k for k in summary if k != "pretrain"]
    columns = [k for k in (*REPORTED, "random") if k in summary[strategies[0]]["exact_match"]]
    lines = [f"# SCAN-II add-primitive (exact match %, mean ± std over seeds {cfg['seeds']})", "",
             f"Split sizes: {results['split_sizes']}. Model: BART d_model {cfg['d_model']}, {cfg['layers']}+"
             f"{cfg['layers']} layers, {results['parameters']:,} parameters, random init. Pretraining "
             f"{cfg['pretrain_steps']} steps, fine-tuning {cfg['finetune_steps']} steps, batch {cfg['batch_size']}; "
             "checkpoints chosen on validation exact match. Test columns: commands containing the primitive "
             f"(`{SPLIT}` = all of them); `random` = held-out primitive-free commands.", ""]
    sample = results.get("test_sample")
    if sample:
        lines += [f"Test sets are a fixed seeded sample (seed {sample['seed']}; the same commands for every seed and "
                  f"strategy): {sample['per_primitive']} commands drawn from each primitive's test set "
                  f"({sample['sizes']['test']:,} distinct commands) and {sample['sizes']['random_test']:,} of the "
                  "random test set. Every column is an estimate of the full set's exact match: commands are "
                  "weighted by their inverse probability of being drawn (a command with two primitives could be "
                  "drawn for either).", ""]
    lines += ["| model | copies | " + " | ".join(columns)
              + " | rows/example | fine-tune train s | (CPU s) | fine-tune val s | test eval s |",
              "|---|---|" + "---|" * len(columns) + "---|---|---|---|---|"]
    for name in strategies:
        s = summary[name]
        ft = [_cell(s[k]) if k in s else "-"
              for k in ("train_rows_per_example", "finetune_train_seconds", "finetune_train_cpu_seconds",
                        "finetune_val_eval_seconds")]
        lines.append(f"| {name} | {s['copies_per_example']} | " + " | ".join(_cell(s["exact_match"][c])
                     for c in columns) + " | " + " | ".join(ft) + f" | {_cell(s['test_eval_seconds'])} |")
    lines += ["", "`copies`: base-model rows per example before sharing (Π|Gi| = 8 for `full`, Σ|Gi| = 6 for "
              "`multi`); `rows/example`: rows actually run per training example after copies with identical "
              "(command, target) sequences are merged (mean over fine-tuning steps). `multi` is the paper's design 2 "
              "(representative canonicalisation to run/right/down); `multi_neutral` is anchor-free design 2; "
              "`canonical` runs one copy, oriented by the first word of each factor in the command. "
              "Aggregation: mean of probabilities (`mean_prob`, the wrapper's default), except `*_logits`: mean of "
              "the copies' logits (`mean_logits`), which is the paper's average of log-softmax outputs up to "
              "normalisation."]
    pre = summary["pretrain"]
    reused = results.get("pretrained_reused") or []
    origin = " (records of the run that produced the reused checkpoints)" if reused else ""
    lines += ["", f"Pretraining{origin}: {_cell(pre['train_seconds'])} s of training per seed (CPU time "
              f"{_cell(pre['train_cpu_seconds'])} s), best validation exact match "
              f"{_cell(pre['best_val_exact_match'])} at steps {pre['best_step']}. Total wall time "
              f"{results['wall_seconds'] / 60:.1f} min on {results['environment']['threads']} CPU thread(s).", ""]
    return "\n".join(lines)


def output_paths(out: Path, update: bool) -> tuple[Path, Path]:
    """Where to write; an existing result is kept unless ``update`` (the run then goes to ``tmp/scan/``)."""
    json_path, md_path = out / f"{RESULT_STEM}.json", out / f"{RESULT_STEM}.md"
    if (json_path.exists() or md_path.exists()) and not update:
        out = Path(__file__).resolve().parents[1] / "tmp" / "scan"
        print(f"{json_path} exists and --update-results was not given: writing to {out}/ instead")
        json_path, md_path = out / f"{RESULT_STEM}.json", out / f"{RESULT_STEM}.md"
    return json_path, md_path


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--strategies", nargs="+", default=["none"], choices=STRATEGY_NAMES,
                   help="fine-tuning wrappers (full/multi need hf_equivariant.EquivariantModelForSeq2SeqLM)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model and batch-order seeds")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/validation/random-test partition")
    p.add_argument("--validation-fraction", type=float, default=0.05)
    p.add_argument("--random-test-fraction", type=float, default=0.05)
    p.add_argument("--primitive-fraction", type=float, default=0.06, help="copies of each isolated primitive, as "
                   "a share of the primitive-free training commands (the paper's 6%%)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--finetune-steps", type=int, default=600)
    p.add_argument("--finetune-lr", type=float, default=2e-4)
    p.add_argument("--eval-every", type=int, default=300, help="validation interval in steps")
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--test-per-primitive", type=int, default=None,
                   help="evaluate on a fixed seeded sample of this many commands of each primitive's test set "
                        "(default: the whole test set)")
    p.add_argument("--random-test-size", type=int, default=None,
                   help="evaluate on a fixed seeded sample of the random test set (default: all of it)")
    p.add_argument("--pretrained-dir", type=Path, default=None,
                   help="cache pretrained models here and reuse them (keyed by the settings they depend on)")
    p.add_argument("--extend", action="store_true",
                   help="add --strategies to the results in --out (same seeds, data, test sample and pretrained "
                        "models, reused from --pretrained-dir) instead of starting a new result")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "scan")
    p.add_argument("--update-results", action="store_true", help="overwrite an existing result in --out")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, few steps, subsampled evaluation")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.pretrain_steps, args.finetune_steps, args.eval_every = args.seeds[:1], 60, 20, 30
        args.out = Path(__file__).resolve().parents[1] / "tmp" / "scan_quick"
        args.update_results = True
    return args


def sample_test(split: ScanSplit, per_primitive: int | None, random_size: int | None,
                seed: int) -> tuple[ScanSplit, dict[str, float] | None]:
    """The split with a fixed seeded sample of each primitive's test set and of the random test set, and the
    inverse inclusion probability of each sampled command (``None`` when nothing is sampled).

    Each primitive's test set is sampled on its own (``per_primitive`` commands, without replacement), so a command
    with several primitives is drawn with probability ``1 - prod_p (1 - n_p / |T_p|)``; weighting by its inverse
    makes every reported exact match an unbiased-in-ratio estimate of the full set's.
    """
    if per_primitive is None and random_size is None:
        return split, None
    rng = random.Random(seed)
    chosen: set[str] = set()
    keep = {}
    for p in split.primitives:
        pool = split.test_subset(p)
        n = len(pool) if per_primitive is None else min(per_primitive, len(pool))
        keep[p] = n / len(pool)
        chosen.update(c for c, _ in rng.sample(pool, n))
    test = [ex for ex in split.test if ex[0] in chosen]
    weights = {c: 1.0 / (1.0 - math.prod(1.0 - keep[p] for p in split.primitives if contains_primitive(c, p)))
               for c, _ in test}
    random_test = split.random_test
    if random_size is not None and random_size < len(random_test):
        picked = set(rng.sample(range(len(random_test)), random_size))
        random_test = [ex for i, ex in enumerate(random_test) if i in picked]
    return dataclasses.replace(split, test=test, random_test=random_test), weights


def subsample(split: ScanSplit, n: int, seed: int) -> ScanSplit:
    """The split with validation and test sets cut to ``n`` examples each (for --quick)."""
    rng = random.Random(seed)
    cut = {k: rng.sample(getattr(split, k), min(n, len(getattr(split, k))))
           for k in ("validation", "test", "random_test")}
    return dataclasses.replace(split, **cut)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer("scan2")
    try:  # fail now, not after pretraining
        wraps = {name: make_wrap(name, tokenizer) for name in args.strategies}
    except RuntimeError as err:
        raise SystemExit(f"error: {err}") from None
    split = add_primitive_split(SPLIT, "scan2", validation_fraction=args.validation_fraction,
                                random_test_fraction=args.random_test_fraction,
                                primitive_fraction=args.primitive_fraction, seed=args.data_seed)
    if args.quick:
        split = subsample(split, 256, args.data_seed)
    full_sizes = {name: (len(split.test) if name == SPLIT else len(split.test_subset(name.replace("_", " "))))
                  for name in REPORTED}
    split_sizes = split.sizes()
    split, weights = sample_test(split, args.test_per_primitive, args.random_test_size, args.data_seed)
    if args.extend:
        return extend_results(args, split, tokenizer, wraps, weights)
    json_path, md_path = output_paths(args.out, args.update_results)
    start = time.perf_counter()
    runs = [run_seed(seed, split, tokenizer, wraps, args, weights) for seed in tqdm(args.seeds, desc="seeds")]
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "split": SPLIT, "split_sizes": split_sizes,
        "test_sizes": full_sizes,
        "test_sample": None if weights is None else {
            "seed": args.data_seed, "per_primitive": args.test_per_primitive,
            "sizes": {"test": len(split.test), "random_test": len(split.random_test),
                      **{name: len(split.test_subset(name.replace("_", " "))) for name in REPORTED[:-1]}}},
        "pretrained_reused": [r["pretrain"]["reused_from"] for r in runs if "reused_from" in r["pretrain"]],
        "parameters": sum(p.numel() for p in build_model(len(tokenizer), tokenizer, args, 0).parameters()),
        "summary": summarise(runs), "runs": runs, "wall_seconds": time.perf_counter() - start,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__, "threads": args.threads,
                        "machine": platform.machine()},
    }
    return write_results(results, json_path, md_path)


def write_results(results: dict[str, Any], json_path: Path, md_path: Path) -> dict[str, Any]:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    print(f"wrote {json_path} and {md_path}")
    return results


#: Settings an extension must share with the result it extends (data, pretraining, test sample, fine-tuning).
SHARED_SETTINGS = ("seeds", "data_seed", "validation_fraction", "random_test_fraction", "primitive_fraction",
                   "d_model", "layers", "heads", "dropout", "batch_size", "pretrain_steps", "lr", "warmup",
                   "finetune_steps", "finetune_lr", "eval_every", "eval_batch_size", "test_per_primitive",
                   "random_test_size", "threads")


def extend_results(args: argparse.Namespace, split: ScanSplit, tokenizer: Any, wraps: dict[str, Wrap],
                   weights: dict[str, float] | None) -> dict[str, Any]:
    """Run ``wraps`` for the seeds of the result in ``args.out`` and add them to it (pretrained models must come
    from ``--pretrained-dir``, so every strategy fine-tunes the same checkpoints)."""
    json_path, md_path = args.out / f"{RESULT_STEM}.json", args.out / f"{RESULT_STEM}.md"
    results = json.loads(json_path.read_text(encoding="utf-8"))
    old = results["config"]
    differ = [k for k in SHARED_SETTINGS if old.get(k) != getattr(args, k)]
    if differ:
        raise SystemExit(f"error: --extend needs the settings of {json_path}; these differ: {differ}")
    if args.pretrained_dir is None or not all(pretrained_path(args, s).exists() for s in args.seeds):
        raise SystemExit("error: --extend needs the pretrained models of the result in --pretrained-dir")
    done = set(results["runs"][0]["strategies"])
    wraps = {name: wrap for name, wrap in wraps.items() if name not in done}
    start = time.perf_counter()
    for run in tqdm(results["runs"], desc="seeds"):
        new = run_seed(run["seed"], split, tokenizer, wraps, args, weights, evaluate_pretrained=False)
        run["strategies"].update(new["strategies"])
    seconds = time.perf_counter() - start
    old["strategies"] = [*old["strategies"], *wraps]
    results.setdefault("extensions", []).append({"strategies": list(wraps), "wall_seconds": seconds})
    results["wall_seconds"] += seconds
    results["summary"] = summarise(results["runs"])
    return write_results(results, json_path, md_path)


if __name__ == "__main__":
    main()
