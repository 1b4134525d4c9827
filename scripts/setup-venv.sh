#!/usr/bin/env bash
# Create or reuse .venv and install the project with pinned versions (constraints.txt).
# Idempotent: reinstalls only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
extras=${FORECASTER_EXTRAS:-dev}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.forecaster-install-stamp
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # setuptools' "Editable installation" notice (a box of asterisks, relayed by pip as a BuildBackendWarning)
  # says that a folder named like the package takes precedence at import: the point of an editable install.
  PYTHONWARNINGS="ignore:Editable installation" \
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
fi
# TensorFlow's start-up notices filtered in every process of .venv, whatever imports it first (forecaster/quiet.py).
.venv/bin/python -c "import forecaster.quiet as q; q.install_startup_hook()"
# The LSTM layer's CPU kernel: built now (a few seconds, once per source, TensorFlow and CPU: it is cached)
# rather than inside the first training run. Without a compiler the layer runs its XLA loops.
bash scripts/ensure-compiler.sh
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m forecaster.layers.cpu_kernel || true
