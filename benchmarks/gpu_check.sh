#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: the device tests, then the benchmarks on CUDA.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, inside the project environment)
set -euo pipefail
python -m pytest -q tests/test_cuda.py
python -m benchmarks generation --device cuda --repeats 3
python -m benchmarks clip --device cuda
