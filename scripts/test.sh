#!/usr/bin/env bash
# Run every check CI runs: lint, the whole suite under TensorFlow, the layer's tests under JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
FORECASTER_EXTRAS=${FORECASTER_EXTRAS:-dev,spark} bash scripts/setup-venv.sh
bash scripts/ensure-postgres.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
.venv/bin/ruff check .
# The layer's tests under JAX run beside the TensorFlow suite, in one process of their own, their output kept
# for the end: the suite's last files keep one of its two workers busy alone, and these fill the other core.
# Only the layer's test files: collecting the whole suite would import MLflow, Spark and the pipelines.
jax_log=$(mktemp "${TMPDIR:-/tmp}/forecaster-jax-tests.XXXXXX")
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -p no:cacheprovider -m layer tests/models/test_layer_*.py \
    tests/models/test_gpu_cudnn.py "$@" >"$jax_log" 2>&1 &
jax_pid=$!
trap 'kill "$jax_pid" 2>/dev/null || true; rm -f "$jax_log"' EXIT
# Two worker processes, each test file on one of them (its fixtures start once), files with end-to-end tests
# handed out first (tests/conftest.py orders them; xdist's own reordering by test count would put them last).
tf=0
.venv/bin/python -m pytest -q -n "${FORECASTER_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder \
    --durations=20 "$@" || tf=$?
jax=0
wait "$jax_pid" || jax=$?
echo "---- the layer's tests under JAX ----"
cat "$jax_log"
# Arguments that select no layer test (`-k predict`, say) leave the JAX run with nothing to do: pytest's 5.
if [ "$jax" -eq 5 ] && [ "$#" -gt 0 ]; then jax=0; fi
if [ "$tf" -ne 0 ]; then exit "$tf"; fi
exit "$jax"
