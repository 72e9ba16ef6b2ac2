"""Span swaps: multi-word, multi-token members swapped on token ids, on WordPiece, GPT-2 BPE and SentencePiece."""

from __future__ import annotations

import random
import re

import pytest
import torch

from hf_equivariant.actions.spans import (
    CASE_FORMS,
    LEFT_CONTEXTS,
    RIGHT_CONTEXTS,
    SpanSwap,
    SpanSwapAction,
    builtin_span_set_names,
)

# Test word sets: orders 2, 3 and 2; multi-word ("African American"), multi-token ("Latina", "father-in-law")
# and a longest-match pair ("father" / "father-in-law").
GENDER = [["man", "woman"], ["he", "she"], ["his", "her"], ["father", "mother"], ["father-in-law", "mother-in-law"]]
RACE = [["Black", "White", "Latina"], ["African American", "European American", "Mexican American"]]
ORIENTATION = [["gay", "straight"]]
FILLER = ("the a an and of to was is in on at with for that this there here other new good kind smart doctor "
          "nurse teacher people person worked said met saw knew called from my our their").split()
NEW_SETS = ["race_ethnicity", "gender_identity", "disability", "age", "gender_extended"]
TOKENIZERS = ["gpt2", "wordpiece", "wordpiece_cased", "sentencepiece", "sentencepiece_bpe"]

SENTENCES = [
    "The man said that his father-in-law met an African American woman.",
    "(he) \"She\" 'his' HER\nMan, the Black manager from Germany is gay!",
    "Latina mothers? The White father's hero: a Mexican American man-made theory / straight.",
    "AFRICAN AMERICAN MAN and EUROPEAN AMERICAN WOMAN; Mother-in-law",
    "nothing to swap here",
    "he",
]


def _corpus(seed: int = 0, n: int = 600) -> list[str]:
    """Sentences with the test members in many contexts (start, brackets, quotes, newlines, upper case)."""
    rng = random.Random(seed)
    members = [m for sets in (GENDER, RACE, ORIENTATION) for s in sets for m in s]
    out = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 7))] + [rng.choice(members) for _ in range(2)]
        rng.shuffle(words)
        text = " ".join(words)
        kind = i % 8
        if kind == 1:
            text = text[:1].upper() + text[1:]
        elif kind == 2:
            text = "(" + text + ")"
        elif kind == 3:
            text = '"' + text + '," ' + rng.choice(members) + "'s " + rng.choice(FILLER)
        elif kind == 4:
            text = text.upper()
        elif kind == 5:
            text = rng.choice(members) + "\n" + rng.choice(members).capitalize() + ": " + text + "!"
        elif kind == 6:
            text = "'" + rng.choice(members) + "' / " + text + "?"
        out.append(text + rng.choice([".", ",", ";", ""]))
    return out


def _wordpiece(lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    core.train_from_iterator(_corpus(), trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def _sentencepiece(kind: str, pad: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<unk>", "<s>", "</s>"]
    if kind == "unigram":
        core = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=special, unk_token="<unk>")
    else:
        core = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special)
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    core.train_from_iterator(_corpus(), trainer)
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    extra = {"pad_token": "<pad>"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", **extra)


@pytest.fixture(scope="module")
def tokenizers(gpt2_tokenizer):
    return {"gpt2": gpt2_tokenizer, "wordpiece": _wordpiece(True), "wordpiece_cased": _wordpiece(False),
            "sentencepiece": _sentencepiece("unigram"), "sentencepiece_bpe": _sentencepiece("bpe")}


@pytest.fixture(scope="module")
def factors():
    return [SpanSwap.from_words(GENDER, name="gender"), SpanSwap.from_words(RACE, name="race"),
            SpanSwap.from_words(ORIENTATION, name="orientation")]


@pytest.fixture(scope="module")
def actions(tokenizers, factors):
    return {name: SpanSwapAction(factors, tok) for name, tok in tokenizers.items()}


def _rows(out: dict) -> list[list[int]]:
    """Token ids of every row without padding."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(out["input_ids"], out["attention_mask"])]


def _occurs(pattern: tuple[int, ...], ids: list[int]) -> bool:
    n = len(pattern)
    return any(tuple(ids[i:i + n]) == pattern for i in range(len(ids) - n + 1))


def _text_swap(text: str, swaps: list[SpanSwap], parts: list[int]) -> str:
    """Independent reference: regex swap of every case form, longest alternative first, on word boundaries."""
    cases = (lambda w: w, lambda w: w[:1].upper() + w[1:], str.lower, str.upper)
    mapping: dict[str, str] = {}
    for swap, g in zip(swaps, parts):
        for members in swap.sets:
            for j, member in enumerate(members):
                for case in cases:
                    mapping.setdefault(case(member), case(members[(j + g) % len(members)]))
    alternatives = "|".join(re.escape(m) for m in sorted(mapping, key=len, reverse=True))
    return re.sub(rf"(?<!\w)({alternatives})(?!\w)", lambda mt: mapping[mt.group(1)], text)


# ------------------------------------------------------------------------------------------------------------
# Group action


@pytest.mark.parametrize("name", TOKENIZERS)
def test_group_action_composition_and_identity(name, tokenizers, actions):
    tok, action = tokenizers[name], actions[name]
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    elements = action.group.elements  # [12, 3]: orders 2 x 3 x 2
    once = action.act(enc["input_ids"], enc["attention_mask"], elements)
    twice = action.act(once["input_ids"], once["attention_mask"], elements)
    orders = torch.tensor(action.factor_orders)
    composed = (elements[:, None, :] + elements[None, :, :]) % orders  # [g, h] -> g*h (h acts first)
    direct = action.act(enc["input_ids"], enc["attention_mask"], composed.reshape(-1, action.num_factors))
    assert _rows(twice) == _rows(direct)
    identity = action.act(enc["input_ids"], enc["attention_mask"], torch.zeros(1, action.num_factors, dtype=torch.long))
    assert _rows(identity) == _rows(enc)
    # Not vacuous: multi-word and multi-token members were matched, and the order-3 factor moves them.
    matched = [m for row in action.find_matches(enc["input_ids"], enc["attention_mask"]) for m in row]
    assert any(m.member == "African American" for m in matched)
    assert any(m.end - m.start > 1 for m in matched)
    race = torch.tensor([[0, 1, 0], [0, 2, 0]])
    moved = _rows(action.act(enc["input_ids"], enc["attention_mask"], race))
    assert moved[0] != _rows(enc)[0] and moved[0] != moved[len(SENTENCES)]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_inverse_undoes_each_element(name, tokenizers, actions):
    tok, action = tokenizers[name], actions[name]
    enc = tok(SENTENCES[:3], padding=True, return_tensors="pt")
    elements = action.group.elements
    inverse = action.inverse_parts(elements)
    once = action.act(enc["input_ids"], enc["attention_mask"], elements)
    per_row = inverse.repeat_interleave(len(SENTENCES[:3]), dim=0)  # one element per row of `once`
    back = action.act(once["input_ids"], once["attention_mask"], per_row[None].expand(1, -1, -1))
    assert _rows(back) == _rows(enc) * len(elements)


def _random_id_rows(action: SpanSwapAction, tokenizer, seed: int, count: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Arbitrary (mostly non-canonical) id sequences built from whole patterns, their prefixes and suffixes, blank
    and special tokens and random ids, left-padded: the action must be a group action on every id sequence."""
    rng = random.Random(seed)
    patterns = sorted({ids for table in action.factor_tables().values() for ids in table.values()})
    blanks = [i for i in range(action.vocab_size) if action.boundaries.is_blank(i)][:50]
    specials = list(tokenizer.all_special_ids)
    rows = []
    for _ in range(count):
        row: list[int] = []
        for _ in range(rng.randint(1, 10)):
            p, r = list(rng.choice(patterns)), rng.random()
            if r < 0.5:
                row += p
            elif r < 0.65:
                row += p[rng.randrange(len(p)):]
            elif r < 0.75:
                row += p[: rng.randrange(1, len(p) + 1)]
            elif r < 0.85 and blanks:
                row.append(rng.choice(blanks))
            elif r < 0.9:
                row.append(rng.choice(specials))
            else:
                row.append(rng.randrange(action.vocab_size))
        rows.append(row)
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def _assert_group_action(action: SpanSwapAction, ids: torch.Tensor, mask: torch.Tensor) -> None:
    elements = action.group.elements
    once = action.act(ids, mask, elements)
    twice = action.act(once["input_ids"], once["attention_mask"], elements)
    composed = (elements[:, None, :] + elements[None, :, :]) % torch.tensor(action.factor_orders)
    assert _rows(twice) == _rows(action.act(ids, mask, composed.reshape(-1, action.num_factors)))
    assert _rows(action.act(ids, mask, torch.zeros(1, action.num_factors, dtype=torch.long))) == _rows(
        {"input_ids": ids, "attention_mask": mask})


@pytest.mark.parametrize("name", TOKENIZERS)
def test_group_action_on_arbitrary_id_sequences(name, tokenizers, actions):
    action = actions[name]
    ids, mask = _random_id_rows(action, tokenizers[name], seed=TOKENIZERS.index(name))
    _assert_group_action(action, ids, mask)
    assert sum(map(len, action.find_matches(ids, mask))) > len(ids)  # plenty of spans were swapped


def _quirky_tokenizer():
    """SentencePiece-style vocabulary where "man's" is one piece but "woman's" is 'woman' + "'s"."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = [("<unk>", 0.0), ("<pad>", 0.0), ("▁man", -1.0), ("▁woman", -1.0), ("▁man's", -1.0), ("'s", -1.0),
              ("▁the", -1.0), ("▁", -3.0)] + [(c, -5.0) for c in string.ascii_letters + "'.,()"]
    core = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=False))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>")


def test_tokenizer_quirk_that_breaks_longest_match_is_dropped_and_reported():
    tok = _quirky_tokenizer()
    assert tok.tokenize("the man's woman's") == ["▁the", "▁man's", "▁woman", "'s"]
    swap = SpanSwap.from_words([["man", "woman"], ["man's", "woman's"]], name="g", forms=["as_written"])
    action = SpanSwapAction([swap], tok)
    # Keeping (▁man's <-> ▁woman 's) would let "▁woman 's" be matched either whole or as ▁woman + 's.
    reported = {u.surface: u.reason for u in action.unswappable()}
    assert "longest match would not be a group action" in reported[" man's"]
    assert action.apply_to_text("the woman's man", [1]) == "the man's woman"
    ids, mask = _random_id_rows(action, tok, seed=0)
    _assert_group_action(action, ids, mask)


# ------------------------------------------------------------------------------------------------------------
# Word boundaries

INSIDE_WORDS = ["The manager from Germany", "a manly hero", "There, the theory", "Hershey heroes", "shepherd",
                "THE HERO", "The Germans"]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_members_inside_words_are_not_swapped(name, tokenizers, actions):
    tok, action = tokenizers[name], actions[name]
    enc = tok(INSIDE_WORDS, padding=True, return_tensors="pt")
    out = action.act(enc["input_ids"], enc["attention_mask"], action.group.elements)
    assert _rows(out) == _rows(enc) * action.group.order
    assert all(not row for row in action.find_matches(enc["input_ids"], enc["attention_mask"]))


@pytest.mark.parametrize("name", TOKENIZERS)
def test_member_tokens_do_occur_inside_those_words(name, tokenizers, actions):
    """The previous test is meaningful: a matcher that ignored word boundaries would swap something."""
    tok, action = tokenizers[name], actions[name]
    patterns = {ids for table in action.factor_tables().values() for ids in table.values()}
    rows = [tok(text, add_special_tokens=False)["input_ids"] for text in INSIDE_WORDS]
    assert any(_occurs(p, row) for p in patterns for row in rows)


def test_boundary_examples_gpt2(actions, gpt2_tokenizer):
    action = actions["gpt2"]
    man = gpt2_tokenizer.encode(" man")
    assert gpt2_tokenizer.encode(" manly")[:1] == man  # 'Ġman', 'ly'
    assert action.apply_to_text("the manly man", [1, 0, 0]) == "the manly woman"
    text = "(man) \"man\" 'man' man, man. man's\nman -man/man man!"
    assert action.apply_to_text(text, [1, 0, 0]) == text.replace("man", "woman")
    assert action.apply_to_text("Man said MAN to man", [1, 0, 0]) == "Woman said WOMAN to woman"
    assert action.apply_to_text("He asked her: he or she? THE HERO", [1, 0, 0]) == "She asked his: she or he? THE HERO"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_every_surface_form_is_swapped_or_reported(name, tokenizers, actions, factors):
    """For each member x case form x context: the decoded swap equals the expected text, or the action reports
    the surface form as unswappable."""
    tok, action = tokenizers[name], actions[name]
    element = [1, 1, 1]
    probes = []
    for f_i, members in ((0, ["man", "father-in-law"]), (1, ["Latina", "African American"])):
        for member in members:
            image = factors[f_i].image(member)
            for case, form in CASE_FORMS.items():
                for left in LEFT_CONTEXTS:
                    rights = RIGHT_CONTEXTS if left in LEFT_CONTEXTS[:2] else RIGHT_CONTEXTS[:1]
                    for right in rights:
                        probes.append((member, left.probe + form(member) + right.probe,
                                       left.probe + form(image) + right.probe,
                                       {left.shown + form(member) + right.shown, left.shown + form(member)}))
    enc = tok([p[1] for p in probes], padding=True, add_special_tokens=False, return_tensors="pt")
    out = _rows(action.act(enc["input_ids"], enc["attention_mask"], torch.tensor([element])))
    reported = {(u.member, u.surface) for u in action.unswappable()}
    missing = []
    for (member, text, expected, surfaces), ids in zip(probes, out):
        if tok.decode(ids) == tok.decode(tok(expected, add_special_tokens=False)["input_ids"]):
            continue
        if not any((member, s) in reported for s in surfaces):
            missing.append((text, tok.decode(ids)))
    assert not missing


def test_sentencepiece_reports_bare_pieces(actions, tokenizers):
    """SentencePiece has bare pieces (no '▁') after '(' or quotes: they are resolved as their own forms."""
    tok, action = tokenizers["sentencepiece"], actions["sentencepiece"]
    ids = tok("x (man", add_special_tokens=False)["input_ids"]
    bare = tok.convert_ids_to_tokens(ids)[-1]
    assert not bare.startswith("▁")
    table = action.factor_tables()["gender"]
    assert table[(0, 0, "as_written, after '('")] == (ids[-1],)
    assert action.apply_to_text("x (man)", [1, 0, 0]) == "x (woman)"


# ------------------------------------------------------------------------------------------------------------
# Longest match and overlaps


def test_longest_match_inside_one_factor(gpt2_tokenizer):
    swap = SpanSwap.from_words([["African", "European"], ["African American", "European American"]], name="origin")
    action = SpanSwapAction([swap], gpt2_tokenizer)
    ids = gpt2_tokenizer("An African American and an African elephant")["input_ids"]
    matches = action.find_matches(ids)[0]
    found = [(m.member, m.set_index, m.end - m.start) for m in matches]
    assert found == [("African American", 1, 2), ("African", 0, 1)]
    assert action.apply_to_text("An African American and an African elephant", [1]) == \
        "An European American and an European elephant"
    in_law = SpanSwapAction([SpanSwap.from_words(GENDER, name="gender")], gpt2_tokenizer)
    match = in_law.find_matches(gpt2_tokenizer(" my father-in-law")["input_ids"])[0]
    assert [(m.member, m.end - m.start) for m in match] == [("father-in-law", 5)]


def test_longest_match_that_would_break_the_group_action_is_an_error():
    # 'Latino American' -> 'Asian' + ' American' would become the member 'Asian American' and jump to 'Black'.
    with pytest.raises(ValueError, match="'Asian American' starts with the member 'Asian'.*'Latino American' is not"):
        SpanSwap.from_words([["Asian", "Latino"], ["Asian American", "Black"]], name="race")


def test_member_inside_or_overlapping_another_is_an_error():
    with pytest.raises(ValueError, match="'Asian' lies inside or overlaps member 'South Asian'"):
        SpanSwap.from_words([["Asian", "Black"], ["South Asian", "White"]], name="race")
    with pytest.raises(ValueError, match="overlaps"):
        SpanSwap.from_words([["African American", "x"], ["American Indian", "y"]], name="race")


@pytest.mark.parametrize("sets_a, sets_b, word", [
    ([["man", "woman"]], [["young man", "young woman"]], "contains"),
    ([["gay", "straight"]], [["straight", "curly"]], "equals"),
    ([["Black", "White"]], [["black", "blue"]], "equals"),
    ([["African American", "European American"]], [["American", "Canadian"]], "contains"),
    ([["African American", "European American"]], [["American Indian", "Alaska Native"]], "overlaps"),
])
def test_overlapping_factors_are_an_error(gpt2_tokenizer, sets_a, sets_b, word):
    a, b = SpanSwap.from_words(sets_a, name="a"), SpanSwap.from_words(sets_b, name="b")
    with pytest.raises(ValueError, match=f"factors '[ab]' and '[ab]' overlap: .* {word} "):
        SpanSwapAction([a, b], gpt2_tokenizer)


def test_case_collisions_inside_a_set_keep_the_first_form(gpt2_tokenizer):
    # 'LGBT' is the same in every case form but 'queer' is not: only one cycle can own 'LGBT'.
    action = SpanSwapAction([SpanSwap.from_words([["queer", "LGBT"]], name="q")], gpt2_tokenizer)
    assert action.apply_to_text("queer LGBT", [1]) == "LGBT queer"
    assert action.apply_to_text("Queer", [1]) == "Queer"
    assert any(u.surface == "Queer" for u in action.unswappable())
    enc = gpt2_tokenizer(["queer LGBT Queer QUEER lgbt"], return_tensors="pt")
    twice = action.act(action.act(enc["input_ids"], None, [[1]])["input_ids"], None, [[1]])
    assert twice["input_ids"].tolist() == enc["input_ids"].tolist()


# ------------------------------------------------------------------------------------------------------------
# Padding, special tokens, lengths


def _synonyms() -> SpanSwap:
    """A factor whose members differ in token count on every tokenizer (1 word vs 2 words)."""
    return SpanSwap.from_words([["Black", "African American"], ["White", "European American"]], name="terms")


def test_right_padding_special_tokens_and_different_lengths(tokenizers, factors):
    tok = tokenizers["wordpiece_cased"]
    action = SpanSwapAction([factors[0], _synonyms()], tok)
    assert tok.padding_side == "right"
    texts = ["the Black man", "a White woman said he met the African American father-in-law", "he"]
    enc = tok(texts, padding=True, return_tensors="pt")
    elements = action.group.elements
    out = action.act(enc["input_ids"], enc["attention_mask"], elements)
    assert out["input_ids"].shape[0] == len(elements) * len(texts)
    lengths = out["attention_mask"].sum(-1)
    assert len(set(lengths.tolist())) > len(texts)  # copies of one row differ in length
    assert out["input_ids"].shape[1] == int(lengths.max())
    for row, mask, n in zip(out["input_ids"], out["attention_mask"], lengths):
        assert mask.tolist() == [1] * n + [0] * (len(mask) - n)
        assert row[0] == tok.cls_token_id and row[n - 1] == tok.sep_token_id
        assert (row[n:] == tok.pad_token_id).all()
    single = [_rows(action.act(tok(t, return_tensors="pt")["input_ids"], None, elements)) for t in texts]
    batched = _rows(out)
    assert batched == [single[b][c] for c in range(len(elements)) for b in range(len(texts))]
    assert tok.decode(batched[len(texts) * 3 + 1], skip_special_tokens=True) == \
        "a European American man said she met the Black mother - in - law"


def test_left_padding_and_padding_side_override(gpt2_tokenizer, actions):
    action = actions["gpt2"]
    assert gpt2_tokenizer.padding_side == "left"
    texts = ["The Latina woman", "A man"]
    enc = gpt2_tokenizer(texts, padding=True, return_tensors="pt")
    assert enc["attention_mask"][1, 0] == 0  # the input is left-padded
    parts = torch.tensor([[0, 0, 0], [1, 2, 0]])
    out = action.act(enc["input_ids"], enc["attention_mask"], parts)
    masks = out["attention_mask"].tolist()
    assert all(m == sorted(m) for m in masks)  # zeros first
    assert gpt2_tokenizer.decode(_rows(out)[2]) == "The White man"
    right = action.act(enc["input_ids"], enc["attention_mask"], parts, padding_side="right")
    assert _rows(right) == _rows(out) and all(m == sorted(m, reverse=True) for m in right["attention_mask"].tolist())


def test_per_row_elements_and_token_types(tokenizers, actions):
    tok, action = tokenizers["wordpiece"], actions["wordpiece"]
    enc = tok(["the man", "his father-in-law"], ["she is gay", "the black man"], padding=True, return_tensors="pt",
              return_token_type_ids=True)
    parts = torch.tensor([[[1, 0, 0], [0, 2, 1]]])  # [C=1, B=2, F]
    out = action.act(enc["input_ids"], enc["attention_mask"], parts, token_type_ids=enc["token_type_ids"])
    assert tok.decode(_rows(out)[0]) == "[CLS] the woman [SEP] he is gay [SEP]"
    assert tok.decode(_rows(out)[1]) == "[CLS] his father - in - law [SEP] the latina man [SEP]"
    types = out["token_type_ids"][1][out["attention_mask"][1].bool()].tolist()
    n_first = _rows(out)[1].index(tok.sep_token_id) + 1
    assert types == [0] * n_first + [1] * (len(types) - n_first)


def test_one_dimensional_input_is_one_row(actions, gpt2_tokenizer):
    action = actions["gpt2"]
    ids = torch.tensor(gpt2_tokenizer.encode("a gay man"))
    out = action.act(ids, None, [[1, 0, 1]])
    assert gpt2_tokenizer.decode(out["input_ids"][0]) == "a straight woman"


# ------------------------------------------------------------------------------------------------------------
# Round trip against an independent text-level swap

PLAIN = [
    "The man told his father-in-law that she is gay.",
    "A Latina woman and an African American man met her father.",
    "He said the European American mother was straight, and the Mexican American father agreed.",
]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_decoded_swap_equals_text_swap(name, tokenizers, actions, factors):
    tok, action = tokenizers[name], actions[name]
    enc = tok(PLAIN, padding=True, add_special_tokens=False, return_tensors="pt")
    elements = action.group.elements
    out = _rows(action.act(enc["input_ids"], enc["attention_mask"], elements))
    for c, parts in enumerate(elements.tolist()):
        for b, text in enumerate(PLAIN):
            expected = _text_swap(text, factors, parts)
            decoded = tok.decode(out[c * len(PLAIN) + b])
            if name == "gpt2":
                assert decoded == expected
            else:  # normalising tokenizers: compare in their own decoded form
                assert decoded == tok.decode(tok(expected, add_special_tokens=False)["input_ids"])


# ------------------------------------------------------------------------------------------------------------
# Clear errors


@pytest.mark.parametrize("word_sets, message", [
    (["king", "lady"], r"set 0 is the string 'king', not a list of members.*\[\['king', 'lady'\]\]"),
    ("king", "must be a list of sets"),
    ([], "no word sets given"),
    ([["man", 3]], r"member 1 of set 0 is 3 \(int\), not a string"),
    ([["man", ""]], "empty member ''"),
    ([["man", " woman"]], "must begin and end with a letter or digit"),
    ([["African  American", "x"]], "single spaces"),
    ([["man", "woman"], ["Black", "White", "Asian"]], r"same number of members.*sizes \[2, 3\]"),
    ([["man", "woman"], ["Man", "girl"]], "'Man' \\(set 1\\) repeats 'man' \\(set 0\\)"),
    ([["man", "man"]], "repeats"),
    ([["man"]], "has 1 member"),
])
def test_bad_word_sets(word_sets, message):
    with pytest.raises(ValueError, match=message):
        SpanSwap.from_words(word_sets, name="bad")


def test_bad_forms_names_and_specs():
    with pytest.raises(ValueError, match=r"unknown case form\(s\) \['title'\]"):
        SpanSwap.from_words([["a", "b"]], forms=["title"])
    with pytest.raises(ValueError, match="unknown span set 'ethnicity'"):
        SpanSwap.builtin("ethnicity")
    for spec, message in [
        ({"type": "word_swap", "name": "x"}, "type 'span_swap'"),
        ({"type": "span_swap", "name": "x"}, r"missing \['sets'\]"),
        ({"type": "span_swap", "name": "x", "sets": [["a", "b"]], "order": 3}, "order 3 but sets of 2"),
        ({"type": "span_swap", "name": "x", "sets": [["a", "b"]], "extra": 1}, r"unknown keys \['extra'\]"),
        ({"type": "span_swap", "name": "x", "sets": ["a", "b"]}, "not a list of members"),
        ("gender", "expected a dict"),
    ]:
        with pytest.raises(ValueError, match=message):
            SpanSwap.from_spec(spec)


def test_bad_inputs_to_act(actions, gpt2_tokenizer):
    action = actions["gpt2"]
    ids = torch.tensor([gpt2_tokenizer.encode("the man")])
    with pytest.raises(ValueError, match=r"must be \[batch, length\].*got shape \(1, 1, 2\)"):
        action.act(ids[None], None, [[0, 0, 0]])
    with pytest.raises(ValueError, match="token id 50300 .* outside the tokenizer's vocabulary of 50257"):
        action.act(torch.tensor([[464, 50300]]), None, [[0, 0, 0]])
    with pytest.raises(ValueError, match="integer token ids"):
        action.act(ids.float(), None, [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"parts must be \[copies, 3\]"):
        action.act(ids, None, [[0, 0]])
    with pytest.raises(ValueError, match="factor index 3 is out of range for factor 'race' of order 3"):
        action.act(ids, None, [[0, 3, 0]])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        action.act(ids, torch.ones(1, 3), [[0, 0, 0]])
    with pytest.raises(ValueError, match="unknown factor name"):
        action.apply_to_text("the man", {"sex": 1})
    # Padding outside the mask is never read, even when it is not a valid id.
    out = action.act(torch.tensor([[-1, 262, 582]]), torch.tensor([[0, 1, 1]]), [[1, 0, 0]])
    assert gpt2_tokenizer.decode(_rows(out)[0]) == " the woman"


def test_bad_tokenizers_and_factors(word_tokenizer, gpt2_tokenizer):
    swap = SpanSwap.from_words([["man", "woman"]], name="g")
    with pytest.raises(ValueError, match="cannot tell word boundaries"):
        SpanSwapAction([swap], word_tokenizer)  # word-level model: no word-boundary markers to read
    with pytest.raises(ValueError, match="non-empty list of SpanSwap"):
        SpanSwapAction(swap, gpt2_tokenizer)
    with pytest.raises(ValueError, match="must be distinct"):
        SpanSwapAction([swap, SpanSwap.from_words([["he", "she"]], name="g")], gpt2_tokenizer)
    with pytest.raises(ValueError, match="no member has a swappable form"):
        SpanSwapAction([SpanSwap.from_words([["man", "woman"]], name="g")], _wordpiece_without("woman"))


def _wordpiece_without(word: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "man", "the", "##s"])}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")


def test_missing_pad_token_is_an_error_only_when_needed():
    tok = _sentencepiece("bpe", pad=False)
    action = SpanSwapAction([_synonyms()], tok)
    ids = torch.tensor([tok.encode("the Black man")])
    with pytest.raises(ValueError, match="no pad token"):
        action.act(ids, None, [[0], [1]])
    assert action.act(ids, None, [[0], [1]], pad_token_id=0)["input_ids"].shape == (2, ids.shape[1] + 1)
    assert action.act(ids, None, [[1]])["input_ids"].shape == (1, ids.shape[1] + 1)


# ------------------------------------------------------------------------------------------------------------
# Built-in sets and specs


def test_builtin_span_sets(tokenizers):
    assert set(NEW_SETS) <= set(builtin_span_set_names())
    assert {"gender", "race"} <= set(builtin_span_set_names())  # single-word sets load too
    swaps = [SpanSwap.builtin(n) for n in NEW_SETS]
    assert {s.name: s.order for s in swaps} == {"race_ethnicity": 4, "gender_identity": 3, "disability": 2, "age": 3,
                                                "gender_extended": 2}
    for swap in swaps:
        assert SpanSwap.from_spec(swap.to_spec()) == swap
    for name in ("wordpiece", "sentencepiece"):
        SpanSwapAction(swaps, tokenizers[name])  # consistent and disjoint on the other families too
    gpt2 = SpanSwapAction(swaps, tokenizers["gpt2"])
    # On the real GPT-2 vocabulary every member is swappable after a space and at the start, as written.
    main = [u for u in gpt2.unswappable() if u.context in ("after a space", "start of text")
            and u.surface.strip() in {m for s in swaps for m in s.members}]
    assert not main
    text = 'The African American fiancée of the elderly Latino congressman said: "He is non-binary."'
    parts = [2, 1, 0, 1, 1]
    assert gpt2.apply_to_text(text, parts) == \
        'The Pacific Islander fiancé of the young White congresswoman said: "She is cisgender."'
    assert gpt2.apply_to_text(text, parts) == _text_swap(text, swaps, parts)
