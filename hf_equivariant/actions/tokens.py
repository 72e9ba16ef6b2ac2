"""Word-swap groups: cyclic groups that permute a vocabulary by cycling sets of words, and their products.

A :class:`WordSwap` factor holds sets of ``k`` words (``man``/``woman``, or ``Black``/``White``/``Asian``); its
generator maps member ``j`` of every set to member ``j+1 (mod k)``, all sets moving together. Each word is
resolved to the tokenizer's single tokens for its common surface forms. A :class:`TokenPermutationAction` combines
several factors (which must act on disjoint tokens, so they commute) and applies any product element to token ids,
to logits, or canonicalises factors away, all as vectorised gathers with no loop over group elements.

Only the *support* (the few hundred token ids the factors move) is ever touched by a group element; every other
token is fixed. :meth:`TokenPermutationAction.local_maps` and :meth:`~TokenPermutationAction.local_orbits` describe
the action on the support alone, which is what lets the executor aggregate distributions over a 50k vocabulary at
the cost of the support.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from transformers.utils import logging

from .._memo import BoundedMemo
from ..groups import DirectProductGroup, FiniteGroup, cyclic_group
from .base import GroupAction, Orientation
from .word_sets import builtin_word_set_names, word_set_data

logger = logging.get_logger(__name__)

__all__ = ["WordSwap", "TokenPermutationAction", "builtin_word_set_names", "SURFACE_FORMS", "single_token_id"]


def _capitalise(word: str) -> str:
    return word[:1].upper() + word[1:]


# (name, function) pairs: the surface forms a word is tried in, in this order.
SURFACE_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("as written", lambda w: w),
    ("leading space", lambda w: " " + w),
    ("capitalised", _capitalise),
    ("capitalised, leading space", lambda w: " " + _capitalise(w)),
    ("lower case", str.lower),
    ("lower case, leading space", lambda w: " " + w.lower()),
)


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` if the tokenizer encodes it as exactly one known token (never the unknown token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(ids[0])


def _raw_vocab(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's vocabulary of raw pieces (empty when it has none)."""
    get = getattr(tokenizer, "get_vocab", None)
    try:
        return dict(get()) if callable(get) else {}
    except (TypeError, NotImplementedError):
        return {}


def _form_ids(tokenizer: Any, words: Sequence[str], vocab: dict[str, int]) -> list[tuple[str, list[int | None]]]:
    """For each surface form, the single-token id of every member (``None`` where it is not one token).

    Besides what the tokenizer produces for each form, raw vocabulary pieces spelled exactly like a form count too:
    SentencePiece-style tokenizers have a bare piece (no word-boundary marker) used after "(", quotes or a newline,
    which encoding the word alone never produces.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    out = [(form_name, [single_token_id(tokenizer, form(w)) for w in words]) for form_name, form in SURFACE_FORMS]
    for form_name, form in (("raw piece", lambda w: w), ("raw piece, capitalised", _capitalise),
                            ("raw piece, lower case", str.lower)):
        ids = [vocab.get(form(w)) for w in words]
        ids = [None if i is None or i == unk else int(i) for i in ids]
        if any(i is not None for i in ids):
            out.append((form_name, ids))
    return out


def _check_word_sets(word_sets: Any, name: str) -> list[list[str]]:
    """Word sets as a list of lists of non-empty strings, or a clear error."""
    if isinstance(word_sets, str) or not isinstance(word_sets, Sequence) or not word_sets:
        raise ValueError(f"word swap {name!r}: word_sets must be a non-empty list of sets, e.g. "
                         f"[['man', 'woman'], ['he', 'she']]; got {word_sets!r}")
    sets = []
    for s in word_sets:
        if isinstance(s, str):
            raise ValueError(f"word swap {name!r}: got a flat list of words {list(word_sets)!r}; pass a list of "
                             f"sets, e.g. [{list(word_sets)!r}] to cycle these words")
        if not isinstance(s, Sequence):
            raise ValueError(f"word swap {name!r}: each set must be a list of words, got {s!r}")
        for w in s:
            if not isinstance(w, str):
                raise ValueError(f"word swap {name!r}: words must be strings, got {w!r} ({type(w).__name__}) in {s!r}")
            if not w.strip():
                raise ValueError(f"word swap {name!r}: empty word in set {list(s)!r}")
        sets.append(list(s))
    return sets


@dataclass
class WordSwap:
    """One cyclic factor acting on token ids.

    Attributes:
        name: the factor's name (``"gender"``).
        words: the word sets, each of ``order`` words.
        token_cycles: resolved cycles, each a list of ``order`` token ids (one per surface form per set).
    """

    name: str
    words: list[list[str]]
    token_cycles: list[list[int]]
    group: FiniteGroup = field(init=False, repr=False)
    #: Surface forms that are one token for some members of a set but not all (so they are not swapped).
    unswappable: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.words or not self.token_cycles:
            raise ValueError(f"word swap {self.name!r} has no words")
        order = len(self.token_cycles[0])
        if order < 2:
            raise ValueError(f"word swap {self.name!r}: each set needs at least two words")
        if any(len(c) != order for c in self.token_cycles):
            raise ValueError(f"word swap {self.name!r}: all sets must have the same size")
        if any(len(s) != order for s in self.words):
            raise ValueError(f"word swap {self.name!r}: word sets of sizes {[len(s) for s in self.words]} do not "
                             f"match token cycles of size {order}")
        flat = [t for c in self.token_cycles for t in c]
        if len(set(flat)) != len(flat):
            seen: dict[int, int] = {}
            for t in flat:
                seen[t] = seen.get(t, 0) + 1
            dup = sorted(t for t, n in seen.items() if n > 1)
            raise ValueError(f"word swap {self.name!r}: token ids {dup} appear in more than one place, so the swap "
                             "would not be a permutation; remove the overlapping words")
        self.group = cyclic_group(order, name=self.name,
                                  labels=[f"{self.name}^{k}" if k else "e" for k in range(order)])

    @property
    def order(self) -> int:
        return self.group.order

    @property
    def support(self) -> set[int]:
        """Token ids this factor moves."""
        return {t for c in self.token_cycles for t in c}

    @classmethod
    def from_words(cls, tokenizer: Any, word_sets: Sequence[Sequence[str]], name: str = "custom") -> WordSwap:
        """Resolve word sets against ``tokenizer``.

        Each set is cycled member ``j`` -> ``j+1``. For every surface form in :data:`SURFACE_FORMS` that is a single
        token for every member of the set, that tuple of tokens becomes one cycle. A set with no usable form raises
        an error that names the words that are never a single token.
        """
        sets = _check_word_sets(word_sets, name)
        sizes = {len(s) for s in sets}
        if len(sizes) != 1:
            raise ValueError(f"word swap {name!r}: all sets must have the same number of words, got sizes {sorted(sizes)}")
        if tokenizer is None:
            raise ValueError(f"word swap {name!r}: a tokenizer is needed to resolve words to token ids")
        cycles: list[list[int]] = []
        partial: list[str] = []
        vocab = _raw_vocab(tokenizer)
        for words in sets:
            if len(set(words)) != len(words):
                raise ValueError(f"word swap {name!r}: set {words} repeats a word")
            found = []
            for form_name, ids in _form_ids(tokenizer, words, vocab):
                complete = all(i is not None for i in ids)
                if complete and len(set(ids)) == len(ids) and ids not in found:
                    found.append(ids)
                elif not complete and any(i is not None for i in ids):
                    missing = [w for w, i in zip(words, ids) if i is None]
                    partial.append(f"{words} {form_name}: {missing} not one token")
            if not found:
                never = [w for w in words if all(single_token_id(tokenizer, f(w)) is None for _, f in SURFACE_FORMS)]
                culprit = never or words
                raise ValueError(
                    f"word swap {name!r}: {', '.join(repr(w) for w in culprit)} has no single-token surface form "
                    f"shared by its set {words} in this tokenizer (tried: {', '.join(n for n, _ in SURFACE_FORMS)}); "
                    "multi-token words cannot be swapped token by token: remove the set or pick other words"
                )
            cycles.extend(found)
        if partial:
            logger.info("word swap %r: %d surface form(s) stay unswappable (not one token for every member), "
                        "e.g. %s; see WordSwap.unswappable", name, len(partial), partial[0])
        swap = cls(name=name, words=sets, token_cycles=cycles)
        swap.unswappable = partial
        return swap

    def verify(self, tokenizer: Any) -> None:
        """Check that every token id of every cycle is a surface form of the word at that member position, and that
        every listed word is swapped by some cycle (catches hand-edited configs and mismatched tokenizers)."""
        vocab = _raw_vocab(tokenizer)
        allowed: list[set[int]] = [set() for _ in range(self.order)]
        swapped_words: set[str] = set()
        cycle_sets = {tuple(c) for c in self.token_cycles}
        for words in self.words:
            for _, ids in _form_ids(tokenizer, words, vocab):
                for j, i in enumerate(ids):
                    if i is not None:
                        allowed[j].add(i)
                if all(i is not None for i in ids) and tuple(ids) in cycle_sets:
                    swapped_words.update(words)
        for cycle in self.token_cycles:
            bad = [(j, t) for j, t in enumerate(cycle) if t not in allowed[j]]
            if bad:
                j, t = bad[0]
                raise ValueError(f"word swap {self.name!r}: token id {t} (member {j} of cycle {cycle}) is not a surface "
                                 f"form of any listed word at that position in this tokenizer; the saved words and "
                                 "token ids disagree (re-create the factor with WordSwap.from_words)")
        unswapped = [w for s in self.words for w in s if w not in swapped_words]
        if unswapped:
            raise ValueError(f"word swap {self.name!r}: words {unswapped} are listed but no token cycle swaps them; the "
                             "saved words and token ids disagree (re-create the factor with WordSwap.from_words)")

    @classmethod
    def builtin(cls, name: str, tokenizer: Any) -> WordSwap:
        """One of the shipped word sets (see ``hf_equivariant/data/word_sets``) resolved against ``tokenizer``."""
        data = word_set_data(name)
        return cls.from_words(tokenizer, data["sets"], name=data["name"])

    @classmethod
    def from_data(cls, data: dict[str, Any], tokenizer: Any) -> WordSwap:
        """From parsed word-set data (see :func:`hf_equivariant.load_word_set_file`)."""
        return cls.from_words(tokenizer, data["sets"], name=str(data["name"]))

    def to_spec(self) -> dict[str, Any]:
        """JSON-serialisable description, stored in saved configs."""
        return {"type": "word_swap", "name": self.name, "order": self.order, "words": self.words,
                "token_ids": self.token_cycles}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> WordSwap:
        """Rebuild from :meth:`to_spec` output, validating it."""
        if not isinstance(spec, dict) or spec.get("type") != "word_swap":
            raise ValueError(f"malformed group spec {spec!r}: expected a dict with type 'word_swap'")
        missing = [k for k in ("name", "words", "token_ids") if k not in spec]
        if missing:
            raise ValueError(f"malformed group spec for {spec.get('name', '?')!r}: missing {missing}")
        try:
            if any(isinstance(t, bool) or not isinstance(t, int) for c in spec["token_ids"] for t in c):
                raise TypeError("token ids must be integers")
            cycles = [[int(t) for t in c] for c in spec["token_ids"]]
            words = _check_word_sets(spec["words"], str(spec["name"]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"malformed group spec for {spec['name']!r}: {err}") from None
        swap = cls(name=str(spec["name"]), words=words, token_cycles=cycles)
        if "order" in spec and int(spec["order"]) != swap.order:
            raise ValueError(f"malformed group spec for {swap.name!r}: order {spec['order']} but cycles of {swap.order}")
        return swap


class TokenPermutationAction(GroupAction):
    """The direct product of word-swap factors acting on a vocabulary of ``vocab_size`` ids.

    Element ``g = (g_1, ..., g_N)`` (factor indices, see :class:`~hf_equivariant.groups.DirectProductGroup`) maps
    token ``v`` in a cycle of factor ``i`` at position ``p`` to the token at position ``p + g_i (mod |G_i|)``; other
    tokens are fixed. The inverse action on a next-token distribution ``y`` is ``(g^-1 . y)[w] = y[g . w]``: index
    by the forward map.
    """

    can_orient = True

    def __init__(self, factors: Sequence[WordSwap], vocab_size: int) -> None:
        if not factors:
            raise ValueError("at least one word-swap factor is needed")
        self.factors = tuple(factors)
        self.vocab_size = int(vocab_size)
        self.group = DirectProductGroup([f.group for f in self.factors])
        owner: dict[int, str] = {}
        for f in self.factors:
            for t in f.support:
                if t >= self.vocab_size or t < 0:
                    raise ValueError(f"factor {f.name!r}: token id {t} is outside the model's vocabulary of "
                                     f"{self.vocab_size}; the tokenizer does not match the model")
                if t in owner:
                    raise ValueError(f"token id {t} is moved by both {owner[t]!r} and {f.name!r}: factors must act "
                                     "on disjoint words (remove the word from one of them)")
                owner[t] = f.name
        cpu = torch.device("cpu")
        factor_of = torch.full((self.vocab_size,), -1, dtype=torch.long, device=cpu)
        position = torch.zeros(self.vocab_size, dtype=torch.long, device=cpu)
        cycle_of = torch.zeros(self.vocab_size, dtype=torch.long, device=cpu)
        max_order = max(f.order for f in self.factors)
        cycles, orders = [], []
        for i, f in enumerate(self.factors):
            for c in f.token_cycles:
                ids = torch.tensor(c, device=cpu)
                factor_of[ids] = i
                position[ids] = torch.arange(len(c), device=cpu)
                cycle_of[ids] = len(cycles)
                cycles.append(c + [c[0]] * (max_order - len(c)))
                orders.append(f.order)
        support = (factor_of >= 0).nonzero().flatten()
        local_of = torch.full((self.vocab_size,), -1, dtype=torch.long, device=cpu)
        local_of[support] = torch.arange(support.numel(), device=cpu)
        # Ids vocab_size + k stand for "the neutral input of cycle k" (anchor-free design 2): fixed by every element.
        self.num_cycles = len(cycles)
        pad = self.num_cycles
        factor_of = torch.cat([factor_of, torch.full((pad,), -1, dtype=torch.long, device=cpu)])
        position = torch.cat([position, torch.zeros(pad, dtype=torch.long, device=cpu)])
        cycle_of = torch.cat([cycle_of, torch.zeros(pad, dtype=torch.long, device=cpu)])
        self._tables = {
            "factor_of": factor_of, "position": position, "cycle_of": cycle_of,
            "cycles": torch.tensor(cycles, dtype=torch.long, device=cpu),
            "cycle_order": torch.tensor(orders, dtype=torch.long, device=cpu),
            "orders": torch.tensor(self.factor_orders, dtype=torch.long, device=cpu),
            "support": support, "local_of": local_of,
        }
        self._memo = BoundedMemo(max_bytes=64 * 2**20)

    # ------------------------------------------------------------------ basics
    @property
    def support_size(self) -> int:
        """Number of token ids moved by some factor."""
        return int(self._tables["support"].numel())

    def tables(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Lookup tables on ``device`` (built lazily and kept in a bounded memo)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self._tables
        return self._memo.get(("tables", str(device)), lambda: {k: v.to(device) for k, v in self._tables.items()})

    def inverse_parts(self, parts: torch.Tensor) -> torch.Tensor:
        """Factor-wise inverse of elements given as factor indices ``[..., N]``."""
        orders = self.tables(parts.device)["orders"]
        return (orders - parts) % orders

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise a clear error for token ids outside the vocabulary."""
        if ids.numel():
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"token id {bad} is outside the vocabulary of {self.vocab_size} ids; the inputs do "
                                 "not belong to this model's tokenizer")

    # ------------------------------------------------------------------ acting on ids
    def act(self, ids: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Apply product elements to token ids.

        ``ids``: ``[..., T]``; ``parts``: ``[..., N]`` factor indices broadcastable to ``ids``' leading shape, or
        ``[..., T, N]`` for one element per position. Neutral ids (see :meth:`canonicalise`) are fixed.
        """
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size + self.num_cycles):
            self.check_ids(ids)
        t = self.tables(ids.device)
        parts = parts.to(ids.device)
        factor = t["factor_of"][ids]  # [..., T]
        moved = factor >= 0
        if parts.dim() == ids.dim() + 1:  # per position
            shift = torch.gather(parts.expand(*ids.shape, parts.shape[-1]), -1, factor.clamp_min(0)[..., None])[..., 0]
        else:
            shift = torch.gather(parts.expand(*ids.shape[:-1], parts.shape[-1]), -1, factor.clamp_min(0))
        cycle = t["cycle_of"][ids]
        order = t["cycle_order"][cycle]
        new_pos = (t["position"][ids] + shift) % order
        return torch.where(moved, t["cycles"][cycle, new_pos], ids)

    def canonicalise(self, ids: torch.Tensor, factor_mask: torch.Tensor, canonicalization: str = "representative",
                     **context: Any) -> torch.Tensor:
        """Remove the action of the factors in ``factor_mask`` (``[..., N]`` bool) from token ids.

        ``representative`` (the paper's) maps each of their tokens to the first member of its set; ``neutral`` maps
        it to the id ``vocab_size + k`` of its cycle ``k``, which stands for an input that privileges no member (the
        wrapper feeds the mean embedding of the cycle there). Both are invariant to those factors and commute with
        the others (disjoint supports).
        """
        t = self.tables(ids.device)
        factor = t["factor_of"][ids]
        mask = factor_mask.to(ids.device).expand(*ids.shape[:-1], factor_mask.shape[-1])
        selected = (factor >= 0) & torch.gather(mask, -1, factor.clamp_min(0))
        if canonicalization == "neutral":
            return torch.where(selected, self.vocab_size + t["cycle_of"][ids], ids)
        if canonicalization != "representative":
            raise ValueError(f"unknown canonicalization {canonicalization!r}")
        return torch.where(selected, t["cycles"][t["cycle_of"][ids], 0], ids)

    def neutral_embeddings(self, embedding_weight: torch.Tensor) -> torch.Tensor:
        """``[num_cycles, d]``: the mean input embedding of each cycle's members (the neutral inputs' embeddings)."""
        t = self.tables(embedding_weight.device)
        cycles, orders = t["cycles"], t["cycle_order"]
        members = torch.arange(cycles.shape[1], device=cycles.device)[None] < orders[:, None]  # padded columns off
        gathered = embedding_weight[cycles]  # [K, max_order, d]
        return (gathered * members[..., None]).sum(1) / orders[:, None].to(gathered.dtype)

    def presence(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, N]``: whether each factor has a token in ``ids[:, :t+1]`` (group-invariant, causal)."""
        return self.orientation(ids, valid)[1]

    def transform_inputs(self, ids: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        return self.act(ids, self.element_parts(elements if not torch.is_tensor(elements) else elements.to(ids.device)))

    # ------------------------------------------------------------------ acting on distributions
    def vocabulary_maps(self, parts: torch.Tensor, device: torch.device | str, width: int | None = None) -> torch.Tensor:
        """``[..., width]`` maps ``v -> g.v`` for each element in ``parts`` (``[..., N]``); identity past the vocab."""
        width = width or self.vocab_size
        base = torch.arange(self.vocab_size, device=device)
        maps = self.act(base.expand(*parts.shape[:-1], self.vocab_size), parts.to(device))
        if width > self.vocab_size:
            extra = torch.arange(self.vocab_size, width, device=device).expand(*parts.shape[:-1], width - self.vocab_size)
            maps = torch.cat([maps, extra], dim=-1)
        return maps

    def transform_outputs(self, y: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``(g.y)[w] = y[g^-1.w]`` on the last axis; ``elements`` is one element or one per leading row."""
        parts = self.inverse_parts(self.element_parts(elements if not torch.is_tensor(elements)
                                                      else elements.to(y.device)).to(y.device))
        maps = self.vocabulary_maps(parts, y.device, y.shape[-1])
        if maps.dim() == 1:
            return y[..., maps]
        maps = maps.view(maps.shape[0], *([1] * (y.dim() - 2)), maps.shape[-1]).expand_as(y)
        return y.gather(-1, maps)

    def orbit_index(self, factor_mask: torch.Tensor, device: torch.device | str) -> tuple[torch.Tensor, int]:
        """Orbit ids of every token under the factors in ``factor_mask`` (``[..., N]``).

        Returns ``(index [..., V], num_orbits)``: tokens moved by a selected factor share the id of their cycle,
        every other token has its own id. Averaging a distribution over these orbits symmetrises it.
        """
        t = self.tables(device)
        factor = t["factor_of"][: self.vocab_size]
        mask = factor_mask.to(device)
        selected = (factor >= 0) & mask[..., factor.clamp_min(0)]
        num_cycles = t["cycles"].shape[0]
        index = torch.where(selected, t["cycle_of"][: self.vocab_size],
                            torch.arange(self.vocab_size, device=device) + num_cycles)
        return index, num_cycles + self.vocab_size

    def symmetrise_outputs(self, y: torch.Tensor, factor_mask: torch.Tensor) -> torch.Tensor:
        """Average ``y`` (probabilities or logits, ``[..., V]``) over the orbits of the masked factors."""
        index, num = self.orbit_index(factor_mask, y.device)
        if y.shape[-1] > self.vocab_size:
            extra = torch.arange(y.shape[-1] - self.vocab_size, device=y.device) + num
            index = torch.cat([index, extra.expand(*index.shape[:-1], -1)], -1)
            num += y.shape[-1] - self.vocab_size
        index = index.expand_as(y)
        sums = y.new_zeros((*y.shape[:-1], num)).scatter_add_(-1, index, y)
        counts = y.new_zeros((*y.shape[:-1], num)).scatter_add_(-1, index, torch.ones_like(y))
        return (sums / counts.clamp_min(1)).gather(-1, index)

    # ------------------------------------------------------------------ the support (sparse aggregation)
    def support(self, device: torch.device | str) -> torch.Tensor:
        """``[S]`` sorted token ids moved by some factor; every other id is fixed by every element."""
        return self.tables(device)["support"]

    def local_maps(self, parts: torch.Tensor) -> torch.Tensor:
        """``[..., S]``: for each element in ``parts`` (``[..., N]``) and support token ``s_j``, the support index
        of ``g . s_j`` (the action restricted to the support). Memoised for small element tables."""
        def build() -> torch.Tensor:
            t = self.tables(parts.device)
            support = t["support"]
            moved = self.act(support.expand(*parts.shape[:-1], support.numel()), parts)
            return t["local_of"][moved]

        if parts.numel() <= 4096:
            return self._memo.get(("local_maps", str(parts.device), tuple(parts.shape),
                                   tuple(parts.flatten().tolist())), build)
        return build()

    def local_orbits(self, factor_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``([..., S], num)``: orbit ids of the support tokens under the masked factors (``[..., N]`` bool)."""
        t = self.tables(factor_mask.device)
        support = t["support"]
        factor = t["factor_of"][support]
        selected = torch.gather(factor_mask.expand(*factor_mask.shape[:-1], self.num_factors), -1,
                                factor.expand(*factor_mask.shape[:-1], -1))
        num_cycles = int(t["cycles"].shape[0])
        own = torch.arange(support.numel(), device=support.device) + num_cycles
        return torch.where(selected, t["cycle_of"][support], own), num_cycles + int(support.numel())

    # ------------------------------------------------------------------ orientation (canonical strategy)
    def orientation(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position: the set position of the first token of each factor seen so far, and whether there is one.

        ``ids``: ``[B, T]``; ``valid``: ``[B, T]`` bool (False for padding). Returns ``(pos [B, T, N], found
        [B, T, N])``. Position ``t`` depends only on ``ids[:, :t+1]``, so a strategy oriented by it stays causal;
        ``pos[:, t]`` is the element ``h`` with ``h^-1 . x`` starting each factor from its first member.
        """
        t = self.tables(ids.device)
        factor = t["factor_of"][ids]
        if valid is not None:
            factor = torch.where(valid.bool(), factor, torch.full_like(factor, -1))
        hits = factor[..., None] == torch.arange(self.num_factors, device=ids.device)  # [B, T, N]
        found = hits.cumsum(dim=1) > 0
        first_hit = hits & (hits.cumsum(dim=1) == 1)  # the first occurrence only
        token_pos = t["position"][ids][..., None].expand_as(hits)
        pos = (first_hit.long() * token_pos).cumsum(dim=1)  # carries the first occurrence's position forward
        return pos, found

    def first_positions(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row and factor: set position of its first token in the whole row, and whether one exists."""
        pos, found = self.orientation(ids, valid)
        return pos[:, -1], found[:, -1]

    def orient(self, ids: torch.Tensor, valid: torch.Tensor | None = None, **context: Any) -> Orientation:
        """Orient each row by the first token of each factor, causally.

        The row is moved by ``k = h^-1`` of the whole row (``h`` from :meth:`orientation` at the last position);
        position ``t``'s output is mapped back by ``k_t``, which only uses tokens up to ``t``. Both agree on every
        token up to ``t``: a factor first seen after ``t`` has no token before it. Factors not seen by ``t`` are
        symmetrised at ``t``.
        """
        pos, found = self.orientation(ids, valid)
        per_position = self.group.combine_parts(self.inverse_parts(pos))  # [B, T]
        return Orientation(per_position[:, -1], per_position, ~found)

    def element_label(self, element: int) -> str:
        parts = self.group.split(element)
        named = [f"{f.name}^{p}" for f, p in zip(self.factors, parts) if p]
        return "*".join(named) or "identity"

    def to_spec(self) -> list[dict[str, Any]]:
        return [f.to_spec() for f in self.factors]

    def __repr__(self) -> str:
        return f"TokenPermutationAction({[f.name for f in self.factors]}, vocab_size={self.vocab_size})"
