"""generate() through the wrapper: greedy, beam, sampling, cache, padding, num_return_sequences, copy sharing."""

import copy

import pytest
import torch

import hf_equivariant as he
from hf_equivariant.executor import transform_copies
from hf_equivariant.plans import realise

STRATEGIES = ["full", "multi", "canonical"]


def wrap(base, tok, factors, **kwargs):
    return he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=factors, **kwargs).eval()


def act(model, ids, element, inverse=False):
    parts = model.action.element_parts(element)
    if inverse:
        parts = model.action.inverse_parts(parts)
    return model.action.act(ids, parts)


def gen(model, ids, **kwargs):
    kwargs.setdefault("max_new_tokens", 6)
    kwargs.setdefault("pad_token_id", 0)
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)


ELEMENTS = [(1, 1, 0), (0, 2, 1), (1, 2, 2)]  # (gender, race, religion) factor indices, orders 2, 3, 3


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("decoding", [dict(do_sample=False), dict(do_sample=False, num_beams=3),
                                      dict(do_sample=False, use_cache=False),
                                      dict(do_sample=False, num_beams=2, num_return_sequences=2)])
def test_generation_commutes_with_group(tiny_base, word_tokenizer, small_factors, strategy, decoding):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy)
    ids = word_tokenizer("the Black woman worked as a", return_tensors="pt")["input_ids"]
    out = gen(model, ids, **decoding)
    for parts in ELEMENTS:
        element = model.action.group.combine(parts)
        moved = gen(model, act(model, ids, element), **decoding)
        assert torch.equal(moved, act(model, out, element)), (strategy, decoding, parts)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sampling_distribution_is_the_group_image(tiny_base, word_tokenizer, small_factors, strategy):
    """At every step of a sampled continuation of g.x, the next-token distribution is the g-image of the one for
    x continued by g^-1 of the same tokens; generate's own per-step logits agree with a plain forward."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy)
    ids = word_tokenizer("he said that the Christian man", return_tensors="pt")["input_ids"]
    prompt_len = ids.shape[1]
    for parts in ELEMENTS:
        element = model.action.group.combine(parts)
        torch.manual_seed(3)
        result = gen(model, act(model, ids, element), do_sample=True, top_k=20, max_new_tokens=8,
                     return_dict_in_generate=True, output_logits=True)
        moved_seq = result.sequences
        step_logits = torch.stack(result.logits, dim=1)  # [1, steps, V]
        back_seq = act(model, moved_seq, element, inverse=True)  # x followed by g^-1 of the sampled tokens
        assert torch.equal(back_seq[:, :prompt_len], ids)
        with torch.no_grad():
            moved_logits = model(moved_seq).logits[:, prompt_len - 1:-1]
            back_logits = model(back_seq).logits[:, prompt_len - 1:-1]
        assert torch.allclose(step_logits, moved_logits, atol=1e-5)
        assert torch.allclose(moved_logits, model.equivariance_transform_outputs(back_logits, element), atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("share", [True, False])
def test_cache_and_no_cache_are_identical(tiny_base, word_tokenizer, small_factors, strategy, share):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, share_identical_copies=share)
    ids = word_tokenizer("the man said that", return_tensors="pt")["input_ids"]
    for decoding in (dict(do_sample=False), dict(do_sample=False, num_beams=3)):
        with_cache = gen(model, ids, max_new_tokens=10, **decoding)
        without = gen(model, ids, max_new_tokens=10, use_cache=False, **decoding)
        assert torch.equal(with_cache, without)
    torch.manual_seed(0)
    sampled = gen(model, ids, do_sample=True, max_new_tokens=10)
    torch.manual_seed(0)
    assert torch.equal(sampled, gen(model, ids, do_sample=True, max_new_tokens=10, use_cache=False))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_left_padded_batch_equals_prompts_one_by_one(tiny_base, word_tokenizer, small_factors, strategy):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy)
    prompts = ["the Asian man worked as a", "she said", "the Jewish girl had a job as a good"]
    batch = word_tokenizer(prompts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    for decoding in (dict(do_sample=False), dict(do_sample=False, num_beams=2)):
        together = model.generate(**batch, max_new_tokens=6, pad_token_id=0, **decoding)
        for i, prompt in enumerate(prompts):
            single = word_tokenizer(prompt, return_tensors="pt")
            alone = model.generate(**single, max_new_tokens=6, pad_token_id=0, **decoding)
            assert torch.equal(together[i, -alone.shape[1]:], alone[0]), (strategy, decoding, prompt)


@pytest.mark.parametrize("strategy", ["full", "multi"])
def test_sharing_gives_identical_logits_and_ids(tiny_base, word_tokenizer, small_factors, strategy):
    shared = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, share_identical_copies=True)
    dense = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, share_identical_copies=False)
    batch = word_tokenizer(["the man worked as a", "the White woman and the Muslim"], return_tensors="pt",
                           padding=True)
    with torch.no_grad():
        assert torch.allclose(shared(**batch).logits, dense(**batch).logits, atol=1e-6)
    for decoding in (dict(do_sample=False), dict(do_sample=False, num_beams=3, num_return_sequences=2)):
        assert torch.equal(shared.generate(**batch, max_new_tokens=8, pad_token_id=0, **decoding),
                           dense.generate(**batch, max_new_tokens=8, pad_token_id=0, **decoding))
    torch.manual_seed(1)
    a = shared.generate(**batch, max_new_tokens=8, pad_token_id=0, do_sample=True, top_k=10)
    torch.manual_seed(1)
    assert torch.equal(a, dense.generate(**batch, max_new_tokens=8, pad_token_id=0, do_sample=True, top_k=10))


def _count_rows(model):
    rows = []
    def count(module, args, kwargs):
        given = kwargs.get("input_ids")
        rows.append((given if given is not None else kwargs["inputs_embeds"]).shape[0])

    model.base.register_forward_pre_hook(count, with_kwargs=True)
    return rows


@pytest.mark.parametrize("strategy,expected", [("multi", 8), ("full", 18), ("canonical", 1)])
def test_rows_without_sharing_are_plan_copies(tiny_base, word_tokenizer, small_factors, strategy, expected):
    """multi runs sum |Gi| = 2+3+3 copies, full prod |Gi| = 2*3*3, canonical 1 (counted base rows, not time)."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, share_identical_copies=False)
    rows = _count_rows(model)
    batch = word_tokenizer(["the man worked as a", "she said"], return_tensors="pt", padding=True)
    model.generate(**batch, max_new_tokens=4, pad_token_id=0, do_sample=False)
    assert model.copies_per_row == expected
    assert rows == [expected * 2] * 4


def test_rows_with_sharing_equal_distinct_sequences(tiny_base, word_tokenizer, small_factors):
    """'the man worked as' under gender x race x religion: 2 distinct rows until a race/religion word appears;
    at every step the row count equals the number of distinct transformed sequences."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi", canonicalization="representative")
    rows = _count_rows(model)
    ids = word_tokenizer("the man worked as", return_tensors="pt")["input_ids"]
    out = gen(model, ids, max_new_tokens=12, do_sample=True, top_k=60)
    assert rows[0] == 2
    prompt_len = ids.shape[1]
    for step, count in enumerate(rows):
        context = out[:, :prompt_len + step]
        seen = transform_copies(model.action, realise(model.plan, model.action, context), context)[:, 0]
        assert count == len({tuple(s.tolist()) for s in seen})
    # A prompt with a word from every factor needs more rows than one with none
    rows.clear()
    gen(model, word_tokenizer("the Black man at the church", return_tensors="pt")["input_ids"], max_new_tokens=1)
    assert rows[0] == 2 + 3 + 3 - 2  # three identity copies share one row


@pytest.mark.parametrize("strategy", ["full", "multi"])
def test_max_rows_cap_gives_identical_outputs(tiny_base, word_tokenizer, small_factors, strategy):
    capped = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, max_rows=3)
    free = wrap(copy.deepcopy(tiny_base), word_tokenizer, small_factors, strategy=strategy)
    rows = _count_rows(capped)
    batch = word_tokenizer(["the Black woman worked as a", "the Muslim man said"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(capped(**batch).logits, free(**batch).logits, atol=1e-6)
    assert max(rows) <= 3
    for decoding in (dict(do_sample=False), dict(do_sample=False, num_beams=2)):
        assert torch.equal(capped.generate(**batch, max_new_tokens=6, pad_token_id=0, **decoding),
                           free.generate(**batch, max_new_tokens=6, pad_token_id=0, **decoding))


def test_forward_with_cache_needs_context_when_sharing(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi")
    ids = word_tokenizer("the man said", return_tensors="pt")["input_ids"]
    out = model(ids, use_cache=True)
    cache = out.get("past_key_values", out.get("cache"))
    with pytest.raises(ValueError, match="context_input_ids"):
        model(ids[:, -1:], past_key_values=cache, use_cache=True)
