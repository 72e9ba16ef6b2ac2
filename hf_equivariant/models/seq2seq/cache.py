"""Cache plumbing of the sequence-to-sequence wrapper.

The base model's ``EncoderDecoderCache`` holds one row per base row (a distinct transformed (encoder, decoder)
sequence). Three facts travel with it as attributes, so concurrent calls on one model stay independent: the row
layout (for beam search), the transformed sequences its rows hold (to fork rows when copies diverge) and each row's
encoder states (computed once per distinct encoder input, reused at every later step).
"""

from __future__ import annotations

from typing import Any

import torch

from ..kv_cache import clear_layers

__all__ = ["CACHE_KWARGS", "find_cache", "match_rows", "empty_cache", "attach", "held", "reorder"]

CACHE_KWARGS = ("cache", "past_key_values")
_LAYOUT = "_hf_equivariant_layout"
_ROWS = "_hf_equivariant_rows"
_ENCODER = "_hf_equivariant_encoder_states"


def find_cache(kwargs: dict[str, Any]) -> tuple[str | None, Any]:
    """``(keyword, cache)`` of the cache among a forward call's keyword arguments (removed from them)."""
    for key in CACHE_KWARGS:
        if kwargs.get(key) is not None:
            return key, kwargs.pop(key)
        kwargs.pop(key, None)
    return None, None


def match_rows(held_rows: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor | None:
    """Index in ``held_rows [H, L]`` of each row of ``wanted [W, L]``, or ``None`` if one is missing.

    One ``unique`` over both sets (sort-based), not an all-pairs comparison: beams of a large batch hold thousands
    of rows at every decoding step.
    """
    if held_rows.shape[1] != wanted.shape[1]:
        return None
    held_rows = held_rows.to(wanted.device)
    _, inverse = torch.unique(torch.cat([held_rows, wanted]), dim=0, return_inverse=True)
    lookup = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.long, device=wanted.device)
    lookup[inverse[: held_rows.shape[0]]] = torch.arange(held_rows.shape[0], device=wanted.device)
    found = lookup[inverse[held_rows.shape[0]:]]
    return None if bool((found < 0).any()) else found


def _sub_caches(cache: Any) -> list[Any]:
    subs = [getattr(cache, name, None) for name in ("self_attention_cache", "cross_attention_cache")]
    return [s for s in subs if s is not None] or [cache]


def empty_cache(cache: Any) -> None:
    """Drop every cached state in place (the object stays the one ``generate`` holds)."""
    for sub in _sub_caches(cache):
        clear_layers(sub)
    if isinstance(getattr(cache, "is_updated", None), dict):
        cache.is_updated = {k: False for k in cache.is_updated}
    for name in (_LAYOUT, _ROWS, _ENCODER):
        if hasattr(cache, name):
            setattr(cache, name, None)


def attach(cache: Any, layout: Any, encoder_states: torch.Tensor) -> None:
    """Record what the cache's rows hold: their layout, transformed sequences and encoder states."""
    try:
        setattr(cache, _LAYOUT, layout)
        setattr(cache, _ROWS, layout.sequences)
        setattr(cache, _ENCODER, encoder_states)
    except AttributeError:  # legacy tuple caches cannot carry attributes: their rows are recomputed
        pass


def held(cache: Any) -> tuple[Any, torch.Tensor | None, torch.Tensor | None]:
    """``(layout, transformed sequences, encoder states)`` recorded on ``cache`` (``None`` where unknown)."""
    return getattr(cache, _LAYOUT, None), getattr(cache, _ROWS, None), getattr(cache, _ENCODER, None)


def reorder(cache: Any, index: torch.Tensor) -> None:
    """Select cache rows (fork or beam reorder): key/value states and the recorded encoder states alike."""
    layers = getattr(_sub_caches(cache)[0], "layers", None)
    keys = getattr(layers[0], "keys", None) if layers else None
    device = keys.device if torch.is_tensor(keys) else index.device
    cache.reorder_cache(index.to(device))
    states = getattr(cache, _ENCODER, None)
    if states is not None:
        setattr(cache, _ENCODER, states[index.to(states.device)])
