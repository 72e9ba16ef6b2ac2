"""SCAN / SCAN-II generated from the grammar: counts, interpretation, add-primitive splits, the word-swap group and
the tokenizers."""

from __future__ import annotations

import pytest
import torch

from hf_equivariant.datasets import scan as S

# ----------------------------------------------------------------------------------------------- counts


def grammar_counts(n_directions: int, n_verbs: int = 4) -> dict[str, int]:
    """Sizes of V, S and C derived from the grammar (docs/scan.md), independently of the generator."""
    heads = n_verbs + 1  # the verbs and "turn"
    n_v = n_verbs + 3 * heads * n_directions  # U | X D | X opposite D | X around D
    n_s = 3 * n_v  # V | V twice | V thrice
    return {"V": n_v, "S": n_s, "C": n_s + 2 * n_s ** 2}  # S | S and S | S after S


def commands_with(n_directions: int, phrases_with_primitive: int) -> int:
    """Commands containing a primitive that occurs in ``phrases_with_primitive`` verb phrases: all commands minus
    those built only from the other verb phrases (a primitive never spans two verb phrases)."""
    total = grammar_counts(n_directions)
    clean_s = total["S"] - 3 * phrases_with_primitive
    return total["C"] - (clean_s + 2 * clean_s ** 2)


@pytest.mark.parametrize("version,n_dirs,expected", [("scan", 2, 20_910), ("scan2", 4, 73_920)])
def test_command_counts_match_the_grammar(version, n_dirs, expected):
    commands = S.enumerate_commands(version)
    assert grammar_counts(n_dirs)["C"] == expected  # the published counts
    assert len(commands) == len(set(commands)) == expected


@pytest.mark.parametrize("version,n_dirs", [("scan", 2), ("scan2", 4)])
def test_primitive_counts_match_the_grammar(version, n_dirs):
    commands = S.enumerate_commands(version)
    # "jump" heads 1 + 3 * n_dirs verb phrases (jump, jump D, jump opposite D, jump around D);
    # "turn left" is one verb phrase ("turn opposite left" and "turn around left" do not contain it).
    expected = {"jump": commands_with(n_dirs, 1 + 3 * n_dirs), "turn left": commands_with(n_dirs, 1),
                "turn up": commands_with(n_dirs, 1) if n_dirs == 4 else 0}
    for primitive, count in expected.items():
        assert sum(S.contains_primitive(c, primitive) for c in commands) == count, primitive
    if version == "scan2":
        assert expected["turn left"] == expected["turn up"] == 2_289  # docs/fairness.md §7
    else:
        assert (expected["jump"] - 1, expected["turn left"] - 1) == (7_706, 1_208)  # Lake & Baroni's test sizes


def test_scan_is_a_subset_of_scan2_and_order_is_deterministic():
    assert set(S.enumerate_commands("scan")) <= set(S.enumerate_commands("scan2"))
    assert S.scan_dataset("scan2") == S.scan_dataset("scan2")
    assert S.scan_dataset("scan")[:3] == [("walk", "WALK"), ("walk twice", "WALK WALK"),
                                          ("walk thrice", "WALK WALK WALK")]
    with pytest.raises(ValueError, match="unknown SCAN version"):
        S.scan_dataset("scan3")


# ----------------------------------------------------------------------------------------------- interpretation


@pytest.mark.parametrize("command,actions", [
    ("jump", "JUMP"),
    ("turn left twice", "TURN_LEFT TURN_LEFT"),
    ("walk left", "TURN_LEFT WALK"),
    ("run opposite right", "TURN_RIGHT TURN_RIGHT RUN"),
    ("turn opposite up", "TURN_UP TURN_UP"),
    ("look around down", "TURN_DOWN LOOK TURN_DOWN LOOK TURN_DOWN LOOK TURN_DOWN LOOK"),
    ("turn around left", "TURN_LEFT TURN_LEFT TURN_LEFT TURN_LEFT"),
    ("jump thrice and walk", "JUMP JUMP JUMP WALK"),
    ("jump opposite left after walk around left",
     "TURN_LEFT WALK TURN_LEFT WALK TURN_LEFT WALK TURN_LEFT WALK TURN_LEFT TURN_LEFT JUMP"),
])
def test_interpretation_of_hand_checked_commands(command, actions):
    assert S.interpret(command) == actions


def test_dataset_pairs_are_the_interpretation_and_use_only_the_vocabularies():
    for version in S.VERSIONS:
        words, acts = set(S.input_words(version)), set(S.output_words(version))
        for command, actions in S.scan_dataset(version):
            assert set(command.split()) <= words and set(actions.split()) <= acts
        assert max(len(a.split()) for _, a in S.scan_dataset(version)) == 48  # (4 turns + 4 verbs) x 3 x 2


@pytest.mark.parametrize("bad", ["", "turn", "jump jump", "walk and", "walk left and run after jump",
                                 "twice", "walk around", "fly"])
def test_interpret_rejects_non_commands(bad):
    with pytest.raises(ValueError):
        S.interpret(bad)


# ----------------------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("name", list(S.SPLIT_PRIMITIVES))
def test_add_primitive_split(name):
    split = S.add_primitive_split(name, "scan2", validation_fraction=0.05, random_test_fraction=0.05)
    prims = S.SPLIT_PRIMITIVES[name]
    has_prim = lambda c: any(S.contains_primitive(c, p) for p in prims)  # noqa: E731
    # no held-out primitive in training except the isolated primitive itself
    assert {c for c, _ in split.train if has_prim(c)} == set(prims)
    assert not any(has_prim(c) for c, _ in split.validation + split.random_test)
    assert all(has_prim(c) and c not in prims for c, _ in split.test)
    # the parts partition all commands (the isolated primitives are trained on, not tested)
    parts = [{c for c, _ in getattr(split, k)} for k in ("train", "validation", "test", "random_test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 73_920
    assert len(split.test) == sum(map(has_prim, S.enumerate_commands("scan2"))) - len(prims)
    for p in prims:
        assert split.train.count((p, S.interpret(p))) == split.primitive_copies
    n_clean = len(split.train) - len(prims) * split.primitive_copies
    assert split.primitive_copies == int(0.06 * n_clean)


def test_split_sizes_and_determinism():
    union = S.add_primitive_split("turn_up_jump_turn_left", validation_fraction=0.05, random_test_fraction=0.05)
    # 73,920 - 30,555 commands with a primitive = 43,365 clean; 5% + 5% held out; 3 primitives removed from test
    assert union.sizes() == {"train": 39_029 + 3 * 2_341, "validation": 2_168, "test": 30_552,
                             "random_test": 2_168, "primitive_copies": 2_341}
    assert len(union.test_subset("jump")) == 26_948 and len(union.test_subset("turn left")) == 2_288
    again = S.add_primitive_split("turn_up_jump_turn_left", validation_fraction=0.05, random_test_fraction=0.05)
    other = S.add_primitive_split("turn_up_jump_turn_left", validation_fraction=0.05, random_test_fraction=0.05,
                                  seed=1)
    assert again == union and other.validation != union.validation and other.test == union.test
    once = S.add_primitive_split("jump", "scan", validation_fraction=0.0, primitive_fraction=0.0)
    assert once.primitive_copies == 1 and len(once.test) == 7_706 and len(once.train) == 20_910 - 7_707 + 1
    with pytest.raises(ValueError, match="not commands"):
        S.add_primitive_split(["turn up"], "scan")
    with pytest.raises(ValueError, match="unknown split"):
        S.add_primitive_split("walk")


# ----------------------------------------------------------------------------------------------- group


def test_group_elements_and_swap():
    elements = S.group_elements()
    assert len(elements) == 8 and elements[0] == {"verb": 0, "direction_lr": 0, "direction_ud": 0}
    assert S.apply_swap("jump left and turn up", "TURN_LEFT JUMP TURN_UP", {"verb": 1, "direction_ud": 1}) == \
        ("run left and turn down", "TURN_LEFT RUN TURN_DOWN")
    assert S.apply_swap("walk right", "TURN_RIGHT WALK", (0, 1, 0)) == ("walk left", "TURN_LEFT WALK")
    for g in elements:  # every element is an involution
        assert S.apply_swap(*S.apply_swap("jump up after run left", "TURN_LEFT RUN TURN_UP JUMP", g), g) == \
            ("jump up after run left", "TURN_LEFT RUN TURN_UP JUMP")
    with pytest.raises(ValueError, match="unknown factor"):
        S.apply_swap("walk", "WALK", {"colour": 1})


def test_order_three_factor_uses_forward_powers():
    factors = {"verb": {"input": [["walk", "run", "jump"]], "output": [["WALK", "RUN", "JUMP"]]}}
    assert [g["verb"] for g in S.group_elements(factors)] == [0, 1, 2]
    assert S.apply_swap("walk and jump", "WALK JUMP", {"verb": 1}, factors) == ("run and walk", "RUN WALK")
    assert S.apply_swap("walk and jump", "WALK JUMP", {"verb": 2}, factors) == ("jump and run", "JUMP RUN")
    with pytest.raises(ValueError, match="same length"):
        S.factor_order({"input": [["a", "b"]], "output": [["A", "B", "C"]]})
    overlapping = {"a": {"input": [["walk", "run"]], "output": [["WALK", "RUN"]]},
                   "b": {"input": [["run", "jump"]], "output": [["RUN", "JUMP"]]}}
    with pytest.raises(ValueError, match="disjoint"):
        S.apply_swap("run", "RUN", {"a": 1, "b": 0}, overlapping)
    assert S.make_swap({"verb": 1})("jump", "JUMP") == ("run", "RUN")


@pytest.mark.parametrize("version", S.VERSIONS)
def test_dataset_is_closed_under_the_group(version):
    """[[g·c]] = g·[[c]] for every command c and every g in verb x lr x ud: the property that lets an equivariant
    model transfer what it learned about "run" to "jump" (and "turn right"/"turn down" to "turn left"/"turn up")."""
    data = dict(S.scan_dataset(version))
    for g in S.group_elements():
        swap = S.make_swap(g)
        for command, actions in data.items():
            moved_command, moved_actions = swap(command, actions)
            assert data.get(moved_command) == moved_actions, (g, command)


# ----------------------------------------------------------------------------------------------- tokenizers


def test_tokenizer_ids_round_trip_and_save_load(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = S.build_tokenizer("scan2")
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 4 + 15 + 8
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    enc = tok("jump around left twice")["input_ids"]
    assert len(enc) == 5 and enc[-1] == tok.eos_token_id
    assert tok.decode(tok("TURN_LEFT JUMP")["input_ids"], skip_special_tokens=True) == "TURN_LEFT JUMP"
    assert tok("fly")["input_ids"][0] == tok.unk_token_id
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab()
    v = tok.get_vocab()
    assert loaded(["walk", "jump twice"], padding=True)["input_ids"] == [[v["walk"], 2, 0], [v["jump"], v["twice"], 2]]


def test_separate_vocabularies_and_token_cycles():
    shared = S.build_tokenizer("scan2")
    inp, out = S.build_tokenizer("scan2", "input"), S.build_tokenizer("scan2", "output")
    assert len(inp) == 4 + 15 and len(out) == 4 + 8
    vocab = shared.get_vocab()
    cycles = S.factor_token_cycles(shared)
    assert cycles["verb"] == {"input": [[vocab["run"], vocab["jump"]]], "output": [[vocab["RUN"], vocab["JUMP"]]]}
    split = S.factor_token_cycles(inp, output_tokenizer=out)
    assert split["direction_ud"]["output"] == [[out.get_vocab()["TURN_DOWN"], out.get_vocab()["TURN_UP"]]]
    # SCAN has no up/down: that factor acts trivially
    assert S.factor_token_cycles(S.build_tokenizer("scan"))["direction_ud"] == {"input": [], "output": []}
    with pytest.raises(ValueError, match="side"):
        S.build_tokenizer("scan2", "both")


# ----------------------------------------------------------------------------------------------- experiment harness


@pytest.fixture(scope="module")
def experiment():
    """examples/scan_experiment.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "scan_experiment.py"
    spec = importlib.util.spec_from_file_location("scan_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_strategies(experiment, monkeypatch):
    import hf_equivariant

    assert {s: experiment.copies_per_example(s) for s in experiment.STRATEGY_NAMES} == {
        "none": 1, "full": 8, "multi": 6, "multi_neutral": 6, "canonical": 1, "full_logits": 8, "multi_logits": 6}
    tok = S.build_tokenizer("scan2")
    model = object()
    assert experiment.make_wrap("none", tok)(model) is model
    args = experiment.parse_args(["--d-model", "16", "--layers", "1", "--heads", "2"])
    for strategy in ("full", "multi", "multi_neutral", "canonical"):
        wrapped = experiment.make_wrap(strategy, tok)(experiment.build_model(len(tok), tok, args, seed=0))
        assert isinstance(wrapped, hf_equivariant.EquivariantModelForSeq2SeqLM)
        assert wrapped.copies_per_row == experiment.copies_per_example(strategy)
    assert wrapped.config.canonicalization == "representative"
    with pytest.raises(ValueError, match="unknown strategy"):
        experiment.make_wrap("auto", tok)


def test_experiment_test_sample_weights_estimate_the_full_sets(experiment):
    """The seeded test sample's inclusion weights recover exact-match rates of the whole test sets."""
    split = S.add_primitive_split("turn_up_jump_turn_left", random_test_fraction=0.05)
    sample, weights = experiment.sample_test(split, 1000, 500, seed=0)
    assert len(sample.random_test) == 500 and len(sample.test) < 3000 and set(sample.test) <= set(split.test)
    assert experiment.sample_test(split, None, None, 0) == (split, None)

    def rate(examples, w=None):  # a "model" right on commands with "twice" xor "left"
        flags = [("twice" in c) != ("left" in c) for c, _ in examples]
        return experiment.accuracy(flags, None if w is None else [w[c] for c, _ in examples])

    assert abs(rate(sample.test, weights) - rate(split.test)) < 2.0
    for primitive in ("jump", "turn left", "turn up"):
        assert abs(rate(sample.test_subset(primitive), weights) - rate(split.test_subset(primitive))) < 3.0


def test_experiment_train_and_evaluate_tiny(experiment):
    """A few training steps and the exact-match evaluation on a tiny model (plumbing, not accuracy)."""
    args = experiment.parse_args(["--d-model", "16", "--layers", "1", "--heads", "2"])
    tok = S.build_tokenizer("scan2")
    split = experiment.subsample(S.add_primitive_split("turn_up_jump_turn_left", random_test_fraction=0.01), 24, 0)
    model = experiment.build_model(len(tok), tok, args, seed=0)
    log = experiment.train(model, tok, split, steps=4, lr=1e-3, batch_size=8, eval_every=2, seed=0, warmup=1,
                           eval_start=True, desc="test", eval_batch_size=16)
    assert [h["step"] for h in log["history"]] == [0, 2, 4] and log["best_step"] in (0, 2, 4)
    scores = experiment.evaluate_test(model, tok, split, 16, "test")["exact_match"]
    assert set(scores) == {"jump", "turn_left", "turn_up", "turn_up_jump_turn_left", "random"}
    assert all(0.0 <= v <= 100.0 for v in scores.values())
    # a perfect "model" is scored 100%: exact_matches compares against the targets cut at </s>
    examples = split.test[:5]

    class Oracle(torch.nn.Module):
        def generate(self, input_ids, attention_mask, generation_config):
            rows = [[tok.bos_token_id] + tok(S.interpret(c))["input_ids"] for c in
                    tok.batch_decode(input_ids, skip_special_tokens=True)]
            width = max(map(len, rows))
            return torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])

    assert experiment.exact_matches(Oracle(), tok, examples, 2) == [True] * 5
