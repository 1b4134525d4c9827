"""Time forecaster.layers.LSTM against keras.layers.LSTM (default and XLA-compiled), same run, same weights.

For each (timesteps, units) shape: inference (forward pass) and a full training step (forward,
gradient, SGD update), each as a `tf.function`, timed in interleaved rounds so that machine noise
falls on all three alike; the table gives the median milliseconds per call and the ratio of Keras'
time to ours (> 1: ours is faster).

    .venv/bin/python bench/bench_layer.py [--repeats 7] [--batch 256] [--features 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from forecaster.layers import LSTM

SHAPES = [(48, 64), (48, 128), (168, 64), (168, 128)]


def _step_functions(layer: keras.layers.Layer, jit: bool) -> tuple:
    optimizer = keras.optimizers.SGD(1e-3)
    optimizer.build(layer.trainable_variables)

    @tf.function(jit_compile=jit)
    def infer(x):
        return layer(x, training=False)

    @tf.function(jit_compile=jit)
    def train(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True) - y))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return infer, train


def _time(fn, *args, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    np.asarray(out)  # wait for the result
    return (time.perf_counter() - start) / calls * 1e3


def bench_shape(timesteps: int, units: int, batch: int, features: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, timesteps, features)).astype("float32"))
    y = tf.constant(rng.normal(size=(batch, units)).astype("float32"))
    keras_layer = keras.layers.LSTM(units)
    keras_layer.build(x.shape)
    ours = LSTM(units)
    ours.build(x.shape)
    ours.set_weights(keras_layer.get_weights())
    keras_xla = keras.layers.LSTM(units)
    keras_xla.build(x.shape)
    keras_xla.set_weights(keras_layer.get_weights())
    contenders = {
        "keras": _step_functions(keras_layer, jit=False),
        "keras_xla": _step_functions(keras_xla, jit=True),
        "ours": _step_functions(ours, jit=False),
    }
    drift = float(np.abs(np.asarray(contenders["ours"][0](x)) - np.asarray(contenders["keras"][0](x))).max())
    times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "train": []} for k in contenders}
    for infer, train in contenders.values():  # warm-up: tracing and XLA compilation
        for _ in range(2):
            np.asarray(infer(x))
            np.asarray(train(x, y))
    calls = max(2, int(400 / timesteps))
    for _ in range(repeats):
        for name, (infer, train) in contenders.items():
            times[name]["infer"].append(_time(infer, x, calls=calls))
            times[name]["train"].append(_time(train, x, y, calls=calls))
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    return {"shape": (timesteps, units), "median_ms": med, "max_abs_diff": drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--shapes", default=",".join(f"{t}x{u}" for t, u in SHAPES),
                        help="comma-separated TIMESTEPSxUNITS")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print("command: .venv/bin/python " + " ".join(sys.argv))
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, batch {args.batch}, "
          f"{args.features} features, median of {args.repeats} interleaved repeats")
    header = ("| (T, units) | mode | keras ms | keras+XLA ms | ours ms | keras/ours | keras+XLA/ours "
              "| max abs diff |")
    print(header)
    print("|" + "---|" * 8)
    for t, u in shapes:
        r = bench_shape(t, u, args.batch, args.features, args.repeats)
        for mode in ("infer", "train"):
            k, kx, o = (r["median_ms"][n][mode] for n in ("keras", "keras_xla", "ours"))
            print(f"| ({t}, {u}) | {mode} | {k:.1f} | {kx:.1f} | {o:.1f} | {k / o:.2f}x | {kx / o:.2f}x "
                  f"| {r['max_abs_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
