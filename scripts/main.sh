#!/usr/bin/env bash
# The main job, end to end on the embedded defaults (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/python -m pipelines.demo "$@"
