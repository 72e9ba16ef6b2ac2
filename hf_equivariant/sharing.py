"""Copy-on-diverge: copies whose transformed sequences are identical share one base-model row.

A :class:`RowLayout` says which base row each (copy, input row) uses. With sharing on, rows are the distinct
transformed sequences of each input row, sorted by (input row, content), so the layout is a pure function of the
sequences: the layout of a cached prefix and of the prefix plus new tokens are both recomputed from the whole
context, and a cache is forked from one to the other by index selection (``parent_rows``), the mechanism beam
search uses. Outputs are identical to running every copy separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RowLayout", "distinct_rows", "shared_layout", "common_prefix_length"]


@dataclass
class RowLayout:
    """Which base-model row each copy of each input row uses.

    Attributes:
        row_of_copy: ``[C, N]`` base row of copy ``c`` of input row ``n``.
        row_batch: ``[R]`` input row that base row ``r`` belongs to.
        dense: rows are all ``C*N`` copies in copy-major order (sharing off).
        parent_rows: ``[R]`` row of the cached prefix each row continues (``None`` without a prefix).
        parent_count: number of rows the cached prefix had.
    """

    row_of_copy: torch.Tensor
    row_batch: torch.Tensor
    dense: bool
    parent_rows: torch.Tensor | None = None
    parent_count: int = 0
    sequences: torch.Tensor | None = None
    parent_sequences: torch.Tensor | None = None

    @classmethod
    def all_copies(cls, num_copies: int, batch: int, device: torch.device) -> RowLayout:
        """Every copy on its own row, copy-major (sharing off)."""
        rows = torch.arange(num_copies * batch, device=device).view(num_copies, batch)
        return cls(rows, torch.arange(batch, device=device).repeat(num_copies), True)

    @property
    def num_rows(self) -> int:
        return int(self.row_batch.shape[0])

    @property
    def num_copies(self) -> int:
        return int(self.row_of_copy.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.row_of_copy.shape[1])

    @property
    def device(self) -> torch.device:
        return self.row_batch.device

    @property
    def parent_is_identity(self) -> bool:
        return (self.parent_rows is not None and self.parent_count == self.num_rows
                and bool(torch.equal(self.parent_rows, torch.arange(self.num_rows, device=self.device))))

    def representative_copies(self) -> torch.Tensor:
        """``[R]`` flat (copy-major) index of the first copy that uses each row."""
        c, n = self.row_of_copy.shape
        if self.dense:
            return torch.arange(c * n, device=self.device)
        first = torch.full((self.num_rows,), c * n, device=self.device, dtype=torch.long)
        return first.scatter_reduce(0, self.row_of_copy.reshape(-1), torch.arange(c * n, device=self.device),
                                    reduce="amin")

    def select_rows(self, per_copy: torch.Tensor) -> torch.Tensor:
        """``[R, ...]`` from ``[C, N, ...]``: one representative copy per base row."""
        c, n = self.row_of_copy.shape
        flat = per_copy.reshape(c * n, *per_copy.shape[2:])
        return flat if self.dense else flat[self.representative_copies().to(flat.device)]

    def expand(self, per_input_row: torch.Tensor) -> torch.Tensor:
        """``[R, ...]`` from a tensor with one entry per input row (attention masks, position ids)."""
        return per_input_row[self.row_batch.to(per_input_row.device)]

    def reorder_rows(self, beam_idx: torch.Tensor) -> torch.Tensor:
        """Base-row index that moves the rows of input row ``beam_idx[j]`` into the place of input row ``j``."""
        if self.dense:
            return self.row_of_copy[:, beam_idx].reshape(-1)
        counts = torch.bincount(self.row_batch, minlength=self.batch_size)
        starts = torch.cumsum(counts, 0) - counts
        lengths = counts[beam_idx]
        block_start = torch.repeat_interleave(starts[beam_idx], lengths)
        offset = torch.arange(int(lengths.sum()), device=self.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths)
        return block_start + offset

    def reordered(self, beam_idx: torch.Tensor) -> RowLayout:
        """The layout after :meth:`reorder_rows`: block ``j`` is the old block of input row ``beam_idx[j]``."""
        if self.dense:
            return RowLayout.all_copies(self.num_copies, beam_idx.shape[0], self.device)
        counts = torch.bincount(self.row_batch, minlength=self.batch_size)
        starts = torch.cumsum(counts, 0) - counts
        lengths = counts[beam_idx]
        new_starts = torch.cumsum(lengths, 0) - lengths
        new_of_copy = self.row_of_copy[:, beam_idx] - starts[beam_idx][None, :] + new_starts[None, :]
        new_batch = torch.repeat_interleave(torch.arange(beam_idx.shape[0], device=self.device), lengths)
        sequences = None
        if self.sequences is not None:
            sequences = self.sequences[self.reorder_rows(beam_idx)].clone()
            sequences[:, 0] = new_batch
        return RowLayout(new_of_copy, new_batch, False, sequences=sequences)


def _distinct(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unique [R, T+1] rows keyed by input row, inverse [C, N])`` of ``[C, N, T]`` sequences."""
    c, n, t = sequences.shape
    batch_col = torch.arange(n, device=sequences.device).expand(c, n)
    keyed = torch.cat([batch_col[..., None], sequences], dim=-1).reshape(c * n, t + 1)
    unique, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    return unique, inverse.view(c, n)


def distinct_rows(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Group ``[C, N, T]`` sequences by (input row, content): ``(row_of_copy [C, N], row_batch [R], R)``."""
    unique, inverse = _distinct(sequences)
    return inverse, unique[:, 0], int(unique.shape[0])


def shared_layout(sequences: torch.Tensor, new_tokens: int) -> RowLayout:
    """The shared layout of transformed sequences ``[C, N, T]`` whose last ``new_tokens`` positions are new, with
    ``parent_rows`` linking it to the layout of the prefix (what a cache holds)."""
    unique, row_of_copy = _distinct(sequences)
    num_rows = int(unique.shape[0])
    layout = RowLayout(row_of_copy, unique[:, 0], False, sequences=unique)
    past = sequences.shape[-1] - new_tokens
    if past > 0:
        prefix_unique, prefix_row = _distinct(sequences[..., :past])
        parent = torch.empty(num_rows, dtype=torch.long, device=sequences.device)
        parent[row_of_copy.reshape(-1)] = prefix_row.reshape(-1)
        layout.parent_rows, layout.parent_count = parent, int(prefix_unique.shape[0])
        layout.parent_sequences = prefix_unique
    return layout


def common_prefix_length(sequences: torch.Tensor) -> int:
    """Length of the prefix on which all copies ``[C, N, T]`` of every input row agree (``T`` if they all do)."""
    differs = (sequences != sequences[:1]).any(0).any(0)  # [T]
    hits = differs.nonzero()
    return int(hits[0]) if hits.numel() else int(sequences.shape[-1])
