"""Carry out a plan: expand the copies, call the model once on all of them, map outputs back, symmetrise, aggregate.

Two entry points share the same steps and differ only in how outputs are combined:

- :func:`run_tokens` for token actions (language models). Off the group's *support* a word swap fixes every token,
  so those columns of the output are a weighted combination of the distinct base rows; only the few hundred support
  columns need per-copy gathers and orbit symmetrisation. Rows are streamed in chunks of ``max_rows`` and combined
  in log space as they arrive, so memory is bounded by the chunk and the output, and copy-on-diverge sharing
  (:mod:`hf_equivariant.sharing`) lets copies with identical transformed text share a row.
- :func:`run_dense` for every other action (images, feature maps, invariant scores): outputs are mapped back by the
  action, symmetrised by branch and combined with :class:`~hf_equivariant.aggregation.Aggregation`.
  :func:`run_dense_streams` runs several inputs with their own groups through one model call (design 1).
- :func:`run_sequences` for actions that change sequence lengths (span swaps) with invariant outputs
  (classifiers, sentence embeddings): per-input copies (:mod:`hf_equivariant.row_plans`) become one re-padded
  batch, identical transformed sequences of an input run once, and rows are aggregated per input in log space.

The model call is a callable supplied by the wrapper; there is no Python loop over group elements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .actions.base import GroupAction
from .aggregation import Aggregation, segment_combine
from .plans import Copies, Plan, drop_idle_copies, make_plan, realise
from .row_plans import RowCopies
from .sharing import RowLayout, common_prefix_length, shared_layout

__all__ = ["transform_copies", "run_tokens", "TokenRun", "token_prefix_length", "run_dense", "run_dense_streams",
           "DenseRun", "symmetrise_function", "run_sequences", "SequenceRun"]


def transform_copies(action: GroupAction, copies: Copies, x: torch.Tensor, **context: Any) -> torch.Tensor:
    """``[C, N, ...]``: each copy's transformed inputs (canonicalised by branch, then moved by its element)."""
    c, n = copies.input_elements.shape
    canon = copies.canonicalise
    if copies.plan.canonicalization != "representative":
        context = {**context, "canonicalization": copies.plan.canonicalization}
    if bool(canon.any()):
        per_row = canon.dim() == 3  # [C, N, F]: masks may differ between rows
        flat = canon.reshape(-1, canon.shape[-1])
        masks, which = torch.unique(flat, dim=0, return_inverse=True)
        variants = torch.stack([x if not bool(m.any()) else action.canonicalise(x, m, **context) for m in masks])
        if per_row:  # variant of copy c for row n: variants[which[c, n], n]
            which = which.view(c, n).to(variants.device)
            stacked = variants[which, torch.arange(n, device=variants.device)[None].expand(c, n)]
        else:
            stacked = variants[which.to(variants.device)]  # [C, N, ...]
    else:
        stacked = x.unsqueeze(0).expand(c, *x.shape)
    moved = action.transform_inputs(stacked.reshape(c * n, *x.shape[1:]), copies.input_elements.reshape(-1))
    return moved.reshape(c, n, *x.shape[1:])


# ---------------------------------------------------------------------------------------------------- tokens
@dataclass
class TokenRun:
    """What :func:`run_tokens` returns: equivariant logits ``[N, T, V]``, the row layout used and the copies."""

    logits: torch.Tensor
    layout: RowLayout
    copies: Copies


class _SupportAggregator:
    """Combines streamed base rows into equivariant log-probabilities, touching only the support per copy."""

    def __init__(self, action: Any, copies: Copies, layout: RowLayout, aggregation: Aggregation, positions: int,
                 context_moved: bool = True):
        self.action, self.copies, self.layout, self.agg = action, copies, layout, aggregation
        self.positions = positions
        device = layout.device
        c, n = layout.row_of_copy.shape
        weights = copies.weights.to(device)
        if weights.dim() == 1:
            weights = weights[:, None].expand(c, n)
        self.copy_weights = weights  # [C, N] or [C, N, T]
        flat_w = weights.reshape(c * n, *weights.shape[2:])
        self.row_weights = torch.zeros((layout.num_rows, *weights.shape[2:]), device=device,
                                       dtype=torch.float32).index_add_(0, layout.row_of_copy.reshape(-1), flat_w.float())
        self.one_row_each = layout.num_rows == n and bool(torch.equal(layout.row_batch,
                                                                          torch.arange(n, device=device)))
        # Every copy of every row runs the same, untouched text (no word of any factor in the context): the
        # weighted sum of the copies' mapped-back outputs is then the row's output pooled over every orbit, for
        # every strategy, with no per-copy work (and routing changes nothing on a symmetric mixture).
        self.quiet = self.one_row_each and not context_moved
        self.support = action.support(device)
        out_elements = copies.output_elements.to(device)
        if not copies.per_position and bool((out_elements == out_elements[:, :1]).all()):
            out_elements = out_elements[:, :1]  # the same copies for every row: one table per copy
        parts = action.element_parts(out_elements)  # [C, N|1, (T), F]
        self.local_maps = action.local_maps(parts)  # [C, N, (T), S]
        self.symmetrise = bool(copies.symmetrise.any())
        if self.symmetrise:
            self.orbits, self.num_orbits = action.local_orbits(copies.symmetrise.to(device))
        self.off: torch.Tensor | None = None
        self.on: torch.Tensor | None = None
        # Anchor-free multi: each factor's own branch output on the support, to route the split within its orbits.
        self.route_mask = copies.route_mask
        plan = copies.plan
        self.num_factors = len(plan.factor_orders)
        self.copy_branch = plan.branch.to(device)
        self.branch_on: dict[int, torch.Tensor] = {}
        if self.route_mask is not None:
            orders = torch.tensor(plan.factor_orders, device=device, dtype=torch.float32)
            self.branch_weight = torch.where(self.copy_branch < self.num_factors,
                                             1.0 / orders[self.copy_branch.clamp_max(self.num_factors - 1)],
                                             torch.zeros_like(orders[:1]).expand(self.copy_branch.shape[0]))

    def add(self, start: int, logits: torch.Tensor) -> None:
        """Fold base rows ``start .. start + len(logits)`` (their raw logits ``[r, T, V]``) into the result."""
        layout, agg = self.layout, self.agg
        if logits.shape[1] > self.positions:  # the whole context was run: keep the positions asked for
            logits = logits[:, -self.positions:]
        values = agg.to_space(logits)
        r, t = values.shape[0], values.shape[1]
        stop = start + r
        n = layout.batch_size
        # Off the support: a weighted combination of the rows themselves.
        if self.one_row_each:
            if self.off is None and r == n:
                self.off = values if values is not logits else values.clone()  # never write into the model's output
            else:
                if self.off is None:
                    self.off = values.new_empty((n, *values.shape[1:]))
                self.off[start:stop] = values
        else:
            w = self.row_weights[start:stop]
            if w.dim() == 2:
                w = w[:, -t:, None]
            partial = segment_combine(agg, values, w, layout.row_batch[start:stop], n)
            self.off = agg.merge(self.off, partial)
        if self.quiet:
            support_values = values[..., self.support.to(values.device)]
            everything = torch.ones(self.num_factors, dtype=torch.bool, device=values.device)
            orbits, num = self.action.local_orbits(everything)
            pooled = agg.pool_orbits(support_values, orbits.expand_as(support_values), num)
            if self.on is None and r == n:
                self.on = pooled
            else:
                if self.on is None:
                    self.on = pooled.new_empty((n, *pooled.shape[1:]))
                self.on[start:stop] = pooled
            return
        # On the support: every copy whose row is in this chunk, mapped back and symmetrised.
        in_chunk = (layout.row_of_copy >= start) & (layout.row_of_copy < stop)  # [C, N]
        copy_idx, row_idx = in_chunk.nonzero(as_tuple=True)
        if copy_idx.numel() == 0:
            return
        support_values = values[..., self.support.to(values.device)]  # [r, T, S]
        chosen = support_values[layout.row_of_copy[copy_idx, row_idx] - start]  # [k, T, S]
        maps = self.local_maps
        maps = maps[copy_idx, row_idx] if maps.shape[1] > 1 else maps[copy_idx, 0]
        if maps.dim() == 3:
            maps = maps[:, -t:]
        else:
            maps = maps[:, None, :]
        chosen = chosen.gather(-1, maps.expand(-1, t, -1).to(chosen.device))
        if self.symmetrise:
            orbits = self.orbits
            orbits = orbits[copy_idx, row_idx if orbits.shape[1] > 1 else torch.zeros_like(row_idx)]
            orbits = orbits[:, -t:] if orbits.dim() == 3 else orbits[:, None, :]
            chosen = agg.pool_orbits(chosen, orbits.expand(-1, t, -1).to(chosen.device), self.num_orbits)
        w = self.copy_weights[copy_idx, row_idx]
        w = w[:, -t:, None] if w.dim() == 2 else w
        self.on = agg.merge(self.on, segment_combine(agg, chosen, w, row_idx, n))
        if self.route_mask is not None:
            branches = self.copy_branch[copy_idx]
            for b in range(self.num_factors):
                sel = (branches == b).nonzero().flatten()
                if sel.numel():
                    part = segment_combine(agg, chosen[sel], self.branch_weight[copy_idx[sel]], row_idx[sel], n)
                    self.branch_on[b] = agg.merge(self.branch_on.get(b), part)

    def _routed(self, mixture: torch.Tensor) -> torch.Tensor:
        """Route the split within each factor's orbits to that factor's own branch (anchor-free design 2):
        ``y[w] = pool_O(M)[w] + B_j[w] - pool_O(B_j)[w]`` on factor j's support, where multi is used."""
        t = mixture.shape[1]
        route = self.route_mask[:, -t:, None].to(mixture.device)
        tables = self.action.tables(mixture.device)
        factor_of_support = tables["factor_of"][self.support.to(mixture.device)]
        out = mixture
        for j in range(self.num_factors):
            branch = self.branch_on.get(j)
            if branch is None:
                continue
            mask = torch.zeros(self.num_factors, dtype=torch.bool, device=mixture.device)
            mask[j] = True
            orbits, num = self.action.local_orbits(mask)
            orbits = orbits.expand_as(mixture)
            routed = self.agg.pool_orbits(mixture, orbits, num) + branch - self.agg.pool_orbits(branch, orbits, num)
            out = torch.where(route & (factor_of_support == j), routed, out)
        return out

    def finish(self) -> torch.Tensor:
        out = self.off
        if out is None:
            raise RuntimeError("no rows were aggregated")
        if self.on is not None and self.support.numel():
            routed = self.route_mask is not None and self.branch_on and not self.quiet
            on = self._routed(self.on) if routed else self.on
            index = self.support.to(out.device)
            if out.requires_grad or on.requires_grad:  # out of place, so autograd sees both
                out = out.index_copy(-1, index, on.to(out.dtype))
            else:
                out.index_copy_(-1, index, on.to(out.dtype))
        return self.agg.finish(out)


def run_tokens(
    plan: Plan,
    action: Any,
    input_ids: torch.Tensor,
    call: Callable[[int, int, torch.Tensor, RowLayout], torch.Tensor],
    aggregation: Aggregation,
    *,
    context_ids: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None,
    share: bool = True,
    max_rows: int | None = None,
    on_layout: Callable[[RowLayout], bool | None] | None = None,
    output_action: Any | None = None,
    row_prefix: int = 0,
) -> TokenRun:
    """Equivariant next-token logits for ``input_ids [N, T]`` under ``plan``.

    ``context_ids [N, Tc]`` is the whole sequence so far when ``input_ids`` holds only its last ``T`` tokens (with a
    cache); orientation and sharing are computed on it. ``call(start, stop, row_ids, layout)`` runs the base model
    on base rows ``start..stop`` (``row_ids [stop-start, T]``) and returns their logits; it is called once, or in
    chunks of ``max_rows`` rows. ``on_layout`` sees the row layout before the first call (to fork a cache); if it
    returns True the cache does not hold this layout's prefix, and the whole context is run instead (the outputs of
    the last ``T`` positions are returned either way).

    Sequence-to-sequence models pass one *joint* sequence per row (encoder ids, then decoder ids): ``action`` moves
    it, ``output_action`` (default ``action``) maps the logits back, and the first ``row_prefix`` context positions
    (the encoder input) come with every row given to ``call``, in front of the tokens to run (``row_ids
    [stop-start, row_prefix + T]``, or the whole context), and are never output positions.
    """
    if context_ids is None:
        context_ids = input_ids
    new_tokens = input_ids.shape[-1]
    valid = context_mask.bool() if context_mask is not None and context_mask.shape == context_ids.shape else None
    copies = realise(plan, action, context_ids, valid=valid)
    if copies.per_position:
        copies.output_elements = copies.output_elements[:, :, -new_tokens:]
        copies.symmetrise = copies.symmetrise[:, :, -new_tokens:]
    if copies.weights.dim() == 3:
        copies.weights = copies.weights[:, :, -new_tokens:]
    if copies.route_mask is not None:
        copies.route_mask = copies.route_mask[:, -new_tokens:]
    drop_idle_copies(copies)  # copies with no weight at the positions computed now cost nothing
    transformed = transform_copies(action, copies, context_ids)  # [C, N, Tc]
    if share:
        layout = shared_layout(transformed, new_tokens)
    else:
        layout = RowLayout.all_copies(copies.num_copies, input_ids.shape[0], input_ids.device)
    run_tokens_of = new_tokens
    if on_layout is not None and on_layout(layout):
        run_tokens_of = transformed.shape[-1] - row_prefix
        layout = shared_layout(transformed, run_tokens_of) if share else layout
        if on_layout(layout):
            raise RuntimeError("the wrapper could not prepare a cache for the whole context")
    rows = transformed[..., -run_tokens_of:]
    if row_prefix:
        rows = torch.cat([transformed[..., :row_prefix], rows], dim=-1)
    row_ids = layout.select_rows(rows)
    tables = action.tables(context_ids.device) if hasattr(action, "tables") and not row_prefix else None
    moved = True if tables is None else bool((tables["factor_of"][context_ids.clamp(0)] >= 0).any())
    aggregator = _SupportAggregator(output_action if output_action is not None else action, copies, layout,
                                    aggregation, new_tokens, context_moved=moved)
    step = layout.num_rows if max_rows is None else max(1, int(max_rows))
    for start in range(0, layout.num_rows, step):
        stop = min(start + step, layout.num_rows)
        aggregator.add(start, call(start, stop, row_ids[start:stop], layout))
    return TokenRun(aggregator.finish(), layout, copies)


def token_prefix_length(plan: Plan, action: Any, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> int:
    """How many leading positions every copy of every row shares (run once, then fork at the first difference)."""
    valid = mask.bool() if mask is not None and mask.shape == input_ids.shape else None
    copies = realise(plan, action, input_ids, valid=valid)
    return common_prefix_length(transform_copies(action, copies, input_ids))


# ---------------------------------------------------------------------------------------------------- dense
@dataclass
class DenseRun:
    """What :func:`run_dense` returns: the aggregated output, the copies and the number of rows the model ran."""

    output: torch.Tensor
    copies: Copies
    rows: int


@dataclass
class Stream:
    """One input of :func:`run_dense_streams`: its plan, action and tensor (plus context such as a reference)."""

    plan: Plan
    action: GroupAction
    x: torch.Tensor
    context: dict[str, Any] | None = None


def _map_back(action: GroupAction, copies: Copies, out: torch.Tensor) -> torch.Tensor:
    """Undo each copy's element on equivariant outputs ``[C, N, ...]``, then symmetrise by branch."""
    c, n = out.shape[:2]
    undo = action.group.inverse_elements(copies.output_elements.reshape(-1).cpu()).to(out.device)
    out = action.transform_outputs(out.reshape(c * n, *out.shape[2:]), undo).reshape(out.shape)
    masks = copies.symmetrise.reshape(c, -1, copies.symmetrise.shape[-1])[:, 0]  # per-copy masks (same per row)
    if bool(masks.any()):
        unique, which = torch.unique(masks.cpu(), dim=0, return_inverse=True)
        pieces = out.clone()
        for k, mask in enumerate(unique):
            if bool(mask.any()):
                sel = (which == k).nonzero().flatten().to(out.device)
                part = out[sel]
                pieces[sel] = action.symmetrise_outputs(part.reshape(-1, *out.shape[2:]), mask).reshape(part.shape)
        out = pieces
    return out


def run_dense_streams(
    streams: Sequence[Stream],
    call: Callable[[torch.Tensor], torch.Tensor],
    aggregation: Aggregation,
    *,
    output: str = "invariant",
    max_batch: int | None = None,
) -> list[DenseRun]:
    """Run several inputs, each with its own plan and action, through ONE call of the model on all their copies.

    ``call`` maps a batch ``[R, ...]`` (rows of every stream, concatenated) to outputs ``[R, ...]``; with
    ``max_batch`` it is called on chunks of at most that many rows. Outputs are split back per stream, mapped back
    (``output="equivariant"``), symmetrised and aggregated.
    """
    realised, inputs = [], []
    for s in streams:
        context = s.context or {}
        copies = realise(s.plan, s.action, s.x, **context)
        realised.append(copies)
        moved = transform_copies(s.action, copies, s.x, **context)
        inputs.append(moved.reshape(-1, *moved.shape[2:]))
    shapes = {tuple(i.shape[1:]) for i in inputs}
    if len(shapes) != 1:
        raise ValueError(f"inputs run through one model call need one shape, got {sorted(shapes)}")
    batch = torch.cat(inputs) if len(inputs) > 1 else inputs[0]
    if max_batch is None or batch.shape[0] <= max_batch:
        out = call(batch)
    else:
        out = torch.cat([call(chunk) for chunk in batch.split(int(max_batch))])
    results = []
    for s, copies, piece in zip(streams, realised, out.split([i.shape[0] for i in inputs])):
        c, n = copies.input_elements.shape
        piece = piece.reshape(c, n, *piece.shape[1:])
        if output == "equivariant":
            piece = _map_back(s.action, copies, piece)
        combined = aggregation.finish(aggregation.combine(aggregation.to_space(piece), copies.weights))
        results.append(DenseRun(combined, copies, c * n))
    return results


def run_dense(plan: Plan, action: GroupAction, x: torch.Tensor, call: Callable[[torch.Tensor], torch.Tensor],
              aggregation: Aggregation, *, output: str = "invariant", max_batch: int | None = None,
              **context: Any) -> DenseRun:
    """Aggregated output of ``call`` over the copies of ``plan`` for inputs ``x [N, ...]`` (one batched call)."""
    return run_dense_streams([Stream(plan, action, x, context)], call, aggregation, output=output,
                             max_batch=max_batch)[0]


def symmetrise_function(fn: Callable[[torch.Tensor], torch.Tensor], action: GroupAction, x: torch.Tensor,
                        strategy: str, *, output: str = "equivariant", branch_weighting: str = "size",
                        **context: Any) -> torch.Tensor:
    """Make ``fn`` (inputs ``[N, ...]`` -> outputs ``[N, ...]``) invariant or equivariant by ``strategy``.

    Outputs are averaged as they are (``mean_logits``, identity link); equivariant outputs must be acted on by
    ``action`` like the inputs (for example per-pixel maps of an image action).
    """
    plan = make_plan(action.group, strategy, branch_weighting, output=output, deduplicate=output == "invariant")
    return run_dense(plan, action, x, fn, Aggregation("mean_logits", "identity"), output=output, **context).output


# ---------------------------------------------------------------------------------------------------- sequences
@dataclass
class SequenceRun:
    """What :func:`run_sequences` returns: the aggregated output ``[N, ...]`` and, per input, the copies its plan
    asked for (nonzero weight, before de-duplication) and the base-model rows it used (after)."""

    output: torch.Tensor
    copies: torch.Tensor
    rows: torch.Tensor

    @property
    def num_rows(self) -> int:
        """Base-model rows of the whole batch."""
        return int(self.rows.sum())


def _unique_rows(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)``: the first index of each distinct row of ``key`` (sorted by content) and the distinct
    row of every row."""
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((unique.shape[0],), key.shape[0], dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, inverse, torch.arange(key.shape[0], device=key.device), reduce="amin")
    return first, inverse


def _non_empty(batch: dict[str, torch.Tensor], side: str, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Give rows left with no token (a text that was only deleted spans) one padding token to attend to: a fixed
    function of the transformed row, so invariance is kept."""
    mask = batch["attention_mask"]
    if mask.shape[1] == 0:
        batch = {k: torch.nn.functional.pad(v, (0, 1), value=pad_token_id if k == "input_ids" else 0)
                 for k, v in batch.items()}
        mask = batch["attention_mask"]
    empty = ~mask.bool().any(-1)
    if bool(empty.any()):
        column = 0 if side == "right" else mask.shape[1] - 1
        mask = mask.clone()
        mask[empty, column] = 1
        batch = {**batch, "attention_mask": mask}
    return batch


def _trim(chunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the columns that are padding in every row of a chunk (padding is on one side, so they are contiguous)."""
    used = chunk["attention_mask"].bool().any(0).nonzero().flatten()
    if used.numel() == 0 or (int(used[0]) == 0 and int(used[-1]) == chunk["attention_mask"].shape[1] - 1):
        return chunk
    lo, hi = int(used[0]), int(used[-1]) + 1
    return {k: v[:, lo:hi] for k, v in chunk.items()}


def run_sequences(
    action: Any,
    copies: RowCopies,
    inputs: Mapping[str, torch.Tensor],
    call: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    aggregation: Aggregation,
    *,
    present: torch.Tensor | None = None,
    deduplicate: bool = True,
    max_rows: int | None = None,
    padding_side: str = "right",
    pad_token_id: int | None = None,
) -> SequenceRun:
    """Invariant output of ``call`` over the per-input copies of a length-changing action (span swaps).

    ``inputs`` holds ``input_ids [N, T]`` and optionally ``attention_mask`` and ``token_type_ids``. Steps: keep the
    copies with nonzero weight; with ``deduplicate`` and ``present [N, F]`` (the factors occurring in each input),
    copies that differ only on absent factors are merged before acting; the action builds one re-padded batch
    (``padding_side``: right by default, so absolute positions of real tokens never depend on the batch);
    identical transformed sequences of an input are merged (their weights summed); ``call(batch) -> [R, ...]``
    runs the base model on chunks of at most ``max_rows`` rows, each trimmed of all-padding columns; rows are
    combined per input in aggregation space as they arrive.
    """
    ids = torch.as_tensor(inputs["input_ids"])
    n = ids.shape[0]
    if n == 0:
        raise ValueError("run_sequences needs at least one input row")
    device = ids.device
    mask = inputs.get("attention_mask")
    types = inputs.get("token_type_ids")
    weights = copies.weights.to(device)
    row, copy = (weights.t() > 0).nonzero(as_tuple=True)  # input-major
    parts = copies.parts.to(device)[copy, row]
    canon = copies.canonicalise.to(device)[copy, row]
    w = weights[copy, row].float()
    copies_per_input = torch.bincount(row, minlength=n)
    if deduplicate and present is not None:
        on = present.to(device)[row]
        parts, canon = torch.where(on, parts, torch.zeros_like(parts)), canon & on
        first, inverse = _unique_rows(torch.cat([row[:, None], parts, canon.long()], dim=1))
        w = torch.zeros(first.numel(), device=device).index_add_(0, inverse, w)
        row, parts, canon = row[first], parts[first], canon[first]
    batch = action.act(ids[row], None if mask is None else torch.as_tensor(mask)[row], parts[None],
                       token_type_ids=None if types is None else torch.as_tensor(types)[row],
                       canonicalise=canon[None], canonicalization=copies.canonicalization,
                       padding_side=padding_side, pad_token_id=pad_token_id)
    pad = pad_token_id if pad_token_id is not None else getattr(action.tokenizer, "pad_token_id", None)
    batch = _non_empty(batch, padding_side, int(pad or 0))
    if deduplicate:
        key = [row[:, None], batch["input_ids"], batch["attention_mask"].long()]
        if "token_type_ids" in batch:
            key.append(batch["token_type_ids"].long())
        first, inverse = _unique_rows(torch.cat(key, dim=1))
        w = torch.zeros(first.numel(), device=device).index_add_(0, inverse, w)
        row = row[first]
        batch = {k: v[first] for k, v in batch.items()}
    rows_per_input = torch.bincount(row, minlength=n)
    total = row.numel()
    step = total if max_rows is None else max(1, int(max_rows))
    partial = None
    for start in range(0, total, step):
        stop = min(start + step, total)
        out = call(_trim({k: v[start:stop] for k, v in batch.items()}))
        values = aggregation.to_space(out)
        partial = aggregation.merge(partial, segment_combine(aggregation, values, w[start:stop], row[start:stop], n))
    return SequenceRun(aggregation.finish(partial), copies_per_input, rows_per_input)
