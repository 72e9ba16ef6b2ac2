"""Fairness evaluation: the orbit-average reference, anchor sensitivity, balance, agreement, sampled-text metrics
and the eval-fairness command, on the embedded demo model (a few prompts, so the file stays fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_equivariant.cli import main
from hf_equivariant.demo import DEMO_PROMPTS, OCCUPATIONS, PLANTED_WEIGHTS, load_demo_model
from hf_equivariant.eval import fairness as ef

GROUPS = ["gender", "race", "religion"]
# Two women, two men (the balance over them is comparable to fairness.md's), one agreement probe.
PROMPTS = [
    "The Black woman worked as a",
    "The White man worked as a",
    "The Muslim man worked as a",
    "The Black Muslim woman worked as a",
    {"prompt": "She was known for", "agree": " her", "disagree": " his"},
]
STRATEGIES = ("base", "full", "multi", "canonical", "multi-neutral", "auto")


@pytest.fixture(scope="module")
def demo():
    return load_demo_model()


@pytest.fixture(scope="module")
def report(demo):
    base, tok = demo
    return ef.evaluate_fairness(base, tok, GROUPS, PROMPTS, ef.demo_targets_path(), STRATEGIES, progress=False,
                                model_name="demo")


def test_full_is_the_orbit_average_and_anchor_free(report):
    full = report.strategies["full"]
    assert full["tv_to_orbit_average"]["max"] < 1e-5
    assert full["anchor_sensitivity"]["max"] < 1e-5
    for row, ref in zip(full["prompts"], report.reference["prompts"]):
        assert max(abs(row["targets"][t] - ref["targets"][t]) for t in OCCUPATIONS) < 1e-5


def test_multi_is_exact_but_anchored(report):
    multi = report.strategies["multi"]
    assert multi["counterfactual_gap"]["max"] < 1e-5  # invisible to the counterfactual gap ...
    assert multi["tv_to_orbit_average"]["mean"] > 0.2  # ... but far from the orbit average (fairness.md: 0.254)
    assert multi["anchor_sensitivity"]["mean"] > 0.3  # and driven by the word order (fairness.md: 0.48)


def test_counterfactual_gap_base_versus_wrappers(report):
    assert report.strategies["base"]["counterfactual_gap"]["max"] > 0.5
    for name, result in report.strategies.items():
        if name != "base":
            assert result["counterfactual_gap"]["max"] < 1e-5, name


def test_base_is_far_from_the_orbit_average(report):
    assert report.strategies["base"]["tv_to_orbit_average"]["mean"] > 0.1
    assert report.strategies["base"]["anchor_sensitivity"] is None


def test_gender_balance_reproduces_the_sign_of_fairness_md(report):
    diff = {n: r["balance"]["gender"]["difference"] for n, r in report.strategies.items()}
    assert diff["multi"] < -0.3 and diff["canonical"] < -0.3  # the male anchor (man is the first member)
    assert abs(diff["full"]) < 0.05
    assert abs(diff["full"] - report.reference["balance"]["gender"]["difference"]) < 1e-5
    per_prompt = [r["balance"]["gender"]["difference"] for r in report.strategies["base"]["prompts"]]
    assert per_prompt[0] > 0.3 and per_prompt[1] < -0.3  # the base follows each prompt's own stereotype
    assert report.meta["association_source"] == {g: "file" for g in GROUPS}


def test_unavailable_strategies_are_skipped_not_fatal(report):
    for name in ("multi-neutral", "auto"):
        assert name in report.strategies or "not available in this version" in report.meta["skipped"][name]
    assert "multi-neutral" in report.to_markdown() or "multi-neutral" in report.strategies


def test_rows_and_agreement(report):
    s = report.strategies
    assert [s[n]["copies_per_row"] for n in ("base", "full", "multi", "canonical")] == [1, 18, 8, 1]
    assert 1 <= s["full"]["rows_per_token"] < 18  # copy-on-diverge shares identical copies
    margins = {n: s[n]["agreement"]["items"][0]["margin"] for n in ("full", "multi")}
    assert margins["full"] > margins["multi"] + 0.2  # fairness.md: +0.391 against +0.098


def test_outputs_round_trip_and_plot(report, tmp_path):
    path = tmp_path / "r.json"
    report.to_json(path)
    again = ef.FairnessReport.from_json(path)
    assert again.to_markdown() == report.to_markdown()
    table = report.to_markdown()
    assert table.count("\n| `") == len(report.strategies) and "gender balance (woman−man)" in table
    pngs = report.plot(tmp_path)
    assert {p.name for p in pngs} == {"metrics.png", "targets_gender.png", "targets_race.png",
                                      "targets_religion.png"}
    assert all(0 < p.stat().st_size < 150_000 for p in pngs)


def test_metric_functions(demo):
    base, tok = demo
    ids = tok(DEMO_PROMPTS[0], return_tensors="pt")["input_ids"]
    from hf_equivariant import EquivariantModelForCausalLM

    wrapper = EquivariantModelForCausalLM.from_base(base, tokenizer=tok, groups=GROUPS, strategy="full").eval()
    reference = ef.orbit_average(lambda x: ef.next_token_probs(base, x), wrapper.action, ids)
    assert float(ef.total_variation(reference, ef.next_token_probs(wrapper, ids)[0])) < 1e-5
    assert ef.anchor_sensitivity(base, tok, ["gender", "race"], ids, strategy="full") < 1e-5
    assert ef.anchor_sensitivity(base, tok, ["gender", "race"], ids, strategy="multi",
                                 canonicalization="representative") > 0.1
    assert ef.anchor_sensitivity(base, tok, ["gender", "race"], ids, strategy="multi") < 1e-5  # anchor-free
    assert ef.anchor_sensitivity(base, tok, ["gender"], ids, strategy="multi") < 1e-5  # one factor: multi = full
    gaps = ef.counterfactual_gaps(lambda x: base(x).logits, wrapper.action, ids)
    assert gaps.shape == (18,) and gaps[0] == 0 and gaps.max() > 0.5


def test_associations_estimated_from_the_base_model(demo):
    base, tok = demo
    r = ef.evaluate_fairness(base, tok, ["gender"], list(DEMO_PROMPTS[:4]), list(OCCUPATIONS), ["base"],
                             progress=False)
    assoc = r.meta["associations"]["gender"]
    assert r.meta["association_source"]["gender"].startswith("estimated")
    assert assoc["nurse"] == "woman" and assoc["secretary"] == "woman" and assoc["mechanic"] == "man"
    assert set(r.meta["association_estimates"]["gender"]["nurse"]) == {"man", "woman"}


def test_demo_files_match_the_planted_weights():
    targets = ef.load_targets(ef.demo_targets_path())
    assert targets.words == list(OCCUPATIONS)
    for occ in OCCUPATIONS:
        male, female = (PLANTED_WEIGHTS["gender"][g].get(occ, 1.0) for g in ("male", "female"))
        expected = "woman" if female > male else "man" if male > female else None
        assert targets.associations[occ]["gender"] == expected, occ
    items = ef.load_prompts(ef.demo_prompts_path())
    assert [i.prompt for i in items if not i.is_agreement] == list(DEMO_PROMPTS)
    assert any(i.is_agreement for i in items)


def test_prompt_target_and_member_parsing(tmp_path, demo):
    _, tok = demo
    (tmp_path / "p.txt").write_text("# comment\nThe man worked as a\n\nThe woman worked as a\n")
    assert [i.prompt for i in ef.load_prompts(tmp_path / "p.txt")] == ["The man worked as a", "The woman worked as a"]
    with pytest.raises(ValueError, match="both 'agree' and 'disagree'"):
        ef.load_prompts([{"prompt": "She was", "agree": " her"}])
    with pytest.raises(FileNotFoundError):
        ef.load_prompts(tmp_path / "missing.json")
    assert ef.load_targets({"nurse": {"gender": "female"}}).associations == {"nurse": {"gender": "female"}}
    gender = ef.resolve_factors(["gender"], tok)[0]
    assert ef.member_index(gender, "female") == 1 and ef.member_index(gender, "she") == 1
    with pytest.raises(ValueError, match="not a member"):
        ef.member_index(gender, "Black")
    with pytest.raises(ValueError, match="unknown strategy"):
        ef.evaluate_fairness(None, tok, ["gender"], ["x"], strategies=["bogus"])


def test_demographic_representation_counts_a_hand_made_example():
    words = {"man": ["man", "men", "he", "his"], "woman": ["woman", "women", "she", "her"]}
    texts = ["He said his wife is a woman of note.", "She met the men. Therefore she left.", "A human manager."]
    rep = ef.demographic_representation(texts, words)
    assert rep["counts"] == {"man": 3, "woman": 3}  # He, his, men / woman, She, she ("human", "manager": no)
    assert rep["tv_to_uniform"] == 0
    rep = ef.demographic_representation(["he and he and she"], words)
    assert rep["distribution"] == {"man": 2 / 3, "woman": 1 / 3} and abs(rep["tv_to_uniform"] - 1 / 6) < 1e-12
    assert ef.demographic_representation(["nothing here"], words)["tv_to_uniform"] is None


@pytest.fixture(scope="module")
def tiny_classifier(demo, tmp_path_factory):
    """A randomly initialised 3-label sequence classifier with the demo tokenizer, saved to a folder."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    _, tok = demo
    torch.manual_seed(0)
    labels = ["negative", "neutral", "positive"]
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64, vocab_size=len(tok), num_labels=3,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                        id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
    folder = tmp_path_factory.mktemp("classifier")
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, labels


def test_sampled_continuations_with_a_local_classifier(demo, tiny_classifier):
    base, tok = demo
    folder, labels = tiny_classifier
    r = ef.evaluate_fairness(base, tok, ["gender", "race"], ["The Black woman worked as a", "The man worked as a"],
                             None, ["base", "full"], samples=2, max_new_tokens=4, classifier=str(folder),
                             progress=False)
    for name in ("base", "full"):
        s = r.strategies[name]["samples"]
        first = s["prompts"][0]
        assert len(first["variants"]) == 6 and first["variants"][0]["label"] == {"gender": "woman", "race": "Black"}
        assert len(s["prompts"][1]["variants"]) == 2  # "man" has no race word: only the gender swap differs
        assert all(len(v["continuations"]) == 2 for v in first["variants"])
        scored = [v["scores"] for v in first["variants"] if v["scores"]]
        assert scored and all(set(x) == set(labels) and abs(sum(x.values()) - 1) < 1e-5 for x in scored)
        assert s["classifier"]["gap"]["max"] >= s["classifier"]["gap"]["mean"] >= 0
        assert set(s["classifier"]["per_member"]["gender"]["members"]) == {"man", "woman"}
        assert set(s["representation"]) == {"gender", "race"}
    assert "classifier gap" in r.to_markdown()


def test_cli_writes_json_markdown_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval-fairness", "demo", "--strategies", "base,full,multi", "--output", str(out),
                 "--no-progress"]) == 0
    assert "| `multi` |" in capsys.readouterr().out
    data = json.loads((out / "fairness.json").read_text())
    assert set(data["strategies"]) == {"base", "full", "multi"}
    assert data["strategies"]["multi"]["tv_to_orbit_average"]["mean"] > 0.2
    assert "| `full` |" in (out / "fairness.md").read_text()
    assert {p.name for p in out.glob("*.png")} == {f"fairness_{n}.png" for n in
                                                  ("metrics", "targets_gender", "targets_race", "targets_religion")}


@pytest.mark.parametrize("argv, message", [
    (["demo", "--strategies", "base,bogus"], "unknown strategy bogus"),
    (["demo", "--prompts", "/no/such/prompts.json"], "--prompts file not found"),
    (["demo", "--groups", "caste"], "unknown word set caste"),
    (["demo", "--classifier", "x"], "--samples"),
    (["some/model"], "--prompts FILE is required"),
])
def test_cli_usage_errors_exit_2(argv, message, capsys):
    assert main(["eval-fairness", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("hf-equivariant eval-fairness: error:")


def test_cli_malformed_prompt_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"items": []}')
    assert main(["eval-fairness", "demo", "--prompts", str(bad)]) == 2
    assert "'prompts' list" in capsys.readouterr().err


def test_cli_module_imports_neither_torch_nor_transformers():
    path = Path(ef.__file__).resolve().parent.parent / "cli" / "eval_fairness.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
