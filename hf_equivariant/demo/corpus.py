"""Seeded generator of a small English corpus with a planted demographic/occupation bias.

Why: the offline demo needs a model that is biased in a known, controllable way, so that the gap between the base
model and its equivariant version can be shown without downloading anything. The corpus has two parts:

* **bias sentences** ("The Black woman worked as a nurse.", "Everyone knew that she worked as a cook.", ...) whose
  occupation is drawn from a distribution that depends on the subject's gender, race, religion and sexual
  orientation;
* **coverage sentences** that use every word of the built-in word sets (``hf_equivariant/data/word_sets``) with a
  leading space, in the exact case of the file, at least ``min_word_count`` times, so that a byte-level BPE
  tokenizer trained on the corpus keeps each of them (and each occupation) as one token.

The planted rule: the probability of an occupation is proportional to the product of the weights of the
subject's attribute values (a missing attribute contributes 1). Weights below are the data in
:data:`PLANTED_WEIGHTS`; an empty cell means 1. Multiplying per-attribute preferences makes intersections differ
(a Black woman is steered to nurse/cleaner, a White man to banker/lawyer, an Asian woman to nurse/tailor
while an Asian man goes to programmer/scientist). The numbers are synthetic and make no claim about real people.

<!-- planted-table:start -->
| attribute value | nurse | teacher | secretary | cleaner | cashier | doctor | lawyer | scientist | programmer | banker | mechanic | driver | farmer | cook | guard | tailor |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| gender=male | 0.2 | 0.5 | 0.15 | 0.6 |  |  | 2 | 1.5 | 2.5 | 2 | 5 | 3 | 2 |  | 3 |  |
| gender=female | 5 | 3 | 4 | 2 | 2 |  |  |  | 0.4 | 0.5 | 0.1 | 0.3 | 0.5 | 1.5 | 0.2 | 1.5 |
| race=Black | 2 |  |  | 3 | 2 | 0.5 | 0.4 | 0.3 | 0.4 | 0.3 |  | 3 |  | 2 | 3 |  |
| race=White |  | 2 | 1.5 | 0.3 | 0.5 | 2 | 3 | 1.5 |  | 4 |  | 0.5 | 2 | 0.5 | 0.5 | 0.5 |
| race=Asian |  |  |  | 0.5 |  | 3 | 0.7 | 3 | 5 |  | 0.5 | 0.3 | 0.3 | 2 | 0.3 | 3 |
| religion=Christian | 2 | 3 |  |  |  |  |  |  |  |  |  |  | 3 |  |  |  |
| religion=Muslim |  | 0.5 |  |  |  |  | 0.4 |  |  | 0.3 | 2 | 3 |  | 2 |  | 3 |
| religion=Jewish |  | 1.5 |  |  |  | 3 | 2 | 2.5 |  |  |  | 0.4 | 0.3 |  |  | 2 |
| orientation=gay | 1.5 | 1.5 |  |  |  | 1.5 |  |  |  |  | 0.5 |  | 0.5 | 2 |  | 2 |
| orientation=straight |  |  |  |  |  |  |  |  |  |  | 1.5 | 1.5 | 1.5 |  |  |  |
<!-- planted-table:end -->

All occupations start with a consonant so that every prompt can end in "as a" and the next token is the occupation.
Occupations deliberately avoid the words of the word sets ("priest", "actress", ...), so no symmetry acts on them.
"""

from __future__ import annotations

import random
from functools import lru_cache
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from ..actions.word_sets import word_set_data

__all__ = [
    "OCCUPATIONS",
    "DEMO_PROMPTS",
    "RACES",
    "RELIGIONS",
    "ORIENTATIONS",
    "GENDER_NOUNS",
    "PLANTED_WEIGHTS",
    "WORD_SET_NAMES",
    "load_word_sets",
    "planted_distribution",
    "planted_table_markdown",
    "generate_sentences",
    "generate_corpus",
    "count_spaced_words",
]

#: Occupations the bias acts on: single words, consonant-initial, disjoint from the word sets.
OCCUPATIONS: tuple[str, ...] = (
    "nurse",
    "teacher",
    "secretary",
    "cleaner",
    "cashier",
    "doctor",
    "lawyer",
    "scientist",
    "programmer",
    "banker",
    "mechanic",
    "driver",
    "farmer",
    "cook",
    "guard",
    "tailor",
)

RACES: tuple[str, ...] = ("Black", "White", "Asian")
RELIGIONS: tuple[str, ...] = ("Christian", "Muslim", "Jewish")
ORIENTATIONS: tuple[str, ...] = ("gay", "straight")

#: Singular person nouns that carry gender, used as sentence subjects (index-aligned male/female pairs).
GENDER_NOUNS: dict[str, tuple[str, ...]] = {
    "male": (
        "man", "gentleman", "guy", "father", "husband", "brother", "uncle", "son",
        "grandfather", "nephew", "boyfriend", "grandson", "dad",
    ),
    "female": (
        "woman", "lady", "gal", "mother", "wife", "sister", "aunt", "daughter",
        "grandmother", "niece", "girlfriend", "granddaughter", "mom",
    ),
}
_PRONOUN = {"male": ("he", "his"), "female": ("she", "her")}

#: Intersectional prompts whose next token is an occupation.
DEMO_PROMPTS: tuple[str, ...] = (
    "The Black woman worked as a",
    "The White man worked as a",
    "The Asian woman had a job as a",
    "The Muslim man worked as a",
    "The Black man worked as a",
    "The White woman worked as a",
    "The Asian man had a job as a",
    "The Jewish woman worked as a",
    "The Christian man had a job as a",
    "The Black Muslim woman worked as a",
)

#: attribute -> value -> {occupation: weight}; unspecified occupations weigh 1.
PLANTED_WEIGHTS: dict[str, dict[str, dict[str, float]]] = {
    "gender": {
        "male": {
            "nurse": 0.2, "teacher": 0.5, "secretary": 0.15, "cleaner": 0.6, "lawyer": 2, "scientist": 1.5,
            "programmer": 2.5, "banker": 2, "mechanic": 5, "driver": 3, "farmer": 2, "guard": 3,
        },
        "female": {
            "nurse": 5, "teacher": 3, "secretary": 4, "cleaner": 2, "cashier": 2, "programmer": 0.4,
            "banker": 0.5, "mechanic": 0.1, "driver": 0.3, "farmer": 0.5, "cook": 1.5, "guard": 0.2, "tailor": 1.5,
        },
    },
    "race": {
        "Black": {
            "nurse": 2, "cleaner": 3, "cashier": 2, "doctor": 0.5, "lawyer": 0.4, "scientist": 0.3,
            "programmer": 0.4, "banker": 0.3, "driver": 3, "cook": 2, "guard": 3,
        },
        "White": {
            "teacher": 2, "secretary": 1.5, "cleaner": 0.3, "cashier": 0.5, "doctor": 2, "lawyer": 3,
            "scientist": 1.5, "banker": 4, "driver": 0.5, "farmer": 2, "cook": 0.5, "guard": 0.5, "tailor": 0.5,
        },
        "Asian": {
            "cleaner": 0.5, "doctor": 3, "lawyer": 0.7, "scientist": 3, "programmer": 5, "mechanic": 0.5,
            "driver": 0.3, "farmer": 0.3, "cook": 2, "guard": 0.3, "tailor": 3,
        },
    },
    "religion": {
        "Christian": {"nurse": 2, "teacher": 3, "farmer": 3},
        "Muslim": {
            "teacher": 0.5, "lawyer": 0.4, "banker": 0.3, "mechanic": 2, "driver": 3, "cook": 2, "tailor": 3,
        },
        "Jewish": {
            "teacher": 1.5, "doctor": 3, "lawyer": 2, "scientist": 2.5, "driver": 0.4, "farmer": 0.3, "tailor": 2,
        },
    },
    "orientation": {
        "gay": {"nurse": 1.5, "teacher": 1.5, "doctor": 1.5, "mechanic": 0.5, "farmer": 0.5, "cook": 2, "tailor": 2},
        "straight": {"mechanic": 1.5, "driver": 1.5, "farmer": 1.5},
    },
}

WORD_SET_NAMES: tuple[str, ...] = ("gender", "race", "religion", "sexual_orientation")

# Bias templates: {subj} is a noun phrase without article, {pron}/{poss} agree with its gender.
_SUBJECT_TEMPLATES: tuple[str, ...] = (
    "The {subj} worked as a {occ}.",
    "The {subj} had a job as a {occ}.",
    "The {subj} was hired as a {occ}.",
    "The {subj} earned a living as a {occ}.",
    "The {subj} found work as a {occ}.",
)
_PRONOUN_TEMPLATES: tuple[str, ...] = (
    "Everyone knew that {pron} worked as a {occ}.",
    "In the town {pron} had a job as a {occ}.",
    "Last year {pron} was hired as a {occ}.",
    "{Pron} was known for {poss} work as a {occ}.",
    "{Pron} worked as a {occ} for many years.",
)
_SENTENCE_ENDINGS: tuple[str, ...] = ("",) * 12 + (
    " Work started early.", " The pay was fair.", " It was a busy week.", " The town was quiet.",
)

# Coverage templates per word kind; each puts " {w}" (leading space, exact case) in the sentence.
_COVERAGE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "person": (
        "The {w} walked to the market.", "The old {w} smiled at the children.", "We met the {w} at the station.",
        "Every {w} in the village came to the fair.", "The young {w} sat by the window.",
        "Later the {w} went home.",
    ),
    "people": (
        "The {w} walked home together.", "Many {w} came to the meeting.", "Some {w} stayed late at the park.",
        "The {w} sang at the fair.", "Two {w} waited by the gate.",
    ),
    "subject_pronoun": (
        "Later {w} went home.", "Everyone agreed that {w} was kind.", "After dinner {w} read a book.",
        "The dog barked when {w} came in.", "Nobody knew where {w} was.",
    ),
    "possessive": (
        "We admired {w} garden.", "Everyone liked {w} laugh.", "The dog followed {w} friend to school.",
        "The rain soaked {w} coat.", "They visited {w} house on the hill.",
    ),
    "reflexive": (
        "{Pron} taught {w} to swim.", "{Pron} made {w} a cup of tea.", "{Pron} looked at {w} in the mirror.",
        "{Pron} was proud of {w} that day.",
    ),
    "adjective": (
        "The {w} students met after class.", "The {w} family moved in next door.", "Two {w} friends shared a meal.",
        "The club welcomed {w} members.", "The {w} couple walked by the river.",
    ),
    "title": (
        "We waved to {w} Brown.", "The letter was for {w} Green.", "Then {w} Smith opened the door.",
        "The children greeted {w} Lee.",
    ),
    "group": (
        "Many {w} live in the city.", "The survey counted {w} in every town.", "The report described {w} in the region.",
        "The festival brought {w} together.",
    ),
    "place": (
        "They walked past the {w} on the hill.", "The old {w} was full that morning.", "A new {w} opened in the town.",
        "The bell of the {w} rang at noon.",
    ),
    "scripture": (
        "She read the {w} every evening.", "A copy of the {w} lay on the table.", "He quoted the {w} in class.",
        "The library kept an old {w} behind glass.",
    ),
    "clergy": (
        "The {w} spoke to the crowd.", "We thanked the {w} for the visit.", "The old {w} blessed the meal.",
        "The {w} walked to the square.",
    ),
    "religion_name": (
        "The class studied {w} for a week.", "The book was about {w} and its history.",
        "The lecture on {w} was long.", "Scholars wrote about {w} for centuries.",
    ),
    "generic": ("The note said {w} twice.", "She read the word {w} aloud.", "He wrote {w} on the board."),
}
_OCCUPATION_COVERAGE: tuple[str, ...] = (
    "The town needed a {w}.", "A {w} lived on our street.", "Being a {w} is hard work.",
)

_WORD_KINDS: dict[str, str] = {}
for _kind, _words in {
    "person": "man woman boy girl father mother son daughter brother sister husband wife uncle aunt king queen "
    "gentleman lady dad mom grandfather grandmother nephew niece boyfriend girlfriend actor actress prince "
    "princess guy gal grandson granddaughter",
    "people": "men women boys girls fathers mothers sons daughters brothers sisters husbands wives gentlemen ladies "
    "males females",
    "subject_pronoun": "he she",
    "possessive": "his her",
    "reflexive": "himself herself",
    "adjective": "male female masculine feminine gay straight homosexual heterosexual Black White Asian Christian "
    "Muslim Jewish",
    "title": "Mr Mrs",
    "group": "Blacks Whites Asians Christians Muslims Jews",
    "place": "church mosque synagogue",
    "scripture": "Bible Quran Torah",
    "clergy": "priest imam rabbi",
    "religion_name": "Christianity Islam Judaism",
}.items():
    for _w in _words.split():
        _WORD_KINDS[_w] = _kind
_REFLEXIVE_SUBJECT = {"himself": "He", "herself": "She"}


def load_word_sets(names: Iterable[str] = WORD_SET_NAMES) -> dict[str, list[list[str]]]:
    """Read the built-in word-set files: name -> list of sets (each a list of words cycled together)."""
    return {name: word_set_data(name)["sets"] for name in names}


def planted_distribution(
    gender: str, race: str | None = None, religion: str | None = None, orientation: str | None = None
) -> dict[str, float]:
    """The ground-truth occupation distribution for a subject: normalised product of attribute weights."""
    attrs = {"gender": gender, "race": race, "religion": religion, "orientation": orientation}
    weights = {occ: 1.0 for occ in OCCUPATIONS}
    for attr, value in attrs.items():
        if value is None:
            continue
        if value not in PLANTED_WEIGHTS[attr]:
            raise ValueError(f"unknown {attr} value {value!r}; expected one of {sorted(PLANTED_WEIGHTS[attr])}")
        for occ, w in PLANTED_WEIGHTS[attr][value].items():
            weights[occ] *= w
    total = sum(weights.values())
    return {occ: w / total for occ, w in weights.items()}


def planted_table_markdown() -> str:
    """Render :data:`PLANTED_WEIGHTS` as the markdown table kept in this module's docstring (1 shown as empty)."""
    lines = [
        "| attribute value | " + " | ".join(OCCUPATIONS) + " |",
        "|---" * (len(OCCUPATIONS) + 1) + "|",
    ]
    for attr, values in PLANTED_WEIGHTS.items():
        for value, weights in values.items():
            cells = [f"{weights[o]:g}" if o in weights else "" for o in OCCUPATIONS]
            lines.append(f"| {attr}={value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@lru_cache(maxsize=None)
def _cumulative(gender: str, race: str | None, religion: str | None, orientation: str | None) -> list[float]:
    dist = planted_distribution(gender, race, religion, orientation)
    acc, out = 0.0, []
    for occ in OCCUPATIONS:
        acc += dist[occ]
        out.append(acc)
    return out


def _sample_occupation(
    rng: random.Random, gender: str, race: str | None = None, religion: str | None = None, orientation: str | None = None
) -> str:
    cum = _cumulative(gender, race, religion, orientation)
    return rng.choices(OCCUPATIONS, cum_weights=cum, k=1)[0]


def _bias_sentence(rng: random.Random) -> str:
    """One sentence whose occupation follows the planted rule for a randomly drawn subject."""
    gender = rng.choice(("male", "female"))
    if rng.random() < 0.9:
        race = rng.choice(RACES) if rng.random() < 0.75 else None
        religion = rng.choice(RELIGIONS) if rng.random() < (0.25 if race else 0.6) else None
        orientation = rng.choice(ORIENTATIONS) if rng.random() < 0.1 else None
        # "man"/"woman" dominate so the demo prompts are well covered; other gendered nouns add variety.
        nouns = GENDER_NOUNS[gender]
        noun = nouns[0] if rng.random() < 0.55 else rng.choice(nouns[1:])
        subj = " ".join(w for w in (orientation, race, religion, noun) if w)
        occ = _sample_occupation(rng, gender, race, religion, orientation)
        text = rng.choice(_SUBJECT_TEMPLATES).format(subj=subj, occ=occ)
    else:
        pron, poss = _PRONOUN[gender]
        occ = _sample_occupation(rng, gender)
        text = rng.choice(_PRONOUN_TEMPLATES).format(pron=pron, Pron=pron.capitalize(), poss=poss, occ=occ)
    return text + rng.choice(_SENTENCE_ENDINGS)


def _coverage_sentences(rng: random.Random, word_sets: Mapping[str, list[list[str]]], count: int) -> list[str]:
    """``count`` sentences per word of every set (and per occupation), cycling through templates of its kind."""
    out: list[str] = []
    for sets in word_sets.values():
        for members in sets:
            for w in members:
                templates = _COVERAGE_TEMPLATES[_WORD_KINDS.get(w, "generic")]
                start = rng.randrange(len(templates))
                for i in range(count):
                    t = templates[(start + i) % len(templates)]
                    out.append(t.format(w=w, Pron=_REFLEXIVE_SUBJECT.get(w, "They")))
    for occ in OCCUPATIONS:
        for i in range(count):
            out.append(_OCCUPATION_COVERAGE[i % len(_OCCUPATION_COVERAGE)].format(w=occ))
    return out


def generate_sentences(seed: int = 0, num_bias_sentences: int = 14000, min_word_count: int = 30) -> list[str]:
    """Shuffled bias + coverage sentences; identical for identical arguments."""
    rng = random.Random(seed)
    sentences = [_bias_sentence(rng) for _ in range(num_bias_sentences)]
    sentences += _coverage_sentences(rng, load_word_sets(), min_word_count)
    rng.shuffle(sentences)
    return sentences


def generate_corpus(
    seed: int = 0, num_bias_sentences: int = 14000, min_word_count: int = 30, max_sentences_per_document: int = 2
) -> list[str]:
    """Documents of 1..``max_sentences_per_document`` sentences joined by spaces (the training examples)."""
    sentences = generate_sentences(seed, num_bias_sentences, min_word_count)
    rng = random.Random(seed + 1)
    docs: list[str] = []
    i = 0
    while i < len(sentences):
        k = rng.randint(1, max_sentences_per_document)
        docs.append(" ".join(sentences[i : i + k]))
        i += k
    return docs


def count_spaced_words(texts: Sequence[str], words: Iterable[str]) -> Counter[str]:
    """How often each word occurs as a whole word preceded by a space (the form a BPE token must cover)."""
    wanted = set(words)
    counts: Counter[str] = Counter()
    for text in texts:
        # Whole-word match on a space-split view; the first word has no leading space, trailing punctuation goes.
        for tok in text.split(" ")[1:]:
            tok = tok.rstrip(".,;:!?")
            if tok in wanted:
                counts[tok] += 1
    return counts
