"""SCAN and SCAN-II, generated offline from their grammars, with add-primitive splits, word-swap groups and tokenizers.

SCAN (Lake and Baroni, 2018) maps navigation commands ("jump twice after walk left") to action sequences
("TURN_LEFT WALK JUMP JUMP"). SCAN-II (Baltaji, Basu and Varshney, TMLR 2024) adds the directions "up" and "down".
Both are small enough to enumerate exactly, so nothing is downloaded: every command is built from the grammar and
its actions from the interpretation function below.

Grammar (``D`` is a direction: left, right; SCAN-II adds up, down)::

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> X opposite D | X around D | X D | U          with X in U + {turn}
    U -> walk | look | run | jump

Interpretation (``[[.]]``; ``TURN_D`` is the turn towards direction ``D``; ``[[turn]]`` is empty)::

    [[U]] = U (upper case)                  [[X D]] = TURN_D [[X]]
    [[X opposite D]] = TURN_D TURN_D [[X]]  [[X around D]] = (TURN_D [[X]]) x 4
    [[V twice]] = [[V]] x 2                 [[V thrice]] = [[V]] x 3
    [[S1 and S2]] = [[S1]] [[S2]]           [[S1 after S2]] = [[S2]] [[S1]]

Output tokens are the original ``I_WALK``, ``I_TURN_LEFT``, ... with the ``I_`` prefix stripped (as the paper's
loader does): ``WALK LOOK RUN JUMP TURN_LEFT TURN_RIGHT TURN_UP TURN_DOWN``. See ``docs/scan.md``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "VERSIONS",
    "VERBS",
    "Example",
    "directions",
    "input_words",
    "output_words",
    "interpret",
    "enumerate_commands",
    "scan_dataset",
    "contains_primitive",
    "SPLIT_PRIMITIVES",
    "ScanSplit",
    "add_primitive_split",
    "SCAN_FACTORS",
    "factor_order",
    "group_elements",
    "apply_swap",
    "make_swap",
    "SPECIAL_TOKENS",
    "build_tokenizer",
    "factor_token_cycles",
]

VERSIONS: tuple[str, ...] = ("scan", "scan2")
VERBS: tuple[str, ...] = ("walk", "look", "run", "jump")
_DIRECTIONS = {"scan": ("left", "right"), "scan2": ("left", "right", "up", "down")}
_ALL_DIRECTIONS = _DIRECTIONS["scan2"]
_REPEATS = {"twice": 2, "thrice": 3}
_AROUND_TIMES = 4
_OPPOSITE_TIMES = 2

Example = tuple[str, str]
"""One example: (command, actions), both single-space separated strings."""


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown SCAN version {version!r}; expected one of {VERSIONS}")


def directions(version: str = "scan") -> tuple[str, ...]:
    """The direction words of a version: left, right (SCAN), plus up, down (SCAN-II)."""
    _check_version(version)
    return _DIRECTIONS[version]


def _turn(direction: str) -> str:
    return f"TURN_{direction.upper()}"


def input_words(version: str = "scan") -> list[str]:
    """The command vocabulary, in a fixed order (13 words for SCAN, 15 for SCAN-II)."""
    return [*VERBS, "turn", *directions(version), "opposite", "around", *_REPEATS, "and", "after"]


def output_words(version: str = "scan") -> list[str]:
    """The action vocabulary, in a fixed order (6 actions for SCAN, 8 for SCAN-II)."""
    return [v.upper() for v in VERBS] + [_turn(d) for d in directions(version)]


# ----------------------------------------------------------------------------------------------- interpretation


def _interpret_phrase(words: Sequence[str]) -> list[str]:
    """[[V]] for a verb phrase given as words (``["jump", "around", "left"]``)."""
    head = words[0] if words else ""
    if head not in (*VERBS, "turn"):
        raise ValueError(f"a verb phrase must start with a verb or 'turn', got {' '.join(words)!r}")
    own = [head.upper()] if head != "turn" else []
    if len(words) == 1:
        if head == "turn":
            raise ValueError("'turn' needs a direction")
        return own
    if len(words) == 2 and words[1] in _ALL_DIRECTIONS:
        return [_turn(words[1]), *own]
    if len(words) == 3 and words[1] == "opposite" and words[2] in _ALL_DIRECTIONS:
        return [_turn(words[2])] * _OPPOSITE_TIMES + own
    if len(words) == 3 and words[1] == "around" and words[2] in _ALL_DIRECTIONS:
        return ([_turn(words[2])] + own) * _AROUND_TIMES
    raise ValueError(f"not a verb phrase: {' '.join(words)!r}")


def _interpret_sentence(words: Sequence[str]) -> list[str]:
    """[[S]]: a verb phrase, optionally followed by 'twice' or 'thrice'."""
    if words and words[-1] in _REPEATS:
        return _interpret_phrase(words[:-1]) * _REPEATS[words[-1]]
    return _interpret_phrase(words)


def interpret(command: str) -> str:
    """The action sequence of a SCAN or SCAN-II command (the grammar's interpretation function).

    Parses the command independently of :func:`enumerate_commands`, so tests can check one against the other.
    Raises ``ValueError`` for strings that are not commands of SCAN-II (a superset of SCAN).
    """
    words = command.split()
    joints = [i for i, w in enumerate(words) if w in ("and", "after")]
    if len(joints) > 1:
        raise ValueError(f"at most one 'and'/'after' per command: {command!r}")
    if not joints:
        return " ".join(_interpret_sentence(words))
    i = joints[0]
    first, second = _interpret_sentence(words[:i]), _interpret_sentence(words[i + 1:])
    return " ".join(first + second if words[i] == "and" else second + first)


# ----------------------------------------------------------------------------------------------- enumeration


def _verb_phrases(version: str) -> list[str]:
    """Every V, in a fixed order: the bare verbs, then for each X in verbs + turn and each direction D:
    "X D", "X opposite D", "X around D"."""
    phrases = list(VERBS)
    for head in (*VERBS, "turn"):
        for d in directions(version):
            phrases += [f"{head} {d}", f"{head} opposite {d}", f"{head} around {d}"]
    return phrases


def _sentences(version: str) -> list[str]:
    """Every S in a fixed order: for each V, "V", "V twice", "V thrice"."""
    return [f"{v}{suffix}" for v in _verb_phrases(version) for suffix in ("", " twice", " thrice")]


@lru_cache(maxsize=None)
def _commands(version: str) -> tuple[str, ...]:
    sentences = _sentences(version)
    pairs = list(itertools.product(sentences, sentences))
    return (*sentences, *(f"{a} and {b}" for a, b in pairs), *(f"{a} after {b}" for a, b in pairs))


def enumerate_commands(version: str = "scan") -> list[str]:
    """All distinct commands of SCAN (20,910) or SCAN-II (73,920) in a deterministic order:
    the single sentences, then every "S1 and S2", then every "S1 after S2"."""
    _check_version(version)
    return list(_commands(version))


@lru_cache(maxsize=None)
def _dataset(version: str) -> tuple[Example, ...]:
    return tuple((c, interpret(c)) for c in _commands(version))


def scan_dataset(version: str = "scan") -> list[Example]:
    """Every (command, actions) pair of SCAN or SCAN-II, in the order of :func:`enumerate_commands`."""
    _check_version(version)
    return list(_dataset(version))


# ----------------------------------------------------------------------------------------------- splits


def contains_primitive(command: str, primitive: str) -> bool:
    """Whether ``primitive`` (one or more words: "jump", "turn left") occurs in ``command`` as whole words."""
    return f" {primitive} " in f" {command} "


SPLIT_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "jump": ("jump",),
    "turn_left": ("turn left",),
    "turn_up": ("turn up",),
    "turn_up_jump_turn_left": ("turn up", "jump", "turn left"),
}
"""The paper's add-primitive splits: name -> held-out primitives."""


@dataclass(frozen=True)
class ScanSplit:
    """An add-primitive split.

    Attributes:
        name: the split's name (a key of :data:`SPLIT_PRIMITIVES`, or the primitives joined by "_").
        version: "scan" or "scan2".
        primitives: the held-out primitives.
        train: training examples: the commands without any held-out primitive (minus validation and random-test
            commands), plus each isolated primitive ("jump" -> "JUMP") repeated ``primitive_copies`` times.
            In dataset order with the copies last: shuffle before training.
        validation: commands without held-out primitives, for model selection (never the test set).
        test: every command containing a held-out primitive, except the isolated primitives themselves.
        random_test: commands without held-out primitives that are neither trained on nor used for selection
            (an in-distribution sanity check); empty unless requested.
        primitive_copies: how many times each isolated primitive was added to ``train``.
        seed: the seed of the train / validation / random-test partition.
    """

    name: str
    version: str
    primitives: tuple[str, ...]
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    random_test: list[Example]
    primitive_copies: int
    seed: int

    def sizes(self) -> dict[str, int]:
        """Number of examples per part (``train`` counts the repeated primitives)."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test),
                "random_test": len(self.random_test), "primitive_copies": self.primitive_copies}

    def test_subset(self, primitive: str) -> list[Example]:
        """The test examples that contain ``primitive`` (e.g. the "jump" test set of the union split)."""
        return [ex for ex in self.test if contains_primitive(ex[0], primitive)]


def _resolve_primitives(split: str | Sequence[str]) -> tuple[str, tuple[str, ...]]:
    if isinstance(split, str):
        if split not in SPLIT_PRIMITIVES:
            raise ValueError(f"unknown split {split!r}; known splits are {sorted(SPLIT_PRIMITIVES)} "
                             "(or pass the primitives as a list)")
        return split, SPLIT_PRIMITIVES[split]
    primitives = tuple(split)
    if not primitives:
        raise ValueError("an add-primitive split needs at least one primitive")
    return "_".join(p.replace(" ", "_") for p in primitives), primitives


def add_primitive_split(split: str | Sequence[str], version: str = "scan2", *, validation_fraction: float = 0.05,
                        random_test_fraction: float = 0.0, primitive_fraction: float = 0.06,
                        seed: int = 0) -> ScanSplit:
    """An add-primitive split: commands with a held-out primitive are tested, the primitive alone is trained on.

    Args:
        split: a name from :data:`SPLIT_PRIMITIVES` or a list of primitives (each one or more words).
        version: "scan" or "scan2".
        validation_fraction: share of the primitive-free commands held out for model selection.
        random_test_fraction: share of the primitive-free commands held out as an in-distribution test set.
        primitive_fraction: each isolated primitive is added ``max(1, int(primitive_fraction * n))`` times, n being
            the number of primitive-free training commands. The paper's data script uses 0.06 (computed before its
            validation split); 0 adds each primitive once, as in Lake and Baroni (2018).
        seed: seed of the partition of the primitive-free commands (a private ``random.Random``).

    Every primitive must be a command of the grammar on its own ("jump", "turn left").
    """
    _check_version(version)
    name, primitives = _resolve_primitives(split)
    data = _dataset(version)
    commands = {c for c, _ in data}
    missing = [p for p in primitives if p not in commands]
    if missing:
        raise ValueError(f"primitives {missing} are not commands of {version!r} on their own")
    if not (0 <= validation_fraction < 1 and 0 <= random_test_fraction < 1
            and validation_fraction + random_test_fraction < 1):
        raise ValueError("validation_fraction and random_test_fraction must be >= 0 and sum to less than 1")

    held = [ex for ex in data if any(contains_primitive(ex[0], p) for p in primitives)]
    test = [ex for ex in held if ex[0] not in primitives]
    clean = [ex for ex in data if not any(contains_primitive(ex[0], p) for p in primitives)]
    order = list(range(len(clean)))
    random.Random(seed).shuffle(order)
    n_val, n_rand = round(validation_fraction * len(clean)), round(random_test_fraction * len(clean))
    validation = [clean[i] for i in sorted(order[:n_val])]
    random_test = [clean[i] for i in sorted(order[n_val:n_val + n_rand])]
    train = [clean[i] for i in sorted(order[n_val + n_rand:])]
    copies = max(1, int(primitive_fraction * len(train)))
    for p in primitives:
        train += [(p, interpret(p))] * copies
    return ScanSplit(name=name, version=version, primitives=primitives, train=train, validation=validation,
                     test=test, random_test=random_test, primitive_copies=copies, seed=seed)


# ----------------------------------------------------------------------------------------------- group actions

SCAN_FACTORS: dict[str, dict[str, list[list[str]]]] = {
    "verb": {"input": [["run", "jump"]], "output": [["RUN", "JUMP"]]},
    "direction_lr": {"input": [["right", "left"]], "output": [["TURN_RIGHT", "TURN_LEFT"]]},
    "direction_ud": {"input": [["down", "up"]], "output": [["TURN_DOWN", "TURN_UP"]]},
}
"""The experiment's product group Z2 x Z2 x Z2 as word cycles, paired across the input and output vocabularies.

For each factor, ``input`` and ``output`` are lists of cycles; the factor's generator maps member ``j`` of every
cycle to member ``j + 1`` (mod the cycle length) in both vocabularies at once. Element ``k`` of a factor applies the
generator ``k`` times. Each cycle lists an in-distribution word first (run, right, down), so a wrapper that
canonicalises to the first member never feeds the backbone a held-out primitive (method.md §6, item 4; the research
code used jump, right, up). The output vocabulary has no bare LEFT/RIGHT: directions appear only as TURN_*.
The three factors act on disjoint words, so they commute. For SCAN (no up/down) ``direction_ud`` acts trivially.
"""


def factor_order(factor: Mapping[str, Sequence[Sequence[str]]]) -> int:
    """The order of a factor's cyclic group; all its input and output cycles must have that length."""
    lengths = {len(c) for side in ("input", "output") for c in factor[side]}
    if len(lengths) != 1 or min(lengths) < 2:
        raise ValueError(f"every cycle of a factor must have the same length >= 2, got lengths {sorted(lengths)}")
    return lengths.pop()


def group_elements(factors: Mapping[str, Mapping[str, Any]] = SCAN_FACTORS) -> list[dict[str, int]]:
    """Every element of the product group as ``{factor name: power}``, identity first (8 for SCAN_FACTORS)."""
    names = list(factors)
    ranges = [range(factor_order(factors[n])) for n in names]
    return [dict(zip(names, powers)) for powers in itertools.product(*ranges)]


def _word_map(factors: Mapping[str, Mapping[str, Any]], element: Mapping[str, int], side: str) -> dict[str, str]:
    """Word -> image of the word under ``element`` on one side ("input" or "output")."""
    mapping: dict[str, str] = {}
    for name, power in element.items():
        if name not in factors:
            raise ValueError(f"unknown factor {name!r}; factors are {list(factors)}")
        for cycle in factors[name][side]:
            for j, word in enumerate(cycle):
                if word in mapping:
                    raise ValueError(f"word {word!r} is moved by two factors; factors must act on disjoint words")
                mapping[word] = cycle[(j + power) % len(cycle)]
    return mapping


def make_swap(factor_elements: Mapping[str, int] | Sequence[int],
              factors: Mapping[str, Mapping[str, Any]] = SCAN_FACTORS) -> Callable[[str, str], Example]:
    """``swap(command, actions) -> (g·command, g·actions)`` for one group element, with its word maps built once.

    ``factor_elements`` gives each factor's power, as ``{"verb": 1, "direction_ud": 1}`` (missing factors are the
    identity) or as a sequence in the order of ``factors``.
    """
    if not isinstance(factor_elements, Mapping):
        if len(factor_elements) != len(factors):
            raise ValueError(f"expected {len(factors)} powers (one per factor), got {len(factor_elements)}")
        factor_elements = dict(zip(factors, factor_elements))
    in_map = _word_map(factors, factor_elements, "input")
    out_map = _word_map(factors, factor_elements, "output")

    def swap(command: str, actions: str) -> Example:
        return (" ".join(in_map.get(w, w) for w in command.split()),
                " ".join(out_map.get(a, a) for a in actions.split()))

    return swap


def apply_swap(command: str, actions: str, factor_elements: Mapping[str, int] | Sequence[int],
               factors: Mapping[str, Mapping[str, Any]] = SCAN_FACTORS) -> Example:
    """Transform one example by a group element: each command word and each action is mapped through the element's
    permutation of its vocabulary (see :func:`make_swap` for the element's format and for many examples)."""
    return make_swap(factor_elements, factors)(command, actions)


# ----------------------------------------------------------------------------------------------- tokenizers

SPECIAL_TOKENS: dict[str, str] = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
"""Special tokens of the SCAN tokenizers; they take ids 0-3 in this order."""


def _vocabulary(version: str, side: str) -> list[str]:
    if side not in ("shared", "input", "output"):
        raise ValueError(f"side must be 'shared', 'input' or 'output', got {side!r}")
    words = []
    if side in ("shared", "input"):
        words += input_words(version)
    if side in ("shared", "output"):
        words += output_words(version)
    return [*SPECIAL_TOKENS.values(), *words]


def build_tokenizer(version: str = "scan2", side: str = "shared") -> Any:
    """A word-level ``PreTrainedTokenizerFast`` for SCAN: whitespace split, one id per word, ``</s>`` appended.

    ``side="shared"`` covers commands and actions in one vocabulary (what T5/BART with tied embeddings need);
    ``"input"``/``"output"`` give separate vocabularies. Ids: the specials 0-3 (pad, bos, eos, unk), then
    :func:`input_words` and/or :func:`output_words` in order, so ids are identical across runs and machines.
    Saves and loads with ``save_pretrained`` / ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    _check_version(version)
    vocab = {w: i for i, w in enumerate(_vocabulary(version, side))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = SPECIAL_TOKENS["eos_token"]
    core.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                        special_tokens=[(eos, vocab[eos])])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=128, **SPECIAL_TOKENS)
    tokenizer.padding_side = "right"
    return tokenizer


def factor_token_cycles(tokenizer: Any, factors: Mapping[str, Mapping[str, Any]] = SCAN_FACTORS,
                        output_tokenizer: Any | None = None) -> dict[str, dict[str, list[list[int]]]]:
    """The factors' word cycles as token-id cycles: ``{factor: {"input": [[id, ...]], "output": [[id, ...]]}}``.

    Input words are looked up in ``tokenizer``, output words in ``output_tokenizer`` (default: the same, shared
    vocabulary). Words absent from a vocabulary (up/down for SCAN) are skipped cycle by cycle; an id that is the
    unknown token raises. This is the form a token-permutation wrapper needs.
    """
    out_tok = output_tokenizer if output_tokenizer is not None else tokenizer
    result: dict[str, dict[str, list[list[int]]]] = {}
    for name, factor in factors.items():
        factor_order(factor)
        result[name] = {"input": _id_cycles(tokenizer, factor["input"]),
                        "output": _id_cycles(out_tok, factor["output"])}
    return result


def _id_cycles(tokenizer: Any, cycles: Sequence[Sequence[str]]) -> list[list[int]]:
    vocab = tokenizer.get_vocab()
    kept = []
    for cycle in cycles:
        present = [w in vocab for w in cycle]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"cycle {list(cycle)} is only partly in the vocabulary")
        kept.append([vocab[w] for w in cycle])
    return kept

