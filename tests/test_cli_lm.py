"""The command line: help and exit codes, the offline demo, and wrap/check/generate on a local model."""

import json
import subprocess
import sys

import pytest

from hf_equivariant.cli import main


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_demo_shows_gap_for_base_and_none_for_wrapper(capsys):
    assert main(["demo", "--json", "--prompt", "The Black woman worked as a",
                 "--prompt", "The Muslim man worked as a"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["group_order"] == 18
    assert result["summary"]["full"]["copies_per_token"] == 18 and result["summary"]["multi"]["copies_per_token"] == 8
    for r in result["results"]:
        assert r["counterfactual_gap"]["base"] > 0.1
        for name in ("full", "multi", "multi-neutral", "auto"):
            assert r["counterfactual_gap"][name] < 1e-5
            assert abs(sum(r["occupations"][name].values()) - 1) < 1e-4
        assert r["tv_to_orbit_average"]["full"] < 1e-5 and r["tv_to_orbit_average"]["auto"] < 1e-5  # one attribute


def test_demo_unknown_group_is_an_error_on_stderr():
    proc = subprocess.run([sys.executable, "-m", "hf_equivariant", "demo", "--groups", "caste"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "unknown word set 'caste'" in proc.stderr and proc.stdout == ""


def test_wrap_reports_words_missing_from_the_vocabulary(tmp_path, tiny_base, word_tokenizer, capsys):
    tiny_base.save_pretrained(tmp_path / "base")
    word_tokenizer.save_pretrained(tmp_path / "base")
    out = tmp_path / "wrapped"
    assert main(["wrap", str(tmp_path / "base"), "--groups", "gender", "--strategy", "full", "--output", str(out),
                 "--light"]) == 1  # 'himself' is not in the small word-level vocabulary
    assert "himself" in capsys.readouterr().err


def test_wrap_check_generate_with_demo_model(tmp_path, capsys):
    from hf_equivariant.demo import demo_checkpoint_dir

    out = tmp_path / "wrapped"
    assert main(["wrap", str(demo_checkpoint_dir()), "--groups", "gender", "race", "--output", str(out)]) == 0
    assert main(["check", str(out), "--prompt", "The Black woman worked as a"]) == 0
    assert "max error" in capsys.readouterr().out
    assert main(["generate", str(out), "The White man worked as a", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("The White man worked as a")
    assert main(["check", str(tmp_path / "missing")]) == 2  # usage error: the path does not exist


@pytest.fixture(scope="module")
def demo_wrapper(tmp_path_factory):
    from hf_equivariant.demo import demo_checkpoint_dir

    out = tmp_path_factory.mktemp("cli") / "wrapped"
    assert main(["wrap", str(demo_checkpoint_dir()), "--groups", "gender", "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv, message", [
    (["check", "/no/such/folder"], "'/no/such/folder' does not exist"),
    (["generate", "./missing-model", "The man"], "'./missing-model' does not exist"),
    (["wrap", "/no/such/base", "--groups", "gender", "--output", "x"], "base model '/no/such/base' does not exist"),
])
def test_missing_paths_are_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_prompt_errors_exit_2_without_traceback(demo_wrapper, capsys):
    assert main(["generate", str(demo_wrapper), "   "]) == 2
    assert "the prompt is empty" in capsys.readouterr().err
    assert main(["check", str(demo_wrapper), "--prompt", ""]) == 2
    assert "the prompt is empty" in capsys.readouterr().err
    long_prompt = " ".join(["The woman worked as a nurse."] * 200)
    assert main(["generate", str(demo_wrapper), long_prompt, "--max-new-tokens", "5"]) == 2
    err = capsys.readouterr().err
    assert "more than the model's context of" in err and "--max-new-tokens is 5" in err


def test_wrap_refuses_a_non_causal_lm(tmp_path, capsys):
    from hf_equivariant.testing import tiny_clip_model

    tiny_clip_model(0).save_pretrained(tmp_path / "clip")
    assert main(["wrap", str(tmp_path / "clip"), "--groups", "gender", "--output", str(tmp_path / "w")]) == 2
    assert "holds a 'clip' model, not a causal language model" in capsys.readouterr().err


def test_greedy_generation_has_no_sampling_warning(demo_wrapper, capsys, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        assert main(["generate", str(demo_wrapper), "The man worked as a", "--max-new-tokens", "2"]) == 0
    captured = capsys.readouterr()
    assert "top_k" not in caplog.text + captured.err and "Loading weights" not in captured.err


def test_eval_clip_usage_errors(demo_wrapper, tmp_path, capsys):
    assert main(["eval-clip", "--model", str(demo_wrapper), "--data", "digits"]) == 2
    assert "not a CLIP-style dual encoder" in capsys.readouterr().err
    assert main(["eval-clip", "--model", str(demo_wrapper), "--data", "digits", "--output",
                 str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def test_bench_forwards_to_the_benchmarks(capsys):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "hf_equivariant", "bench", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "generation" in result.stdout + result.stderr
