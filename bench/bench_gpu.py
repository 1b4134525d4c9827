"""Time forecaster.layers.LSTM against Keras' cuDNN LSTM on a GPU, where users wait: `model.fit` and predict.

Backend-neutral (the GPU machine has JAX and torch, not TensorFlow):

    KERAS_BACKEND=jax python bench/bench_gpu.py [--repeats 3] [--batches 40] [--shapes 48x64,168x128]

Model `Input(T, 8) -> LSTM(units) -> Dense(1)`, Adam, MSE, batch 256, the same weights in every
contender. Contenders: Keras' `LSTM(use_cudnn=True)` (raises if cuDNN cannot be used, so the number is
cuDNN's), ours as shipped, ours at other GPU scan unrolls, and ours stepped by Keras' generic loop (the
path before the JAX loop existed). `fit` is timed over one epoch of ``--batches`` batches after a
warm-up epoch; inference is `predict_on_batch` of one batch. Contenders are interleaved in each
repeat; the table gives medians and cuDNN's time over ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import keras
import numpy as np

from forecaster.layers import LSTM, jax_loop

SHAPES = [(48, 64), (48, 128), (168, 64), (168, 128)]


class GenericLoopLSTM(LSTM):
    """Our cell stepped by Keras' generic loop: what ran under JAX before `jax_loop`."""

    def _own_loop(self) -> str | None:
        return None


def _model(layer: keras.layers.Layer, timesteps: int, features: int) -> keras.Model:
    model = keras.Sequential([keras.Input((timesteps, features)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _sync(out: object) -> None:
    np.asarray(keras.ops.convert_to_numpy(out))


def bench_shape(timesteps: int, units: int, batch: int, features: int, batches: int,
                repeats: int, unrolls: list[int], use_cudnn: bool | str = True) -> dict:
    rng = np.random.default_rng(0)
    n = batch * batches
    x = rng.normal(size=(n, timesteps, features)).astype("float32")
    y = rng.normal(size=(n, 1)).astype("float32")
    xb = x[:batch]
    reference = _model(keras.layers.LSTM(units, use_cudnn=use_cudnn), timesteps, features)
    weights = reference.get_weights()
    contenders: dict[str, tuple[keras.Model, int | None]] = {"cudnn": (reference, None)}
    for unroll in unrolls:
        contenders[f"ours_u{unroll}"] = (_model(LSTM(units), timesteps, features), unroll)
    contenders["ours_generic"] = (_model(GenericLoopLSTM(units), timesteps, features), None)
    shipped = jax_loop.GPU_UNROLL
    for model, unroll in contenders.values():
        model.set_weights(weights)
        jax_loop.GPU_UNROLL = unroll or shipped
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # compile + warm-up
        for _ in range(3):
            _sync(model.predict_on_batch(xb))
    jax_loop.GPU_UNROLL = shipped
    drift = {k: float(np.abs(np.asarray(m.predict_on_batch(xb)) - np.asarray(reference.predict_on_batch(xb))).max())
             for k, (m, _) in contenders.items()}
    times = {k: {"fit": [], "infer": []} for k in contenders}
    calls = 20
    for _ in range(repeats):
        for name, (model, _) in contenders.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            times[name]["fit"].append((time.perf_counter() - start) / batches * 1e3)
            start = time.perf_counter()
            for _ in range(calls):
                out = model.predict_on_batch(xb)
            _sync(out)
            times[name]["infer"].append((time.perf_counter() - start) / calls * 1e3)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    return {"shape": (timesteps, units), "median_ms": med, "drift_after_fit": drift}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="batches in each timed fit epoch")
    parser.add_argument("--unrolls", default="1,8", help="scan unrolls of our JAX loop to time")
    parser.add_argument("--cpu", action="store_true",
                        help="no GPU: the reference is Keras' LSTM on its generic loop (column still named cudnn)")
    parser.add_argument("--shapes", default=",".join(f"{t}x{u}" for t, u in SHAPES),
                        help="comma-separated TIMESTEPSxUNITS")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    unrolls = [int(u) for u in args.unrolls.split(",")]
    print("command: python " + " ".join(sys.argv))
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, batch {args.batch}, "
          f"{args.features} features, {args.batches} batches per fit epoch, median of {args.repeats} "
          f"interleaved repeats; shipped unroll {jax_loop.GPU_UNROLL}")
    names = ["cudnn"] + [f"ours_u{u}" for u in unrolls] + ["ours_generic"]
    print("| (T, units) | mode | " + " | ".join(f"{n} ms" for n in names) + " | "
          + " | ".join(f"cudnn/{n}" for n in names[1:]) + " |")
    print("|" + "---|" * (2 + 2 * len(names) - 1))
    for t, u in shapes:
        r = bench_shape(t, u, args.batch, args.features, args.batches, args.repeats, unrolls,
                        use_cudnn="auto" if args.cpu else True)
        for mode in ("fit", "infer"):
            ms = [r["median_ms"][n][mode] for n in names]
            print(f"| ({t}, {u}) | {mode} | " + " | ".join(f"{v:.2f}" for v in ms) + " | "
                  + " | ".join(f"{ms[0] / v:.2f}x" for v in ms[1:]) + " |", flush=True)
        print(f"  drift after the same fit, max abs vs cudnn: {r['drift_after_fit']}", flush=True)


if __name__ == "__main__":
    main()
