"""Dispatch ``python -m benchmarks NAME [options]`` to ``benchmarks/bench_NAME.py``."""

import importlib
import sys
from pathlib import Path

AVAILABLE = sorted(p.stem[len("bench_"):] for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m benchmarks {{{','.join(AVAILABLE)}}} [options]\n\n"
              "Each benchmark prints its table and writes <name>_<device>.{json,md} to outputs/benchmarks/ (or, "
              "with --update-results, to the committed benchmarks/results/); pass --help after the name for its "
              "options.", file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    if argv[0] not in AVAILABLE:
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(AVAILABLE)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"benchmarks.bench_{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
