#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: the device tests, then the benchmarks on CUDA.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, inside the project environment)
# Results go to outputs/benchmarks/ (add --update-results to a line to refresh the files the README quotes).
set -euo pipefail
python -m pytest -q tests/test_cuda.py tests/test_sequence_classification.py -k cuda
python -m benchmarks scoring --device cuda --repeats 3 --full-up-to 1000 --several-at-10-up-to 1000
python -m benchmarks generation --device cuda --repeats 3
python -m benchmarks clip --device cuda
