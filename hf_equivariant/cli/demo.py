"""``hf-equivariant demo``: the offline fairness demo on the embedded, deliberately biased tiny GPT-2.

It shows, side by side, the unwrapped model, the exact orbit average (``full``), the paper's design 2
(``multi``, representative canonicalisation), anchor-free design 2 (``multi-neutral``) and the default ``auto``:
per prompt the occupation distributions, and per strategy the counterfactual gap, the total variation to the exact
orbit average, the female-minus-male occupation balance and the base-model rows per token.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_GROUPS = ("gender", "race", "religion")
DEFAULT_STRATEGIES = ("base", "full", "multi", "multi-neutral", "auto")
WHY_DEFAULT = ("Default strategy `auto`: the exact orbit average wherever it costs no more than anchor-free multi "
               "(prompts with at most one attribute), else anchor-free multi; the paper's multi answers every variant "
               "like the first word of each set (see docs/fairness.md).")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="offline demo: occupation bias of a tiny GPT-2, before and after the equivariant wrappers",
        description="Load the embedded tiny GPT-2 (trained by the project on a generated corpus with planted "
                    "occupation bias), wrap it with word-swap groups and compare, on intersectional prompts, the "
                    "base model, the exact orbit average and the design-2 strategies: occupation distributions, "
                    "counterfactual gap, distance to the orbit average, gender balance and cost per token.")
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), metavar="NAME",
                        help="built-in word sets forming the product group (default: gender race religion)")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                        help=f"comma-separated strategies to compare (default: {','.join(DEFAULT_STRATEGIES)}; "
                             "also: canonical)")
    parser.add_argument("--top", type=int, default=5, help="occupations shown per prompt (default: 5)")
    parser.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                        help="a prompt to use instead of the built-in ones (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import load_demo_model
    from ..eval.fairness import demo_prompts_path, demo_targets_path, evaluate_fairness, load_prompts

    from ..actions.word_sets import builtin_word_set_names

    if args.top < 1:
        raise ValueError("--top must be at least 1")
    unknown = [g for g in args.groups if g not in builtin_word_set_names()]
    if unknown:
        raise ValueError(f"unknown word set {unknown[0]!r}; built-in sets are {builtin_word_set_names()}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    base, tokenizer = load_demo_model()
    prompts = args.prompt or [p.prompt for p in load_prompts(demo_prompts_path()) if not p.is_agreement]
    report = evaluate_fairness(base, tokenizer, args.groups, prompts, demo_targets_path(), strategies,
                               progress=False, model_name="hf_equivariant demo model")
    if report.meta.get("skipped"):
        raise ValueError(f"strategies not available: {report.meta['skipped']}")
    results = _per_prompt(report, prompts)
    if args.json:
        json.dump({"groups": args.groups, "group_order": report.meta.get("group_order"), "strategies": strategies,
                   "summary": _summary(report), "results": results, "why_default": WHY_DEFAULT}, sys.stdout,
                  indent=2)
        print()
        return 0
    print(_render(report, results, args, base))
    return 0


def _per_prompt(report: Any, prompts: list[str]) -> list[dict[str, Any]]:
    out = []
    for i, prompt in enumerate(prompts):
        row: dict[str, Any] = {"prompt": prompt, "occupations": {}, "counterfactual_gap": {},
                               "tv_to_orbit_average": {}, "rows_per_token": {}}
        for name, metrics in report.strategies.items():
            item = metrics["prompts"][i]
            row["occupations"][name] = item.get("targets", {})
            row["counterfactual_gap"][name] = item["counterfactual_gap"]
            row["tv_to_orbit_average"][name] = item["tv_to_orbit_average"]
            row["rows_per_token"][name] = item.get("rows")
        row["occupations"]["orbit average"] = report.reference["prompts"][i]["targets"]
        out.append(row)
    return out


def _summary(report: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for name, m in report.strategies.items():
        balance = m.get("balance", {}).get("gender", {})
        out[name] = {"counterfactual_gap_max": m["counterfactual_gap"]["max"],
                     "tv_to_orbit_average_mean": m["tv_to_orbit_average"]["mean"],
                     "female_minus_male": balance.get("difference"),
                     "rows_per_token": m.get("rows_per_token"),
                     "copies_per_token": m.get("copies_per_row")}
    return out


def _render(report: Any, results: list[dict[str, Any]], args: argparse.Namespace, base: Any) -> str:
    params = sum(p.numel() for p in base.parameters())
    names = list(report.strategies)
    lines = [
        f"hf_equivariant demo: tiny GPT-2 ({params / 1e6:.2f}M parameters) trained offline on a generated corpus "
        "with planted occupation bias",
        f"group: {' x '.join(args.groups)} = {report.meta.get('group_order')} elements",
        "counterfactual gap = max over group elements g of TV(P(.|x), g^-1 P(.|g.x)); TV to orbit = distance to the "
        "exact orbit average (the fair reference)",
        "",
    ]
    columns = ["orbit average", *names]
    for r in results:
        lines.append(f'Prompt: "{r["prompt"]}"')
        shown: list[str] = []
        for col in ("base", "orbit average"):
            dist = r["occupations"].get(col, {})
            shown += [o for o in sorted(dist, key=dist.get, reverse=True)[:args.top] if o not in shown]
        lines.append("  " + f"{'occupation':<12}" + "".join(f"{c[:13]:>14}" for c in columns))
        for occ in shown:
            lines.append("  " + f"{occ:<12}" + "".join(f"{r['occupations'].get(c, {}).get(occ, float('nan')):>14.3f}"
                                                        for c in columns))
        lines.append("  " + f"{'TV to orbit':<12}" + f"{0.0:>14.3f}" +
                     "".join(f"{r['tv_to_orbit_average'][n]:>14.3f}" for n in names))
        lines.append("  " + f"{'cf. gap':<12}" + f"{0.0:>14.0e}" +
                     "".join(f"{r['counterfactual_gap'][n]:>14.1e}" for n in names))
        lines.append("")
    summary = _summary(report)
    lines.append(f"Over {len(results)} prompts:")
    lines.append(f"  {'strategy':<15}{'rows/token':>11}{'worst cf. gap':>15}{'mean TV to orbit':>18}"
                 f"{'female-male':>13}")
    for name in names:
        s = summary[name]
        fm = "n/a" if s["female_minus_male"] is None else f"{s['female_minus_male']:+.3f}"
        rows = "n/a" if s["rows_per_token"] is None else f"{s['rows_per_token']:.2f}"
        lines.append(f"  {name:<15}{rows:>11}{s['counterfactual_gap_max']:>15.2e}"
                     f"{s['tv_to_orbit_average_mean']:>18.3f}{fm:>13}")
    lines.append("")
    lines.append(WHY_DEFAULT)
    return "\n".join(lines)
