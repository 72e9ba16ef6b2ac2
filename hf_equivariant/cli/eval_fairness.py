"""``hf-equivariant eval-fairness``: fairness metrics of base/full/multi/canonical/... on a causal LM.

Examples::

    hf-equivariant eval-fairness demo --strategies base,full,multi,canonical --output results/
    hf-equivariant eval-fairness gpt2 --groups gender race --prompts prompts.json --targets occupations.json \\
        --samples 20 --classifier ./regard-classifier --output results/
    accelerate launch --num_processes 2 -m hf_equivariant eval-fairness demo --output results/

Under ``accelerate launch`` (or ``torchrun``) the prompts are split between the processes and the main process
prints and writes the one result.

Only the standard library is imported at module level, so ``--help`` stays fast; the work happens in :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["register", "run"]

DEFAULT_GROUPS = ("gender", "race", "religion")
DEFAULT_STRATEGIES = "base,full,multi,canonical"


def register(subparsers: Any) -> None:
    """Add the ``eval-fairness`` sub-command."""
    p = subparsers.add_parser(
        "eval-fairness",
        help="fairness metrics (counterfactual gap, TV to the orbit average, balance, anchor sensitivity, ...)",
        description="Compare the base model and its equivariant wrappers on prompts: counterfactual gap, total "
                    "variation to the exact orbit average, per-factor target balance, anchor sensitivity (word-set "
                    "order reversed), agreement margin and, with --samples, classifier gaps and demographic "
                    "representation of sampled continuations. Writes JSON, markdown and PNG plots to --output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL",
                   help="base causal LM: Hub id, local folder, or 'demo' for the embedded demo model")
    p.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), metavar="NAME",
                   help="built-in word sets forming the product group (space or comma separated)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="prompt file (JSON or one prompt per line); default for 'demo': the built-in demo prompts")
    p.add_argument("--targets", default=None, metavar="FILE",
                   help="target words with associations (JSON or one word per line); default for 'demo': the "
                        "16 occupations")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated names: base, full, multi, multi-neutral, canonical, auto, or 'all'")
    p.add_argument("--output", default=None, metavar="DIR", help="folder for PREFIX.json, PREFIX.md and PNG plots")
    p.add_argument("--prefix", default="fairness",
                   help="file name stem: PREFIX.json, PREFIX.md, PREFIX_metrics.png, PREFIX_targets_<factor>.png")
    p.add_argument("--samples", type=int, default=0, help="continuations sampled per demographic variant")
    p.add_argument("--max-new-tokens", type=int, default=20, help="length of sampled continuations")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling (0: the full distribution)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the same draws for every strategy)")
    p.add_argument("--classifier", default=None, metavar="NAME_OR_PATH",
                   help="text-classification model scoring sampled continuations (needs --samples > 0)")
    p.add_argument("--score-text", default="continuation", choices=("continuation", "full"),
                   help="what the classifier reads: the continuation only, or prompt variant + continuation")
    p.add_argument("--association-margin", type=float, default=0.0,
                   help="estimated associations need the best member to beat the runner-up by this ratio")
    p.add_argument("--max-rows", type=int, default=None, help="cap on base-model rows per forward call")
    p.add_argument("--device", default="cpu", help="cpu, cuda (each launched process uses its own GPU) or cuda:N")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="load the model in this dtype (default: as saved)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _usage_error(message: str) -> int:
    print(f"hf-equivariant eval-fairness: error: {message}", file=sys.stderr)
    return 2


def _split(values: list[str] | str) -> list[str]:
    items = [values] if isinstance(values, str) else values
    return [x.strip() for v in items for x in v.split(",") if x.strip()]


def _check_args(args: argparse.Namespace) -> str | None:
    """A usage problem found before anything heavy is loaded, or ``None``."""
    from ..actions.tokens import builtin_word_set_names
    from ..eval.fairness import STRATEGY_TABLE

    strategies = _split(args.strategies)
    known = ["base", *STRATEGY_TABLE]
    unknown = [s for s in strategies if s not in known and s != "all"]
    if unknown or not strategies:
        return f"unknown strategy {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)} or all"
    groups = _split(args.groups)
    bad = [g for g in groups if g not in builtin_word_set_names()]
    if bad or not groups:
        return f"unknown word set {', '.join(bad) or '(none given)'}; built-in sets: {builtin_word_set_names()}"
    for flag in ("prompts", "targets"):
        path = getattr(args, flag)
        if path is not None and not os.path.isfile(path):
            return f"--{flag} file not found: {path}"
    if args.prompts is None and args.model != "demo":
        return "--prompts FILE is required unless MODEL is 'demo'"
    if args.samples < 0 or args.max_new_tokens < 1 or args.top_k < 0:
        return "--samples and --top-k must be >= 0 and --max-new-tokens >= 1"
    if args.classifier is not None and args.samples == 0:
        return "--classifier scores sampled continuations: give --samples N (N > 0)"
    if not args.prefix or os.sep in args.prefix:
        return "--prefix must be a non-empty file name stem"
    if args.max_rows is not None and args.max_rows < 1:
        return "--max-rows must be positive"
    return None


def _command_line(args: argparse.Namespace) -> str:
    """The options that shape the numbers, as a command to rerun (paths as given)."""
    parts = ["hf-equivariant eval-fairness", args.model, "--groups", *_split(args.groups),
             "--strategies", ",".join(_split(args.strategies))]
    for flag in ("prompts", "targets", "classifier"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    if args.samples:
        parts += ["--samples", str(args.samples), "--max-new-tokens", str(args.max_new_tokens), "--top-k",
                  str(args.top_k), "--seed", str(args.seed), "--score-text", args.score_text]
    if args.association_margin:
        parts += ["--association-margin", str(args.association_margin)]
    return " ".join(parts)


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    """Parse the prompt and target files (or the demo defaults); raises ``ValueError`` on malformed files."""
    from ..eval.fairness import demo_prompts_path, demo_targets_path, load_prompts, load_targets

    demo = args.model == "demo"
    prompts = load_prompts(args.prompts or demo_prompts_path())
    target_file = args.targets or (demo_targets_path() if demo else None)
    return prompts, None if target_file is None else load_targets(target_file)


def _load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch

    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.model == "demo":
        from ..demo import load_demo_model

        model, tokenizer = load_demo_model(args.device)
        return (model.to(dtype) if dtype is not None else model), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .lm import check_model_path

    check_model_path(args.model, "model")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    loading = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(args.model, **loading).to(args.device).eval()
    return model, tokenizer


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the markdown table and write the outputs; returns the exit code."""
    problem = _check_args(args)
    if problem:
        return _usage_error(problem)
    try:
        prompts, targets = _load_inputs(args)
    except (ValueError, FileNotFoundError) as err:
        return _usage_error(str(err))
    from ..eval.fairness import STRATEGY_TABLE, evaluate_fairness

    strategies = _split(args.strategies)
    if "all" in strategies:
        strategies = ["base", *STRATEGY_TABLE]
    from ..eval.distributed import current_shards

    shards = current_shards()
    args.device = shards.device(args.device)
    model, tokenizer = _load_model(args)
    report = evaluate_fairness(
        model, tokenizer, _split(args.groups), prompts, targets, strategies, samples=args.samples,
        max_new_tokens=args.max_new_tokens, top_k=args.top_k, seed=args.seed, classifier=args.classifier,
        score_text=args.score_text, association_margin=args.association_margin,
        wrapper_kwargs={"max_rows": args.max_rows} if args.max_rows else None, progress=not args.no_progress,
        model_name=args.model, shards=shards)
    if not shards.is_main:
        return 0
    table = report.to_markdown()
    print(table)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        report.to_json(os.path.join(args.output, f"{args.prefix}.json"))
        with open(os.path.join(args.output, f"{args.prefix}.md"), "w", encoding="utf-8") as f:
            f.write(f"# Fairness evaluation: {args.model}\n\n`{_command_line(args)}`\n\n{table}")
        written = [f"{args.prefix}.json", f"{args.prefix}.md"]
        if not args.no_plots:
            written += [p.name for p in report.plot(args.output, prefix=f"{args.prefix}_")]
        print(f"wrote {', '.join(written)} to {args.output}", file=sys.stderr)
    return 0
