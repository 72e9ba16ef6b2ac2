"""``hf-equivariant bench NAME [options]``: run a benchmark of a source checkout (``python -m benchmarks ...``).

The benchmarks live in the repository's ``benchmarks/`` folder, not in the installed package, so this command finds
the checkout the package was installed from (an editable install) or the current folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["register", "run", "find_benchmarks"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark (generation, clip) from a source checkout", add_help=False,
        description="Run `python -m benchmarks NAME [options]` in the hf_equivariant source checkout. Results go "
                    "to outputs/benchmarks/ unless --update-results is given.")
    p.add_argument("args", nargs=argparse.REMAINDER, help="benchmark name and its options (--help for the list)")
    p.set_defaults(func=run, quiet_loading=False)


def find_benchmarks() -> Path | None:
    """The checkout holding ``benchmarks/__main__.py``: the package's parent folder, else the working directory."""
    package_parent = Path(__file__).resolve().parents[2]
    for root in (package_parent, Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def run(args: argparse.Namespace) -> int:
    from . import UsageError

    root = find_benchmarks()
    if root is None:
        raise UsageError("the benchmarks ship with the source repository, not the installed package: run this "
                         "from a clone of hf_equivariant (or install it from one with `pip install -e .`)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.call([sys.executable, "-m", "benchmarks", *(args.args or ["--help"])], cwd=root, env=env)
