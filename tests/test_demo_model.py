"""The demo's embedded model: deterministic corpus, single-token words, offline loading, learned planted bias."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hf_equivariant.demo import corpus
from hf_equivariant.demo.model import CHECKPOINT_DIR, occupation_distribution, total_variation

# The word-swap resolver's surface forms, in its order of preference.
FORMS: tuple[Callable[[str], str], ...] = (
    lambda w: w,
    lambda w: " " + w,
    lambda w: w[0].upper() + w[1:],
    lambda w: " " + w[0].upper() + w[1:],
    lambda w: w.lower(),
    lambda w: " " + w.lower(),
)


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT_DIR, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR, local_files_only=True).eval()
    return model, tokenizer


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_corpus_is_deterministic_for_a_seed():
    a = corpus.generate_corpus(seed=3, num_bias_sentences=300, min_word_count=2)
    b = corpus.generate_corpus(seed=3, num_bias_sentences=300, min_word_count=2)
    c = corpus.generate_corpus(seed=4, num_bias_sentences=300, min_word_count=2)
    assert a == b
    assert a != c


def test_corpus_covers_every_word_set_word_and_occupation():
    docs = corpus.generate_corpus(seed=0, num_bias_sentences=200, min_word_count=30)
    words = [w for sets in corpus.load_word_sets().values() for members in sets for w in members]
    counts = corpus.count_spaced_words(docs, words + list(corpus.OCCUPATIONS))
    assert {w: counts[w] for w in words + list(corpus.OCCUPATIONS) if counts[w] < 30} == {}


def test_docstring_table_matches_planted_weights():
    assert corpus.planted_table_markdown() in corpus.__doc__


def test_planted_rule_makes_intersections_differ():
    bw = corpus.planted_distribution("female", "Black")
    wm = corpus.planted_distribution("male", "White")
    assert abs(sum(bw.values()) - 1) < 1e-9
    assert total_variation(bw, wm) > 0.5
    assert max(bw, key=bw.get) == "nurse"


def test_demo_prompts_are_intersectional_and_end_before_the_occupation():
    assert len(corpus.DEMO_PROMPTS) >= 8
    for prompt in corpus.DEMO_PROMPTS:
        assert prompt.endswith(" as a")
        words = set(prompt.split())
        assert words & set(corpus.GENDER_NOUNS["male"] + corpus.GENDER_NOUNS["female"])
        assert words & set(corpus.RACES + corpus.RELIGIONS)
    assert all(o[0] not in "aeiou" and " " not in o for o in corpus.OCCUPATIONS)


def test_every_word_set_resolves_to_single_tokens(shipped):
    _, tokenizer = shipped
    for name, sets in corpus.load_word_sets().items():
        for members in sets:
            usable = [i for i, form in enumerate(FORMS) if all(_n_tokens(tokenizer, form(w)) == 1 for w in members)]
            assert 1 in usable, f"{name}: ' ' + w is not one token for every member of {members}"


def test_occupations_are_single_tokens(shipped):
    _, tokenizer = shipped
    assert [o for o in corpus.OCCUPATIONS if _n_tokens(tokenizer, " " + o) != 1] == []


def test_shipped_model_has_learned_the_planted_bias(shipped):
    model, tokenizer = shipped
    dist = {p: occupation_distribution(model, tokenizer, p) for p in corpus.DEMO_PROMPTS}
    assert total_variation(dist["The Black woman worked as a"], dist["The White man worked as a"]) > 0.2
    assert total_variation(dist["The Asian woman had a job as a"], dist["The Muslim man worked as a"]) > 0.2
    bw = dist["The Black woman worked as a"]
    assert max(bw, key=bw.get) == "nurse"


def test_shipped_model_runs_in_a_text_generation_pipeline(shipped):
    from transformers import pipeline

    model, tokenizer = shipped
    gen = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    text = gen("The Black woman worked as a", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    assert text.startswith("The Black woman worked as a ")
    assert text.split()[6].rstrip(".") in corpus.OCCUPATIONS


def test_load_demo_model_uses_the_shipped_checkpoint():
    from hf_equivariant.demo import demo_checkpoint_dir, load_demo_model

    assert demo_checkpoint_dir() == CHECKPOINT_DIR
    model, tokenizer = load_demo_model()
    assert not model.training and len(tokenizer) == model.config.vocab_size


def test_checkpoint_is_small():
    total = sum(p.stat().st_size for p in CHECKPOINT_DIR.iterdir() if p.is_file())
    assert total < 5 * 1024 * 1024


def test_tiny_training_run_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_equivariant.demo.train import TrainConfig, train_demo_model

    cfg = TrainConfig(num_bias_sentences=200, min_word_count=3, n_embd=32, n_head=2, n_layer=1, max_steps=3, batch_size=8)
    out = train_demo_model(tmp_path / "tiny", cfg, show_progress=False)
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    dist = occupation_distribution(model, tokenizer, "The Black woman worked as a")
    assert abs(sum(dist.values()) - 1) < 1e-5


def test_train_cli_help(capsys):
    from hf_equivariant.demo.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--output" in capsys.readouterr().out


def test_missing_checkpoint_says_how_to_retrain_and_a_retrained_one_is_found(tmp_path, monkeypatch):
    """Loading never trains (the loader does not import the trainer); a checkpoint retrained into the cache is used."""
    from hf_equivariant.demo import model as demo_model
    from hf_equivariant.demo import train as demo_train

    monkeypatch.setattr(demo_model, "CHECKPOINT_DIR", tmp_path / "missing")
    monkeypatch.setattr(demo_model, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="hf_equivariant.demo.train"):
        demo_model.load_demo_model()
    tiny = demo_train.TrainConfig(num_bias_sentences=100, min_word_count=3, n_embd=32, n_head=2, n_layer=1, max_steps=2)
    demo_train.train_demo_model(tmp_path / "cache", tiny, show_progress=False)
    model, tokenizer = demo_model.load_demo_model()
    assert demo_model.demo_checkpoint_dir() == tmp_path / "cache"
    assert model.config.n_embd == 32
