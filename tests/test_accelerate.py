"""``accelerate launch -m hf_equivariant eval-clip / eval-fairness`` on 2 CPU processes: the examples are split between
the processes, the main process writes the one result, and it equals a single-process run."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

import hf_equivariant as he
from hf_equivariant import cli
from hf_equivariant.testing import tiny_clip_model, tiny_image_processor, word_level_tokenizer

pytest.importorskip("accelerate")
ROOT = pathlib.Path(__file__).resolve().parents[1]
WORDS = "a photo of the digit zero one two three four five six seven eight nine handwritten number an image .".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_HOME": str(tmp_path / "hf_home")}
    # --multi_gpu starts torchrun-style processes (gloo on a machine without GPUs); --cpu alone runs one process.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "hf_equivariant", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


def test_eval_clip_shards_across_two_processes(tmp_path, monkeypatch, capsys):
    tokenizer = word_level_tokenizer(WORDS)
    model = he.EquivariantCLIPModel.from_base(tiny_clip_model(0, vocab_size=len(WORDS) + 8, image_size=16,
                                                              patch_size=4)).eval()
    model.save_pretrained(tmp_path / "clip", tokenizer=tokenizer, image_processor=tiny_image_processor(16))
    args = ["eval-clip", "--model", str(tmp_path / "clip"), "--data", "digits", "--limit", "24", "--batch-size", "4",
            "--methods", "base,multi", "--conditions", "none,rot90+flip", "--no-progress"]
    result = _launch([*args, "--output", str(tmp_path / "two.json"), "--dtype", "float32"], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("top-1 accuracy") == 1  # one table, from the main process
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["meta"]["processes"] == 2 and two["meta"]["dtype"] == "float32"
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("eval_clip",))
    assert cli.main([*args, "--output", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["meta"]["processes"] == 1
    keys = ("method", "condition", "top1", "top5", "encodes_per_image")
    assert [{k: r[k] for k in keys} for r in two["rows"]] == [{k: r[k] for k in keys} for r in one["rows"]]


def test_eval_fairness_shards_across_two_processes(tmp_path):
    args = ["eval-fairness", "demo", "--groups", "gender", "race", "--strategies", "base,full", "--no-plots",
            "--no-progress"]
    result = _launch([*args, "--output", str(tmp_path / "two")], tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("rows/token") == 1 and sorted(os.listdir(tmp_path / "two")) == ["fairness.json",
                                                                                            "fairness.md"]
    two = json.loads((tmp_path / "two" / "fairness.json").read_text())
    assert cli.main([*args, "--output", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "fairness.json").read_text())
    for name in ("base", "full"):
        a, b = two["strategies"][name], one["strategies"][name]
        assert [p["prompt"] for p in a["prompts"]] == [p["prompt"] for p in b["prompts"]]
        assert a["counterfactual_gap"] == pytest.approx(b["counterfactual_gap"], abs=1e-6)
        assert a["tv_to_orbit_average"] == pytest.approx(b["tv_to_orbit_average"], abs=1e-6)
