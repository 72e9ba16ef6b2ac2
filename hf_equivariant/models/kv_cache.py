"""KV-cache helpers shared by the generating wrappers (causal LM, seq2seq)."""

from __future__ import annotations

from typing import Any

__all__ = ["clear_layers"]


def clear_layers(cache: Any) -> None:
    """Drop every cached key and value of a layered (``DynamicCache``-style) cache in place: the object stays the
    one ``generate`` holds, and the next call fills it from scratch."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ValueError(f"the {type(cache).__name__} cache cannot be emptied in place; use a DynamicCache")
    for layer in layers:
        layer.is_initialized = False
        layer.keys, layer.values = None, None
        if isinstance(getattr(layer, "cumulative_length", None), int):
            layer.cumulative_length = 0
