#!/usr/bin/env bash
# The main job, end to end on the embedded defaults: train the M4 Hourly forecaster, backtest it beside
# seasonal naive, track it in the MLflow store under mlruns/, register and (by rule) promote it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/forecaster train models/m4_hourly.toml "$@"
