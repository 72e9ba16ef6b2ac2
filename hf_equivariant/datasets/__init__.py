"""Datasets for equivariance experiments, generated or bundled offline (no downloads): SCAN and SCAN-II
(:mod:`.scan`), handwritten digits (:mod:`.digits`)."""

from .scan import (  # noqa: F401
    SCAN_FACTORS,
    SPECIAL_TOKENS,
    SPLIT_PRIMITIVES,
    VERBS,
    VERSIONS,
    Example,
    ScanSplit,
    add_primitive_split,
    apply_swap,
    build_tokenizer,
    contains_primitive,
    directions,
    enumerate_commands,
    factor_order,
    factor_token_cycles,
    group_elements,
    input_words,
    interpret,
    make_swap,
    output_words,
    scan_dataset,
)

__all__ = [
    "SCAN_FACTORS", "SPECIAL_TOKENS", "SPLIT_PRIMITIVES", "VERBS", "VERSIONS", "Example", "ScanSplit",
    "add_primitive_split", "apply_swap", "build_tokenizer", "contains_primitive", "directions", "enumerate_commands",
    "factor_order", "factor_token_cycles", "group_elements", "input_words", "interpret", "make_swap", "output_words",
    "scan_dataset",
]
