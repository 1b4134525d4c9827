"""The JAX loop's training step, its gradient by hand (`jax_loop._plain_lstm`) against JAX's transpose of
the scan, and the scan's steps per iteration: milliseconds of a jitted value-and-gradient of the layer's
recurrence (loss on the last output, gradient with respect to the input, kernel and recurrent kernel)
and of a forward pass, batch 256, 8 features, interleaved repeats, medians.

    KERAS_BACKEND=jax .venv/bin/python bench/jax_hand_gradient.py [--unrolls 1,4] [--repeats 5] [--shapes 48x64,168x128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

from forecaster.layers import jax_loop
from forecaster.layers.lstm_cell import LSTMCell

BATCH, FEATURES = 256, 8


# The gradient: JAX's transpose of the scan (``jax``), or by hand with x W in each step (``step``) or before
# the loop (``hoist``) and the weights' gradients accumulated in the reverse loop (``acc``) or as products
# over all steps after it (``after``).
VARIANTS = {
    "jax": (False, False, False),
    "step-acc": (True, False, True),
    "step-after": (True, False, False),
    "hoist-after": (True, True, False),
}


def _functions(cell: LSTMCell, variant: tuple, unroll: int) -> tuple:
    """(forward, value_and_grad), jitted, with the loop chosen by ``variant`` and ``unroll`` at trace time."""

    def loop(x, kernel, recurrent_kernel):
        jax_loop.HAND_WRITTEN_GRADIENT, jax_loop._HOIST, jax_loop._ACCUMULATE = variant
        jax_loop._unroll = lambda num_steps: unroll
        cell.kernel.assign(kernel)
        cell.recurrent_kernel.assign(recurrent_kernel)
        zeros = jnp.zeros((x.shape[0], cell.units), x.dtype)
        last, _, _ = jax_loop.run_scan(cell, x, zeros, zeros, None, return_sequences=False, go_backwards=False,
                                       zero_output_for_mask=True)
        return last

    def loss(x, kernel, recurrent_kernel):
        return jnp.mean(loop(x, kernel, recurrent_kernel) ** 2)

    return jax.jit(loop), jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def _ms(fn, args: tuple, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="48x64,168x128")
    parser.add_argument("--unrolls", default="1,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = parser.parse_args()
    original = (jax_loop._unroll, jax_loop.HAND_WRITTEN_GRADIENT, jax_loop._HOIST, jax_loop._ACCUMULATE)
    print(f"device {jax.devices()[0].platform}, jax {jax.__version__}, batch {BATCH}, {FEATURES} features, "
          f"median of {args.repeats} interleaved repeats")
    print("| (T, units) | gradient | unroll | forward ms | value and gradient ms |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        timesteps, units = (int(v) for v in shape.split("x"))
        cell = LSTMCell(units)
        cell.build((None, FEATURES))
        x = jnp.asarray(rng.normal(size=(BATCH, timesteps, FEATURES)), jnp.float32)
        weights = (jnp.asarray(cell.kernel.value), jnp.asarray(cell.recurrent_kernel.value))
        contenders = {}
        for name in args.variants.split(","):
            for unroll in (int(u) for u in args.unrolls.split(",")):
                forward, grad = _functions(cell, VARIANTS[name], unroll)
                jax.block_until_ready(forward(x, *weights))  # compile
                jax.block_until_ready(grad(x, *weights))
                contenders[(name, unroll)] = (forward, grad)
        jax_loop._unroll, jax_loop.HAND_WRITTEN_GRADIENT, jax_loop._HOIST, jax_loop._ACCUMULATE = original
        times: dict = {k: ([], []) for k in contenders}
        calls = max(2, 400 // timesteps)
        for _ in range(args.repeats):
            for key, (forward, grad) in contenders.items():
                times[key][0].append(_ms(forward, (x, *weights), calls))
                times[key][1].append(_ms(grad, (x, *weights), calls))
        for (name, unroll), (fwd, grd) in times.items():
            print(f"| ({timesteps}, {units}) | {name} | {unroll} | {statistics.median(fwd):.1f} "
                  f"| {statistics.median(grd):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
