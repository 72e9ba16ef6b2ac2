"""Nothing silently wrong: causal per-position outputs, caches under max_rows, tuple outputs, fresh CLIP text
features, word-set validation, per-call state under threads, bounded memos and clear errors for bad input."""

from __future__ import annotations

import copy
import json
import threading

import pytest
import torch
import torch.nn.functional as F

import hf_equivariant as he
from hf_equivariant.cli import main as cli_main

from conftest import make_tiny_gpt2

STRATEGIES = ["full", "multi", "canonical"]


def wrap(base, tok, factors, **kwargs):
    return he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=factors, **kwargs).eval()


# ------------------------------------------------------------------------------------------------ causality
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("aggregation", ["mean_prob", "mean_logits", "max_prob"])
def test_position_t_equals_the_prefix_next_token_distribution(tiny_base, word_tokenizer, small_factors, strategy,
                                                              aggregation):
    """logits[:, t] of a full forward == next-token logits of x[:t+1]; demographic words come late in the row, so
    orienting by the whole row (the old canonical strategy) would leak them into earlier positions."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, aggregation=aggregation)
    ids = word_tokenizer("the doctor said that he was a Muslim", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids).logits
        for t in range(ids.shape[1]):
            prefix = model(input_ids=ids[:, :t + 1]).logits[:, -1]
            torch.testing.assert_close(full[:, t], prefix, atol=1e-5, rtol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_labels_loss_is_the_autoregressive_nll(tiny_base, word_tokenizer, small_factors, strategy):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy)
    ids = word_tokenizer("the nurse said that she had a job", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
        nll = [-F.log_softmax(model(input_ids=ids[:, :t]).logits[0, -1], -1)[ids[0, t]] for t in range(1, ids.shape[1])]
    torch.testing.assert_close(loss, torch.stack(nll).mean(), atol=1e-5, rtol=0)


def test_canonical_does_not_let_the_target_leak(word_tokenizer, small_factors):
    """Pushed towards ' he', P(he) and P(she) after 'the doctor said that' are the same whether read from the
    prefix or from the sequence that continues with one of them, and two exclusive continuations sum to <= 1."""
    base = make_tiny_gpt2(len(word_tokenizer), seed=1)
    he_id = word_tokenizer.convert_tokens_to_ids("he")
    with torch.no_grad():
        base.lm_head.weight[he_id] += 3 * base.transformer.ln_f.bias.sign()  # tied: pushes towards "he"
    model = wrap(base, word_tokenizer, small_factors, strategy="canonical")
    prompt = word_tokenizer("the doctor said that", return_tensors="pt")["input_ids"]
    she_id = word_tokenizer.convert_tokens_to_ids("she")
    with torch.no_grad():
        p_prefix = model(input_ids=prompt).logits[0, -1].softmax(-1)
        p_he = model(input_ids=torch.cat([prompt, torch.tensor([[he_id]])], 1)).logits[0, -2].softmax(-1)[he_id]
        p_she = model(input_ids=torch.cat([prompt, torch.tensor([[she_id]])], 1)).logits[0, -2].softmax(-1)[she_id]
    torch.testing.assert_close(p_he, p_prefix[he_id], atol=1e-6, rtol=0)
    torch.testing.assert_close(p_she, p_prefix[she_id], atol=1e-6, rtol=0)
    assert float(p_he + p_she) <= 1.0


# ------------------------------------------------------------------------------------------------ caches, outputs
@pytest.mark.parametrize("strategy", ["full", "multi"])
def test_max_rows_returns_the_cache_it_built(tiny_base, word_tokenizer, small_factors, strategy):
    capped = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, max_rows=2)
    free = wrap(copy.deepcopy(tiny_base), word_tokenizer, small_factors, strategy=strategy)
    ids = word_tokenizer("the Black woman worked as a", return_tensors="pt")["input_ids"]
    nxt = torch.tensor([[word_tokenizer.convert_tokens_to_ids("nurse")]])
    with torch.no_grad():
        outs = []
        for model in (capped, free):
            first = model(input_ids=ids, use_cache=True)
            assert first.past_key_values is not None
            ctx = torch.cat([ids, nxt], 1)
            outs.append(model(input_ids=nxt, past_key_values=first.past_key_values, use_cache=True,
                              context_input_ids=ctx).logits)
        reference = free(input_ids=torch.cat([ids, nxt], 1)).logits[:, -1:]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[0], reference, atol=1e-5, rtol=0)


def test_return_dict_false_gives_a_tuple(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors)
    ids = word_tokenizer("the man worked as", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids, return_dict=False)
        ref = model(input_ids=ids, labels=ids)
    assert isinstance(out, tuple)
    torch.testing.assert_close(out[0], ref.loss)
    torch.testing.assert_close(out[1], ref.logits)


def test_clip_text_cache_is_never_stale():
    from hf_equivariant.testing import tiny_clip_model, word_level_tokenizer

    words = "a photo of the cat dog".split()
    tok = word_level_tokenizer(words)
    model = he.EquivariantCLIPModel.from_base(tiny_clip_model(0, vocab_size=16, image_size=16, patch_size=8)).eval()
    text = tok(["a photo of a cat", "a dog"], padding=True, return_tensors="pt")
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(pixel_values=images, **text).logits_per_image
        model.base.text_model.final_layer_norm.weight.data.mul_(-1.5)  # in place, no version bump
        edited = model(pixel_values=images, **text).logits_per_image
        fresh = he.EquivariantCLIPModel.from_base(copy.deepcopy(model.base)).eval()
        assert (edited - before).abs().max() > 1e-4
        torch.testing.assert_close(edited, fresh(pixel_values=images, **text).logits_per_image)
        other = tiny_clip_model(1, vocab_size=16, image_size=16, patch_size=8)
        model.base.text_model = other.text_model  # a swapped tower
        swapped = model(pixel_values=images, **text).logits_per_image
        model.clear_text_cache()
        torch.testing.assert_close(swapped, model(pixel_values=images, **text).logits_per_image)


# ------------------------------------------------------------------------------------------------ word sets
def test_flat_word_list_is_an_error_not_letter_sets(word_tokenizer):
    with pytest.raises(ValueError, match="flat list of words"):
        he.WordSwap.from_words(word_tokenizer, ["king", "queen"])
    with pytest.raises(ValueError, match="must be strings"):
        he.WordSwap.from_words(word_tokenizer, [["man", 3]])
    with pytest.raises(ValueError, match="empty word"):
        he.WordSwap.from_words(word_tokenizer, [["man", ""]])


def _sentencepiece_tokenizer(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<unk>", "▁(", "(", ")", "▁the", "▁man", "▁woman", "man", "woman", "▁said", "▁was", "▁here", "."]
    core = Tokenizer(models.Unigram([(p, -1.0) for p in pieces], unk_id=1))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>")


def test_sentencepiece_bare_pieces_are_swapped(tmp_path):
    tok = _sentencepiece_tokenizer(tmp_path)
    ids = tok("the man said (man) was here", add_special_tokens=False)["input_ids"]
    bare = tok.convert_tokens_to_ids("man")
    assert bare in ids  # after "(" the tokenizer uses the piece without the boundary marker
    swap = he.WordSwap.from_words(tok, [["man", "woman"]], name="gender")
    action = he.TokenPermutationAction([swap], len(tok))
    moved = action.act(torch.tensor([ids]), torch.tensor([1]))[0].tolist()
    assert tok.decode(moved) == "the woman said (woman) was here"


def test_hand_edited_config_words_are_checked_against_token_ids(tmp_path, tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors)
    model.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["groups"][0]["words"][0] = ["king", "queen"]  # words no longer match the token ids
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="disagree"):
        he.EquivariantModelForCausalLM.from_pretrained(tmp_path)


def test_group_names_are_never_paths(tmp_path, tiny_base, word_tokenizer):
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps({"name": "evil", "sets": [["man", "woman"]]}))
    with pytest.raises(ValueError, match="load_word_set_file"):
        wrap(tiny_base, word_tokenizer, [str(evil)])
    data = he.load_word_set_file(evil)  # the explicit API for files
    model = wrap(tiny_base, word_tokenizer, [he.WordSwap.from_data(data, word_tokenizer)])
    assert model.config.group_names == ["evil"]


def test_a_bare_string_is_one_group_name(gpt2_tokenizer):
    model = he.EquivariantModelForCausalLM.from_base(make_tiny_gpt2(50257), tokenizer=gpt2_tokenizer, groups="gender")
    assert model.config.group_names == ["gender"]


# ------------------------------------------------------------------------------------------------ settings, threads
def test_changing_config_strategy_takes_effect(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi")
    full = wrap(tiny_base, word_tokenizer, small_factors, strategy="full")
    ids = word_tokenizer("the Black woman worked as a", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
        model.config.strategy = "full"
        after = model(input_ids=ids).logits
        assert model.copies_per_row == 18 and (after - before).abs().max() > 1e-4
        torch.testing.assert_close(after, full(input_ids=ids).logits)


def test_two_threads_of_beam_search_agree_with_one(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi")
    word_tokenizer.padding_side = "left"
    prompts = [word_tokenizer(["the Black woman worked as a", "the man said"], return_tensors="pt",
                              padding=True)["input_ids"],
               word_tokenizer("he said that the Muslim man", return_tensors="pt")["input_ids"]]

    def run(ids):
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=(ids != 0).long(), num_beams=3, max_new_tokens=8,
                                  do_sample=False, pad_token_id=0)

    expected = [run(ids) for ids in prompts]
    results: dict[int, list] = {0: [], 1: []}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for _ in range(20):
                results[k].append(run(prompts[k]))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in (0, 1):
        assert len(results[k]) == 20 and all(torch.equal(r, expected[k]) for r in results[k])


def test_canonical_memo_is_bounded_in_bytes(gpt2_tokenizer):
    base = make_tiny_gpt2(50257)
    model = he.EquivariantModelForCausalLM.from_base(base, tokenizer=gpt2_tokenizer, groups=["gender", "race"],
                                                     strategy="canonical").eval()
    gen = torch.Generator().manual_seed(0)
    support = model.action.support("cpu")
    with torch.no_grad():
        for _ in range(6):  # batches whose per-position orientations all differ
            ids = torch.randint(50257, (64, 16), generator=gen)
            ids[:, ::3] = support[torch.randint(len(support), (64, 6), generator=gen)]
            model(input_ids=ids)
    assert model.action._memo.bytes <= model.action._memo.max_bytes


def test_cyclic_group_of_order_1000_and_a_1000_word_set_are_cheap():
    group = he.cyclic_group(1000)
    assert group.order == 1000 and group.compose(999, 3) == 2
    from hf_equivariant.testing import word_level_tokenizer

    words = [f"w{i}" for i in range(1000)]
    tok = word_level_tokenizer(words)
    swap = he.WordSwap.from_words(tok, [words], name="many")
    action = he.TokenPermutationAction([swap], len(tok))
    ids = torch.tensor([tok.convert_tokens_to_ids(["w0", "w999"])])
    assert action.act(ids, torch.tensor([1])).tolist() == [tok.convert_tokens_to_ids(["w1", "w0"])]


# ------------------------------------------------------------------------------------------------ clear errors
def test_unknown_from_base_options_are_errors(tiny_base, word_tokenizer, small_factors):
    with pytest.raises(TypeError, match="strategi"):
        he.EquivariantModelForCausalLM.from_base(tiny_base, tokenizer=word_tokenizer, groups=small_factors,
                                                 strategi="full")
    with pytest.raises(TypeError, match="aggregatoin"):
        he.EquivariantModelForCausalLM.from_base("some/model", tokenizer=word_tokenizer, groups=small_factors,
                                                 aggregatoin="max_prob")


def test_input_shape_and_id_errors(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors)
    ids = word_tokenizer("the man worked as", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids[0]).logits, model(input_ids=ids).logits)  # 1-D accepted
        with pytest.raises(ValueError, match=r"\[batch, length\]"):
            model(input_ids=ids[None])
        with pytest.raises(ValueError, match="token id 100000 is outside"):
            model(input_ids=torch.tensor([[1, 100000]]))
        with pytest.raises(ValueError, match="token id -1 is outside"):
            model(input_ids=torch.tensor([[-1, 3]]))
        with pytest.raises(ValueError, match="inputs_embeds"):
            model.generate(inputs_embeds=torch.randn(1, 3, 32), max_new_tokens=2)


@pytest.mark.parametrize("field, value", [("share_identical_copies", "no"), ("max_rows", 2.5), ("max_rows", "4"),
                                          ("save_base_weights", "false")])
def test_saved_config_types_are_checked(tmp_path, tiny_base, word_tokenizer, small_factors, field, value):
    wrap(tiny_base, word_tokenizer, small_factors).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data[field] = value
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field):
        he.EquivariantModelForCausalLM.from_pretrained(tmp_path)


def test_checking_no_element_is_an_error(tiny_base, word_tokenizer, small_factors, tmp_path, capsys):
    model = wrap(tiny_base, word_tokenizer, small_factors)
    enc = word_tokenizer("the man", return_tensors="pt")
    with pytest.raises(ValueError, match="max_elements"):
        he.check_equivariance(model, enc, max_elements=0)
    with pytest.raises(ValueError, match="empty"):
        he.check_equivariance(model, enc, elements=[])
    model.save_pretrained(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["check", str(tmp_path), "--max-elements", "0"])
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ memory
def test_max_rows_bounds_peak_memory_with_identical_logits(tmp_path):
    """4 factors of order 3 (81 distinct rows), real GPT-2 vocabulary size: the capped run's peak memory growth is at
    most a quarter of the unbounded one's (each measured in a fresh process), with the same logits."""
    from benchmarks.bench_memory import measure_copies

    free = measure_copies(None, str(tmp_path / "free.pt"), factors=4)
    capped = measure_copies(4, str(tmp_path / "capped.pt"), factors=4)
    assert free["rows"] == capped["rows"] == 81
    assert capped["peak_mb"] <= free["peak_mb"] / 4, (capped, free)
    torch.testing.assert_close(torch.load(tmp_path / "capped.pt"), torch.load(tmp_path / "free.pt"), atol=1e-5,
                               rtol=0)


def test_a_1000_word_set_needs_under_200_mb():
    from benchmarks.bench_memory import measure_word_set

    result = measure_word_set()
    assert result["group_order"] == 1000 and result["peak_mb"] < 200, result
