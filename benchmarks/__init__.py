"""Benchmarks of hf_equivariant: run ``python -m benchmarks NAME [options]`` (see ``python -m benchmarks --help``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Committed result files (linked from the README); written only with ``--update-results``.
RESULTS = REPO / "benchmarks" / "results"
#: Where runs write by default (git-ignored), so a run never overwrites the committed results by accident.
OUTPUTS = REPO / "outputs" / "benchmarks"


def output_dir(update_results: bool, explicit: str | Path | None = None) -> Path:
    """``explicit`` if given, else the committed results folder with ``--update-results``, else ``outputs/``."""
    return Path(explicit) if explicit is not None else (RESULTS if update_results else OUTPUTS)
