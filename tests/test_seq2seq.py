"""EquivariantModelForSeq2SeqLM: logits equivariant at every decoder position, generate(g.x) == g.generate(x) (greedy
and beam, with and without the cache), agreement with explicit equitune and design 2, the labels loss, copies and
sharing on SCAN-II, separate vocabularies, neutral inputs, saving and Seq2SeqTrainer.

The toy group has factors of orders 3, 2 and 3 (|G| = 18, sum 8), so a g / g^-1 mix-up cannot hide behind swaps.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    T5Config,
    T5ForConditionalGeneration,
)

import hf_equivariant as he
from hf_equivariant.datasets.scan import SCAN_FACTORS, build_tokenizer

torch.set_num_threads(1)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
TOY_INPUT = "red green blue left right small medium large walk and twice".split()
TOY_OUTPUT = "RED GREEN BLUE LEFT RIGHT SMALL MEDIUM LARGE WALK".split()
TOY_FACTORS = {
    "colour": {"input": [["red", "green", "blue"]], "output": [["RED", "GREEN", "BLUE"]]},
    "side": {"input": [["left", "right"]], "output": [["LEFT", "RIGHT"]]},
    "size": {"input": [["small", "medium", "large"]], "output": [["SMALL", "MEDIUM", "LARGE"]]},
}
STRATEGIES = [("full", "representative"), ("multi", "representative"), ("multi", "neutral"),
              ("canonical", "representative")]


def word_tokenizer(words):
    """Whitespace word-level tokenizer: specials 0-3 (pad, bos, eos, unk), then ``words``; ``</s>`` appended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.padding_side = "right"
    return tok


def tiny_base(kind, vocab, seed=0, decoder_vocab=None):
    torch.manual_seed(seed)
    if kind == "t5":
        config = T5Config(vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                          num_heads=2, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0, dropout_rate=0.0)
        return T5ForConditionalGeneration(config).eval()
    common = dict(d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                  encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=2,
                  forced_eos_token_id=None)
    if kind == "marian":
        config = MarianConfig(vocab_size=vocab, decoder_vocab_size=decoder_vocab or vocab,
                              share_encoder_decoder_embeddings=decoder_vocab is None, scale_embedding=True,
                              decoder_start_token_id=1, **common)
        return MarianMTModel(config).eval()
    return BartForConditionalGeneration(BartConfig(vocab_size=vocab, bos_token_id=1, decoder_start_token_id=1,
                                                   **common)).eval()


@pytest.fixture(scope="module")
def toy_tok():
    return word_tokenizer(TOY_INPUT + TOY_OUTPUT)


@pytest.fixture(scope="module")
def scan_tok():
    return build_tokenizer("scan2")


def wrap(base, tok, factors=TOY_FACTORS, strategy="full", canonicalization="representative", **kwargs):
    return he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=tok, factors=factors, strategy=strategy,
                                                     canonicalization=canonicalization, **kwargs).eval()


def toy_batch(tok, model):
    """Commands with padding, and teacher-forced decoder inputs: one where a factor absent from the command
    (size) occurs only in the decoder prefix, so orientation and presence must read the decoder too."""
    enc = tok(["red left small and blue twice", "walk green right", "large walk"], padding=True,
              return_tensors="pt")
    dec = tok(["RED LEFT SMALL BLUE BLUE", "WALK GREEN RIGHT MEDIUM", "LARGE WALK RED"], padding=True,
              add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = torch.full((3, 1), model.config.decoder_start_token_id)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "decoder_input_ids": torch.cat([start, dec], dim=1)}


def element(model, parts):
    return model.action.group.combine(parts)


def random_elements(model, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [int(e) for e in torch.randint(1, model.action.group.order, (n,), generator=g)]


# ----------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("kind", ["bart", "t5"])
@pytest.mark.parametrize("strategy,canon", STRATEGIES)
def test_logits_are_equivariant_at_every_decoder_position(toy_tok, kind, strategy, canon):
    model = wrap(tiny_base(kind, len(toy_tok)), toy_tok, strategy=strategy, canonicalization=canon)
    report = he.check_equivariance(model, toy_batch(toy_tok, model))
    assert len(report.errors) == 18 and report.passed(1e-5), str(report)


def test_base_model_is_not_equivariant(toy_tok):
    model = wrap(tiny_base("bart", len(toy_tok)), toy_tok, strategy="none")
    report = he.check_equivariance(model, toy_batch(toy_tok, model))
    assert report.max_error > 1e-2


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_strategy_none_is_the_base_and_wrapping_changes_no_weight(toy_tok, kind):
    base = tiny_base(kind, len(toy_tok))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = wrap(base, toy_tok, strategy="none")
    for key, value in model.base.state_dict().items():
        assert torch.equal(value, before[key]), key
    batch = toy_batch(toy_tok, model)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, base(**batch).logits.log_softmax(-1), atol=1e-6, rtol=0)
    enc = {k: batch[k] for k in ("input_ids", "attention_mask")}
    assert torch.equal(_generate_ids(model, **enc, num_beams=2), _generate_ids(base, **enc, num_beams=2))


def _perm(model, parts, side="output"):
    """``v -> g.v`` on one side's vocabulary, built from the factor cycles alone (not from the action)."""
    action = getattr(model.action, f"{side}_action")
    perm = list(range(action.vocab_size))
    for factor, power in zip(action.factors, parts):
        for cycle in factor.token_cycles:
            for j, t in enumerate(cycle):
                perm[t] = cycle[(j + power) % len(cycle)]
    return torch.tensor(perm)


def _base_probs(model, x, mask, y):
    with torch.no_grad():
        return model.base(input_ids=x, attention_mask=mask, decoder_input_ids=y).logits.double().softmax(-1)


def _equitune(model, x, mask, y, elements):
    """``mean_g g^-1 . P(. | g.x, g.y)``: (g^-1 . p)[w] = p[g.w]."""
    total = 0
    for parts in elements:
        g_in, g_out = _perm(model, parts, "input"), _perm(model, parts)
        total = total + _base_probs(model, g_in[x], mask, g_out[y])[..., g_out]
    return total / len(elements)


def _canonicalise(model, ids, factors, side):
    action = getattr(model.action, f"{side}_action")
    rep = list(range(action.vocab_size))
    for i in factors:
        for cycle in action.factors[i].token_cycles:
            for t in cycle:
                rep[t] = cycle[0]
    return torch.tensor(rep)[ids]


def test_full_matches_explicit_equitune(toy_tok):
    model = wrap(tiny_base("bart", len(toy_tok)), toy_tok, strategy="full")
    batch = toy_batch(toy_tok, model)
    elements = list(itertools.product(range(3), range(2), range(3)))
    expected = _equitune(model, batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"], elements)
    with torch.no_grad():
        got = model(**batch).logits.double().softmax(-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_multi_matches_explicit_design_2(toy_tok):
    """Design 2 written out: branch i canonicalises the other factors to their first member, equitunes over G_i
    and symmetrises over G_-i; branches weigh |G_i| / sum |G_j|."""
    model = wrap(tiny_base("t5", len(toy_tok)), toy_tok, strategy="multi")
    batch = toy_batch(toy_tok, model)
    x, mask, y = batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]
    orders = (3, 2, 3)
    expected = 0
    for i, order in enumerate(orders):
        others = [j for j in range(3) if j != i]
        xi, yi = _canonicalise(model, x, others, "input"), _canonicalise(model, y, others, "output")
        branch = _equitune(model, xi, mask, yi, [tuple(k if j == i else 0 for j in range(3)) for k in range(order)])
        sym = 0
        others_elements = list(itertools.product(*[range(orders[j]) if j != i else [0] for j in range(3)]))
        for parts in others_elements:
            sym = sym + branch[..., _perm(model, parts)]
        expected = expected + order / sum(orders) * sym / len(others_elements)
    with torch.no_grad():
        got = model(**batch).logits.double().softmax(-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------- generation
def _generate(model, tok, texts, **kwargs):
    enc = tok(texts, padding=True, return_tensors="pt")
    return _generate_ids(model, enc["input_ids"], enc["attention_mask"], **kwargs)


def _generate_ids(model, input_ids, attention_mask, **kwargs):
    kwargs.setdefault("max_new_tokens", 6)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False, **kwargs)


@pytest.mark.parametrize("kind", ["bart", "t5"])
@pytest.mark.parametrize("strategy,canon", STRATEGIES)
@pytest.mark.parametrize("decoding", [dict(), dict(num_beams=3)], ids=["greedy", "beam"])
def test_generation_commutes_with_the_group(toy_tok, kind, strategy, canon, decoding):
    model = wrap(tiny_base(kind, len(toy_tok), seed=1), toy_tok, strategy=strategy, canonicalization=canon)
    enc = toy_tok(["red left small and blue twice", "medium walk right green"], padding=True, return_tensors="pt")
    out = _generate_ids(model, enc["input_ids"], enc["attention_mask"], **decoding)
    for g in random_elements(model, 2, seed=hash((kind, strategy, canon)) % 100):
        moved = _generate_ids(model, model.action.transform_inputs(enc["input_ids"], g), enc["attention_mask"],
                              **decoding)
        assert torch.equal(moved, model.action.transform_decoder(out, g)), (g, out, moved)


@pytest.mark.parametrize("strategy,canon", STRATEGIES)
@pytest.mark.parametrize("share", [True, False])
def test_cache_and_no_cache_are_identical(toy_tok, strategy, canon, share):
    model = wrap(tiny_base("bart", len(toy_tok), seed=2), toy_tok, strategy=strategy, canonicalization=canon,
                 share_identical_copies=share)
    texts = ["red left small and blue twice", "walk and walk twice"]
    for decoding in (dict(), dict(num_beams=3, num_return_sequences=2)):
        assert torch.equal(_generate(model, toy_tok, texts, **decoding),
                           _generate(model, toy_tok, texts, use_cache=False, **decoding))


def test_step_logits_match_a_plain_forward(toy_tok):
    """generate's per-step scores (cached, forked rows) equal one teacher-forced forward on the result."""
    model = wrap(tiny_base("t5", len(toy_tok), seed=3), toy_tok, strategy="multi", canonicalization="neutral")
    enc = toy_tok(["green right and large walk"], return_tensors="pt")
    result = model.generate(**enc, max_new_tokens=5, do_sample=False, return_dict_in_generate=True,
                            output_logits=True)
    with torch.no_grad():
        forward = model(**enc, decoder_input_ids=result.sequences[:, :-1]).logits
    torch.testing.assert_close(torch.stack(result.logits, dim=1), forward, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- training
def test_labels_loss_is_the_nll_of_the_wrappers_log_probs(toy_tok):
    model = wrap(tiny_base("bart", len(toy_tok)), toy_tok, strategy="multi")
    enc = toy_tok(["red left small", "walk twice"], padding=True, return_tensors="pt")
    labels = toy_tok(["RED LEFT SMALL", "WALK WALK"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == 0] = -100
    out = model(**enc, labels=labels)
    log_probs = out.logits.log_softmax(-1)
    keep = labels != -100
    nll = -log_probs[keep].gather(-1, labels[keep][:, None]).mean()
    torch.testing.assert_close(out.loss, nll)
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(labels.shape))  # mean_prob: normalised
    out.loss.backward()
    assert model.base.get_encoder().layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_seq2seq_trainer_fine_tunes_the_base_through_the_wrapper(tmp_path, toy_tok):
    from torch.utils.data import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    class Pairs(Dataset):
        items = [("red left", "RED LEFT"), ("walk twice", "WALK WALK"), ("small and blue", "SMALL BLUE")] * 2

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            c, a = self.items[i]
            return {"input_ids": toy_tok(c)["input_ids"], "labels": toy_tok(a)["input_ids"]}

    model = wrap(tiny_base("bart", len(toy_tok)), toy_tok, strategy="multi")
    before = model.base.get_decoder().layers[0].fc1.weight.detach().clone()
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=3,
                                    learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no",
                                    use_cpu=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=Pairs(),
                             data_collator=DataCollatorForSeq2Seq(toy_tok, model=model))
    assert trainer.train().training_loss > 0
    assert not torch.equal(before, model.base.get_decoder().layers[0].fc1.weight)
    assert he.check_equivariance(model.eval(), toy_batch(toy_tok, model)).passed(1e-5)


# ----------------------------------------------------------------------------------------------- SCAN-II cost
def test_scan_copies_8_for_full_and_6_for_multi(scan_tok):
    base = tiny_base("bart", len(scan_tok))
    enc = scan_tok(["jump left and run up"], return_tensors="pt")
    rows = {}
    for strategy in ("full", "multi", "canonical"):
        model = wrap(base, scan_tok, SCAN_FACTORS, strategy=strategy)
        assert model.action.group.order == 8
        model(**enc, decoder_input_ids=torch.tensor([[1]]))
        rows[strategy] = (model.copies_per_row, model.last_row_count, model.last_encoder_count)
    # every copy differs for full; multi's lr and ud branches share "run right and run down"
    assert rows == {"full": (8, 8, 8), "multi": (6, 5, 5), "canonical": (1, 1, 1)}
    model = wrap(base, scan_tok, SCAN_FACTORS, strategy="full")
    model(**scan_tok(["walk twice"], return_tensors="pt"), decoder_input_ids=torch.tensor([[1]]))
    assert model.last_row_count == 1  # no factor word: every copy is the input itself
    assert he.check_equivariance(model, toy_batch_scan(scan_tok)).passed(1e-5)


def toy_batch_scan(tok):
    enc = tok(["jump left and run up", "walk opposite down twice"], padding=True, return_tensors="pt")
    dec = tok(["TURN_LEFT JUMP TURN_UP RUN", "TURN_DOWN TURN_DOWN WALK"], padding=True, add_special_tokens=False,
              return_tensors="pt")["input_ids"]
    return {**enc, "decoder_input_ids": torch.cat([torch.ones(2, 1, dtype=torch.long), dec], dim=1)}


def test_scan_factors_as_words_ids_or_one_action_are_the_same_group(scan_tok):
    from hf_equivariant.datasets.scan import factor_token_cycles

    base = tiny_base("bart", len(scan_tok))
    by_words = wrap(base, scan_tok, SCAN_FACTORS, strategy="multi")
    by_ids = wrap(base, scan_tok, factor_token_cycles(scan_tok), strategy="multi")
    assert by_words.config.input_groups[0]["token_ids"] == [[6, 7], [21, 22]]  # run/jump and RUN/JUMP together
    assert by_words.action.input_action is by_words.action.output_action  # one vocabulary: one permutation
    by_pairs = wrap(base, scan_tok, {n: (f["input"], f["output"]) for n, f in SCAN_FACTORS.items()},
                    strategy="multi")
    one = he.EquivariantModelForSeq2SeqLM.from_base(base, action=by_words.action.output_action, strategy="multi")
    batch = toy_batch_scan(scan_tok)
    with torch.no_grad():
        ref = by_words(**batch).logits
        for other in (by_ids, by_pairs, one):
            torch.testing.assert_close(other(**batch).logits, ref, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------- two vocabularies
def test_separate_vocabularies_with_two_actions(scan_tok):
    in_tok, out_tok = build_tokenizer("scan2", side="input"), build_tokenizer("scan2", side="output")
    base = tiny_base("marian", len(in_tok), decoder_vocab=len(out_tok))
    model = he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=in_tok, output_tokenizer=out_tok,
                                                      factors=SCAN_FACTORS, strategy="multi").eval()
    action = model.action
    assert action.input_action is not action.output_action
    assert (action.input_vocab, action.output_vocab) == (len(in_tok), len(out_tok))
    # every factor occurs in both commands: with a factor absent the output is symmetric in its words, and an
    # exact tie between them would be broken by token order, not by the group
    enc = in_tok(["jump left and run up", "run around right and walk down"], padding=True, return_tensors="pt")
    dec = out_tok(["TURN_LEFT JUMP TURN_UP RUN", "TURN_RIGHT RUN TURN_DOWN"], padding=True, add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
    batch = {**enc, "decoder_input_ids": torch.cat([torch.ones(2, 1, dtype=torch.long), dec], dim=1)}
    assert he.check_equivariance(model, batch).passed(1e-5)
    out = _generate_ids(model, enc["input_ids"], enc["attention_mask"], num_beams=2)
    g = element(model, (1, 1, 0))
    moved = _generate_ids(model, action.transform_inputs(enc["input_ids"], g), enc["attention_mask"], num_beams=2)
    assert torch.equal(moved, action.transform_decoder(out, g))
    # the same actions given directly
    again = he.EquivariantModelForSeq2SeqLM.from_base(base, input_action=action.input_action,
                                                      output_action=action.output_action, strategy="multi").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits, atol=0, rtol=0)


def test_mismatched_groups_and_one_sided_factors_are_clear_errors(scan_tok):
    in_tok, out_tok = build_tokenizer("scan2", side="input"), build_tokenizer("scan2", side="output")
    base = tiny_base("marian", len(in_tok), decoder_vocab=len(out_tok))
    wrong = dict(SCAN_FACTORS, verb={"input": [["run", "jump", "walk"]], "output": [["RUN", "JUMP"]]})
    with pytest.raises(ValueError, match="one length"):
        he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=in_tok, output_tokenizer=out_tok, factors=wrong)
    one_sided = dict(SCAN_FACTORS, extra={"input": [["twice", "thrice"]], "output": []})
    with pytest.raises(ValueError, match="one side only"):
        he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=in_tok, output_tokenizer=out_tok,
                                                  factors=one_sided)
    good = he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=in_tok, output_tokenizer=out_tok,
                                                     factors=SCAN_FACTORS)
    other = he.EquivariantModelForSeq2SeqLM.from_base(base, tokenizer=in_tok, output_tokenizer=out_tok,
                                                      factors={"verb": SCAN_FACTORS["verb"]})
    with pytest.raises(ValueError, match="same group"):
        he.EquivariantModelForSeq2SeqLM.from_base(base, input_action=good.action.input_action,
                                                  output_action=other.action.output_action)
    with pytest.raises(ValueError, match="cannot be transformed"):
        good(encoder_outputs=(torch.zeros(1, 2, 16),), decoder_input_ids=torch.tensor([[1]]))


@pytest.mark.parametrize("kind", ["bart", "marian"])
def test_neutral_input_is_the_mean_embedding_inside_the_models_scaling(scan_tok, kind):
    """Make run and jump embed identically: the neutral input of their cycle must then encode like either word,
    whether the model scales embeddings inside the module (BART) or after it (Marian)."""
    base = tiny_base(kind, len(scan_tok))
    model = wrap(base, scan_tok, SCAN_FACTORS, strategy="multi", canonicalization="neutral")
    run, jump = scan_tok.convert_tokens_to_ids(["run", "jump"])
    with torch.no_grad():
        embedding = base.get_encoder().get_input_embeddings()
        embedding.weight[jump] = embedding.weight[run] * 1.0
    ids = scan_tok(["run left"], return_tensors="pt")["input_ids"]
    action = model.action
    neutral = action.joint.canonicalise(ids, torch.tensor([True, False, False]), "neutral")
    assert int(neutral[0, 0]) >= action.joint_vocab  # a placeholder, not a token
    with torch.no_grad():
        got = model._encode(neutral, torch.ones_like(ids), {"encoder_rows": 0})
        expected = base.get_encoder()(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------- saving
@pytest.mark.parametrize("full", [True, False])
def test_save_and_reload_reproduce_outputs(tmp_path, scan_tok, full):
    base = tiny_base("bart", len(scan_tok))
    base.save_pretrained(tmp_path / "base")
    scan_tok.save_pretrained(tmp_path / "base")
    model = he.EquivariantModelForSeq2SeqLM.from_base(str(tmp_path / "base"), factors=SCAN_FACTORS,
                                                      strategy="multi", canonicalization="neutral").eval()
    assert model.tokenizer is not None
    model.save_pretrained(tmp_path / "wrapped", save_base_weights=full)
    files = {p.name for p in (tmp_path / "wrapped").iterdir()}
    assert {"config.json", "README.md", "tokenizer.json"} <= files and ("model.safetensors" in files) == full
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "wrapped").eval()
    assert isinstance(reloaded, he.EquivariantModelForSeq2SeqLM)
    assert reloaded.config.canonicalization == "neutral" and reloaded.config.save_base_weights == full
    batch = toy_batch_scan(scan_tok)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=1e-6, rtol=0)
    enc = scan_tok(["jump thrice after run right"], return_tensors="pt")
    assert torch.equal(_generate_ids(reloaded, enc["input_ids"], enc["attention_mask"]),
                       _generate_ids(model, enc["input_ids"], enc["attention_mask"]))
    card = (tmp_path / "wrapped" / "README.md").read_text()
    assert "| verb | 2 |" in card and "Base-model rows per example: 6" in card
    assert math.isclose(sum(p.numel() for p in reloaded.parameters()), sum(p.numel() for p in base.parameters()))
