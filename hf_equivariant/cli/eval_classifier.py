"""``hf-equivariant eval-classifier``: accuracy and counterfactual fairness of a text classifier and its wrappers.

Examples::

    hf-equivariant eval-classifier ./my-classifier --groups race_ethnicity gender_extended --data test.jsonl
    hf-equivariant eval-classifier ./my-classifier --data test.csv --strategies base,auto,multi,full \\
        --positive-label toxic --output results/

Only the standard library is imported at module level, so ``--help`` stays fast; the work happens in :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register", "run", "load_examples", "STRATEGY_CHOICES"]

DEFAULT_GROUPS = ("race_ethnicity", "gender_identity", "gender_extended")
#: Names accepted by --strategies -> (strategy, canonicalization).
STRATEGY_CHOICES = {
    "base": ("none", "neutral"),
    "full": ("full", "neutral"),
    "multi": ("multi", "neutral"),
    "multi-representative": ("multi", "representative"),
    "canonical": ("canonical", "neutral"),
    "auto": ("auto", "neutral"),
}


def register(subparsers: Any) -> None:
    """Add the ``eval-classifier`` sub-command."""
    p = subparsers.add_parser(
        "eval-classifier",
        help="accuracy, flip rate and FPR gaps of a text classifier under identity-term swaps",
        description="Evaluate a sequence classifier (Hub id or folder; a saved hf_equivariant wrapper is evaluated "
                    "through its base) and its span-swap invariant wrappers on a data file: accuracy, counterfactual "
                    "flip rate over every group element, counterfactual token fairness gap, false-positive-rate "
                    "gaps across identity terms, and copies per text.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="sequence classifier: Hub id or local folder")
    p.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), metavar="NAME",
                   help="span sets forming the product group (space or comma separated)")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="texts with labels: .jsonl / .json (objects with the text and label fields), .csv, or .txt "
                        "(one text per line, no labels)")
    p.add_argument("--text-field", default="text", help="name of the text field (JSON, CSV)")
    p.add_argument("--label-field", default="label", help="name of the label field (JSON, CSV); optional")
    p.add_argument("--positive-label", default="1",
                   help="the label whose false positives are compared across identity terms (id or name)")
    p.add_argument("--strategies", default="base,auto,multi,full",
                   help=f"comma-separated names from {', '.join(STRATEGY_CHOICES)}, or 'all'")
    p.add_argument("--aggregation", default="mean_prob", choices=("mean_prob", "mean_logits", "max_prob"))
    p.add_argument("--max-elements", type=int, default=None,
                   help="evaluate this many group elements (identity first, then a seeded sample); default: all")
    p.add_argument("--batch-size", type=int, default=16, help="texts per call (each with all its counterfactuals)")
    p.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    p.add_argument("--output", default=None, metavar="DIR", help="folder for eval_classifier.json and .md")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def _usage_error(message: str) -> int:
    print(f"hf-equivariant eval-classifier: error: {message}", file=sys.stderr)
    return 2


def _split(values: list[str] | str) -> list[str]:
    items = [values] if isinstance(values, str) else values
    return [x.strip() for v in items for x in v.split(",") if x.strip()]


def load_examples(path: str, text_field: str = "text", label_field: str = "label") -> tuple[list[str], list | None]:
    """Texts and labels (``None`` when the file has none) from a .jsonl, .json, .csv or .txt file."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8") as fh:
        if ext == ".txt":
            return [line.rstrip("\n") for line in fh if line.strip()], None
        if ext == ".csv":
            import csv

            rows = list(csv.DictReader(fh))
        elif ext == ".jsonl":
            rows = [json.loads(line) for line in fh if line.strip()]
        elif ext == ".json":
            data = json.load(fh)
            rows = data if isinstance(data, list) else data.get("examples", data.get("data"))
        else:
            raise ValueError(f"unsupported data file {path!r}: use .jsonl, .json, .csv or .txt")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path!r} holds no examples")
    if not all(isinstance(r, dict) and text_field in r for r in rows):
        raise ValueError(f"every example of {path!r} needs a {text_field!r} field (see --text-field)")
    labels = [r[label_field] for r in rows] if all(label_field in r for r in rows) else None
    return [str(r[text_field]) for r in rows], labels


def _label_ids(labels: list | None, label2id: dict[str, int], num_labels: int) -> list[int] | None:
    if labels is None:
        return None
    out = []
    for value in labels:
        if isinstance(value, str) and value in label2id:
            out.append(int(label2id[value]))
        elif str(value).lstrip("-").isdigit() and 0 <= int(value) < num_labels:
            out.append(int(value))
        else:
            raise ValueError(f"label {value!r} is neither a label name {sorted(label2id)} nor an id below {num_labels}")
    return out


def _check_args(args: argparse.Namespace) -> str | None:
    from ..actions.spans import builtin_span_set_names

    args.groups = _split(args.groups)
    known = builtin_span_set_names()
    unknown = [g for g in args.groups if g not in known]
    if unknown:
        return f"unknown span set(s) {unknown}; built-in sets are {known}"
    names = list(STRATEGY_CHOICES) if args.strategies.strip() == "all" else _split(args.strategies)
    bad = [s for s in names if s not in STRATEGY_CHOICES]
    if bad or not names:
        return f"unknown strategy name(s) {bad or names}; choose from {list(STRATEGY_CHOICES)} or 'all'"
    args.strategy_names = names
    if not os.path.isfile(args.data):
        return f"data file {args.data!r} does not exist"
    for option in ("max_elements", "batch_size", "max_length"):
        value = getattr(args, option)
        if value is not None and value < 1:
            return f"--{option.replace('_', '-')} must be a positive integer, got {value}"
    return None


def _markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "| model | accuracy | flip rate | CTF gap | FPR gap (orbit) | FPR gap (held-out) "
             "| copies / rows per text |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if "accuracy" in r else "-"
        orbit = f"{r['fpr_gap_orbit_max']:.3f}" if "fpr_gap_orbit_max" in r else "-"
        held = f"{r['fpr_gap_heldout_max']:.3f}" if "fpr_gap_heldout_max" in r else "-"
        lines.append(f"| {r['model']} | {acc} | {r['flip_rate']:.3f} | {r['ctf_gap']:.4f} | {orbit} | {held} | "
                     f"{r['copies_per_text']:.2f} / {r['rows_per_text']:.2f} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Evaluate the base model and each requested wrapper; print a table, write JSON and markdown."""
    problem = _check_args(args)
    if problem:
        return _usage_error(problem)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..eval.classifier import classifier_metrics, counterfactual_predictions
    from ..models.sequence_classification import EquivariantModelForSequenceClassification

    texts, raw_labels = load_examples(args.data, args.text_field, args.label_field)
    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    tokenizer = getattr(model, "tokenizer", None) or AutoTokenizer.from_pretrained(args.model)
    base = model.base if isinstance(model, EquivariantModelForSequenceClassification) else model
    base.to(args.device).eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    label2id = {str(k): int(v) for k, v in (base.config.label2id or {}).items()}
    labels = _label_ids(raw_labels, label2id, base.config.num_labels)
    positive = _label_ids([args.positive_label], label2id, base.config.num_labels)[0]
    rows = []
    for name in args.strategy_names:
        strategy, canonicalization = STRATEGY_CHOICES[name]
        wrapper = EquivariantModelForSequenceClassification.from_base(
            base, tokenizer=tokenizer, groups=args.groups, strategy=strategy, canonicalization=canonicalization,
            aggregation=args.aggregation).eval()
        action = wrapper.action
        elements = action.group.elements
        if args.max_elements is not None and args.max_elements < len(elements):
            g = torch.Generator().manual_seed(0)
            rest = 1 + torch.randperm(len(elements) - 1, generator=g)[: args.max_elements - 1]
            elements = elements[torch.cat([torch.zeros(1, dtype=torch.long), rest])]
        counts: list[torch.Tensor] = []

        def predict(batch: dict[str, torch.Tensor], wrapper: Any = wrapper, counts: list = counts) -> torch.Tensor:
            out = wrapper(**{k: v.to(args.device) for k, v in batch.items()}).logits
            counts.append(torch.stack([wrapper.last_copy_counts.float(), wrapper.last_row_counts.float()]))
            return out

        preds = counterfactual_predictions(predict, action, texts, elements=elements, batch_size=args.batch_size,
                                           max_length=args.max_length)
        metrics = classifier_metrics(preds, None if labels is None else torch.tensor(labels), action, positive)
        per_text = torch.cat(counts, dim=1).mean(1)
        rows.append({"model": name, "strategy": strategy, "canonicalization": canonicalization,
                     "copies_per_text": float(per_text[0]), "rows_per_text": float(per_text[1]), **metrics})
        print(f"{name}: flip rate {metrics['flip_rate']:.3f}" +
              (f", accuracy {metrics['accuracy']:.3f}" if "accuracy" in metrics else ""), file=sys.stderr)
    command = (f"hf-equivariant eval-classifier {args.model} --groups {' '.join(args.groups)} --data {args.data} "
               f"--strategies {','.join(args.strategy_names)} --aggregation {args.aggregation}"
               + (f" --max-elements {args.max_elements}" if args.max_elements else ""))
    table = _markdown(rows, command)
    print(table)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "eval_classifier.json"), "w", encoding="utf-8") as fh:
            json.dump({"model": args.model, "groups": args.groups, "data": args.data, "positive_label": positive,
                       "results": rows}, fh, indent=2)
        with open(os.path.join(args.output, "eval_classifier.md"), "w", encoding="utf-8") as fh:
            fh.write(table)
    return 0
