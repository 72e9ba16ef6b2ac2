"""The result of :func:`hf_equivariant.eval.fairness.evaluate_fairness`: JSON, a markdown table and plots.

Why separate: the numbers are computed once and then rendered three ways; keeping rendering apart keeps the
metric code small and lets a saved JSON be re-rendered (:meth:`FairnessReport.from_json`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FairnessReport"]


def _num(x: float | None, signed: bool = False) -> str:
    """Three decimals, scientific notation for tiny non-zero values, ``n/a`` for missing ones."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:+.1e}" if signed else f"{x:.1e}"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _pair(summary: dict[str, float] | None) -> str:
    return "n/a" if not summary else f"{_num(summary['mean'])} / {_num(summary['max'])}"


@dataclass
class FairnessReport:
    """Per-strategy fairness metrics.

    Attributes:
        meta: model, groups (with members), prompts, targets, associations, skipped strategies, sampling settings.
        strategies: name -> metrics (summaries plus per-prompt rows; see ``docs/fairness_eval.md``).
        reference: the orbit average's own target distribution and balance (what ``full`` reproduces).
    """

    meta: dict[str, Any] = field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "strategies": self.strategies, "reference": self.reference}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON text; written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> FairnessReport:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(meta=data["meta"], strategies=data["strategies"], reference=data.get("reference", {}))

    # ------------------------------------------------------------------ markdown
    def _factor_columns(self) -> list[tuple[str, list[str]]]:
        """Factors with a balance, and their members, in group order."""
        for result in self.strategies.values():
            if result.get("balance"):
                return [(f, list(b["members"])) for f, b in result["balance"].items()]
        return []

    def _balance_header(self, factor: str, members: list[str]) -> str:
        if len(members) == 2:
            return f"{factor} balance ({members[1]}−{members[0]})"
        return f"{factor} mass ({' / '.join(members)})"

    @staticmethod
    def _balance_cell(balance: dict[str, Any] | None) -> str:
        if not balance:
            return "n/a"
        if "difference" in balance:
            return _num(balance["difference"], signed=True)
        return " / ".join(f"{v:.2f}" for v in balance["members"].values())

    def _has_samples(self, key: str) -> bool:
        return any(key in (r.get("samples") or {}) for r in self.strategies.values())

    def to_markdown(self) -> str:
        """One row per strategy, then skipped strategies, the reference balance and a legend."""
        factors = self._factor_columns()
        header = ["strategy", "rows/token (shared)", "counterfactual gap (max)", "TV to orbit avg (mean / max)"]
        header += [self._balance_header(f, m) for f, m in factors]
        header += ["anchor sensitivity (mean / max)", "agreement margin"]
        with_clf, with_rep = self._has_samples("classifier"), self._has_samples("representation")
        if with_clf:
            header.append("classifier gap (mean / max)")
        if with_rep:
            header.append("representation TV to uniform (as written)")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, r in self.strategies.items():
            gap = r["counterfactual_gap"]
            cells = [f"`{name}`", f"{r['copies_per_row']} ({r['rows_per_token']:.2f})" if r["rows_per_token"] else
                     str(r["copies_per_row"]), _num(gap["max"]) if gap else "n/a", _pair(r["tv_to_orbit_average"])]
            cells += [self._balance_cell(r.get("balance", {}).get(f)) for f, _ in factors]
            cells += [_pair(r["anchor_sensitivity"]), _num(r["agreement"]["mean_margin"], signed=True)]
            samples = r.get("samples") or {}
            if with_clf:
                cells.append(_pair((samples.get("classifier") or {}).get("gap")))
            if with_rep:
                rep = samples.get("representation_as_written", {})
                cells.append(", ".join(f"{f} {_num(v['tv_to_uniform'])} (n={sum(v['counts'].values())})"
                                       for f, v in rep.items()) or "n/a")
            lines.append("| " + " | ".join(cells) + " |")
        lines += self._footer(factors)
        return "\n".join(lines) + "\n"

    def _footer(self, factors: list[tuple[str, list[str]]]) -> list[str]:
        out = [""]
        for name, reason in self.meta.get("skipped", {}).items():
            out.append(f"- `{name}` skipped: {reason}.")
        ref = self.reference.get("balance")
        if ref:
            out.append("- Orbit-average reference balance: " + ", ".join(
                f"{self._balance_header(f, m)} {self._balance_cell(ref.get(f))}" for f, m in factors) + ".")
        sources = self.meta.get("association_source", {})
        if sources:
            out.append("- Target associations: " + ", ".join(f"{f} {s}" for f, s in sources.items()) + ".")
        m = self.meta
        out.append(f"- {len(m.get('prompts', []))} prompts, {m.get('agreement_probes', 0)} agreement probes, group "
                   f"order {m.get('group_order')}; anchor sensitivity is n/a for `base` (it does not use the word "
                   "sets).")
        return out

    # ------------------------------------------------------------------ plots
    def plot(self, folder: str | os.PathLike, prefix: str = "", dpi: int = 80) -> list[Path]:
        """Write ``<prefix>metrics.png`` and ``<prefix>targets_<factor>.png`` (per-demographic target distributions
        per strategy) into ``folder``; returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [self._plot_metrics(plt, folder / f"{prefix}metrics.png", dpi)]
        factors = {f for r in self.strategies.values() for f in r.get("demographic_targets", {})}
        for g in self.meta.get("groups", []):
            if g["name"] in factors:
                paths.append(self._plot_targets(plt, g["name"], folder / f"{prefix}targets_{g['name']}.png", dpi))
        return paths

    def _metric_values(self) -> dict[str, dict[str, float]]:
        """Metric label -> strategy -> value (NaN when not measured), for the bar chart."""
        nan = float("nan")
        metrics: dict[str, dict[str, float]] = {}
        for name, r in self.strategies.items():
            row = {
                "counterfactual gap (max)": (r["counterfactual_gap"] or {}).get("max", nan),
                "TV to orbit avg (mean)": (r["tv_to_orbit_average"] or {}).get("mean", nan),
                "anchor sensitivity (mean)": (r["anchor_sensitivity"] or {}).get("mean", nan),
            }
            for f, b in r.get("balance", {}).items():
                if "difference" in b:
                    row[f"{f} balance ({b['difference_label'].replace('-', '−')})"] = b["difference"]
            margin = r["agreement"]["mean_margin"]
            if margin is not None:
                row["agreement margin"] = margin
            gap = ((r.get("samples") or {}).get("classifier") or {}).get("gap")
            if gap:
                row["classifier gap (mean)"] = gap["mean"]
            for label, v in row.items():
                metrics.setdefault(label, {})[name] = nan if v is None else v
        return metrics

    def _plot_metrics(self, plt: Any, path: Path, dpi: int) -> Path:
        metrics = self._metric_values()
        names = list(self.strategies)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics)), 3.6))
        width = 0.8 / max(1, len(names))
        for k, name in enumerate(names):
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(metrics))]
            ax.bar(xs, [m.get(name, float("nan")) for m in metrics.values()], width, label=name)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(list(metrics), rotation=20, ha="right", fontsize=8)
        ax.set_title(f"fairness metrics per strategy ({self.meta.get('model') or 'model'})", fontsize=9)
        ax.legend(fontsize=7, ncol=min(len(names), 6))
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return path

    def _plot_targets(self, plt: Any, factor: str, path: Path, dpi: int) -> Path:
        names = [n for n, r in self.strategies.items() if factor in r.get("demographic_targets", {})]
        targets = self.meta["targets"]
        fig, axes = plt.subplots(len(names), 1, figsize=(max(6.0, 0.5 * len(targets)), 1.9 * len(names) + 0.6),
                                 sharex=True, squeeze=False)
        for ax, name in zip(axes[:, 0], names):
            dist = self.strategies[name]["demographic_targets"][factor]
            width = 0.8 / len(dist)
            for k, (member, probs) in enumerate(dist.items()):
                xs = [i + (k - (len(dist) - 1) / 2) * width for i in range(len(targets))]
                ax.bar(xs, [probs[t] for t in targets], width, label=member)
            ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, ncol=len(labels), loc="upper right")
        axes[-1, 0].set_xticks(range(len(targets)))
        axes[-1, 0].set_xticklabels(targets, rotation=45, ha="right", fontsize=7)
        fig.suptitle(f"target distribution per {factor} member (that factor's words swapped; mean over prompts)",
                     fontsize=9, x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return path
