"""Span swaps: cyclic groups that swap multi-word, multi-token identity terms in token-id sequences.

A :class:`SpanSwap` factor holds sets of ``k`` members ("man"/"woman", or "African American"/"European American"/
...); its generator maps member ``j`` of every set to member ``j+1 (mod k)``. Unlike
:class:`~hf_equivariant.actions.tokens.WordSwap`, members may be several words and several tokens, so a swap can
change the length of a sequence. That is fine for classifiers (the output is invariant, nothing is mapped back);
it is not a token permutation and cannot map next-token distributions back.

:class:`SpanSwapAction` combines factors into a direct product acting on padded batches of token ids. Members are
resolved into token-id sequences ("patterns") for several surface forms (case forms x the contexts a word occurs
in), and a pattern is swapped only where it is a whole span of words: it starts at a word boundary and the next
token does not continue the word. Construction checks that the result is a group action on *every* id sequence
(see ``docs/span_swaps.md`` for the rules and why they are needed).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..groups import FiniteGroup, ProductGroup, cyclic_group
from .base import GroupAction
from .word_sets import builtin_word_set_names, span_set_data, span_set_names

__all__ = [
    "CASE_FORMS",
    "LEFT_CONTEXTS",
    "RIGHT_CONTEXTS",
    "SpanMatch",
    "SpanSwap",
    "SpanSwapAction",
    "UnswappableForm",
    "builtin_span_set_names",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Surface forms


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


#: Case forms a member is tried in, by name; a factor uses the subset named in its ``forms``.
CASE_FORMS: dict[str, Callable[[str], str]] = {
    "as_written": lambda s: s,
    "capitalised": _capitalise,
    "lower": str.lower,
    "upper": str.upper,
}


@dataclass(frozen=True)
class _Context:
    """Text put before (or after) a member when resolving it: ``probe`` is encoded, ``shown`` is reported."""

    label: str
    probe: str
    shown: str
    own_space: bool = False  # blank tokens right before the member are its own word-boundary marker


#: Left contexts, in priority order. The first two give the forms with and without the word-boundary marker
#: (leading space, 'Ġ', '▁'); the others find "bare" pieces that some tokenizers use after punctuation.
LEFT_CONTEXTS: tuple[_Context, ...] = (
    _Context("after a space", "x ", " ", own_space=True),
    _Context("start of text", "", "", own_space=True),
    _Context("after '('", "x (", "("),
    _Context("after a double quote", 'x "', '"'),
    _Context("after a single quote", "x '", "'"),
    _Context("after a newline", "x\n", "\n"),
    _Context("after a hyphen", "x-", "-"),
    _Context("after a slash", "x/", "/"),
)

#: Right contexts, only checked (a member that the tokenizer merges with what follows cannot be swapped there).
RIGHT_CONTEXTS: tuple[_Context, ...] = (
    _Context("before a space", " x", " "),
    _Context("before ','", ",", ","),
    _Context("before '.'", ".", "."),
    _Context("before \"'s\"", "'s", "'s"),
    _Context("before ')'", ")", ")"),
    _Context("before a double quote", '"', '"'),
    _Context("before '?'", "?", "?"),
    _Context("before '!'", "!", "!"),
    _Context("before ':'", ":", ":"),
    _Context("before ';'", ";", ";"),
    _Context("before a hyphen", "-x", "-"),
)


def _left_probes(context: _Context) -> list[str]:
    """Texts whose tokens may precede a member's. After a space, the space belongs to the member (it becomes its
    'Ġ' or '▁' marker), so only the text before it is a prefix; after other contexts, trailing whitespace may be
    a token of its own or fold into the member's first token."""
    stripped = context.probe.rstrip()
    if context.own_space or stripped == context.probe:
        return [stripped]
    return [context.probe, stripped]


def _is_word_char(char: str) -> bool:
    """Letters, digits and combining marks continue a word; U+FFFD (a partial UTF-8 byte) is assumed to."""
    return char.isalnum() or char == "\ufffd" or unicodedata.category(char).startswith("M")


def _text_cuts(text: str) -> frozenset[int]:
    """Positions ``0 < i < len(text)`` that are word boundaries (not between two word characters)."""
    return frozenset(i for i in range(1, len(text)) if not (_is_word_char(text[i - 1]) and _is_word_char(text[i])))


# ----------------------------------------------------------------------------------------------------------------
# Overlaps between patterns (shared by the text-level and the token-level checks)


@dataclass(frozen=True)
class _Overlap:
    """Pattern ``inner`` overlaps pattern ``outer`` at ``offset`` (a word-aligned position of ``outer``).

    ``kind`` is ``"equal"``, ``"prefix"`` (inner is a proper prefix of outer), ``"inside"`` (inner lies inside
    outer, not at its start) or ``"partial"`` (a proper suffix of outer is a proper prefix of inner).
    """

    outer: int
    inner: int
    offset: int
    kind: str


def _overlaps(seqs: Sequence[tuple], cuts: Sequence[frozenset[int]]) -> Iterator[_Overlap]:
    """All word-aligned overlaps between distinct patterns, found with dictionaries (no quadratic pair loop)."""
    by_seq: dict[tuple, list[int]] = {}
    by_prefix: dict[tuple, list[int]] = {}
    for j, (seq, cut) in enumerate(zip(seqs, cuts)):
        by_seq.setdefault(seq, []).append(j)
        for e in cut:
            by_prefix.setdefault(seq[:e], []).append(j)
    for i, (seq, cut) in enumerate(zip(seqs, cuts)):
        for j in by_seq[seq]:
            if j > i:
                yield _Overlap(i, j, 0, "equal")
        ends = sorted(cut | {len(seq)})
        for o in [0, *sorted(cut)]:
            for e in ends:
                if e <= o or (o == 0 and e == len(seq)):
                    continue
                for j in by_seq.get(seq[o:e], ()):
                    yield _Overlap(i, j, o, "prefix" if o == 0 else "inside")
            if o > 0:
                for j in by_prefix.get(seq[o:], ()):
                    yield _Overlap(i, j, o, "partial")


# ----------------------------------------------------------------------------------------------------------------
# SpanSwap: one cyclic factor, tokenizer-free


def _validate_sets(name: str, word_sets: Any) -> tuple[tuple[str, ...], ...]:
    """Check the shape and contents of ``word_sets`` and return them as tuples (errors name the bad value)."""
    example = "[['man', 'woman'], ['he', 'she']]"
    if isinstance(word_sets, (str, bytes)) or not isinstance(word_sets, Sequence):
        raise ValueError(f"span swap {name!r}: word_sets must be a list of sets (lists of strings), e.g. {example}; "
                         f"got {word_sets!r}")
    if not word_sets:
        raise ValueError(f"span swap {name!r}: no word sets given; pass at least one set, e.g. {example}")
    sets = []
    for s_i, members in enumerate(word_sets):
        if isinstance(members, str):
            raise ValueError(
                f"span swap {name!r}: set {s_i} is the string {members!r}, not a list of members; word_sets must be "
                f"a list of sets, e.g. [{list(word_sets)!r}] for one set")
        if not isinstance(members, Sequence):
            raise ValueError(f"span swap {name!r}: set {s_i} is {members!r}, not a list of strings")
        for m_i, member in enumerate(members):
            if not isinstance(member, str):
                raise ValueError(f"span swap {name!r}: member {m_i} of set {s_i} is {member!r} "
                                 f"({type(member).__name__}), not a string")
            _validate_member(name, member)
        if len(members) < 2:
            raise ValueError(f"span swap {name!r}: set {s_i} {list(members)!r} has {len(members)} member(s); "
                             "a swap needs at least two")
        sets.append(tuple(members))
    sizes = sorted({len(s) for s in sets})
    if len(sizes) > 1:
        by_size = {len(s): list(s) for s in sets}
        raise ValueError(f"span swap {name!r}: all sets must have the same number of members (the cycle order), "
                         f"got sizes {sizes}, e.g. {by_size[sizes[0]]!r} and {by_size[sizes[-1]]!r}")
    seen: dict[str, tuple[int, str]] = {}
    for s_i, members in enumerate(sets):
        for member in members:
            key = member.casefold()
            if key in seen:
                other_set, other = seen[key]
                raise ValueError(
                    f"span swap {name!r}: member {member!r} (set {s_i}) repeats {other!r} (set {other_set}); "
                    "each member may appear once per factor (case is ignored: all case forms are swapped)")
            seen[key] = (s_i, member)
    return tuple(sets)


def _validate_member(name: str, member: str) -> None:
    if not member.strip():
        raise ValueError(f"span swap {name!r}: empty member {member!r}")
    if not (_is_word_char(member[0]) and _is_word_char(member[-1])):
        raise ValueError(f"span swap {name!r}: member {member!r} must begin and end with a letter or digit, so that "
                         "its word boundaries are well defined (punctuation around it is matched as context)")
    if " ".join(member.split()) != member:
        raise ValueError(f"span swap {name!r}: member {member!r} must separate words by single spaces "
                         "(no tabs, newlines or repeated spaces)")


def _validate_forms(name: str, forms: Any) -> tuple[str, ...]:
    if isinstance(forms, str) or not isinstance(forms, Sequence) or not forms:
        raise ValueError(f"span swap {name!r}: forms must be a non-empty list drawn from {list(CASE_FORMS)}, "
                         f"got {forms!r}")
    unknown = [f for f in forms if f not in CASE_FORMS]
    if unknown:
        raise ValueError(f"span swap {name!r}: unknown case form(s) {unknown}; choose from {list(CASE_FORMS)}")
    if len(set(forms)) != len(forms):
        raise ValueError(f"span swap {name!r}: forms {list(forms)} repeat a name")
    return tuple(forms)


def _validate_neutral(name: str, neutral: Any, sets: Sequence[Sequence[str]]) -> tuple[str, ...] | None:
    """One replacement per set: ``""`` (delete the span) or a text that is not a member of the factor."""
    if neutral is None:
        return None
    if isinstance(neutral, str) or not isinstance(neutral, Sequence) or len(neutral) != len(sets):
        raise ValueError(f"span swap {name!r}: neutral must be a list with one replacement per set ({len(sets)} "
                         f"sets; '' deletes the span), got {neutral!r}")
    members = {m.casefold(): m for s in sets for m in s}
    for s_i, word in enumerate(neutral):
        if not isinstance(word, str):
            raise ValueError(f"span swap {name!r}: neutral replacement {s_i} is {word!r}, not a string")
        if word:
            try:
                _validate_member(name, word)
            except ValueError as err:
                raise ValueError(f"{err} (neutral replacement {s_i})") from None
        if word.casefold() in members:
            raise ValueError(f"span swap {name!r}: the neutral replacement {word!r} of set {s_i} is the member "
                             f"{members[word.casefold()]!r}; a neutral replacement must privilege no member")
    return tuple(neutral)


@dataclass(frozen=True)
class SpanSwap:
    """One cyclic factor of span swaps, independent of any tokenizer.

    Attributes:
        name: the factor's name (``"race_ethnicity"``), also its key in saved configs.
        sets: sets of ``order`` members each; member ``j`` of every set goes to member ``j+1 (mod order)``.
        forms: case forms the members are swapped in (names from :data:`CASE_FORMS`), e.g. leave out
            ``"lower"`` when the lower-case words have other meanings ("white wine").
        neutral: optional replacement per set that privileges no member ("person" for ``man``/``woman``; ``""``
            deletes the span). Anchor-free design 2 puts it in place of this factor's spans in the other factors'
            branches; ``None`` means deletion for every set.
    """

    name: str
    sets: tuple[tuple[str, ...], ...]
    forms: tuple[str, ...] = tuple(CASE_FORMS)
    neutral: tuple[str, ...] | None = None
    group: FiniteGroup = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a span swap needs a non-empty string name, got {self.name!r}")
        object.__setattr__(self, "sets", _validate_sets(self.name, self.sets))
        object.__setattr__(self, "forms", _validate_forms(self.name, self.forms))
        object.__setattr__(self, "neutral", _validate_neutral(self.name, self.neutral, self.sets))
        self._check_text_overlaps()
        object.__setattr__(self, "group", cyclic_group(self.order, name=self.name))

    @property
    def order(self) -> int:
        """Size of every set = order of the cyclic generator."""
        return len(self.sets[0])

    @property
    def members(self) -> list[str]:
        """All members, set by set."""
        return [m for s in self.sets for m in s]

    def image(self, member: str, power: int = 1) -> str:
        """The member that ``member`` is swapped to by the ``power``-th power of the generator."""
        for s in self.sets:
            if member in s:
                return s[(s.index(member) + power) % self.order]
        raise ValueError(f"span swap {self.name!r}: {member!r} is not a member; members are {self.members}")

    def _check_text_overlaps(self) -> None:
        """Within one factor only the longest-match situation is allowed, and only when it keeps a group action.

        A member that contains another one elsewhere than at its start ("South Asian" / "Asian"), or that overlaps
        one partially, is an error. A member that starts with another one ("father-in-law" / "father") is allowed
        when every image of the shorter member has the same continuation ("mother-in-law"), which is what makes
        longest-match swapping a group action.
        """
        members = self.members
        texts = [m.casefold() for m in members]
        index = {t: i for i, t in enumerate(texts)}
        k = self.order
        image = [s_i * k + (m_i + 1) % k for s_i in range(len(self.sets)) for m_i in range(k)]
        for ov in _overlaps(texts, [_text_cuts(t) for t in texts]):
            outer, inner = members[ov.outer], members[ov.inner]
            if ov.kind == "prefix":
                rest = texts[ov.outer][len(texts[ov.inner]):]
                if texts[image[ov.inner]] + rest not in index:
                    wanted = members[image[ov.inner]] + members[ov.outer][len(inner):]
                    raise ValueError(
                        f"span swap {self.name!r}: {outer!r} starts with the member {inner!r}, which the generator "
                        f"swaps to {members[image[ov.inner]]!r}, but {wanted!r} is not a member. Longest-match "
                        "swapping is a group action only when every image of the shorter member has the same "
                        f"continuation: add {wanted!r} (and the other images) to a set, or remove {outer!r}")
            else:
                raise ValueError(
                    f"span swap {self.name!r}: member {inner!r} lies inside or overlaps member {outer!r} "
                    "(not at its start); such members cannot be swapped consistently: remove one of them")

    @classmethod
    def from_words(cls, word_sets: Sequence[Sequence[str]], name: str = "custom",
                   forms: Sequence[str] = tuple(CASE_FORMS), neutral: Sequence[str] | None = None) -> SpanSwap:
        """A factor from lists of members, e.g. ``[["man", "woman"], ["African American", "European American"]]``,
        with an optional neutral replacement per set (``["person", ""]``; ``""`` deletes the span)."""
        sets = _validate_sets(name, word_sets)
        return cls(name=name, sets=sets, forms=_validate_forms(name, forms),
                   neutral=_validate_neutral(name, neutral, sets))

    @classmethod
    def builtin(cls, name: str) -> SpanSwap:
        """A shipped set: the span sets in ``data/word_sets/spans`` or the single-word sets in ``data/word_sets``."""
        data = _load_span_set(name)
        swap = cls.from_words(data["sets"], name=data.get("name", name), forms=data.get("forms", tuple(CASE_FORMS)),
                              neutral=data.get("neutral"))
        if "order" in data and int(data["order"]) != swap.order:
            raise ValueError(f"built-in span set {name!r}: file says order {data['order']}, sets have {swap.order}")
        return swap

    def to_spec(self) -> dict[str, Any]:
        """JSON-serialisable description (tokenizer-free: resolve again with :class:`SpanSwapAction`)."""
        spec = {"type": "span_swap", "name": self.name, "order": self.order,
                "sets": [list(s) for s in self.sets], "forms": list(self.forms)}
        if self.neutral is not None:
            spec["neutral"] = list(self.neutral)
        return spec

    @classmethod
    def from_spec(cls, spec: Any) -> SpanSwap:
        """Rebuild from :meth:`to_spec` output, validating it."""
        if not isinstance(spec, Mapping) or spec.get("type") != "span_swap":
            raise ValueError(f"malformed span swap spec {spec!r}: expected a dict with type 'span_swap'")
        missing = [key for key in ("name", "sets") if key not in spec]
        if missing:
            raise ValueError(f"malformed span swap spec for {spec.get('name', '?')!r}: missing {missing}")
        unknown = sorted(set(spec) - {"type", "name", "order", "sets", "forms", "neutral"})
        if unknown:
            raise ValueError(f"malformed span swap spec for {spec['name']!r}: unknown keys {unknown}")
        swap = cls.from_words(spec["sets"], name=spec["name"], forms=spec.get("forms", tuple(CASE_FORMS)),
                              neutral=spec.get("neutral"))
        if "order" in spec and spec["order"] != swap.order:
            raise ValueError(f"malformed span swap spec for {swap.name!r}: order {spec['order']!r} but sets of "
                             f"{swap.order} members")
        return swap


def builtin_span_set_names() -> list[str]:
    """Names usable with :meth:`SpanSwap.builtin`: the span sets plus the single-word sets."""
    spans = span_set_names()
    return spans + [n for n in builtin_word_set_names() if n not in spans]


def _load_span_set(name: str) -> dict[str, Any]:
    return span_set_data(name)


# ----------------------------------------------------------------------------------------------------------------
# Word boundaries per token id


def _byte_translation() -> dict[int, int]:
    """Inverse of the byte-level BPE alphabet as a ``str.translate`` table: printable bytes stand for themselves,
    the other bytes for the characters 256, 257, ... in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = b
        else:
            table[256 + extra] = b
            extra += 1
    return table


def _component(obj: Any) -> Any:
    """The JSON state of a tokenizer component (normalizer, pre-tokenizer, decoder), or ``None``."""
    return None if obj is None else json.loads(obj.__getstate__())


def _find_components(node: Any, kind: str) -> list[dict[str, Any]]:
    """Every component of type ``kind`` in a tokenizer.json tree (pre-tokenizers and decoders can be nested)."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == kind:
            found.append(node)
        for value in node.values():
            found += _find_components(value, kind)
    elif isinstance(node, list):
        for value in node:
            found += _find_components(value, kind)
    return found


def _token_texts(tokenizer: Any) -> tuple[list[str | None], list[bool], str]:
    """The text of every token id and whether it begins with a word boundary, plus the tokenizer family.

    Families: WordPiece (a ``##`` continuation does not start a word, anything else does), byte-level BPE
    (bytes decoded; a leading space starts a word) and SentencePiece-style Metaspace (``▁`` is a space).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"span swaps need a fast tokenizer (got {type(tokenizer).__name__}); load it with "
                         "AutoTokenizer.from_pretrained(..., use_fast=True)")
    vocab = backend.get_vocab(with_added_tokens=True)
    raw: list[str | None] = [None] * max(len(tokenizer), max(vocab.values(), default=-1) + 1)
    for token, i in vocab.items():
        raw[i] = token
    pre, dec, norm = (_component(backend.pre_tokenizer), _component(backend.decoder), _component(backend.normalizer))
    model = type(backend.model).__name__
    if model == "WordPiece":
        prefix = backend.model.continuing_subword_prefix or "##"
        texts = [None if t is None else (t[len(prefix):] if t.startswith(prefix) else t) for t in raw]
        return texts, [t is not None and not t.startswith(prefix) for t in raw], "wordpiece"
    if _find_components(pre, "ByteLevel") or _find_components(dec, "ByteLevel"):
        table = _byte_translation()
        texts = [None if t is None else t.translate(table).encode("latin-1", errors="replace").decode(
            "utf-8", errors="replace") for t in raw]
        return texts, [t is not None and t[:1].isspace() for t in texts], "byte-level BPE"
    metas = _find_components(pre, "Metaspace") + _find_components(dec, "Metaspace")
    marker = metas[0].get("replacement", "▁") if metas else None
    if marker is None and any(r.get("content") == "▁" for r in _find_components(norm, "Replace")):
        marker = "▁"
    if marker is None:
        raise ValueError(f"cannot tell word boundaries for this tokenizer (model {model}, pre-tokenizer "
                         f"{(pre or {}).get('type')!r}); span swaps support WordPiece, byte-level BPE and "
                         "SentencePiece/Metaspace tokenizers")
    texts = [None if t is None else _metaspace_text(t, marker) for t in raw]
    return texts, [t is not None and t[:1].isspace() for t in texts], "sentencepiece"


def _metaspace_text(token: str, marker: str) -> str:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):  # byte fallback
        value = int(token[3:5], 16)
        return chr(value) if value < 0x80 else "\ufffd"
    return token.replace(marker, " ")


@dataclass
class _Boundaries:
    """Per-token flags: a boundary lies between tokens ``a`` and ``b`` iff ``end_free[a] or start_free[b]``."""

    texts: list[str | None]
    start_free: torch.Tensor  # [V] bool: a word starts at this token whatever precedes it
    end_free: torch.Tensor  # [V] bool: a word ends after this token whatever follows it
    special: torch.Tensor  # [V] bool
    family: str

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> _Boundaries:
        texts, space_before, family = _token_texts(tokenizer)
        special = [t is None for t in texts]
        for i in set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}:
            if 0 <= i < len(special):
                special[i] = True
        for i, added in tokenizer.added_tokens_decoder.items():  # user-added words are split off as whole words
            if not added.special and 0 <= i < len(space_before):
                space_before[i] = True
        start_free, end_free = [], []
        for text, space, spec in zip(texts, space_before, special):
            body = (text or "").strip()
            start_free.append(spec or space or not body or not _is_word_char(body[0]))
            end_free.append(spec or not text or not _is_word_char(text[-1]))
        return cls(texts, torch.tensor(start_free), torch.tensor(end_free), torch.tensor(special), family)

    def __post_init__(self) -> None:
        self._start, self._end = self.start_free.tolist(), self.end_free.tolist()  # fast scalar lookups
        self._cuts: dict[tuple[int, ...], frozenset[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.texts)

    def free_start(self, i: int) -> bool:
        return self._start[i]

    def free_end(self, i: int) -> bool:
        return self._end[i]

    def boundary(self, a: int, b: int) -> bool:
        return self._end[a] or self._start[b]

    def cuts(self, ids: tuple[int, ...]) -> frozenset[int]:
        """Word boundaries inside a pattern (memoised: the overlap checks ask for the same patterns often)."""
        if ids not in self._cuts:
            self._cuts[ids] = frozenset(i for i in range(1, len(ids)) if self.boundary(ids[i - 1], ids[i]))
        return self._cuts[ids]

    def is_blank(self, i: int) -> bool:
        text = self.texts[i]
        return text is not None and not bool(self.special[i]) and not text.strip()


# ----------------------------------------------------------------------------------------------------------------
# Resolution records


@dataclass(frozen=True)
class SpanMatch:
    """One swappable span found in a row: tokens ``start:end`` are ``member`` of set ``set_index`` of ``factor``."""

    row: int
    start: int
    end: int
    factor: str
    set_index: int
    member_index: int
    member: str
    form: str


@dataclass(frozen=True)
class UnswappableForm:
    """A surface form of a member that stays unswapped with this tokenizer, and why."""

    factor: str
    member: str
    surface: str
    context: str
    reason: str


@dataclass
class _Cycle:
    """One (factor, set, case form, context) variant: the pattern of every member of the set."""

    factor: int
    set_index: int
    label: str
    patterns: tuple[tuple[int, ...], ...]
    priority: int
    aliases: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# The action


_PRIME = 2_147_483_647  # 2**31 - 1: window hashes stay below 2**62 in int64 arithmetic
_MULT = 1_000_003


class SpanSwapAction(GroupAction):
    """The direct product of span-swap factors acting on padded batches of token ids.

    Element ``g = (g_1, ..., g_N)`` (factor indices, see :class:`ProductGroup`) replaces every matched span of a
    member ``j`` of factor ``i`` by the same form of member ``j + g_i (mod order_i)`` of its set; other tokens,
    special tokens included, are kept in order. Outputs are re-padded on the tokenizer's ``padding_side``.
    """

    def __init__(self, factors: Sequence[SpanSwap], tokenizer: Any) -> None:
        if isinstance(factors, SpanSwap) or not factors:
            raise ValueError("SpanSwapAction needs a non-empty list of SpanSwap factors")
        bad = [f for f in factors if not isinstance(f, SpanSwap)]
        if bad:
            raise ValueError(f"SpanSwapAction factors must be SpanSwap objects, got {bad[0]!r}")
        self.factors = tuple(factors)
        self.tokenizer = tokenizer
        self.group = ProductGroup([f.group for f in self.factors])
        _check_factors_disjoint(self.factors)
        self.boundaries = _Boundaries.from_tokenizer(tokenizer)
        self._unswappable: list[UnswappableForm] = []
        self._cycles = self._resolve()
        self._neutral_fallbacks: list[UnswappableForm] = []
        self._neutral_patterns = self._resolve_neutral()
        self._tables_cpu = self._build_tables()
        self._device_tables: dict[torch.device, dict[str, Any]] = {}

    # -- basic properties ------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.boundaries.vocab_size

    def to_spec(self) -> list[dict[str, Any]]:
        """Tokenizer-free specs of the factors."""
        return [f.to_spec() for f in self.factors]

    def unswappable(self) -> list[UnswappableForm]:
        """Surface forms that stay unswapped with this tokenizer (the tokenizer merges them with their context,
        a member of the set has no clean tokenization in that form, or the form would break the group action)."""
        return list(self._unswappable)

    def neutral_tables(self) -> dict[str, dict[tuple[int, str], tuple[int, ...]]]:
        """Per factor: ``(set index, form label) -> token ids`` that replace the set's spans when the factor is
        neutralised (``()``: the span is deleted)."""
        tables: dict[str, dict[tuple[int, str], tuple[int, ...]]] = {f.name: {} for f in self.factors}
        for cycle, ids in zip(self._cycles, self._neutral_patterns):
            for label in [cycle.label, *cycle.aliases]:
                tables[self.factors[cycle.factor].name][(cycle.set_index, label)] = ids
        return tables

    def neutral_fallbacks(self) -> list[UnswappableForm]:
        """Forms whose neutral replacement has no clean tokens with this tokenizer; their spans are deleted."""
        return list(self._neutral_fallbacks)

    def factor_tables(self) -> dict[str, dict[tuple[int, int, str], tuple[int, ...]]]:
        """Per factor: ``(set index, member index, form label) -> token ids`` of every form that is swapped."""
        tables: dict[str, dict[tuple[int, int, str], tuple[int, ...]]] = {f.name: {} for f in self.factors}
        for cycle in self._cycles:
            table = tables[self.factors[cycle.factor].name]
            for label in [cycle.label, *cycle.aliases]:
                for m_i, ids in enumerate(cycle.patterns):
                    table[(cycle.set_index, m_i, label)] = ids
        return tables

    def __repr__(self) -> str:
        return (f"SpanSwapAction({[f.name for f in self.factors]}, orders={list(self.factor_orders)}, "
                f"patterns={len(self._tables_cpu['pat_factor'])}, tokenizer={self.boundaries.family})")

    # -- resolution ------------------------------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> dict[str, list[int]]:
        unique = sorted(set(texts))
        ids = self.tokenizer(unique, add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"] if unique else []  # masks cost 5x the time
        return dict(zip(unique, (list(x) for x in ids)))

    def _pattern(self, encoded: dict[str, list[int]], context: _Context, text: str) -> tuple[int, ...] | str:
        """Token ids of ``text`` in ``context``, or the reason why it has none."""
        full = encoded[context.probe + text]
        left = next((encoded[p] for p in _left_probes(context) if full[: len(encoded[p])] == encoded[p]), None)
        if left is None:
            return f"the tokenizer merges it with the preceding {context.shown!r}"
        ids = full[len(left):]
        # Blank tokens before the member belong to the context ('\n', a space after '('), except the member's own
        # leading space after a space or at the start (SentencePiece may split it off: '▁', 'W', 'oman'); that one
        # is kept so that the form starts a word exactly like the other members of its set.
        while ids and not context.own_space and self.boundaries.is_blank(ids[0]):
            ids = ids[1:]
        while ids and self.boundaries.is_blank(ids[-1]):
            ids = ids[:-1]
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if not ids or any(bool(self.boundaries.special[i]) or i == unk for i in ids):
            return "the tokenizer cannot encode it (unknown or special token)"
        return tuple(ids)

    def _resolve(self) -> list[_Cycle]:
        """Resolve every (factor, set, context, case form) to a cycle of patterns and keep the consistent ones."""
        resolved: dict[tuple[int, int, int, str], tuple[int, ...] | str] = {}  # (factor, set, member, label)
        dropped: dict[tuple[int, int, str], str] = {}  # (factor, set, label) -> why the variant is not used
        accepted = self._accept(self._candidates(resolved, dropped), dropped)
        self._owner = {p: (c, m_i) for c in accepted for m_i, p in enumerate(c.patterns)}
        self._unswappable = self._report(resolved, dropped) + self._right_context_failures(accepted)
        self._log_summary(accepted)
        for f_i, f in enumerate(self.factors):
            if not any(c.factor == f_i for c in accepted):
                raise ValueError(f"span swap {f.name!r}: no member has a swappable form with this tokenizer "
                                 f"({self.boundaries.family}); first reason: {self._first_reason(f.name)}")
        return accepted

    def _resolve_neutral(self) -> list[tuple[int, ...]]:
        """Token ids of each cycle's neutral replacement, in the cycle's case form and context (``()`` deletes).

        The replacement depends on the cycle only, never on which member was matched, which is what makes
        neutralising a factor invariant to it. A replacement the tokenizer cannot encode cleanly in a context
        falls back to deletion there (recorded in :meth:`neutral_fallbacks`).
        """
        jobs: list[tuple[_Context, str] | None] = []
        texts = [p for c in LEFT_CONTEXTS for p in _left_probes(c)]
        for cycle in self._cycles:
            neutral = self.factors[cycle.factor].neutral
            word = neutral[cycle.set_index] if neutral else ""
            if not word:
                jobs.append(None)
                continue
            case, context_label = cycle.label.split(", ", 1)
            context = next(c for c in LEFT_CONTEXTS if c.label == context_label)
            jobs.append((context, CASE_FORMS[case](word)))
            texts.append(context.probe + CASE_FORMS[case](word))
        encoded = self._encode(texts)
        patterns: list[tuple[int, ...]] = []
        for cycle, job in zip(self._cycles, jobs):
            found = () if job is None else self._pattern(encoded, *job)
            if isinstance(found, str):
                f = self.factors[cycle.factor]
                self._neutral_fallbacks.append(UnswappableForm(
                    f.name, f.sets[cycle.set_index][0], job[0].shown + job[1], job[0].label,
                    f"neutral replacement {job[1]!r} has no clean tokens here ({found}); the span is deleted"))
                found = ()
            patterns.append(found)
        return patterns

    def _candidates(self, resolved: dict, dropped: dict) -> list[_Cycle]:
        """Cycles whose members all have clean tokens, in priority order (contexts, then case forms, then sets);
        records every member's tokens (or why it has none) in ``resolved`` and incomplete sets in ``dropped``."""
        texts = [p for c in LEFT_CONTEXTS for p in _left_probes(c)]
        texts += [c.probe + CASE_FORMS[case](m) for f in self.factors for case in f.forms for m in f.members
                  for c in LEFT_CONTEXTS]
        encoded = self._encode(texts)
        candidates: list[_Cycle] = []
        for f_i, f in enumerate(self.factors):
            for context in LEFT_CONTEXTS:
                for case in f.forms:
                    label = f"{case}, {context.label}"
                    for s_i, members in enumerate(f.sets):
                        found = [self._pattern(encoded, context, CASE_FORMS[case](m)) for m in members]
                        resolved.update({(f_i, s_i, m_i, label): p for m_i, p in enumerate(found)})
                        bad = next(((m, r) for m, r in zip(members, found) if isinstance(r, str)), None)
                        if bad is None:
                            patterns = tuple(p for p in found if isinstance(p, tuple))
                            candidates.append(_Cycle(f_i, s_i, label, patterns, len(candidates)))
                        else:
                            surface = context.shown + CASE_FORMS[case](bad[0])
                            dropped[(f_i, s_i, label)] = f"its set has no clean form here: {surface!r} ({bad[1]})"
        return candidates

    def _first_reason(self, name: str) -> str:
        return next((f"{r.surface!r}: {r.reason}" for r in self._unswappable if r.factor == name), "none recorded")

    def _accept(self, candidates: list[_Cycle], dropped: dict[tuple[int, int, str], str]) -> list[_Cycle]:
        """Keep the candidates that together give a group action; drop the others (lower priority first)."""
        b = self.boundaries

        def drop(cycle: _Cycle, reason: str) -> None:
            for label in [cycle.label, *cycle.aliases]:
                dropped.setdefault((cycle.factor, cycle.set_index, label), reason)

        consistent = []
        for cycle in candidates:
            flags = {(b.free_start(p[0]), b.free_end(p[-1])) for p in cycle.patterns}
            if len(flags) > 1:
                drop(cycle, "its members would start or end a word differently in this form")
            else:
                consistent.append(cycle)
        self._check_cross_factor(consistent)
        accepted: list[_Cycle] = []
        owner: dict[tuple[int, ...], tuple[_Cycle, int]] = {}
        for cycle in consistent:
            clash = next((owner[p] for p in cycle.patterns if p in owner), None)
            if clash is None:
                owner.update({p: (cycle, m_i) for m_i, p in enumerate(cycle.patterns)})
                accepted.append(cycle)
            elif clash[0].patterns == cycle.patterns:
                clash[0].aliases.append(cycle.label)
            else:
                drop(cycle, f"its tokens are already used by {self._describe(clash)}, which is swapped differently")
        while True:
            victim = self._first_violation(accepted)
            if victim is None:
                return accepted
            drop(*victim)
            accepted.remove(victim[0])

    def _flatten(self, cycles: Sequence[_Cycle]) -> tuple[list[tuple[int, ...]], list[tuple[_Cycle, int]]]:
        seqs, roles = [], []
        for cycle in cycles:
            for m_i, p in enumerate(cycle.patterns):
                seqs.append(p)
                roles.append((cycle, m_i))
        return seqs, roles

    def _describe(self, role: tuple[_Cycle, int]) -> str:
        cycle, m_i = role
        f = self.factors[cycle.factor]
        return f"{f.sets[cycle.set_index][m_i]!r} of {f.name!r} ({cycle.label})"

    def _check_cross_factor(self, cycles: Sequence[_Cycle]) -> None:
        """Patterns of different factors must not overlap at all, or the factors would not commute."""
        seqs, roles = self._flatten(cycles)
        for ov in _overlaps(seqs, [self.boundaries.cuts(s) for s in seqs]):
            a, b = roles[ov.outer], roles[ov.inner]
            if a[0].factor != b[0].factor:
                raise ValueError(
                    f"span swap factors overlap with this tokenizer: {self._describe(b)} and {self._describe(a)} "
                    f"have overlapping tokens ({ov.kind}). Factors must act on disjoint spans so that they commute; "
                    "remove one of the members")

    def _first_violation(self, cycles: list[_Cycle]) -> tuple[_Cycle, str] | None:
        """The lowest-priority cycle involved in an overlap that would break the group action, with the reason."""
        seqs, roles = self._flatten(cycles)
        index = {s: i for i, s in enumerate(seqs)}
        worst: tuple[_Cycle, str] | None = None
        for ov in _overlaps(seqs, [self.boundaries.cuts(s) for s in seqs]):
            (outer, _), (inner, i_m) = roles[ov.outer], roles[ov.inner]
            if ov.kind == "prefix":
                k = self.factors[inner.factor].order
                j = index.get(inner.patterns[(i_m + 1) % k] + seqs[ov.outer][len(seqs[ov.inner]):])
                if j is not None and roles[j][0].factor == inner.factor:
                    continue  # longest match is consistent here
                victim, reason = outer, (f"it starts with {self._describe(roles[ov.inner])}, whose image has no "
                                         "matching continuation in these tokens (longest match would not be a group "
                                         "action)")
            else:
                victim = outer if outer.priority > inner.priority else inner
                other = roles[ov.inner] if victim is outer else roles[ov.outer]
                reason = f"its tokens overlap {self._describe(other)} ({ov.kind})"
            if worst is None or victim.priority > worst[0].priority:
                worst = (victim, reason)
        return worst

    def _report(self, resolved: dict, dropped: dict) -> list[UnswappableForm]:
        """Surface forms (member x case form x left context) whose tokens are not swapped, with the reason."""
        records, seen = [], set()
        for (f_i, s_i, m_i, label), pattern in resolved.items():
            if isinstance(pattern, tuple) and self._owner.get(pattern, (None, None))[1] == m_i and \
                    self._owner[pattern][0].factor == f_i and self._owner[pattern][0].set_index == s_i:
                continue
            f = self.factors[f_i]
            case, context_label = label.split(", ", 1)
            context = next(c for c in LEFT_CONTEXTS if c.label == context_label)
            surface = context.shown + CASE_FORMS[case](f.sets[s_i][m_i])
            if (f.name, surface) in seen:
                continue
            seen.add((f.name, surface))
            reason = pattern if isinstance(pattern, str) else dropped.get((f_i, s_i, label), "not used")
            records.append(UnswappableForm(f.name, f.sets[s_i][m_i], surface, context.label, reason))
        self._seen_surfaces = seen
        return records

    def _log_summary(self, accepted: list[_Cycle]) -> None:
        if self._unswappable:
            logger.info("span swaps: %d surface forms of %s stay unswapped with this %s tokenizer; "
                        "see SpanSwapAction.unswappable()", len(self._unswappable),
                        sorted({r.factor for r in self._unswappable}), self.boundaries.family)
        never = [(f.name, m) for f_i, f in enumerate(self.factors) for s_i, s in enumerate(f.sets) for m in s
                 if not any(c.factor == f_i and c.set_index == s_i for c in accepted)]
        if never:
            logger.warning("span swaps: these members are never swapped with this %s tokenizer: %s",
                           self.boundaries.family, never)

    def _right_context_failures(self, accepted: list[_Cycle]) -> list[UnswappableForm]:
        """Forms (after a space or at the start) that the tokenizer merges with a following punctuation mark."""
        probes = []  # (cycle, member index, left context, case form, right context)
        for cycle in accepted:
            for label in [cycle.label, *cycle.aliases]:
                case, context_label = label.split(", ", 1)
                context = next(c for c in LEFT_CONTEXTS if c.label == context_label)
                if context.own_space:
                    probes += [(cycle, m_i, context, case, right) for m_i in range(len(cycle.patterns))
                               for right in RIGHT_CONTEXTS]
        texts = [p for ctx in LEFT_CONTEXTS if ctx.own_space for p in _left_probes(ctx)]
        texts += [ctx.probe + CASE_FORMS[case](self._member(c, m_i)) + r.probe for c, m_i, ctx, case, r in probes]
        encoded = self._encode(texts)
        records = []
        for cycle, m_i, context, case, right in probes:
            name, member = self.factors[cycle.factor].name, self._member(cycle, m_i)
            surface = context.shown + CASE_FORMS[case](member) + right.shown
            full = encoded[context.probe + CASE_FORMS[case](member) + right.probe]
            left = encoded[_left_probes(context)[0]]
            if self._followed_cleanly(full, left, cycle.patterns[m_i]) or (name, surface) in self._seen_surfaces:
                continue
            self._seen_surfaces.add((name, surface))
            records.append(UnswappableForm(name, member, surface, f"{context.label}, {right.label}",
                                           f"the tokenizer merges it with the following {right.shown!r}"))
        return records

    def _member(self, cycle: _Cycle, m_i: int) -> str:
        return self.factors[cycle.factor].sets[cycle.set_index][m_i]

    def _followed_cleanly(self, full: list[int], left: list[int], pattern: tuple[int, ...]) -> bool:
        """Whether ``full`` is ``left``, then ``pattern``, then a token that starts a new word (or nothing)."""
        end = len(left) + len(pattern)
        head_ok = full[: len(left)] == left and tuple(full[len(left):end]) == pattern
        return head_ok and (end == len(full) or self.boundaries.boundary(pattern[-1], full[end]))

    # -- tables ------------------------------------------------------------------------------------------------

    def _build_tables(self) -> dict[str, Any]:
        """Pattern tables: ids, lengths, roles, the cycle of each pattern, and hash indexes per length."""
        seqs, roles = self._flatten(self._cycles)
        emitted = seqs + list(self._neutral_patterns)  # neutral rows are emitted, never matched
        max_len = max(len(s) for s in emitted)
        max_order = max(self.factor_orders)
        pat_ids = torch.full((len(emitted), max_len), -1, dtype=torch.long)
        for p, s in enumerate(emitted):
            if s:
                pat_ids[p, : len(s)] = torch.tensor(s)
        cycle_index = {id(c): i for i, c in enumerate(self._cycles)}
        cycle_pats = torch.zeros(len(self._cycles), max_order, dtype=torch.long)
        for p, (cycle, m_i) in enumerate(roles):
            cycle_pats[cycle_index[id(cycle)], m_i] = p
        tables: dict[str, Any] = {
            "pat_ids": pat_ids,
            "pat_len": torch.tensor([len(s) for s in emitted]),
            "cycle_neutral": torch.arange(len(seqs), len(emitted)),
            "pat_factor": torch.tensor([c.factor for c, _ in roles]),
            "pat_member": torch.tensor([m for _, m in roles]),
            "pat_cycle": torch.tensor([cycle_index[id(c)] for c, _ in roles]),
            "cycle_pats": cycle_pats,
            "cycle_order": torch.tensor([self.factors[c.factor].order for c in self._cycles]),
            "start_free": self.boundaries.start_free,
            "end_free": self.boundaries.end_free,
        }
        for seed in range(100):
            token_hash = torch.randint(1, _PRIME, (self.vocab_size,), generator=torch.Generator().manual_seed(seed))
            by_length = []
            for length in sorted({len(s) for s in seqs}, reverse=True):
                index = torch.tensor([p for p, s in enumerate(seqs) if len(s) == length])
                hashes = _window_hash(token_hash[pat_ids[index, :length]], length)[:, 0]
                order = hashes.argsort()
                by_length.append((length, hashes[order], index[order]))
            if all(len(h.unique()) == len(h) for _, h, _ in by_length):
                tables["token_hash"], tables["by_length"] = token_hash, by_length
                return tables
        raise RuntimeError("could not find collision-free pattern hashes")  # pragma: no cover

    def _tables(self, device: torch.device) -> dict[str, Any]:
        if device not in self._device_tables:
            self._device_tables[device] = {
                k: ([(n, h.to(device), i.to(device)) for n, h, i in v] if k == "by_length" else v.to(device))
                for k, v in self._tables_cpu.items()}
        return self._device_tables[device]

    # -- matching ----------------------------------------------------------------------------------------------

    def _prepare(self, input_ids: Any, attention_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.as_tensor(input_ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, length] (or one row [length]), got shape {tuple(ids.shape)}; "
                             "flatten extra dimensions into the batch first")
        ids = ids.long()
        if attention_mask is None:
            valid = torch.ones_like(ids, dtype=torch.bool)
        else:
            valid = torch.as_tensor(attention_mask, device=ids.device)
            if valid.dim() == 1:
                valid = valid[None]
            if valid.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {tuple(valid.shape)} but input_ids {tuple(ids.shape)}")
            valid = valid.bool()
        bad = valid & ((ids < 0) | (ids >= self.vocab_size))
        if bad.any():
            row, col = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"token id {int(ids[row, col])} (row {row}, position {col}) is outside the tokenizer's "
                             f"vocabulary of {self.vocab_size}; the ids do not come from this tokenizer")
        return ids, valid

    def _match(self, ids: torch.Tensor, valid: torch.Tensor, t: dict[str, Any]) -> torch.Tensor:
        """``[B, T]`` index of the pattern matched at each start position (longest first), ``-1`` elsewhere.

        Windows of every pattern length are hashed at once, looked up in the sorted pattern hashes and then
        compared exactly; a match needs word boundaries on both sides. By construction matches never overlap
        except at a shared start, so no left-to-right scan is needed.
        """
        B, T = ids.shape
        x = torch.where(valid, ids, torch.zeros_like(ids))
        bound = torch.ones(B, T + 1, dtype=torch.bool, device=ids.device)
        if T > 1:
            bound[:, 1:T] = (t["end_free"][x[:, :-1]] | t["start_free"][x[:, 1:]] | ~valid[:, :-1] | ~valid[:, 1:])
        token_hash = t["token_hash"][x]
        best = torch.full((B, T), -1, dtype=torch.long, device=ids.device)
        for length, hashes, index in t["by_length"]:
            if length > T:
                continue
            width = T - length + 1
            h = _window_hash(token_hash, length)
            slot = torch.searchsorted(hashes, h).clamp_max(len(hashes) - 1)
            cand = index[slot]
            ok = hashes[slot] == h
            ok &= (x.unfold(1, length, 1) == t["pat_ids"][cand, :length]).all(-1)
            ok &= valid.unfold(1, length, 1).all(-1) & bound[:, :width] & bound[:, length:length + width]
            best[:, :width] = torch.where(ok & (best[:, :width] < 0), cand, best[:, :width])
        return best

    def find_matches(self, input_ids: Any, attention_mask: Any = None) -> list[list[SpanMatch]]:
        """The spans that would be swapped, per row (for inspection and docs; not vectorised)."""
        ids, valid = self._prepare(input_ids, attention_mask)
        t = self._tables(ids.device)
        best = self._match(ids, valid, t).cpu()
        out: list[list[SpanMatch]] = [[] for _ in range(ids.shape[0])]
        seqs, roles = self._flatten(self._cycles)
        for row, pos in best.ge(0).nonzero().tolist():
            cycle, m_i = roles[int(best[row, pos])]
            f = self.factors[cycle.factor]
            out[row].append(SpanMatch(row, pos, pos + len(seqs[int(best[row, pos])]), f.name, cycle.set_index, m_i,
                                      f.sets[cycle.set_index][m_i], cycle.label))
        return out

    # -- acting ------------------------------------------------------------------------------------------------

    def _parts(self, parts: Any, batch: int, device: torch.device) -> torch.Tensor:
        p = torch.as_tensor(parts, device=device)
        if p.dtype.is_floating_point or p.dtype == torch.bool:
            raise ValueError(f"parts must be integer factor indices, got dtype {p.dtype}")
        p = p.long()
        if p.dim() == 1:
            p = p[None]
        if p.dim() == 2:
            p = p[:, None, :].expand(p.shape[0], batch, p.shape[1])
        if p.dim() != 3 or p.shape[-1] != self.num_factors or p.shape[1] != batch:
            raise ValueError(f"parts must be [copies, {self.num_factors}] or [copies, {batch}, {self.num_factors}] "
                             f"factor indices (factors {[f.name for f in self.factors]}), got shape {tuple(p.shape)}")
        orders = torch.tensor(self.factor_orders, device=device)
        bad = (p < 0) | (p >= orders)
        if bad.any():
            f_i = int(bad.nonzero()[0, -1])
            value = int(p[bad][0])
            raise ValueError(f"factor index {value} is out of range for factor {self.factors[f_i].name!r} of order "
                             f"{self.factor_orders[f_i]}")
        return p

    def _factor_mask(self, mask: Any, copies: int, batch: int, device: torch.device) -> torch.Tensor:
        """``[C, B, N]`` bool from a factor mask ``[N]``, ``[C, N]`` or ``[C, B, N]``."""
        m = torch.as_tensor(mask, device=device)
        if m.dtype != torch.bool:
            raise ValueError(f"canonicalise must be a boolean factor mask, got dtype {m.dtype}")
        while m.dim() < 3:
            m = m[None]
        shape_ok = m.shape[-1] == self.num_factors and m.shape[0] in (1, copies) and m.shape[1] in (1, batch)
        if m.dim() != 3 or not shape_ok:
            raise ValueError(f"canonicalise must be [{self.num_factors}], [copies, {self.num_factors}] or "
                             f"[copies, {batch}, {self.num_factors}] (factors {[f.name for f in self.factors]}), "
                             f"got shape {tuple(torch.as_tensor(mask).shape)}")
        return m.expand(copies, batch, self.num_factors)

    def factor_matches(self, input_ids: Any, attention_mask: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which factors occur in each row, and the member index of each factor's first match.

        Returns ``(present [B, N] bool, first_member [B, N] long)`` with ``-1`` where a factor is absent. Both are
        what the group acts on predictably: ``present`` is invariant, and element ``g`` adds ``g_i`` (mod the
        order) to ``first_member[:, i]`` (matches keep their order when spans change length).
        """
        ids, valid = self._prepare(input_ids, attention_mask)
        B, T = ids.shape
        n = self.num_factors
        if T == 0:
            return (torch.zeros(B, n, dtype=torch.bool, device=ids.device),
                    torch.full((B, n), -1, dtype=torch.long, device=ids.device))
        t = self._tables(ids.device)
        match = self._match(ids, valid, t)
        pat = match.clamp_min(0)
        factor = torch.where(match >= 0, t["pat_factor"][pat], torch.full_like(match, -1))
        hit = factor[:, None, :] == torch.arange(n, device=ids.device)[None, :, None]  # [B, N, T]
        present = hit.any(-1)
        positions = torch.arange(T, device=ids.device).expand(B, n, T)
        first = torch.where(hit, positions, torch.full_like(positions, T)).amin(-1).clamp_max(T - 1)
        member = t["pat_member"][pat].gather(1, first)
        return present, torch.where(present, member, torch.full_like(member, -1))

    def transform_inputs(self, inputs: Mapping[str, Any] | Any, element: int) -> dict[str, torch.Tensor]:
        """``g . x`` for a tokenizer batch (``input_ids``, ``attention_mask``, ``token_type_ids``; or bare ids).

        Unlike token permutations this returns a new dict: spans change length, so rows are re-padded.
        """
        batch = dict(inputs) if isinstance(inputs, Mapping) else {"input_ids": inputs}
        parts = self.element_parts(int(element))[None]
        out = self.act(batch["input_ids"], batch.get("attention_mask"), parts,
                       token_type_ids=batch.get("token_type_ids"))
        if torch.as_tensor(batch["input_ids"]).dim() == 1:
            out = {k: v[0] for k, v in out.items()}
        return {**batch, **out}

    def act(self, input_ids: Any, attention_mask: Any = None, parts: Any = None, *,
            token_type_ids: Any = None, padding_side: str | None = None,
            pad_token_id: int | None = None, canonicalise: Any = None,
            canonicalization: str = "neutral") -> dict[str, torch.Tensor]:
        """Apply group elements to a padded batch.

        Args:
            input_ids: ``[B, T]`` token ids (or one row ``[T]``), padded on either side.
            attention_mask: ``[B, T]``, 0 at padding; ``None`` means no padding.
            parts: factor indices of ``C`` elements, ``[C, N]`` (the same elements for every row) or ``[C, B, N]``.
            token_type_ids: optional ``[B, T]``; every output token keeps the type of the span it came from.
            padding_side: ``"left"`` or ``"right"``; defaults to the tokenizer's ``padding_side``.
            pad_token_id: defaults to the tokenizer's pad token (needed when the copies differ in length).
            canonicalise: optional factor mask ``[N]``, ``[C, N]`` or ``[C, B, N]``: the spans of these factors are
                replaced by a form that does not depend on which member was there, instead of being moved.
            canonicalization: ``"neutral"`` (the set's neutral replacement, or deletion) or ``"representative"``
                (the set's first member: the paper's design-2 canonicaliser).

        Returns:
            ``{"input_ids", "attention_mask"[, "token_type_ids"]}``, each ``[C * B, T_out]``, copy-major (row
            ``c * B + b`` is element ``c`` applied to row ``b``), re-padded to the longest copy.
        """
        ids, valid = self._prepare(input_ids, attention_mask)
        if parts is None:
            raise ValueError("act needs parts: factor indices [copies, factors] of the group elements to apply")
        B, T = ids.shape
        device = ids.device
        p = self._parts(parts, B, device)
        C = p.shape[0]
        side = padding_side or getattr(self.tokenizer, "padding_side", "right")
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        t = self._tables(device)
        match = self._match(ids, valid, t)
        start = match >= 0
        pat = match.clamp_min(0)
        # Positions covered by a match other than its start contribute no tokens of their own.
        delta = torch.zeros(B, T + 1, dtype=torch.long, device=device)
        positions = torch.arange(T, device=device).expand(B, T)
        delta.scatter_add_(1, positions, start.long())
        delta.scatter_add_(1, positions + t["pat_len"][pat] * start, -start.long())
        inside = (delta.cumsum(1)[:, :T] > 0) & ~start
        # Replacement pattern per copy and start position.
        shift = torch.gather(p, 2, t["pat_factor"][pat].expand(C, B, T))
        cycle = t["pat_cycle"][pat]
        member = (t["pat_member"][pat] + shift) % t["cycle_order"][cycle]
        new_pat = t["cycle_pats"][cycle.expand(C, B, T), member]
        if canonicalise is not None:
            if canonicalization not in ("neutral", "representative"):
                raise ValueError(f"canonicalization must be 'neutral' or 'representative', got {canonicalization!r}")
            removed = torch.gather(self._factor_mask(canonicalise, C, B, device), 2,
                                   t["pat_factor"][pat].expand(C, B, T))
            fixed = t["cycle_neutral"][cycle] if canonicalization == "neutral" else t["cycle_pats"][cycle, 0]
            new_pat = torch.where(removed, fixed.expand(C, B, T), new_pat)
        keep = (valid & ~inside).long()
        count = torch.where(start, t["pat_len"][new_pat], keep.expand(C, B, T))  # tokens emitted per position
        width = t["pat_ids"].shape[1]
        slot = torch.arange(width, device=device)
        tokens = torch.where(start[..., None], t["pat_ids"][new_pat], ids[None, :, :, None].expand(C, B, T, width))
        lengths = count.sum(-1)  # [C, B]
        T_out = int(lengths.max()) if lengths.numel() else 0
        offset = (T_out - lengths) if side == "left" else torch.zeros_like(lengths)
        dest = (offset[..., None] + count.cumsum(-1) - count)[..., None] + slot  # [C, B, T, width]
        rows = torch.arange(C * B, device=device).view(C, B, 1, 1)
        emit = slot < count[..., None]
        flat = (rows * T_out + dest)[emit]
        pad = pad_token_id if pad_token_id is not None else getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            if bool((lengths < T_out).any()):
                raise ValueError("the copies differ in length and need padding, but the tokenizer has no pad token; "
                                 "set tokenizer.pad_token (e.g. to its eos_token) or pass pad_token_id")
            pad = 0
        out_ids = torch.full((C * B * T_out,), int(pad), dtype=torch.long, device=device)
        out_ids[flat] = tokens[emit]
        mask_dtype = torch.as_tensor(attention_mask).dtype if attention_mask is not None else torch.long
        out_mask = torch.zeros(C * B * T_out, dtype=mask_dtype, device=device)
        out_mask[flat] = 1
        result = {"input_ids": out_ids.view(C * B, T_out), "attention_mask": out_mask.view(C * B, T_out)}
        if token_type_ids is not None:
            types = torch.as_tensor(token_type_ids, device=device)
            types = types[None] if types.dim() == 1 else types
            if types.shape != ids.shape:
                raise ValueError(f"token_type_ids has shape {tuple(types.shape)} but input_ids {tuple(ids.shape)}")
            out_types = torch.zeros(C * B * T_out, dtype=types.dtype, device=device)
            out_types[flat] = types[None, :, :, None].expand(C, B, T, width)[emit]
            result["token_type_ids"] = out_types.view(C * B, T_out)
        return result

    def apply_to_text(self, text: str, parts: Sequence[int] | Mapping[str, int]) -> str:
        """Swap one element's spans in ``text``: encode, :meth:`act`, decode. ``parts`` are factor indices, either
        one per factor or a ``{factor name: index}`` mapping (missing factors stay put)."""
        if isinstance(parts, Mapping):
            names = [f.name for f in self.factors]
            unknown = [k for k in parts if k not in names]
            if unknown:
                raise ValueError(f"unknown factor name(s) {unknown}; factors are {names}")
            parts = [int(parts.get(n, 0)) for n in names]
        enc = self.tokenizer(text, add_special_tokens=False)
        out = self.act(torch.tensor([enc["input_ids"]], dtype=torch.long), None, [list(parts)])
        return self.tokenizer.decode(out["input_ids"][0].tolist())


def _window_hash(token_hash: torch.Tensor, length: int) -> torch.Tensor:
    """Polynomial hash of every window of ``length`` along the last axis (mod a prime, in int64)."""
    width = token_hash.shape[-1] - length + 1
    h = torch.zeros(*token_hash.shape[:-1], width, dtype=torch.long, device=token_hash.device)
    for i in range(length):
        h = (h * _MULT + token_hash[..., i:i + width]) % _PRIME
    return h


def _check_factors_disjoint(factors: Sequence[SpanSwap]) -> None:
    """Members of different factors must not equal, contain or overlap each other (case ignored)."""
    names = [f.name for f in factors]
    if len(set(names)) != len(names):
        raise ValueError(f"span swap factor names must be distinct, got {names}")
    texts, owner = [], []
    for f in factors:
        for m in f.members:
            texts.append(m.casefold())
            owner.append((f.name, m))
    for ov in _overlaps(texts, [_text_cuts(t) for t in texts]):
        (fa, a), (fb, b) = owner[ov.outer], owner[ov.inner]
        if fa != fb:
            what = "equals" if ov.kind == "equal" else "contains" if ov.kind in ("prefix", "inside") else "overlaps"
            raise ValueError(f"span swap factors {fa!r} and {fb!r} overlap: {a!r} ({fa}) {what} {b!r} ({fb}). "
                             "Factors must act on disjoint spans so that they commute; remove one of the members")
