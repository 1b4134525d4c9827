#!/usr/bin/env bash
# Run every check CI runs: lint, the whole suite under TensorFlow, the layer's tests under JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
FORECASTER_EXTRAS=${FORECASTER_EXTRAS:-dev,spark} bash scripts/setup-venv.sh
bash scripts/ensure-postgres.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
.venv/bin/ruff check .
# Two worker processes, each test file on one of them (its fixtures start once): much of the suite waits
# on subprocesses and servers, so two cores get through it in about 70 % of the time.
.venv/bin/python -m pytest -q -n "${FORECASTER_TEST_WORKERS:-2}" --dist loadfile --durations=20 "$@"
# Only the layer's test files: collecting the whole suite would import MLflow, Spark and the pipelines.
# Two workers here too: the parity and extras files take about as long as each other.
KERAS_BACKEND=jax .venv/bin/python -m pytest -q -n "${FORECASTER_TEST_WORKERS:-2}" --dist loadfile -m layer \
    tests/test_layer_*.py tests/test_gpu_cudnn.py "$@"
