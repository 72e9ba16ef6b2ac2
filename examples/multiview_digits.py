"""Multi-view digits: the paper's Table-1 protocol (design 1) on scikit-learn's bundled handwritten digits.

Each example is k different 8x8 images of the same digit; at test time each view is rotated independently by a
random multiple of 90 degrees. Four models (CNN, CNN-Fusion, Multi-GCNN, Multi-GCNN-Fusion) are trained with and
without training-time rotations, over several seeds; the epoch is chosen on a validation split (never on the test
set) and test accuracy is reported with and without test-time rotations.

    python examples/multiview_digits.py                 # the full grid (~18 min on 1 busy CPU thread)
    python examples/multiview_digits.py --quick         # a smoke run of a few seconds

Writes ``<out>.json`` (every run and the summary), ``<out>.md`` (the table) and ``<out>.png`` (a plot).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_equivariant.models.multi_input import MultiInputEquivariantConfig, MultiInputEquivariantModel
from hf_equivariant.datasets.digits import load_digit_splits, make_views, random_rotations, sample_view_tuples

MODELS = {  # label -> (group of every view, fusion)
    "CNN": ("id", False),
    "CNN-Fusion": ("id", True),
    "Multi-GCNN": ("rot90", False),
    "Multi-GCNN-Fusion": ("rot90", True),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4], help="numbers of views per example")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without validation gain")
    p.add_argument("--train-tuples", type=int, default=640, help="multi-view examples drawn afresh every epoch")
    p.add_argument("--val-tuples", type=int, default=300)
    p.add_argument("--test-tuples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--conv-channels", type=int, nargs="+", default=[8, 16])
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--norm", default="group", choices=["group", "batch", "none"], help="normalisation in conv layers")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny convs: 1 is fastest)")
    p.add_argument("--out", default=None, help="output path without extension (default: "
                   "outputs/examples/multiview_digits, or examples/results/multiview_digits with --update-results)")
    p.add_argument("--update-results", action="store_true",
                   help="overwrite the committed result files in examples/results (linked from the README)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: k=2, one seed, 2 epochs")
    args = p.parse_args()
    if args.quick:
        args.ks, args.seeds, args.epochs, args.train_tuples = [2], [1], 2, 128
        args.val_tuples = args.test_tuples = 100
    return args


def accuracy(model: MultiInputEquivariantModel, views: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            logits = model(pixel_values=views[start:start + batch]).logits
            correct += (logits.argmax(-1) == labels[start:start + batch]).sum().item()
    return correct / len(labels)


def train_one(args: argparse.Namespace, splits: dict, eval_sets: dict, k: int, label: str, aug: bool,
              seed: int) -> dict:
    group, fusion = MODELS[label]
    torch.manual_seed(seed)
    config = MultiInputEquivariantConfig(groups=[group] * k, fusion=fusion, conv_channels=args.conv_channels,
                                         norm=args.norm, hidden_size=args.hidden_size, num_labels=10, readout="concat")
    model = MultiInputEquivariantModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    images, labels = splits["train"]
    gen = torch.Generator().manual_seed(10_000 * seed + k)
    best = {"val_accuracy": -1.0, "epoch": 0, "state": None}
    history = []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        tuples = sample_view_tuples(labels, k, args.train_tuples, gen)
        views = make_views(images, tuples, random_rotations(len(tuples), k, gen) if aug else None)
        targets = labels[tuples[:, 0]]
        order = torch.randperm(len(targets), generator=gen)
        model.train()
        for b in range(0, len(order), args.batch_size):
            idx = order[b:b + args.batch_size]
            loss = model(pixel_values=views[idx], labels=targets[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = accuracy(model, *eval_sets["validation"])
        history.append(val)
        if val > best["val_accuracy"]:
            best = {"val_accuracy": val, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif epoch - best["epoch"] >= args.patience:
            break
    model.load_state_dict(best["state"])
    return {
        "k": k, "model": label, "train_aug": aug, "seed": seed,
        "best_epoch": best["epoch"], "epochs_run": len(history), "val_accuracy": best["val_accuracy"],
        "val_history": history,
        "test_accuracy": accuracy(model, *eval_sets["test"]),
        "test_accuracy_rotated": accuracy(model, *eval_sets["test_rotated"]),
        "branch_passes_per_example": model.branch_passes_per_example,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.perf_counter() - start, 2),
    }


def build_eval_sets(splits: dict, k: int, args: argparse.Namespace) -> dict:
    """Fixed validation/test examples per k, shared by every model and seed (test rotations fixed too)."""
    gen = torch.Generator().manual_seed(1234 + k)
    out = {}
    for name, n in (("validation", args.val_tuples), ("test", args.test_tuples)):
        images, labels = splits[name]
        tuples = sample_view_tuples(labels, k, n, gen)
        out[name] = (make_views(images, tuples), labels[tuples[:, 0]])
        if name == "test":
            out["test_rotated"] = (make_views(images, tuples, random_rotations(n, k, gen)), labels[tuples[:, 0]])
    return out


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["k"], r["train_aug"], r["model"]) for r in runs},
                  key=lambda t: (t[0], t[1], list(MODELS).index(t[2])))
    for k, aug, label in keys:
        sel = [r for r in runs if (r["k"], r["train_aug"], r["model"]) == (k, aug, label)]
        row = {"k": k, "train_aug": aug, "model": label, "n_seeds": len(sel)}
        for metric in ("test_accuracy", "test_accuracy_rotated", "val_accuracy", "best_epoch"):
            values = [r[metric] for r in sel]
            row[metric + "_mean"] = statistics.fmean(values)
            row[metric + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def markdown_table(summary: list[dict]) -> str:
    labels = [m for m in MODELS if any(r["model"] == m for r in summary)]
    head = ["k", "train aug"] + [c for m in labels for c in (m, f"{m} +TestRot")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, aug in sorted({(r["k"], r["train_aug"]) for r in summary}):
        cells = [str(k), "yes" if aug else "no"]
        for m in labels:
            row = next((r for r in summary if (r["k"], r["train_aug"], r["model"]) == (k, aug, m)), None)
            for metric in ("test_accuracy", "test_accuracy_rotated"):
                cells.append("-" if row is None else
                             f"{100 * row[metric + '_mean']:.1f} ± {100 * row[metric + '_std']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m for m in MODELS if any(r["model"] == m for r in summary)]
    ks = sorted({r["k"] for r in summary})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    width = 0.8 / (2 * len(labels))
    colors = plt.get_cmap("tab10")
    for ax, aug in zip(axes, (False, True)):
        for m_i, m in enumerate(labels):
            for t_i, (metric, hatch) in enumerate((("test_accuracy", ""), ("test_accuracy_rotated", "//"))):
                xs, ys, es = [], [], []
                for k_i, k in enumerate(ks):
                    row = next((r for r in summary if (r["k"], r["train_aug"], r["model"]) == (k, aug, m)), None)
                    if row is not None:
                        xs.append(k_i + (2 * m_i + t_i - len(labels) + 0.5) * width)
                        ys.append(100 * row[metric + "_mean"])
                        es.append(100 * row[metric + "_std"])
                ax.bar(xs, ys, width, yerr=es, color=colors(m_i), hatch=hatch, edgecolor="black", linewidth=0.4,
                       label=f"{m}{' +TestRot' if t_i else ''}")
        ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
        ax.set_title(f"train-time rotation augmentation: {'on' if aug else 'off'}")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)  mean ± std over seeds")
    axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle("Multi-view digits: views rotated independently by multiples of 90° at test time (hatched)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    splits = load_digit_splits()
    grid = [(k, label, aug, seed)
            for k in args.ks for aug in (False, True) for label in args.models for seed in args.seeds]
    runs, started = [], time.perf_counter()
    eval_sets = {k: build_eval_sets(splits, k, args) for k in args.ks}
    bar = tqdm(grid, desc="runs")
    for k, label, aug, seed in bar:
        bar.set_postfix(k=k, model=label, aug=aug, seed=seed)
        runs.append(train_one(args, splits, eval_sets[k], k, label, aug, seed))
    summary = summarise(runs)
    repo = Path(__file__).resolve().parents[1]
    default = (repo / "examples" / "results" if args.update_results else repo / "outputs" / "examples")
    out = Path(args.out) if args.out else default / "multiview_digits"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    meta = {"total_seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__,
            "python": platform.python_version(), "split_sizes": {n: len(y) for n, (_, y) in splits.items()}}
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "meta": meta, "summary": summary,
                                                    "runs": runs}, indent=1))
    table = markdown_table(summary)
    out.with_suffix(".md").write_text(
        "# Multi-view digits (test accuracy %, mean ± std over seeds "
        f"{args.seeds}; epoch chosen on validation)\n\n{table}\n"
    )
    plot(summary, out.with_suffix(".png"))
    print(table)
    print(f"wrote {out}.json/.md/.png in {meta['total_seconds']} s")


if __name__ == "__main__":
    main()
