"""KV-cache plumbing of the causal-LM wrapper: find the cache among keyword arguments, run base rows in chunks
(``max_rows``) on slices of one cache, join the chunks back, and fork or reorder cache rows by index."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..kv_cache import clear_layers

__all__ = ["CACHE_KWARGS", "find_cache", "ChunkedCache", "cache_device", "empty_cache"]

CACHE_KWARGS = ("cache", "past_key_values")


def find_cache(kwargs: dict[str, Any]) -> tuple[str | None, Any]:
    """``(keyword, cache)`` of the cache passed to a forward call, ``(None, None)`` if there is none."""
    for key in CACHE_KWARGS:
        if kwargs.get(key) is not None:
            return key, kwargs[key]
    return None, None


def cache_device(cache: Any, fallback: torch.Tensor) -> torch.device:
    layers = getattr(cache, "layers", None)
    if layers:
        keys = getattr(layers[0], "keys", None)
        if torch.is_tensor(keys):
            return keys.device
    return fallback.device


def _slice_cache(cache: Any, start: int, stop: int) -> Any:
    sub = copy.copy(cache)
    sub.layers = []
    for layer in cache.layers:
        piece = copy.copy(layer)
        if getattr(layer, "is_initialized", False) and torch.is_tensor(layer.keys) and layer.keys.numel():
            piece.keys, piece.values = layer.keys[start:stop], layer.values[start:stop]
        sub.layers.append(piece)
    return sub


def _join_into(cache: Any, chunks: list[Any]) -> Any:
    for i, layer in enumerate(cache.layers):
        pieces = [c.layers[i] for c in chunks]
        for key, value in vars(pieces[0]).items():
            if key not in ("keys", "values"):
                setattr(layer, key, value)
        layer.keys = torch.cat([p.keys for p in pieces], dim=0)
        layer.values = torch.cat([p.values for p in pieces], dim=0)
    return cache


class ChunkedCache:
    """Gives each chunk of base rows its slice of ``cache`` and joins the updated slices afterwards.

    With no cache passed in but ``use_cache`` on, each chunk creates its own and :meth:`result` joins them, so a
    chunked call returns the same cache as one big call.
    """

    def __init__(self, cache: Any, chunked: bool) -> None:
        if chunked and cache is not None and not hasattr(cache, "layers"):
            raise ValueError(f"max_rows cannot split a cache of type {type(cache).__name__}; use a DynamicCache")
        self.cache = cache
        self.chunked = chunked
        self.pieces: list[Any] = []

    def for_rows(self, start: int, stop: int) -> Any:
        """The cache to pass for base rows ``start..stop`` (``None``: let the base create one)."""
        if self.cache is None or not self.chunked:
            return self.cache
        sub = _slice_cache(self.cache, start, stop)
        self.pieces.append(sub)
        return sub

    def returned(self, cache: Any) -> None:
        """Record the cache a chunk's call returned (when no cache was passed in)."""
        if self.chunked and self.cache is None and cache is not None:
            if not hasattr(cache, "layers"):
                raise ValueError(f"max_rows cannot join caches of type {type(cache).__name__}; use a DynamicCache")
            self.pieces.append(cache)

    def result(self, last: Any) -> Any:
        """The cache covering every row after all chunks ran."""
        if not self.chunked:
            return last if self.cache is None else self.cache
        if self.cache is not None:
            return _join_into(self.cache, self.pieces)
        if not self.pieces:
            return None
        return _join_into(self.pieces[0], self.pieces) if len(self.pieces) > 1 else self.pieces[0]


def empty_cache(cache: Any) -> None:
    """Drop every cached state in place (the cache object stays the one ``generate`` holds)."""
    clear_layers(cache)
