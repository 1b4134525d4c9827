#!/usr/bin/env bash
# One device session on a lent GPU machine (no TensorFlow, no internet there): the Keras wheel and its
# two missing needs travel in .whl/. Validates the layer against cuDNN under JAX and torch, then times
# it against cuDNN inside model.fit and predict under JAX (all shapes) and torch (two shapes).
# Logs go to $OUT (or ./out/gpu). UNROLLS (default: the shipped 8) picks the JAX loop's unrolls to time.
set -uo pipefail
out=${OUT:-out/gpu}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  KERAS_BACKEND=jax python3 -c "import jax, torch, keras; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, '| keras', keras.__version__)"
} 2>&1 | tee "$out/env.txt"
for backend in jax torch; do
  KERAS_BACKEND=$backend timeout 120 python3 bench/validate_gpu.py 2>&1 | tee "$out/validate_$backend.txt"
done
KERAS_BACKEND=jax timeout 200 python3 bench/bench_gpu.py --unrolls "${UNROLLS:-8}" 2>&1 | tee "$out/bench_gpu_jax.txt"
KERAS_BACKEND=torch timeout 90 python3 bench/bench_gpu.py --unrolls 8 --shapes 48x64,168x128 --batches 10 --repeats 2 \
  2>&1 | tee "$out/bench_gpu_torch.txt"
