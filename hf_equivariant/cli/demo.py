"""``hf-equivariant demo``: the offline fairness demo on the embedded, deliberately biased tiny GPT-2."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_GROUPS = ("gender", "race", "religion")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="offline demo: occupation bias of a tiny GPT-2, before and after the equivariant wrapper",
        description="Load the embedded tiny GPT-2 (trained by the project on a generated corpus with planted "
                    "occupation bias), wrap it with word-swap groups and print, for intersectional prompts, the "
                    "occupation distributions, the counterfactual gap and the cost per token.")
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), metavar="NAME",
                        help="built-in word sets forming the product group (default: gender race religion)")
    parser.add_argument("--strategy", default="multi", choices=("full", "multi", "canonical"),
                        help="strategy of the equivariant model shown (default: multi)")
    parser.add_argument("--top", type=int, default=5, help="occupations shown per prompt (default: 5)")
    parser.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                        help="a prompt to use instead of the built-in ones (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..demo import DEMO_PROMPTS, OCCUPATIONS, load_demo_model, occupation_token_ids
    from ..eval.fairness import counterfactual_gaps
    from ..models.causal_lm import EquivariantModelForCausalLM

    if args.top < 1:
        raise ValueError("--top must be at least 1")
    base, tokenizer = load_demo_model()
    models = {s: EquivariantModelForCausalLM.from_base(base, tokenizer=tokenizer, groups=args.groups,
                                                       strategy=s).eval() for s in ("full", "multi")}
    shown = models.get(args.strategy) or EquivariantModelForCausalLM.from_base(
        base, tokenizer=tokenizer, groups=args.groups, strategy=args.strategy).eval()
    action = shown.action
    occupation_ids = occupation_token_ids(tokenizer, OCCUPATIONS)
    occ_index = torch.tensor(list(occupation_ids.values()))

    def occupations(logits: torch.Tensor) -> dict[str, float]:
        p = logits[0, -1].float().softmax(-1)[occ_index]
        p = p / p.sum()
        return dict(zip(occupation_ids, p.tolist()))

    results: list[dict[str, Any]] = []
    for prompt in args.prompt or DEMO_PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            base_occ = occupations(base(ids).logits)
            equi_occ = occupations(shown(ids).logits)
            rows = {}
            for name, model in models.items():
                model(ids)
                rows[name] = model.last_row_count
        gaps = {"base": float(counterfactual_gaps(lambda x: base(x).logits, action, ids).max()),
                "equivariant": float(counterfactual_gaps(lambda x: shown(x).logits, action, ids).max())}
        results.append({"prompt": prompt, "base": base_occ, "equivariant": equi_occ, "counterfactual_gap": gaps,
                        "rows_per_token": {"full": models["full"].copies_per_row,
                                           "multi": models["multi"].copies_per_row,
                                           "full_shared": rows["full"], "multi_shared": rows["multi"]}})
    if args.json:
        json.dump({"groups": args.groups, "group_order": action.group.order, "strategy": args.strategy,
                   "results": results}, sys.stdout, indent=2)
        print()
        return 0
    print(_render(results, args, action, base))
    return 0


def _render(results: list[dict[str, Any]], args: argparse.Namespace, action: Any, base: Any) -> str:
    params = sum(p.numel() for p in base.parameters())
    factors = " x ".join(f"{f.name} ({f.order})" for f in action.factors)
    lines = [
        f"hf_equivariant demo: tiny GPT-2 ({params / 1e6:.2f}M parameters) trained offline on a generated corpus "
        "with planted occupation bias",
        f"group: {factors} = {action.group.order} elements; equivariant strategy shown: {args.strategy}",
        "counterfactual gap = max over all group elements g of TV(P(.|x), g^-1 P(.|g.x)) on the full vocabulary",
        "",
    ]
    for r in results:
        lines.append(f'Prompt: "{r["prompt"]}"')
        top = sorted(r["base"], key=r["base"].get, reverse=True)[:args.top]
        top += [o for o in sorted(r["equivariant"], key=r["equivariant"].get, reverse=True)[:args.top] if o not in top]
        lines.append(f"  {'occupation':<14}{'base':>8}{'equivariant':>14}")
        for occ in top:
            lines.append(f"  {occ:<14}{r['base'][occ]:>8.3f}{r['equivariant'][occ]:>14.3f}")
        g, rows = r["counterfactual_gap"], r["rows_per_token"]
        lines.append(f"  counterfactual gap: base {g['base']:.3f}   equivariant {g['equivariant']:.2e}")
        lines.append(f"  base-model rows per token: full {rows['full']} (shared {rows['full_shared']}), "
                     f"multi {rows['multi']} (shared {rows['multi_shared']})")
        lines.append("")
    worst_base = max(r["counterfactual_gap"]["base"] for r in results)
    worst_equi = max(r["counterfactual_gap"]["equivariant"] for r in results)
    lines.append(f"Worst counterfactual gap over {len(results)} prompts: base {worst_base:.3f}, "
                 f"equivariant {worst_equi:.2e}")
    return "\n".join(lines)
