"""The ``hf-equivariant`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code. Heavy imports happen inside ``func`` so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

# Sub-command modules, in the order they are listed by --help.
COMMAND_MODULES = ("demo", "lm", "eval_clip", "eval_fairness", "eval_classifier")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="hf-equivariant",
        description="Make Hugging Face models equivariant or invariant to groups of transformations.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"hf-equivariant {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
