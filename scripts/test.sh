#!/usr/bin/env bash
# Run every check CI runs: lint, the whole suite under TensorFlow, the layer's tests under JAX and torch.
set -euo pipefail
cd "$(dirname "$0")/.."
FORECASTER_EXTRAS=${FORECASTER_EXTRAS:-dev,spark,torch} bash scripts/setup-venv.sh
bash scripts/ensure-postgres.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
.venv/bin/ruff check .
# The layer's tests under JAX run beside the TensorFlow suite, in one process of their own, their output kept
# for the end: the suite's last files keep one of its two workers busy alone, and these fill the other core.
# Only the layer's test files: collecting the whole suite would import MLflow, Spark and the pipelines.
jax_log=$(mktemp "${TMPDIR:-/tmp}/forecaster-jax-tests.XXXXXX")
torch_log=$(mktemp "${TMPDIR:-/tmp}/forecaster-torch-tests.XXXXXX")
# Then, on the same core, the layer's torch loop (its own tests, parity and the input sweep; the extras and
# serialization files are written for TensorFlow's and JAX's tensors), one thread as the benchmarks run it.
(
    jax=0
    KERAS_BACKEND=jax .venv/bin/python -m pytest -q -p no:cacheprovider -m layer tests/models/test_layer_*.py \
        tests/models/test_gpu_cudnn.py "$@" >"$jax_log" 2>&1 || jax=$?
    torch=0
    KERAS_BACKEND=torch OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m layer \
        tests/models/test_layer_torch_forward.py tests/models/test_layer_parity.py tests/models/test_layer_inputs.py \
        "$@" >"$torch_log" 2>&1 || torch=$?
    # Arguments that select no layer test (`-k predict`, say) leave a run with nothing to do: pytest's 5.
    for code in "$jax" "$torch"; do
        if [ "$code" -ne 0 ] && ! { [ "$code" -eq 5 ] && [ "$#" -gt 0 ]; }; then exit "$code"; fi
    done
) &
backends_pid=$!
trap 'pkill -P "$backends_pid" 2>/dev/null || true; kill "$backends_pid" 2>/dev/null || true; rm -f "$jax_log" "$torch_log"' EXIT
# Two worker processes, each test file on one of them (its fixtures start once), files with end-to-end tests
# handed out first (tests/conftest.py orders them; xdist's own reordering by test count would put them last).
tf=0
.venv/bin/python -m pytest -q -n "${FORECASTER_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder \
    --durations=20 "$@" || tf=$?
backends=0
wait "$backends_pid" || backends=$?
echo "---- the layer's tests under JAX ----"
cat "$jax_log"
echo "---- the layer's tests under torch ----"
cat "$torch_log"
if [ "$tf" -ne 0 ]; then exit "$tf"; fi
exit "$backends"
