"""Word-swap groups: cyclic groups that permute a vocabulary by cycling sets of words, and their products.

A :class:`WordSwap` factor holds sets of ``k`` words (``man``/``woman``, or ``Black``/``White``/``Asian``); its
generator maps member ``j`` of every set to member ``j+1 (mod k)``, all sets moving together. Each word is
resolved to the tokenizer's single tokens for its common surface forms. A :class:`TokenPermutationAction` combines
several factors (which must act on disjoint tokens, so they commute) and applies any product element to token ids,
to logits, or canonicalises factors away, all as vectorised gathers with no loop over group elements.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch

from ..groups import FiniteGroup, ProductGroup, cyclic_group

__all__ = ["WordSwap", "TokenPermutationAction", "builtin_word_set_names", "SURFACE_FORMS"]


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


def builtin_word_set_names() -> list[str]:
    """Names of the word sets shipped with the package (``gender``, ``race``, ...)."""
    folder = resources.files("hf_equivariant") / "data" / "word_sets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _load_builtin(name: str) -> dict[str, Any]:
    path = resources.files("hf_equivariant") / "data" / "word_sets" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown word set {name!r}; built-in sets are {builtin_word_set_names()}")
    return json.loads(path.read_text(encoding="utf-8"))


def _single_token(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` if the tokenizer encodes it as exactly one known token (never the unknown token)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(ids[0])


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

    def __post_init__(self) -> None:
        if not self.words or not self.token_cycles:
            raise ValueError(f"word swap {self.name!r} has no words")
        order = len(self.token_cycles[0])
        if order < 2:
            raise ValueError(f"word swap {self.name!r}: each set needs at least two words")
        if any(len(c) != order for c in self.token_cycles):
            raise ValueError(f"word swap {self.name!r}: all sets must have the same size")
        flat = [t for c in self.token_cycles for t in c]
        if len(set(flat)) != len(flat):
            seen: dict[int, int] = {}
            for t in flat:
                seen[t] = seen.get(t, 0) + 1
            dup = sorted(t for t, n in seen.items() if n > 1)
            raise ValueError(f"word swap {self.name!r}: token ids {dup} appear in more than one place, so the swap "
                             "would not be a permutation; remove the overlapping words")
        self.group = cyclic_group(order, name=self.name)

    @property
    def order(self) -> int:
        return self.group.order

    @property
    def support(self) -> set[int]:
        """Token ids this factor moves."""
        return {t for c in self.token_cycles for t in c}

    @classmethod
    def from_words(
        cls, tokenizer: Any, word_sets: Sequence[Sequence[str]], name: str = "custom"
    ) -> WordSwap:
        """Resolve word sets against ``tokenizer``.

        Each set is cycled member ``j`` -> ``j+1``. For every surface form in :data:`SURFACE_FORMS` that is a single
        token for every member of the set, that tuple of tokens becomes one cycle. A set with no usable form raises
        an error that names the words that are never a single token.
        """
        sets = [list(s) for s in word_sets]
        if not sets:
            raise ValueError(f"word swap {name!r}: no word sets given")
        sizes = {len(s) for s in sets}
        if len(sizes) != 1:
            raise ValueError(f"word swap {name!r}: all sets must have the same number of words, got sizes {sorted(sizes)}")
        cycles: list[list[int]] = []
        for words in sets:
            if len(set(words)) != len(words):
                raise ValueError(f"word swap {name!r}: set {words} repeats a word")
            found = []
            for _, form in SURFACE_FORMS:
                ids = [_single_token(tokenizer, form(w)) for w in words]
                if all(i is not None for i in ids) and len(set(ids)) == len(ids) and ids not in found:
                    found.append(ids)
            if not found:
                never = [w for w in words if all(_single_token(tokenizer, f(w)) is None for _, f in SURFACE_FORMS)]
                culprit = never or words
                raise ValueError(
                    f"word swap {name!r}: {', '.join(repr(w) for w in culprit)} has no single-token surface form "
                    f"shared by its set {words} in this tokenizer (tried: {', '.join(n for n, _ in SURFACE_FORMS)}); "
                    "multi-token words cannot be swapped token by token: remove the set or pick other words"
                )
            cycles.extend(found)
        return cls(name=name, words=sets, token_cycles=cycles)

    @classmethod
    def builtin(cls, name: str, tokenizer: Any) -> WordSwap:
        """One of the shipped word sets (see ``hf_equivariant/data/word_sets``) resolved against ``tokenizer``."""
        data = _load_builtin(name)
        return cls.from_words(tokenizer, data["sets"], name=data["name"])

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
            cycles = [[int(t) for t in c] for c in spec["token_ids"]]
            words = [[str(w) for w in s] for s in spec["words"]]
        except (TypeError, ValueError) as err:
            raise ValueError(f"malformed group spec for {spec['name']!r}: {err}") from None
        swap = cls(name=str(spec["name"]), words=words, token_cycles=cycles)
        if "order" in spec and int(spec["order"]) != swap.order:
            raise ValueError(f"malformed group spec for {swap.name!r}: order {spec['order']} but cycles of {swap.order}")
        return swap


class TokenPermutationAction:
    """The direct product of word-swap factors acting on a vocabulary of ``vocab_size`` ids.

    Element ``g = (g_1, ..., g_N)`` (factor indices, see :class:`ProductGroup`) maps token ``v`` in a cycle of
    factor ``i`` at position ``p`` to the token at position ``p + g_i (mod |G_i|)``; other tokens are fixed.
    The inverse action on a next-token distribution ``y`` is ``(g^-1 . y)[w] = y[g . w]``: index by the forward map.
    """

    def __init__(self, factors: Sequence[WordSwap], vocab_size: int) -> None:
        if not factors:
            raise ValueError("at least one word-swap factor is needed")
        self.factors = tuple(factors)
        self.vocab_size = int(vocab_size)
        self.group = ProductGroup([f.group for f in self.factors])
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
        # Per-token tables (on CPU; moved to the input's device on demand and cached).
        factor_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
        position = torch.zeros(self.vocab_size, dtype=torch.long)
        cycle_of = torch.zeros(self.vocab_size, dtype=torch.long)
        max_order = max(f.order for f in self.factors)
        cycles, orders = [], []
        for i, f in enumerate(self.factors):
            for c in f.token_cycles:
                ids = torch.tensor(c)
                factor_of[ids] = i
                position[ids] = torch.arange(len(c))
                cycle_of[ids] = len(cycles)
                cycles.append(c + [c[0]] * (max_order - len(c)))
                orders.append(f.order)
        self._tables = {
            "factor_of": factor_of,
            "position": position,
            "cycle_of": cycle_of,
            "cycles": torch.tensor(cycles, dtype=torch.long),
            "cycle_order": torch.tensor(orders, dtype=torch.long),
        }
        self._device_tables: dict[torch.device, dict[str, torch.Tensor]] = {}
        self._memo_store: dict[tuple, Any] = {}

    @property
    def num_factors(self) -> int:
        return len(self.factors)

    @property
    def factor_orders(self) -> tuple[int, ...]:
        return tuple(f.order for f in self.factors)

    def tables(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Lookup tables on ``device`` (built lazily, so nothing is lost when a model is created on meta)."""
        device = torch.device(device)
        if device not in self._device_tables:
            self._device_tables[device] = {k: v.to(device) for k, v in self._tables.items()}
        return self._device_tables[device]

    def act(self, ids: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Apply product elements to token ids.

        ``ids``: ``[..., T]``; ``parts``: ``[..., N]`` factor indices broadcastable to ``ids``' leading shape.
        Ids at or beyond ``vocab_size`` (never produced by a matching tokenizer) raise.
        """
        t = self.tables(ids.device)
        if ids.numel() and (int(ids.max()) >= self.vocab_size or int(ids.min()) < 0):
            raise ValueError(f"token id {int(ids.max())} is outside the vocabulary of {self.vocab_size}")
        parts = parts.to(ids.device)
        factor = t["factor_of"][ids]  # [..., T]
        moved = factor >= 0
        shift = torch.gather(parts.expand(*ids.shape[:-1], parts.shape[-1]), -1, factor.clamp_min(0))
        cycle = t["cycle_of"][ids]
        order = t["cycle_order"][cycle]
        new_pos = (t["position"][ids] + shift) % order
        return torch.where(moved, t["cycles"][cycle, new_pos], ids)

    def canonicalise(self, ids: torch.Tensor, factor_mask: torch.Tensor) -> torch.Tensor:
        """Map tokens of the factors in ``factor_mask`` (``[..., N]`` bool) to the first member of their set.

        This is invariant to those factors and commutes with the others (disjoint supports).
        """
        t = self.tables(ids.device)
        factor = t["factor_of"][ids]
        mask = factor_mask.to(ids.device).expand(*ids.shape[:-1], factor_mask.shape[-1])
        selected = (factor >= 0) & torch.gather(mask, -1, factor.clamp_min(0))
        return torch.where(selected, t["cycles"][t["cycle_of"][ids], 0], ids)

    def vocabulary_maps(self, parts: torch.Tensor, device: torch.device | str, width: int | None = None) -> torch.Tensor:
        """``[..., width]`` maps ``v -> g.v`` for each element in ``parts`` (``[..., N]``); identity past the vocab."""
        width = width or self.vocab_size
        base = torch.arange(self.vocab_size, device=device)
        maps = self.act(base.expand(*parts.shape[:-1], self.vocab_size), parts.to(device))
        if width > self.vocab_size:
            extra = torch.arange(self.vocab_size, width, device=device).expand(*parts.shape[:-1], width - self.vocab_size)
            maps = torch.cat([maps, extra], dim=-1)
        return maps

    def orbit_index(self, factor_mask: torch.Tensor, device: torch.device | str) -> tuple[torch.Tensor, int]:
        """Orbit ids of every token under the factors in ``factor_mask`` (``[..., N]``).

        Returns ``(index [..., V], num_orbits)``: tokens moved by a selected factor share the id of their cycle,
        every other token has its own id. Averaging a distribution over these orbits symmetrises it.
        """
        t = self.tables(device)
        factor = t["factor_of"]
        mask = factor_mask.to(device)
        selected = (factor >= 0) & mask[..., factor.clamp_min(0)]
        num_cycles = t["cycles"].shape[0]
        index = torch.where(selected, t["cycle_of"], torch.arange(self.vocab_size, device=device) + num_cycles)
        return index, num_cycles + self.vocab_size

    def cached_vocabulary_maps(self, parts: torch.Tensor, device: torch.device | str, width: int) -> torch.Tensor:
        """:meth:`vocabulary_maps`, memoised for the few element tables a model uses over and over."""
        key = ("maps", tuple(parts.shape), tuple(parts.flatten().tolist()), str(device), width)
        return self._memo(key, lambda: self.vocabulary_maps(parts, device, width))

    def cached_orbit_index(self, factor_mask: torch.Tensor, device: torch.device | str,
                           width: int) -> tuple[torch.Tensor, int]:
        """:meth:`orbit_index` widened to ``width`` (extra ids are their own orbits), memoised."""
        key = ("orbits", tuple(factor_mask.shape), tuple(factor_mask.flatten().tolist()), str(device), width)

        def build() -> tuple[torch.Tensor, int]:
            index, num_orbits = self.orbit_index(factor_mask, device)
            if width > self.vocab_size:
                extra = torch.arange(width - self.vocab_size, device=device) + num_orbits
                index = torch.cat([index, extra.expand(*index.shape[:-1], -1)], dim=-1)
                num_orbits += width - self.vocab_size
            return index, num_orbits

        return self._memo(key, build)

    def _memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        if key not in self._memo_store:
            if len(self._memo_store) >= 32:  # per-row tables (canonical strategy) change with every batch
                self._memo_store.pop(next(iter(self._memo_store)))
            self._memo_store[key] = build()
        return self._memo_store[key]

    def first_positions(self, ids: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row and factor: position in its set of the first token the factor moves, and whether one exists.

        ``ids``: ``[B, T]``; ``valid``: ``[B, T]`` bool (False for padding). Returns ``(pos [B, N], found [B, N])``.
        This orients a row: it is the element ``h`` with ``h^-1 . x`` starting from the first member.
        """
        t = self.tables(ids.device)
        factor = t["factor_of"][ids]  # [B, T]
        if valid is not None:
            factor = torch.where(valid.bool(), factor, torch.full_like(factor, -1))
        n = self.num_factors
        hits = factor[..., None] == torch.arange(n, device=ids.device)  # [B, T, N]
        found = hits.any(dim=1)
        first = hits.float().argmax(dim=1)  # first True along T
        first_tokens = torch.gather(ids, 1, first)  # [B, N]
        pos = torch.where(found, t["position"][first_tokens], torch.zeros_like(first_tokens))
        return pos, found

    def inverse_parts(self, parts: torch.Tensor) -> torch.Tensor:
        """Factor-wise inverse of elements given as factor indices ``[..., N]``."""
        orders = torch.tensor(self.factor_orders, device=parts.device)
        return (orders - parts) % orders

    def element_parts(self, element: int) -> torch.Tensor:
        """Factor indices of product element ``element``."""
        return torch.tensor(self.group.split(element), dtype=torch.long)

    def to_spec(self) -> list[dict[str, Any]]:
        return [f.to_spec() for f in self.factors]
