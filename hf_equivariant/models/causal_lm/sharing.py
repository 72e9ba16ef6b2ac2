"""Moved: the row layout is :mod:`hf_equivariant.sharing`, the cache plumbing :mod:`.cache` (kept for 0.1.x)."""

from ...sharing import RowLayout, distinct_rows, shared_layout  # noqa: F401

__all__ = ["RowLayout", "distinct_rows", "shared_layout"]
