"""Counterfactually fair text classifiers: sequence classification made invariant to span swaps (multi-word,
multi-token identity terms) on WordPiece, the real GPT-2 BPE and a SentencePiece-style tokenizer."""

from __future__ import annotations

import json

import random

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

import hf_equivariant as he
from hf_equivariant.actions.spans import SpanSwap
from hf_equivariant.row_plans import auto_uses_full, nominal_copies, presence_weights, row_copies

GROUPS = ["race_ethnicity", "gender_identity", "gender_extended"]  # orders 4 x 3 x 2 = 24
STRATEGIES = [("full", "neutral"), ("multi", "neutral"), ("multi", "representative"), ("canonical", "neutral"),
              ("auto", "neutral")]
AGGREGATIONS = ["mean_prob", "mean_logits", "max_prob"]
# Multi-word ("African American", "Pacific Islanders"), multi-token ("father-in-law", "fiancée", "non-binary"),
# upper case and punctuation; one text without any member (and words that contain members: manager, Germany).
TEXTS = [
    "The African American man said his father-in-law is non-binary.",
    "My fiancée met two Pacific Islanders and a transgender boy.",
    "(SHE) is Black; her uncle is cisgender!",
    "Nothing to swap here, said the manager from Germany.",
]


# ------------------------------------------------------------------------------------------------ fixtures
def _corpus(seed: int = 0) -> list[str]:
    """Sentences with every member of the three factors, in several case forms and contexts."""
    rng = random.Random(seed)
    members = [m for name in GROUPS for m in SpanSwap.builtin(name).members]
    filler = ("the a said met saw is was and from my our their two with here there nothing to swap manager "
              "Germany people kind rude left").split()
    out = []
    for member in members * 3:
        words = [rng.choice(filler) for _ in range(4)] + [rng.choice([member, member.capitalize(), member.upper()])]
        rng.shuffle(words)
        out.append(" ".join(words) + rng.choice([".", "!", ",", ""]))
        out.append(f"({member}) \"{member}\" {member}'s")
    return out


@pytest.fixture(scope="module")
def wordpiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=False)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    core.train_from_iterator(_corpus(), trainers.WordPieceTrainer(
        vocab_size=700, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


@pytest.fixture(scope="module")
def sentencepiece():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.Unigram())
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    core.train_from_iterator(_corpus(1), trainers.UnigramTrainer(
        vocab_size=700, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], unk_token="[UNK]"))
    cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def _bert(tok, num_labels: int = 3, seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                        pad_token_id=tok.pad_token_id, initializer_range=0.3, **extra)
    return BertForSequenceClassification(config).eval()


def _gpt2(tok, seed: int = 0):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok), num_labels=3,
                        pad_token_id=tok.pad_token_id, initializer_range=0.3)
    return GPT2ForSequenceClassification(config).eval()


def _deberta(tok, seed: int = 0):
    torch.manual_seed(seed)
    config = DebertaV2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=64, num_labels=3,
                             pad_token_id=tok.pad_token_id, initializer_range=0.3)
    return DebertaV2ForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def families(wordpiece, gpt2_tokenizer, sentencepiece):
    """Tokenizer and wrapped base of each tokenizer family (the wrappers share nothing)."""
    out = {}
    for name, tok, make in (("wordpiece", wordpiece, _bert), ("gpt2", gpt2_tokenizer, _gpt2),
                            ("sentencepiece", sentencepiece, _deberta)):
        base = make(tok)
        model = he.EquivariantModelForSequenceClassification.from_base(base, tokenizer=tok, groups=GROUPS).eval()
        out[name] = (tok, base, model)
    return out


def _orbit_logits(model, tok, texts=TEXTS, elements=None) -> torch.Tensor:
    """``[|G|, N, K]``: the logits of every group element applied to every text, in one call."""
    enc = tok(texts, padding=True, return_tensors="pt")
    action = model.action
    parts = action.group.elements if elements is None else elements
    moved = action.act(enc["input_ids"], enc["attention_mask"], parts, token_type_ids=enc.get("token_type_ids"))
    with torch.no_grad():
        return model(**moved).logits.view(parts.shape[0], len(texts), -1)


def _configure(model, strategy: str, canonicalization: str, aggregation: str) -> None:
    model.config.strategy, model.config.canonicalization, model.config.aggregation = (
        strategy, canonicalization, aggregation)


# ------------------------------------------------------------------------------------------------ invariance
@pytest.mark.parametrize("family", ["wordpiece", "gpt2", "sentencepiece"])
def test_logits_are_invariant_for_every_strategy_and_aggregation(family, families):
    tok, _, model = families[family]
    action = model.action
    assert action.order == 24 and 3 in action.factor_orders
    matched = [m for row in action.find_matches(**tok(TEXTS[:3], padding=True, return_tensors="pt")) for m in row]
    assert {"African American", "Pacific Islanders", "father-in-law", "fiancée", "non-binary"} <= {
        m.member for m in matched}
    assert any(m.end - m.start > 1 for m in matched)  # multi-token members are matched
    for strategy, canonicalization in STRATEGIES:
        for aggregation in AGGREGATIONS:
            _configure(model, strategy, canonicalization, aggregation)
            logits = _orbit_logits(model, tok)
            error = (logits - logits[0]).abs().max().item()
            assert error <= 1e-5, (family, strategy, canonicalization, aggregation, error)
    _configure(model, "none", "neutral", "mean_prob")  # the base itself moves
    logits = _orbit_logits(model, tok)
    assert (logits - logits[0])[:, :3].abs().max().item() > 1e-3
    assert (logits - logits[0])[:, 3].abs().max().item() <= 1e-5  # no identity term: nothing moves


@pytest.mark.parametrize("family", ["wordpiece", "gpt2", "sentencepiece"])
def test_check_equivariance_protocol(family, families):
    tok, base, model = families[family]
    _configure(model, "auto", "neutral", "mean_prob")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    report = he.check_equivariance(model, enc)
    assert report.passed(1e-5) and len(report.errors) == 24 and not report.sampled
    _configure(model, "none", "neutral", "mean_prob")
    assert not he.check_equivariance(model, enc).passed(1e-3)
    with torch.no_grad():  # strategy "none" is the base model (on each text unpadded: copies are re-padded)
        for text in TEXTS:
            one = tok([text], return_tensors="pt")
            torch.testing.assert_close(model(**one).logits.log_softmax(-1), base(**one).logits.log_softmax(-1),
                                       atol=1e-5, rtol=0)
    _configure(model, "auto", "neutral", "mean_prob")


def test_multi_label_and_regression_heads(wordpiece):
    multi = _bert(wordpiece, num_labels=3, problem_type="multi_label_classification")
    model = he.EquivariantModelForSequenceClassification.from_base(multi, tokenizer=wordpiece, groups=GROUPS)
    assert model.config.link == "sigmoid"
    for strategy, canonicalization in STRATEGIES:
        for aggregation in AGGREGATIONS:
            _configure(model, strategy, canonicalization, aggregation)
            logits = _orbit_logits(model, wordpiece)
            assert (logits - logits[0]).abs().max().item() <= 1e-5, (strategy, aggregation)
    # mean_prob with a sigmoid link: sigmoid(output) is the mean probability of each label.
    _configure(model, "full", "neutral", "mean_prob")
    enc = wordpiece(TEXTS[2:], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).logits
        copies = model.action.act(enc["input_ids"], enc["attention_mask"], model.action.group.elements,
                                  token_type_ids=enc.get("token_type_ids"), padding_side="right")
        mean = multi(**copies).logits.sigmoid().view(24, 2, 3).mean(0)
    torch.testing.assert_close(out.sigmoid(), mean, atol=1e-5, rtol=0)
    loss = model(**enc, labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])).loss
    assert loss.ndim == 0 and torch.isfinite(loss)

    regression = _bert(wordpiece, num_labels=1)
    with pytest.raises(ValueError, match="mean_logits"):
        he.EquivariantModelForSequenceClassification.from_base(regression, tokenizer=wordpiece, groups=GROUPS,
                                                               aggregation="mean_prob")
    model = he.EquivariantModelForSequenceClassification.from_base(regression, tokenizer=wordpiece, groups=GROUPS)
    assert model.config.aggregation == "mean_logits" and model.config.link == "identity"
    logits = _orbit_logits(model, wordpiece)
    assert (logits - logits[0]).abs().max().item() <= 1e-5


def test_other_bases_roberta_distilbert(wordpiece):
    torch.manual_seed(0)
    small = dict(vocab_size=len(wordpiece), num_labels=2, pad_token_id=wordpiece.pad_token_id)
    roberta = RobertaForSequenceClassification(RobertaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=80, **small)).eval()
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64, **small)).eval()
    for base in (roberta, distil):
        model = he.EquivariantModelForSequenceClassification.from_base(base, tokenizer=wordpiece, groups=GROUPS,
                                                                       strategy="multi")
        logits = _orbit_logits(model, wordpiece)  # DistilBERT takes no token_type_ids: they are dropped
        assert (logits - logits[0]).abs().max().item() <= 1e-5, type(base).__name__


# ------------------------------------------------------------------------------------------------ design 2
def test_anchor_free_multi_equals_the_orbit_average_with_one_factor_present(families):
    tok, _, model = families["wordpiece"]
    texts = ["A Black person was rude.", "The Pacific Islanders left early."]  # race only
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        _configure(model, "full", "neutral", "mean_prob")
        full = model(**enc).logits
        _configure(model, "multi", "neutral", "mean_prob")
        multi = model(**enc).logits
        _configure(model, "multi", "representative", "mean_prob")
        anchored = model(**enc).logits
    torch.testing.assert_close(multi, full, atol=1e-6, rtol=0)
    assert (anchored - full).abs().max() > 1e-3  # the paper's canonicaliser runs absent branches on an anchor


def test_neutral_replacements_and_representatives(families, gpt2_tokenizer):
    action = families["gpt2"][2].action
    enc = gpt2_tokenizer(["The African American man said his father-in-law is non-binary."], return_tensors="pt")

    def text(mask, mode):
        out = action.act(enc["input_ids"], None, [[0, 0, 0]], canonicalise=torch.tensor(mask), canonicalization=mode)
        return gpt2_tokenizer.decode(out["input_ids"][0])

    assert text([False, False, True], "neutral") == (
        "The African American person said their parent-in-law is non-binary.")
    assert text([True, True, False], "neutral") == "The man said his father-in-law is."  # adjectives deleted
    assert text([False, True, True], "representative") == (
        "The African American man said his father-in-law is cisgender.")
    present, first = action.factor_matches(enc["input_ids"])
    assert present.tolist() == [[True, True, True]] and first.tolist() == [[0, 2, 0]]


def test_neutralising_is_invariant_on_arbitrary_id_sequences(families):
    """The basis of the exactness proof: R(h.x; g, M) == R(x; g + h, M), and the factors in M do not matter."""
    from test_span_swaps import _random_id_rows

    tok, _, model = families["sentencepiece"]
    action = model.action
    ids, mask = _random_id_rows(action, tok, seed=3, count=30)
    elements = action.group.elements
    orders = torch.tensor(action.factor_orders)
    for removed in ([True, False, False], [False, True, True], [True, True, True]):
        m = torch.tensor(removed)
        for mode in ("neutral", "representative"):
            once = action.act(ids, mask, elements)  # h . x for every h
            moved = action.act(once["input_ids"], once["attention_mask"], elements[:5], canonicalise=m,
                               canonicalization=mode)  # R(h.x; g, M)
            composed = ((elements[:5, None, :] + elements[None, :, :]) % orders) * ~m  # g + h; M's part is moot
            direct = action.act(ids, mask, composed.reshape(-1, 3), canonicalise=m, canonicalization=mode)
            assert _rows(moved) == _rows(direct), (removed, mode)


def _rows(out: dict) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(out["input_ids"], out["attention_mask"])]


def test_row_plans_weights_and_auto_rule():
    from hf_equivariant.plans import make_plan

    orders = (4, 3, 2)
    present = torch.tensor([[True, False, True], [False, False, False], [True, False, False], [True, True, True]])
    plan = make_plan(orders, "multi", output="invariant")
    w = presence_weights(plan, present)
    torch.testing.assert_close(w.sum(0), torch.ones(4))
    assert (w[plan.branch == 1, 0] == 0).all() and torch.allclose(w[plan.branch == 0, 0], torch.tensor(1 / 6))
    assert w[0, 1] == 1 and w[1:, 1].eq(0).all()  # nothing present: the identity copy
    assert auto_uses_full(orders, present).tolist() == [False, True, True, False]
    assert auto_uses_full((2, 2), torch.tensor([[True, True]])).tolist() == [True]  # 4 <= 4
    first = torch.tensor([[1, -1, 0], [-1, -1, -1], [3, -1, -1], [0, 2, 1]])
    auto = row_copies(orders, "auto", present, first)
    assert auto.copies_per_input().tolist() == [6, 1, 4, 9]
    torch.testing.assert_close(auto.weights.sum(0), torch.ones(4, dtype=auto.weights.dtype))
    canonical = row_copies(orders, "canonical", present, first)
    assert canonical.parts[0].tolist() == [[3, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert [nominal_copies(orders, s) for s in ("full", "multi", "canonical", "auto", "none")] == [24, 9, 1, 9, 1]


def test_copies_per_input_per_strategy(families):
    tok, _, model = families["wordpiece"]
    texts = ["The Black man left.", "The manager left.", "An Asian American arrived.", TEXTS[0]]
    # factors present: race+gender; none; race; all three
    enc = tok(texts, padding=True, return_tensors="pt")
    expected = {  # (copies before de-duplication, base rows after) per text
        ("full", "neutral"): ([24] * 4, [8, 1, 4, 24]),
        ("multi", "neutral"): ([6, 1, 4, 9], [6, 1, 4, 9]),
        ("auto", "neutral"): ([6, 1, 4, 9], [6, 1, 4, 9]),
        ("canonical", "neutral"): ([1] * 4, [1] * 4),
        ("none", "neutral"): ([1] * 4, [1] * 4),
    }
    for (strategy, canonicalization), (copies, rows) in expected.items():
        _configure(model, strategy, canonicalization, "mean_prob")
        with torch.no_grad():
            model(**enc)
        assert model.last_copy_counts.tolist() == copies, strategy
        assert model.last_row_counts.tolist() == rows, strategy
        assert model.last_row_count == sum(rows)
    _configure(model, "multi", "representative", "mean_prob")
    with torch.no_grad():
        model(**enc)
    assert model.last_copy_counts.tolist() == [9] * 4
    assert model.last_row_counts[1] == 1 and (model.last_row_counts <= 9).all()
    for strategy, count in (("full", 24), ("multi", 9), ("auto", 9), ("canonical", 1)):
        model.config.strategy = strategy
        assert model.copies_per_row == count
    _configure(model, "auto", "neutral", "mean_prob")


def test_max_rows_and_deduplication_do_not_change_logits(families):
    tok, _, model = families["gpt2"]
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    _configure(model, "full", "neutral", "mean_prob")
    with torch.no_grad():
        reference = model(**enc).logits
        model.config.max_rows, model.config.deduplicate = 5, False
        chunked = model(**enc).logits
        assert model.last_row_count == 24 * 4
    model.config.max_rows, model.config.deduplicate = None, True
    _configure(model, "auto", "neutral", "mean_prob")
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ boundaries
def test_boundaries_punctuation_and_case_through_the_wrapper(families):
    tok, base, model = families["wordpiece"]
    _configure(model, "full", "neutral", "mean_prob")

    def probs(texts):
        with torch.no_grad():
            return model(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)

    # Words that contain members are not identity terms: the wrapper is the base model there.
    for text in ("The manager from Germany left.", "A mandate for humanity.", "I like black coffee."):
        with torch.no_grad():
            base_probs = base(**tok([text], return_tensors="pt")).logits.softmax(-1)
        torch.testing.assert_close(probs([text]), base_probs, atol=1e-5, rtol=0)
        assert model.last_row_counts.tolist() == [1], text  # ("black" in lower case is a colour: not swapped)
    # Punctuation and case forms are swapped: the text-level counterfactuals get identical scores.
    for a, b in (("(man) left.", "(woman) left."), ("MAN, go!", "WOMAN, go!"), ("Man's hat", "Woman's hat"),
                 ("a \"Black\" nurse", "a \"Latino\" nurse"), ("The BLACK man", "The ASIAN woman")):
        pa, pb = probs([a, b])
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert (base(**tok(["(man) left."], return_tensors="pt")).logits
                - base(**tok(["(woman) left."], return_tensors="pt")).logits).abs().max() > 1e-3
    _configure(model, "auto", "neutral", "mean_prob")


def test_overlap_and_ambiguity_errors_surface_in_from_base(wordpiece):
    base = _bert(wordpiece)
    wrap = he.EquivariantModelForSequenceClassification.from_base
    with pytest.raises(ValueError, match="overlap"):
        wrap(base, tokenizer=wordpiece, groups=["gender", "gender_extended"])  # "man" in both
    with pytest.raises(ValueError, match="overlap"):
        wrap(base, tokenizer=wordpiece, groups=["race", "race_ethnicity"])
    ambiguous = {"type": "span_swap", "name": "r", "sets": [["Asian", "Latino"], ["Asian American", "Black"]]}
    with pytest.raises(ValueError, match="Latino American"):
        wrap(base, tokenizer=wordpiece, groups=[ambiguous])
    with pytest.raises(ValueError, match="privilege no member"):
        wrap(base, tokenizer=wordpiece, groups=[SpanSwap.from_words([["man", "woman"]], name="g",
                                                                    neutral=["woman"])])
    with pytest.raises(ValueError, match="one replacement per set"):
        SpanSwap.from_words([["man", "woman"], ["he", "she"]], name="g", neutral=["person"])
    with pytest.raises(ValueError, match="unknown span set"):
        wrap(base, tokenizer=wordpiece, groups=["no_such_set"])
    with pytest.raises(ValueError, match="needs the tokenizer|need the tokenizer"):
        wrap(base, tokenizer=None, groups=GROUPS)
    with pytest.raises(ValueError, match="canonicalization"):
        wrap(base, tokenizer=wordpiece, groups=GROUPS, canonicalization="first")
    with pytest.raises(ValueError, match="strategy"):
        wrap(base, tokenizer=wordpiece, groups=GROUPS, strategy="equitune")
    # Single-word built-in sets and saved specs are groups too.
    model = wrap(base, tokenizer=wordpiece, groups=["religion", SpanSwap.builtin("age").to_spec()], strategy="full")
    texts = ["The young Muslim man prayed.", "An elderly Christian and a middle-aged Jewish neighbor."]
    logits = _orbit_logits(model, wordpiece, texts)
    assert model.action.order == 9 and (logits - logits[0]).abs().max().item() <= 1e-5
    assert (_orbit_logits(model, wordpiece, texts[:1]) - logits[:, :1]).abs().max().item() <= 1e-5
    model = wrap(base, tokenizer=wordpiece, groups=GROUPS)
    with pytest.raises(ValueError, match="position_ids"):
        model(**wordpiece(["a man"], return_tensors="pt"), position_ids=torch.tensor([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="input_ids"):
        model(inputs_embeds=torch.zeros(1, 3, 32))


# ------------------------------------------------------------------------------------------------ ecosystem
def test_pipeline_text_classification(families):
    from transformers import pipeline

    tok, _, model = families["gpt2"]
    clf = pipeline("text-classification", model=model, tokenizer=tok, top_k=None)
    a, b, c = clf(["The Black woman was rude.", "The White man was rude.", "The Latino non-binary person was rude."])
    assert [r["label"] for r in a] == [r["label"] for r in b]
    for x, y in zip(a, b):
        assert abs(x["score"] - y["score"]) < 1e-5
    assert abs(sum(r["score"] for r in c) - 1) < 1e-5


def test_trainer_fine_tunes_through_the_wrapper(wordpiece, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = he.EquivariantModelForSequenceClassification.from_base(
        _bert(wordpiece, num_labels=2), tokenizer=wordpiece, groups=GROUPS, strategy="multi")
    texts = ["The Black man was rude.", "A kind transgender woman.", "He is nice.", "Their fiancée was rude."] * 4
    enc = wordpiece(texts, padding="max_length", max_length=16)
    data = [{**{k: v[i] for k, v in enc.items()}, "label": [1, 0, 0, 1][i % 4]} for i in range(len(texts))]
    before = model.base.classifier.weight.detach().clone()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=1e-2, report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True)
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert result.training_loss > 0 and not torch.equal(before, model.base.classifier.weight)
    model.eval()
    logits = _orbit_logits(model, wordpiece)
    assert (logits - logits[0]).abs().max().item() <= 1e-5


def test_save_and_reload_give_identical_logits(families, tmp_path):
    tok, base, model = families["sentencepiece"]
    _configure(model, "multi", "neutral", "max_prob")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits
    model.save_pretrained(tmp_path / "full")
    card = (tmp_path / "full" / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "Guarantee" in card and "(deleted)" in card
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full").eval()
    assert isinstance(loaded, he.EquivariantModelForSequenceClassification) and loaded.tokenizer is not None
    assert loaded.config.strategy == "multi" and loaded.config.aggregation == "max_prob"
    assert loaded.config.groups == model.config.groups and loaded.config.groups[0]["neutral"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).logits, expected, atol=0, rtol=0)
    # Light save: the base by name (a local folder), the wrapper's config and tokenizer.
    base.save_pretrained(tmp_path / "base")
    light = he.EquivariantModelForSequenceClassification.from_base(
        str(tmp_path / "base"), tokenizer=tok, groups=GROUPS, strategy="multi", aggregation="max_prob").eval()
    light.save_pretrained(tmp_path / "light", save_base_weights=False)
    assert not (tmp_path / "light" / "model.safetensors").exists()
    reloaded = he.EquivariantModelForSequenceClassification.from_pretrained(tmp_path / "light")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, expected, atol=1e-6, rtol=0)
    _configure(model, "auto", "neutral", "mean_prob")


def test_sentence_embeddings_are_invariant(wordpiece):
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                   pad_token_id=wordpiece.pad_token_id, initializer_range=0.3)).eval()
    model = he.EquivariantModelForSentenceEmbedding.from_base(encoder, tokenizer=wordpiece, groups=GROUPS).eval()
    enc = wordpiece(TEXTS, padding=True, return_tensors="pt")
    for strategy, canonicalization in STRATEGIES:
        model.config.strategy, model.config.canonicalization = strategy, canonicalization
        report = he.check_equivariance(model, enc)
        assert report.passed(1e-5), (strategy, report.max_error)
    model.config.strategy = "none"
    assert not he.check_equivariance(model, enc).passed(1e-3)
    model.config.strategy = "auto"
    a, b = model.encode(["The Black nurse helped me.", "The White nurse helped me."])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert a.shape == (32,)
    with pytest.raises(ValueError, match="mean_logits"):
        he.EquivariantSentenceEmbeddingConfig(aggregation="mean_prob")


# ------------------------------------------------------------------------------------------------ evaluation CLI
def test_eval_classifier_cli(wordpiece, tmp_path, capsys):
    import json

    from hf_equivariant.cli import main

    base = _bert(wordpiece, num_labels=2)
    base.save_pretrained(tmp_path / "clf")
    wordpiece.save_pretrained(tmp_path / "clf")
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS + ["The White woman was rude.", "Hi there."])]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    code = main(["eval-classifier", str(tmp_path / "clf"), "--groups", "race_ethnicity,gender_extended",
                 "--data", str(data), "--strategies", "base,auto,multi-representative", "--output", str(out)])
    assert code == 0
    results = {r["model"]: r for r in json.loads((out / "eval_classifier.json").read_text())["results"]}
    assert results["base"]["ctf_gap"] > 1e-3 and results["base"]["elements"] == 8
    for name in ("auto", "multi-representative"):
        assert results[name]["flip_rate"] == 0 and results[name]["ctf_gap"] < 1e-5
        assert results[name]["fpr_gap_orbit_max"] == 0 or results[name]["fpr_gap_orbit_max"] != results[name][
            "fpr_gap_orbit_max"]  # 0, or nan when a factor has no negative example
    assert results["auto"]["rows_per_text"] > 1 and "| auto |" in capsys.readouterr().out
    for argv, message in ((["--data", str(data), "--groups", "nope"], "unknown span set"),
                          (["--data", str(data), "--strategies", "base,fancy"], "unknown strategy"),
                          (["--data", str(tmp_path / "missing.jsonl")], "does not exist"),
                          (["--data", str(data), "--max-elements", "0"], "positive integer")):
        assert main(["eval-classifier", str(tmp_path / "clf"), *argv]) == 2
        assert message in capsys.readouterr().err


def test_auto_takes_the_orbit_average_for_two_order_two_factors(wordpiece):
    model = he.EquivariantModelForSequenceClassification.from_base(
        _bert(wordpiece), tokenizer=wordpiece, groups=["gender_extended", "disability"]).eval()
    enc = wordpiece(["The disabled man left.", "The autistic people left."], padding=True, return_tensors="pt")
    out = {}
    with torch.no_grad():
        for strategy in ("full", "multi", "auto"):
            model.config.strategy = strategy
            out[strategy] = model(**enc).logits
            out[strategy + " rows"] = model.last_row_counts.tolist()
    assert out["full rows"] == out["multi rows"] == out["auto rows"] == [4, 2]  # 2 x 2 = 2 + 2; one factor: 2
    torch.testing.assert_close(out["auto"], out["full"], atol=1e-6, rtol=0)
    assert (out["multi"][0] - out["full"][0]).abs().max() > 1e-4  # design 2 is exact but not the orbit average
    torch.testing.assert_close(out["multi"][1], out["full"][1], atol=1e-6, rtol=0)  # one factor: the same


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", ["full", "multi", "canonical", "auto"])
def test_classifier_on_cuda_matches_cpu(wordpiece, strategy):
    model = he.EquivariantModelForSequenceClassification.from_base(_bert(wordpiece), tokenizer=wordpiece,
                                                                   groups=GROUPS, strategy=strategy).eval()
    enc = wordpiece(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits
        model.to("cuda")
        got = model(**{k: v.cuda() for k, v in enc.items()}).logits
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0)
    assert he.check_equivariance(model, {k: v.cuda() for k, v in enc.items()}).passed(1e-4)


def test_saved_classifier_card_and_remote_code(tmp_path, families):
    """The classifier saves a card from model_cards/text_invariant.md and the remote-code module like every family."""
    model = families["wordpiece"][2]
    model.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "library_name: transformers" in card and "pipeline_tag: text-classification" in card
    assert "## Guarantee" in card and "hf_equivariant:model-card" in card
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("EquivariantModelForSequenceClassification")
