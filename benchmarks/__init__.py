"""Benchmarks of hf_equivariant: run ``python -m benchmarks NAME [options]`` (see ``python -m benchmarks --help``)."""
