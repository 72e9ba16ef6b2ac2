"""lm-evaluation-harness on a saved wrapper, offline: ``lm_eval --model hf --model_args pretrained=DIR,
trust_remote_code=True`` with the packaged counterfactual task gives every demographic variant of a prompt the same
log-likelihoods for the wrapper, and different ones for the biased base model."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections import defaultdict

import pytest

from hf_equivariant.eval.lm_eval_task import TASK_NAME, build_documents, task_dir

pytest.importorskip("lm_eval")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_shipped_documents_are_current():
    shipped = json.loads((task_dir() / "counterfactual_occupations.json").read_text())["documents"]
    assert shipped == build_documents()
    assert (task_dir() / f"{TASK_NAME}.yaml").is_file() and (task_dir() / "utils.py").is_file()


def _loglikelihoods(samples: list[dict]) -> dict[int, list[list[float]]]:
    """orbit -> per document, the log-likelihood of each occupation."""
    by_orbit: dict[int, list[list[float]]] = defaultdict(list)
    for sample in samples:
        by_orbit[sample["doc"]["orbit"]].append([float(r[0]) for r in sample["filtered_resps"]])
    return by_orbit


def _spread(by_orbit: dict[int, list[list[float]]]) -> float:
    """Largest difference of one occupation's log-likelihood between variants of one prompt."""
    return max(max(abs(a - b) for a, b in zip(doc, docs[0])) for docs in by_orbit.values() for doc in docs)


def test_lm_eval_cli_on_a_saved_wrapper_offline(tmp_path):
    import hf_equivariant as he
    from hf_equivariant.demo import demo_checkpoint_dir, load_demo_model

    base, tokenizer = load_demo_model()
    wrapper = he.EquivariantModelForCausalLM.from_base(base, tokenizer=tokenizer,
                                                       groups=["gender", "race", "religion"])
    wrapper.save_pretrained(tmp_path / "wrapper")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={tmp_path / 'wrapper'},trust_remote_code=True", "--include_path", str(task_dir()),
               "--tasks", TASK_NAME, "--device", "cpu", "--batch_size", "32", "--output_path", str(tmp_path / "out"),
               "--log_samples"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    files = list((tmp_path / "out").rglob(f"samples_{TASK_NAME}_*.jsonl"))
    assert len(files) == 1, list((tmp_path / "out").rglob("*"))
    samples = [json.loads(line) for line in files[0].read_text().splitlines()]
    wrapper_ll = _loglikelihoods(samples)
    assert len(samples) == 36 and sorted(wrapper_ll) == [0, 1] and all(len(d) == 18 for d in wrapper_ll.values())
    assert _spread(wrapper_ll) < 1e-4  # identical across the 18 demographic variants

    # The base model, through the same harness (Python API, in this process): the variants differ.
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = simple_evaluate(model="hf", model_args=f"pretrained={demo_checkpoint_dir()}", tasks=[TASK_NAME],
                          task_manager=TaskManager(include_path=str(task_dir())), device="cpu", batch_size=32,
                          log_samples=True)
    base_ll = _loglikelihoods(out["samples"][TASK_NAME])
    assert _spread(base_ll) > 0.5
    stereotype = {"wrapper": json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text()),
                  "base": out["results"][TASK_NAME]["acc,none"]}
    assert stereotype["base"] > stereotype["wrapper"]["results"][TASK_NAME]["acc,none"]
