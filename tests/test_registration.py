"""The lazy package face: ``import hf_equivariant`` imports neither torch nor transformers, yet the Auto classes know
every wrapper once transformers is used, whichever module was imported first; ``hf-equivariant --help`` is fast."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECK = ("from transformers.models.auto.configuration_auto import CONFIG_MAPPING as M\n"
         "missing = [t for t in ('hf_equivariant_causal_lm', 'hf_equivariant_clip', 'hf_equivariant_siglip',"
         " 'hf_equivariant_multi_input') if t not in M._extra_content]\n"
         "assert not missing, missing\nprint('OK')\n")


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error::RuntimeWarning"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_is_light():
    result = _run("import sys, hf_equivariant\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules"
                  "\nprint(hf_equivariant.__version__, 'WordSwap' in dir(hf_equivariant))")
    assert result.returncode == 0 and "True" in result.stdout, result.stderr


@pytest.mark.parametrize("first", [
    "import hf_equivariant\nimport transformers",                # the package, then transformers
    "import transformers\nimport hf_equivariant",                # transformers first
    "import hf_equivariant.demo.model",                          # a module that imports transformers itself
    "from hf_equivariant.models.clip import EquivariantCLIPModel",  # one family only
    "import hf_equivariant as he\nhe.WordSwap",                  # a lazy attribute
])
def test_every_wrapper_is_registered_whatever_is_imported_first(first):
    result = _run(f"{first}\nimport transformers\n{CHECK}")
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr


def test_cli_help_is_fast_and_imports_no_torch():
    code = ("import sys, time\nstart = time.perf_counter()\nfrom hf_equivariant.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "print('SECONDS', time.perf_counter() - start)")
    start = time.perf_counter()
    result = _run(code)
    wall = time.perf_counter() - start
    assert result.returncode == 0 and "bench" in result.stdout and "eval-fairness" in result.stdout, result.stderr
    seconds = float(result.stdout.split("SECONDS")[1])
    assert seconds < 0.5 and wall < 5, (seconds, wall)
