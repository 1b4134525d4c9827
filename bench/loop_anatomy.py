"""Where a step of the layer's compiled CPU loops goes: the forward loop with and without keeping what
the backward pass needs, the backward loop, and the forward loop writing zeros instead of the kept
values (what the writes alone cost). One batch part, as one core runs it; in one process, interleaved.

    taskset -c 0 .venv/bin/python bench/loop_anatomy.py --timesteps 168 --units 128 --rows 128
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tensorflow as tf

from forecaster.layers import fused_loop
from forecaster.layers.lstm_cell import LSTMCell


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timesteps", type=int, default=168)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--rows", type=int, default=128, help="batch rows of the part")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    t, u, b, features = args.timesteps, args.units, args.rows, 8
    rng = np.random.default_rng(0)
    steps = tf.constant(rng.normal(size=(t, b, features)).astype("float32"))
    h0 = c0 = tf.zeros((b, u))
    cell = LSTMCell(u)
    cell.build((None, features))
    weights = (cell.kernel, cell.recurrent_kernel, cell.bias)
    options = {"return_sequences": False, "zero_output_for_mask": True, "unroll": fused_loop._unroll_factor(steps)}
    upstream = (tf.ones((b, u)), tf.zeros((1, b, u)), tf.zeros((b, u)), tf.zeros((b, u)))

    def loops() -> dict:
        fused_loop._PLAIN.clear()
        forward, backward = fused_loop._compiled(cell)
        kept = forward(steps, h0, c0, None, *weights, {}, keep_for_backward=True, **options)[-1]
        runs = {
            "forward, keeping": lambda: forward(steps, h0, c0, None, *weights, {}, keep_for_backward=True, **options),
            "backward": lambda: backward(steps, None, *weights, {}, kept, *upstream, **options),
            "forward, inference": lambda: forward(steps, h0, c0, None, *weights, {}, keep_for_backward=False,
                                                  **options),
        }
        for run in runs.values():
            run()  # compile
        return runs

    contenders = {"shipped": loops()}
    original = fused_loop._plain_local_derivatives
    fused_loop._plain_local_derivatives = lambda c_prev, i, f, g, o, c: {
        "q": tf.zeros_like(tf.concat([i, i, i, i], 1)), "f_p": tf.zeros_like(tf.concat([i, i], 1))}
    contenders["zeros kept"] = {"forward, keeping": loops()["forward, keeping"]}
    fused_loop._plain_local_derivatives = original
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, runs in contenders.items():
            for what, run in runs.items():
                started = time.perf_counter()
                tf.nest.flatten(run())[0].numpy()
                times.setdefault((name, what), []).append(time.perf_counter() - started)
    print(f"(T, units) = ({t}, {u}), {b} rows, median of {args.repeats} interleaved; microseconds per timestep")
    for (name, what), values in times.items():
        print(f"  {name:10s} {what:20s} {1e6 * float(np.median(values)) / t:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
