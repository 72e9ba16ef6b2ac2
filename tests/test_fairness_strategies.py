"""Anchor-free design 2 and strategy auto: exactness (logits, greedy and beam generation, with and without cache),
cost, causality under a strategy switch, the demo-model fairness targets, and sparse aggregation / prefix forking
against dense, unshared references."""

from __future__ import annotations

import pytest
import torch

import hf_equivariant as he
from hf_equivariant.eval import fairness as ef

from conftest import make_tiny_gpt2

NEW = [dict(strategy="multi", canonicalization="neutral"), dict(strategy="auto")]
PROMPTS = ["the Black woman worked as a", "he said that the Muslim man had a job as", "the doctor was known for",
           "the White Christian man and the Asian woman said"]


def wrap(base, tok, factors, **kwargs):
    return he.EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=factors, **kwargs).eval()


def act(model, ids, element):
    return model.action.act(ids, model.action.element_parts(element))


@pytest.mark.parametrize("options", NEW)
@pytest.mark.parametrize("aggregation", ["mean_prob", "mean_logits", "max_prob"])
def test_new_strategies_are_exact_on_logits_for_all_18_elements(tiny_base, word_tokenizer, small_factors, options,
                                                                aggregation):
    model = wrap(tiny_base, word_tokenizer, small_factors, aggregation=aggregation, **options)
    for prompt in PROMPTS:
        report = he.check_equivariance(model, word_tokenizer(prompt, return_tensors="pt"))
        assert len(report.errors) == 18 and report.passed(1e-5), str(report)


@pytest.mark.parametrize("options", NEW)
@pytest.mark.parametrize("decoding", [dict(), dict(num_beams=3), dict(use_cache=False), dict(num_beams=2, use_cache=False)])
def test_new_strategies_commute_with_generation(tiny_base, word_tokenizer, small_factors, options, decoding):
    model = wrap(tiny_base, word_tokenizer, small_factors, **options)
    ids = word_tokenizer(PROMPTS[3], return_tensors="pt")["input_ids"]

    def gen(x):
        return model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=6, do_sample=False,
                              pad_token_id=0, **decoding)

    out = gen(ids)
    for element in range(18):
        assert torch.equal(gen(act(model, ids, element)), act(model, out, element)), (options, decoding, element)


def test_anchor_free_multi_costs_sum_of_orders(tiny_base, word_tokenizer, small_factors):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi", canonicalization="neutral",
                 share_identical_copies=False)
    with torch.no_grad():
        model(**word_tokenizer(PROMPTS[3], return_tensors="pt"))
    assert model.copies_per_row == 2 + 3 + 3 and model.last_row_count == 8


def test_auto_costs_what_full_costs_with_one_attribute(tiny_base, word_tokenizer, small_factors):
    auto = wrap(tiny_base, word_tokenizer, small_factors, strategy="auto")
    full = wrap(tiny_base, word_tokenizer, small_factors, strategy="full")
    ids = word_tokenizer("the woman said that the doctor was", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, f = auto(input_ids=ids).logits, full(input_ids=ids).logits
        rows_auto, rows_full = auto.last_row_count, full.last_row_count
    torch.testing.assert_close(a, f, atol=1e-5, rtol=0)  # one attribute: auto is the exact orbit average
    assert rows_auto == rows_full == 2


def test_auto_switches_causally_and_the_cache_follows(tiny_base, word_tokenizer, small_factors):
    """A religion word arrives after gender and race: auto moves from the orbit average to anchor-free multi at that
    position. Token by token with the cache equals full-sequence forwards of each prefix."""
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy="auto")
    ids = word_tokenizer("the White woman said that the Muslim man was a doctor", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full_seq = model(input_ids=ids).logits
        out = model(input_ids=ids[:, :3], use_cache=True)
        cache, steps = out.past_key_values, [out.logits[:, -1]]
        for t in range(3, ids.shape[1]):
            out = model(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True,
                        context_input_ids=ids[:, :t + 1])
            cache = out.past_key_values
            steps.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full_seq[:, 2:], atol=1e-5, rtol=0)
    orbit = wrap(tiny_base, word_tokenizer, small_factors, strategy="full")
    neutral = wrap(tiny_base, word_tokenizer, small_factors, strategy="multi", canonicalization="neutral")
    with torch.no_grad():
        religion_at = ids[0].tolist().index(word_tokenizer.convert_tokens_to_ids("Muslim"))
        torch.testing.assert_close(full_seq[:, :religion_at], orbit(input_ids=ids).logits[:, :religion_at],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(full_seq[:, religion_at:], neutral(input_ids=ids).logits[:, religion_at:],
                                   atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ references
def _dense_reference(model, ids: torch.Tensor, strategy: str) -> torch.Tensor:
    """Log of the orbit average (full) or of the paper's design 2 (multi, representative), computed densely from the
    base model: one forward per copy, full-vocabulary gathers, no sharing, no support tricks."""
    action, base = model.action, model.base
    group = action.group
    with torch.no_grad():
        if strategy == "full":
            probs = []
            for element in range(group.order):
                p = base(input_ids=act(model, ids, element)).logits.float().softmax(-1)
                probs.append(action.transform_outputs(p, group.inverse_elements(torch.tensor(element)).item()))
            return torch.stack(probs).mean(0).log()
        orders = group.factor_orders
        total = torch.zeros(*ids.shape, model._logits_width())
        for i, order in enumerate(orders):
            others = torch.tensor([j != i for j in range(len(orders))])
            canon = action.canonicalise(ids, others)
            branch = 0
            for k in range(order):
                element = group.embed(i, k)
                p = base(input_ids=act(model, canon, element)).logits.float().softmax(-1)
                branch = branch + action.transform_outputs(p, group.inverse_elements(torch.tensor(element)).item())
            total = total + action.symmetrise_outputs(branch, others) / sum(orders)
        return total.log()


@pytest.mark.parametrize("strategy", ["full", "multi"])
def test_sparse_shared_aggregation_equals_the_dense_reference(tiny_base, word_tokenizer, small_factors, strategy):
    model = wrap(tiny_base, word_tokenizer, small_factors, strategy=strategy, canonicalization="representative")
    for prompt in PROMPTS:
        ids = word_tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=ids).logits, _dense_reference(model, ids, strategy),
                                       atol=1e-5, rtol=0)


STRATEGY_OPTIONS = [dict(strategy="full"), dict(strategy="multi", canonicalization="representative"),
                    dict(strategy="multi", canonicalization="neutral"), dict(strategy="canonical"),
                    dict(strategy="auto")]


@pytest.mark.parametrize("options", STRATEGY_OPTIONS)
@pytest.mark.parametrize("aggregation", ["mean_prob", "mean_logits", "max_prob"])
def test_prefix_forking_and_sharing_change_nothing(tiny_base, word_tokenizer, small_factors, options, aggregation):
    """Forking at the first differing token, sharing rows and capping rows give the logits of every copy run
    separately, on a left-padded batch."""
    word_tokenizer.padding_side = "left"
    batch = word_tokenizer(["the doctor said that the Black woman", "he was a Muslim", "the nurse said that she"],
                           return_tensors="pt", padding=True)
    variants = [dict(), dict(share_common_prefix=False), dict(max_rows=3),
                dict(share_identical_copies=False, share_common_prefix=False)]
    outs = []
    for extra in variants:
        model = wrap(tiny_base, word_tokenizer, small_factors, aggregation=aggregation, **options, **extra)
        with torch.no_grad():
            outs.append(model(**batch).logits)
    mask = batch["attention_mask"].bool()
    for other in outs[1:]:
        torch.testing.assert_close(outs[0][mask], other[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", STRATEGY_OPTIONS)
def test_prefix_forking_keeps_generations(tiny_base, word_tokenizer, small_factors, options):
    ids = word_tokenizer("the doctor said that the Black woman", return_tensors="pt")["input_ids"]
    outs = []
    for extra in (dict(), dict(share_common_prefix=False)):
        model = wrap(tiny_base, word_tokenizer, small_factors, **options, **extra)
        outs.append(model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                   do_sample=False, num_beams=2, pad_token_id=0))
    assert torch.equal(outs[0], outs[1])


# ------------------------------------------------------------------------------------------------ demo targets
@pytest.fixture(scope="module")
def demo_report():
    from hf_equivariant.demo import load_demo_model

    base, tok = load_demo_model()
    prompts = [p for p in ef.load_prompts(ef.demo_prompts_path()) if not p.is_agreement]
    return ef.evaluate_fairness(base, tok, ["gender", "race", "religion"], prompts, ef.demo_targets_path(),
                                ["full", "multi", "multi-neutral", "auto"], progress=False)


def test_anchor_free_multi_is_close_to_the_orbit_average_on_the_demo(demo_report):
    neutral, paper = demo_report.strategies["multi-neutral"], demo_report.strategies["multi"]
    assert neutral["tv_to_orbit_average"]["mean"] <= 0.10 < paper["tv_to_orbit_average"]["mean"]
    assert abs(neutral["balance"]["gender"]["difference"]) <= 0.05 < abs(paper["balance"]["gender"]["difference"])
    assert neutral["anchor_sensitivity"]["max"] <= 0.02 < paper["anchor_sensitivity"]["max"]


def test_auto_is_the_orbit_average_on_one_attribute_prompts(demo_report):
    from hf_equivariant.demo import load_demo_model

    _, tok = load_demo_model()
    action = ef.resolve_factors(["gender", "race", "religion"], tok)
    for row in demo_report.strategies["auto"]["prompts"]:
        ids = tok(row["prompt"], return_tensors="pt")["input_ids"]
        present = sum(m is not None for m in ef.prompt_members(action, ids))
        if present <= 1:
            assert row["tv_to_orbit_average"] <= 1e-5, row["prompt"]
