"""Copy-on-diverge: copies whose transformed sequences are identical share one base-model row and one cache row.

A :class:`RowLayout` says which base row each (copy, input row) uses. With sharing on, rows are the distinct
transformed sequences of each input row, sorted by (input row, content), so the layout is a pure function of the
sequences: the layout of the prefix (what the cache holds) and of the prefix plus the new tokens are both
recomputed from ``context_input_ids``, and the cache is forked from one to the other by index selection, the
mechanism beam search uses. Outputs are identical to running every copy separately.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ...actions.tokens import TokenPermutationAction
from ...executor import TokenCopies, transform_token_copies

__all__ = ["RowLayout", "build_layout", "run_rows"]

_CACHE_NAMES = ("cache", "past_key_values")


@dataclass
class RowLayout:
    """Which base-model row each copy of each input row uses.

    Attributes:
        row_of_copy: ``[C, N]`` base row of copy ``c`` of input row ``n``.
        row_batch: ``[R]`` input row that base row ``r`` belongs to.
        dense: rows are all ``C*N`` copies in copy-major order (sharing off).
        parent_rows: ``[R]`` row of the cached prefix each row continues (``None`` without a cache).
    """

    row_of_copy: torch.Tensor
    row_batch: torch.Tensor
    dense: bool
    parent_rows: torch.Tensor | None = None
    parent_count: int = 0

    @classmethod
    def all_copies(cls, num_copies: int, batch: int, device: torch.device) -> RowLayout:
        """Every copy on its own row, copy-major (sharing off)."""
        rows = torch.arange(num_copies * batch, device=device).view(num_copies, batch)
        return cls(rows, torch.arange(batch, device=device).repeat(num_copies), True)

    @property
    def num_rows(self) -> int:
        return int(self.row_batch.shape[0])

    @property
    def device(self) -> torch.device:
        return self.row_batch.device

    @property
    def parent_is_identity(self) -> bool:
        return (self.parent_rows is not None and self.parent_count == self.num_rows
                and bool(torch.equal(self.parent_rows, torch.arange(self.num_rows, device=self.device))))

    def select_rows(self, per_copy: torch.Tensor) -> torch.Tensor:
        """``[R, ...]`` from ``[C, N, ...]``: one representative copy per base row."""
        c, n = self.row_of_copy.shape
        flat = per_copy.reshape(c * n, *per_copy.shape[2:])
        if self.dense:
            return flat
        first = torch.full((self.num_rows,), c * n, device=self.device, dtype=torch.long)
        first = first.scatter_reduce(0, self.row_of_copy.reshape(-1), torch.arange(c * n, device=self.device),
                                     reduce="amin")
        return flat[first]

    def expand(self, per_input_row: torch.Tensor) -> torch.Tensor:
        """``[R, ...]`` from a tensor with one entry per input row (attention masks, position ids)."""
        return per_input_row[self.row_batch.to(per_input_row.device)]

    def copy_values(self, per_row: torch.Tensor) -> torch.Tensor:
        """``[C, N, ...]`` from base-row outputs ``[R, ...]``."""
        return per_row[self.row_of_copy.to(per_row.device)]

    def reorder_rows(self, beam_idx: torch.Tensor) -> torch.Tensor:
        """Base-row index that moves the rows of input row ``beam_idx[j]`` into the place of input row ``j``."""
        if self.dense:
            return self.row_of_copy[:, beam_idx].reshape(-1)
        batch = self.row_of_copy.shape[1]
        counts = torch.bincount(self.row_batch, minlength=batch)
        starts = torch.cumsum(counts, 0) - counts
        lengths = counts[beam_idx]
        block_start = torch.repeat_interleave(starts[beam_idx], lengths)
        offset = torch.arange(int(lengths.sum()), device=self.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths)
        return block_start + offset

    def reordered(self, beam_idx: torch.Tensor) -> RowLayout:
        """The layout after :meth:`reorder_rows`: block ``j`` is the old block of input row ``beam_idx[j]``."""
        if self.dense:
            return RowLayout.all_copies(self.row_of_copy.shape[0], beam_idx.shape[0], self.device)
        counts = torch.bincount(self.row_batch, minlength=self.row_of_copy.shape[1])
        starts = torch.cumsum(counts, 0) - counts
        lengths = counts[beam_idx]
        new_starts = torch.cumsum(lengths, 0) - lengths
        new_of_copy = self.row_of_copy[:, beam_idx] - starts[beam_idx][None, :] + new_starts[None, :]
        new_batch = torch.repeat_interleave(torch.arange(beam_idx.shape[0], device=self.device), lengths)
        return RowLayout(new_of_copy, new_batch, False)


def _distinct_rows(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Group ``[C, N, T]`` sequences by (input row, content): returns ``(row_of_copy [C, N], row_batch [R], R)``."""
    c, n, t = sequences.shape
    batch_col = torch.arange(n, device=sequences.device).expand(c, n)
    keyed = torch.cat([batch_col[..., None], sequences], dim=-1).reshape(c * n, t + 1)
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    return inverse.view(c, n), unique[:, 0], int(unique.shape[0])


def build_layout(
    action: TokenPermutationAction, copies: TokenCopies, context_ids: torch.Tensor | None, new_tokens: int
) -> RowLayout:
    """The shared layout for this step, with ``parent_rows`` linking it to the layout of the cached prefix."""
    if context_ids is None:
        raise ValueError("copy sharing needs the whole sequence so far (context_input_ids)")
    full = transform_token_copies(action, context_ids, copies)
    row_of_copy, row_batch, num_rows = _distinct_rows(full)
    layout = RowLayout(row_of_copy, row_batch, False)
    past = full.shape[-1] - new_tokens
    if past > 0:
        prefix_row, _, prefix_count = _distinct_rows(full[..., :past])
        parent = torch.empty(num_rows, dtype=torch.long, device=full.device)
        parent[row_of_copy.reshape(-1)] = prefix_row.reshape(-1)
        layout.parent_rows, layout.parent_count = parent, prefix_count
    return layout


def run_rows(base: Any, row_ids: torch.Tensor, row_kwargs: dict[str, torch.Tensor], kwargs: dict[str, Any],
             cache: Any, max_rows: int | None) -> Any:
    """Run the base model on ``row_ids``, at most ``max_rows`` rows per call when a cap is set.

    With a cap and a cache, each chunk runs on a view of its rows of the cache and the updated rows are joined back,
    so the result equals one big call.
    """
    rows = row_ids.shape[0]
    if max_rows is None or rows <= max_rows:
        return base(input_ids=row_ids, **row_kwargs, **kwargs)
    cache_key = next((k for k in _CACHE_NAMES if kwargs.get(k) is not None), None)
    if cache is not None and not hasattr(cache, "layers"):
        raise ValueError(f"max_rows cannot split a cache of type {type(cache).__name__}; use a DynamicCache")
    outputs, chunk_caches = [], []
    for start in range(0, rows, max_rows):
        stop = min(start + max_rows, rows)
        chunk_kwargs = dict(kwargs)
        if cache is not None:
            sub = _slice_cache(cache, start, stop)
            chunk_kwargs[cache_key] = sub
            chunk_caches.append(sub)
        chunk_row_kwargs = {k: v[start:stop] for k, v in row_kwargs.items()}
        outputs.append(base(input_ids=row_ids[start:stop], **chunk_row_kwargs, **chunk_kwargs))
    if cache is not None:
        _join_caches(cache, chunk_caches)
    out = outputs[0]
    out["logits"] = torch.cat([o.logits for o in outputs], dim=0)
    for key in list(out.keys()):
        if key in _CACHE_NAMES:
            out[key] = cache
        elif key not in ("logits", "loss"):
            out[key] = None
    return out


def _slice_cache(cache: Any, start: int, stop: int) -> Any:
    sub = copy.copy(cache)
    sub.layers = []
    for layer in cache.layers:
        piece = copy.copy(layer)
        if getattr(layer, "is_initialized", False) and torch.is_tensor(layer.keys) and layer.keys.numel():
            piece.keys, piece.values = layer.keys[start:stop], layer.values[start:stop]
        sub.layers.append(piece)
    return sub


def _join_caches(cache: Any, chunks: list[Any]) -> None:
    for i, layer in enumerate(cache.layers):
        pieces = [c.layers[i] for c in chunks]
        for key, value in vars(pieces[0]).items():
            if key not in ("keys", "values"):
                setattr(layer, key, value)
        layer.keys = torch.cat([p.keys for p in pieces], dim=0)
        layer.values = torch.cat([p.values for p in pieces], dim=0)
