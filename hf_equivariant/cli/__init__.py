"""The ``hf-equivariant`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code. Heavy imports happen inside ``func`` so ``--help`` is fast
(the package face is lazy: ``hf-equivariant --help`` imports neither torch nor transformers). A sub-command raises
:class:`UsageError` for a bad argument: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "UsageError"]

# Sub-command modules, in the order they are listed by --help.
COMMAND_MODULES = ("demo", "lm", "eval_clip", "eval_fairness", "eval_classifier", "bench")


class UsageError(ValueError):
    """A bad command-line argument (a missing path, an empty prompt, ...): reported in one line, exit code 2."""


def _quiet_loading() -> None:
    """No "Loading weights" / download progress bars in command output (the results are the output)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    logging.disable_progress_bar()
    disable_progress_bars()


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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["bench"]:  # everything after the name goes to the benchmark, options included
        args = argparse.Namespace(command="bench", args=argv[1:], func=importlib.import_module(f"{__name__}.bench").run,
                                  quiet_loading=False)
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "quiet_loading", True):
        _quiet_loading()
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"hf-equivariant {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"hf-equivariant {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
