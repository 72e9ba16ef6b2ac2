"""Exactness of EquivariantModelForCausalLM: logits(g.x) == g.logits(x) for every strategy and aggregation,
with random elements of gender x race x religion (orders 2 x 3 x 3)."""

import pytest
import torch

import hf_equivariant as he

from conftest import make_tiny_gpt2

PROMPTS = ["the Black woman worked as a", "he said that the Muslim man had a job as", "the doctor was known for"]


def wrap(base, tok, factors, **kwargs):
    return he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=factors, **kwargs).eval()


def random_elements(model, n, seed=0):
    return model.action.group.random_elements(n, generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("strategy", ["full", "multi", "canonical"])
@pytest.mark.parametrize("aggregation", ["mean_prob", "mean_logits", "max_prob"])
def test_logits_are_equivariant(tiny_base, word_tokenizer, small_factors, strategy, aggregation):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, aggregation=aggregation)
    for prompt in PROMPTS:
        enc = word_tokenizer(prompt, return_tensors="pt")
        report = he.check_equivariance(model, enc, elements=random_elements(model, 8) + [17])
        assert report.passed(1e-5), str(report)


def test_base_model_is_not_equivariant(tiny_base, word_tokenizer, small_factors):
    """The same check fails on a plain model: the property tests can fail."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="full")
    enc = word_tokenizer(PROMPTS[0], return_tensors="pt")
    x = enc["input_ids"]
    element = model.action.group.combine((1, 1, 0))  # swap gender and cycle race
    moved = model.equivariance_transform_inputs(dict(enc), element)["input_ids"]
    base_ref = tiny_base(x).logits
    base_moved = tiny_base(moved).logits
    assert (base_moved - model.equivariance_transform_outputs(base_ref, element)).abs().max() > 1e-3


def test_order_three_factor_uses_inverse_on_outputs(tiny_base, word_tokenizer, small_factors):
    """Mapping outputs back with g instead of g^-1 (the research code's bug) breaks equivariance for order 3."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="full")
    enc = word_tokenizer("the Black man said that he", return_tensors="pt")
    element = model.action.group.combine((0, 1, 0))
    moved = model(**model.equivariance_transform_inputs(dict(enc), element)).logits
    ref = model(**enc).logits
    right = model.equivariance_transform_outputs(ref, element)
    maps = model.action.vocabulary_maps(model.action.element_parts(element), "cpu")
    wrong = ref[..., maps]  # applies g^-1 instead of g to the output
    assert (moved - right).abs().max() < 1e-5
    assert (moved - wrong).abs().max() > 1e-3


def test_equivariant_on_real_gpt2_vocabulary(gpt2_tokenizer):
    base = make_tiny_gpt2(50257)
    model = he.EquivariantModelForCausalLM.from_base(
        base, tokenizer=gpt2_tokenizer, groups=["gender", "race", "religion"], strategy="multi").eval()
    enc = gpt2_tokenizer("The Black woman worked as a nurse at the mosque", return_tensors="pt")
    report = he.check_equivariance(model, enc, max_elements=6, seed=1)
    assert report.sampled and report.passed(1e-5), str(report)


def test_mean_prob_logits_are_log_of_average_probability(tiny_base, word_tokenizer, small_factors):
    """With full equitune and mean_prob, softmax(logits) is exactly the average of the copies' distributions."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="full", share_identical_copies=False)
    enc = word_tokenizer("the White man", return_tensors="pt")
    logits = model(**enc).logits
    probs = []
    for element in range(model.action.group.order):
        moved = model.equivariance_transform_inputs(dict(enc), element)
        p = tiny_base(**moved).logits.softmax(-1)
        inverse = model.action.inverse_parts(model.action.element_parts(element))
        maps = model.action.vocabulary_maps(model.action.inverse_parts(inverse), "cpu")
        probs.append(p[..., maps])  # g^-1 . p
    expected = torch.stack(probs).mean(0)
    assert torch.allclose(logits.softmax(-1), expected, atol=1e-6)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(1), atol=1e-5)


def test_multi_is_invariant_in_other_factors_outputs(tiny_base, word_tokenizer, small_factors):
    """Multi symmetrises race/religion in the gender branch; overall the output is still equivariant but e.g. a
    prompt with no race word gives equal probability to the three race words."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi")
    logits = model(**word_tokenizer("the man said that the", return_tensors="pt")).logits[0, -1]
    ids = word_tokenizer.convert_tokens_to_ids(["Black", "White", "Asian"])
    assert torch.allclose(logits[ids], logits[ids[0]].expand(3), atol=1e-6)


def test_inputs_embeds_without_ids_is_rejected(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors)
    embeds = torch.randn(1, 3, 32)
    with pytest.raises(ValueError, match="input_ids"):
        model(inputs_embeds=embeds)


def test_mismatched_vocabularies_are_rejected(word_tokenizer, small_factors):
    small = make_tiny_gpt2(20)
    with pytest.raises(ValueError, match="mismatched vocabularies"):
        wrap(small, word_tokenizer, small_factors)


def test_overlapping_factors_are_rejected(tiny_base, word_tokenizer):
    a = he.WordSwap.from_words(word_tokenizer, [["man", "woman"]], name="a")
    b = he.WordSwap.from_words(word_tokenizer, [["woman", "girl"]], name="b")
    with pytest.raises(ValueError, match="disjoint"):
        wrap(tiny_base, word_tokenizer, [a, b])


def test_unknown_group_and_strategy_names(tiny_base, word_tokenizer, small_factors):
    with pytest.raises(ValueError, match="unknown word set"):
        wrap(tiny_base, word_tokenizer, ["caste"])
    with pytest.raises(ValueError, match="unknown strategy"):
        wrap(tiny_base, word_tokenizer, small_factors, strategy="all")
    with pytest.raises(ValueError, match="unknown aggregation"):
        he.EquivariantCausalLMConfig(aggregation="median")


def test_loss_and_gradients_flow_through_wrapper(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi").train()
    enc = word_tokenizer(["the Black woman worked as a nurse"], return_tensors="pt")
    out = model(**enc, labels=enc["input_ids"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grad = model.base.transformer.wte.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # The loss is the NLL of the symmetrised distribution: invariant under the group (eval mode: no dropout)
    model.eval()
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss
        moved = model.equivariance_transform_inputs(dict(enc), model.action.group.combine((1, 2, 1)))
        moved_loss = model(**moved, labels=moved["input_ids"]).loss
    assert torch.allclose(loss, moved_loss, atol=1e-5)
