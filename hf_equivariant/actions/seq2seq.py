"""One group acting on sequence-to-sequence data: encoder ids by an input action, decoder ids and next-token
distributions by an output action.

A command word and its output word move together (``jump`` with ``JUMP``, ``left`` with ``TURN_LEFT``): element ``g``
of a product of cyclic factors acts on the encoder input by :attr:`PairedTokenAction.input_action` and on the decoder
input and the output distribution by :attr:`PairedTokenAction.output_action`. Both are
:class:`~hf_equivariant.actions.tokens.TokenPermutationAction` s of the same direct product (same factor names, same
orders, in the same order). With one vocabulary for both sides (T5, BART) they are usually one action whose cycles
hold the command words and the output words alike.

For the executor a pair ``(x, y)`` is one *joint* sequence: the encoder ids followed by the decoder ids shifted by the
input vocabulary size, acted on by :attr:`PairedTokenAction.joint`. Orientation and presence then read the whole
encoder input before any decoder token and stay causal over decoder positions, and a prefix of a joint sequence
always holds the whole encoder input, so rows forked from a cached prefix keep their encoder states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import GroupAction
from .tokens import TokenPermutationAction, WordSwap

__all__ = ["PairedTokenAction", "paired_word_swaps", "combined_word_swaps"]

Cycles = Sequence[Sequence[str | int]]


def _side_cycles(spec: Any, name: str) -> tuple[Cycles, Cycles]:
    """``(input cycles, output cycles)`` of one factor given as ``{"input": ..., "output": ...}`` or a pair."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"input", "output"})
        if unknown or not {"input", "output"} <= set(spec):
            raise ValueError(f"factor {name!r}: expected keys 'input' and 'output' (lists of word cycles), got "
                             f"{sorted(spec)}")
        return spec["input"], spec["output"]
    if isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2:
        return spec[0], spec[1]
    raise ValueError(f"factor {name!r}: give {{'input': [[...]], 'output': [[...]]}} or a pair (input cycles, "
                     f"output cycles), got {spec!r}")


def _token_name(tokenizer: Any, token_id: int) -> str:
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    name = convert(int(token_id)) if callable(convert) else None
    return str(name) if name else str(token_id)


def _resolve_side(cycles: Any, tokenizer: Any, name: str, side: str) -> WordSwap | None:
    """One side of a factor as a :class:`WordSwap` (``None`` when it has no cycles): ids are taken as they are,
    words are resolved to their single-token surface forms in ``tokenizer``."""
    if isinstance(cycles, str) or not isinstance(cycles, Sequence):
        raise ValueError(f"factor {name!r}: the {side} side must be a list of cycles, e.g. [['run', 'jump']], "
                         f"got {cycles!r}")
    cycles = [list(c) for c in cycles]
    if not cycles:
        return None
    flat = [t for c in cycles for t in c]
    if all(isinstance(t, int) and not isinstance(t, bool) for t in flat):
        words = [[_token_name(tokenizer, t) for t in c] for c in cycles]
        return WordSwap(name=name, words=words, token_cycles=[[int(t) for t in c] for c in cycles])
    if not all(isinstance(t, str) for t in flat):
        raise ValueError(f"factor {name!r}: the {side} cycles must be all words or all token ids, got {cycles!r}")
    if tokenizer is None:
        raise ValueError(f"factor {name!r}: a tokenizer is needed to resolve the {side} words {cycles!r}")
    return WordSwap.from_words(tokenizer, cycles, name=name)


def paired_word_swaps(factors: Mapping[str, Any], tokenizer: Any = None,
                      output_tokenizer: Any = None) -> list[tuple[str, WordSwap | None, WordSwap | None]]:
    """Resolve factors given as ``{name: {"input": cycles, "output": cycles}}`` (the form of
    ``hf_equivariant.datasets.scan.SCAN_FACTORS`` and of ``factor_token_cycles``) or ``{name: (input, output)}``.

    Cycles are lists of words (resolved with ``tokenizer`` on the input side and ``output_tokenizer``, default the
    same, on the output side) or of token ids. Returns ``(name, input swap, output swap)`` per factor, in order; a
    side without cycles is ``None``. Factors with no cycle on either side (up/down in plain SCAN) are dropped.
    """
    if not isinstance(factors, Mapping) or not factors:
        raise ValueError("factors must be a non-empty mapping {name: {'input': [[...]], 'output': [[...]]}}")
    out_tok = output_tokenizer if output_tokenizer is not None else tokenizer
    resolved = []
    for name, spec in factors.items():
        inputs, outputs = _side_cycles(spec, str(name))
        pair = (str(name), _resolve_side(inputs, tokenizer, str(name), "input"),
                _resolve_side(outputs, out_tok, str(name), "output"))
        if pair[1] is not None or pair[2] is not None:
            resolved.append(pair)
    if not resolved:
        raise ValueError("no factor moves any token: every cycle is empty")
    orders = {n: {s.order for s in (i, o) if s is not None} for n, i, o in resolved}
    bad = {n: sorted(o) for n, o in orders.items() if len(o) > 1}
    if bad:
        raise ValueError(f"the input and output cycles of a factor must have one length (its order); got {bad}")
    return resolved


def combined_word_swaps(pairs: Sequence[tuple[str, WordSwap | None, WordSwap | None]]) -> list[WordSwap]:
    """One swap per factor holding its input and output cycles together (one vocabulary for both sides).

    A cycle listed on both sides (the same word in commands and outputs) is kept once; ids moved inconsistently by
    the two sides are an error of :class:`WordSwap`.
    """
    swaps = []
    for name, inputs, outputs in pairs:
        words: list[list[str]] = []
        cycles: list[list[int]] = []
        for side in (s for s in (inputs, outputs) if s is not None):
            words += [list(w) for w in side.words if list(w) not in words]
            cycles += [list(c) for c in side.token_cycles if list(c) not in cycles]
        swaps.append(WordSwap(name=name, words=words, token_cycles=cycles))
    return swaps


def _same_group(input_action: TokenPermutationAction, output_action: TokenPermutationAction) -> None:
    ins = [(f.name, f.order) for f in input_action.factors]
    outs = [(f.name, f.order) for f in output_action.factors]
    if ins != outs:
        raise ValueError(f"the input and output actions must be the same group (factor names and orders, in order): "
                         f"input {ins}, output {outs}")


class PairedTokenAction(GroupAction):
    """A product of cyclic factors acting on encoder ids (``input_action``) and on decoder ids and next-token
    distributions (``output_action``) at once; ``joint`` is the same group acting on joint sequences.

    Joint ids: encoder id ``v`` is ``v``; decoder id ``w`` is ``input_vocab + w``; ``joint_vocab + k`` is the neutral
    input of joint cycle ``k`` (fixed by every element; see :meth:`neutral_members`).
    """

    def __init__(self, input_action: TokenPermutationAction, output_action: TokenPermutationAction) -> None:
        _same_group(input_action, output_action)
        self.input_action, self.output_action = input_action, output_action
        self.group = output_action.group
        self.input_vocab, self.output_vocab = input_action.vocab_size, output_action.vocab_size
        offset = self.input_vocab
        factors = []
        for fi, fo in zip(input_action.factors, output_action.factors):
            cycles = [list(c) for c in fi.token_cycles] + [[t + offset for t in c] for c in fo.token_cycles]
            factors.append(WordSwap(name=fi.name, words=[*fi.words, *fo.words], token_cycles=cycles))
        self.joint = TokenPermutationAction(factors, self.input_vocab + self.output_vocab)
        self.joint_vocab = self.joint.vocab_size

    @property
    def factors(self) -> tuple[WordSwap, ...]:
        return self.output_action.factors

    # ------------------------------------------------------------------ joint sequences
    def join(self, encoder_ids: torch.Tensor, decoder_ids: torch.Tensor) -> torch.Tensor:
        """``[N, Te + Td]`` joint ids of encoder ids ``[N, Te]`` and decoder ids ``[N, Td]``."""
        self.input_action.check_ids(encoder_ids)
        self.output_action.check_ids(decoder_ids)
        return torch.cat([encoder_ids, decoder_ids.to(encoder_ids.device) + self.input_vocab], dim=-1)

    def neutral_members(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per joint cycle ``k``: ``(on the decoder side [K] bool, member ids on that side [K, max order],
        members valid [K, max order] bool)``, to build the neutral input of cycle ``k`` from its side's embeddings."""
        tables = self.joint.tables(device)
        cycles, orders = tables["cycles"], tables["cycle_order"]
        decoder = cycles[:, 0] >= self.input_vocab
        local = cycles - decoder[:, None].long() * self.input_vocab
        valid = torch.arange(cycles.shape[1], device=cycles.device)[None] < orders[:, None]
        return decoder, local, valid

    def split_ids(self, joint_ids: torch.Tensor, decoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids of one side from joint ids: ``(ids, cycle)``, where ``cycle`` is the joint cycle of a neutral
        placeholder (``-1`` elsewhere) and ``ids`` holds the cycle's first member there."""
        neutral = joint_ids >= self.joint_vocab
        cycle = torch.where(neutral, joint_ids - self.joint_vocab, torch.full_like(joint_ids, -1))
        _, local, _ = self.neutral_members(joint_ids.device)
        ids = joint_ids - self.input_vocab if decoder else joint_ids
        ids = torch.where(neutral, local[cycle.clamp_min(0), 0], ids)
        return ids, cycle

    # ------------------------------------------------------------------ the group on each side
    def transform_inputs(self, x: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``g . x`` on encoder ids."""
        return self.input_action.transform_inputs(x, elements)

    def transform_decoder(self, y: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``g . y`` on decoder ids."""
        return self.output_action.transform_inputs(y, elements)

    def transform_outputs(self, y: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``g . p`` on next-token distributions (logits over the output vocabulary)."""
        return self.output_action.transform_outputs(y, elements)

    def element_parts(self, element: int | torch.Tensor) -> torch.Tensor:
        return self.output_action.element_parts(element)

    def element_label(self, element: int) -> str:
        return self.output_action.element_label(element)

    def __repr__(self) -> str:
        same = self.input_action is self.output_action
        return (f"PairedTokenAction({[f.name for f in self.factors]}, input_vocab={self.input_vocab}, "
                f"output_vocab={self.output_vocab}{', one action for both sides' if same else ''})")
