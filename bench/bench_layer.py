"""Time forecaster.layers.LSTM against keras.layers.LSTM (default and XLA-compiled), same run, same weights.

For each (timesteps, units) shape: inference (forward pass) and a full training step (forward,
gradient, SGD update), each as a `tf.function`, timed in interleaved rounds so that machine noise
falls on all three alike; the table gives the median milliseconds per call and the ratio of Keras'
time to ours (> 1: ours is faster), the median over repeats of the ratio within each repeat (paired).

    .venv/bin/python bench/bench_layer.py [--repeats 7] [--batch 256] [--features 8]

``--fit``: where users train and predict instead. ``Input -> LSTM(units) -> Dense(1)`` compiled with Adam
and MSE, trained by ``model.fit`` over a cached ``tf.data`` dataset of ``--steps`` batches (one warm-up
epoch, then ``--epochs`` timed epochs per repeat: ms per step, from each epoch's start to its end), and
``model.predict_on_batch`` for inference; Keras' LSTM compiled by default (on a CPU-only machine Keras'
``jit_compile="auto"`` is off) and with ``jit_compile=True``, against ours compiled by default; the
same initial weights for all. Ours is timed twice: as users get it (the hand-written CPU kernel where
it builds) and with its XLA loops (``FORECASTER_CPU_KERNEL=0`` while that model traces: the layer as it
was before the kernel).

    .venv/bin/python bench/bench_layer.py --fit [--repeats 3] [--steps 40] [--epochs 2]

Under ``KERAS_BACKEND=jax`` or ``=torch`` the bench is ``--fit`` (there are no tf.function steps): the same
models trained by ``model.fit`` over NumPy arrays (``shuffle=False``) and ``predict_on_batch``, Keras'
LSTM under that backend against ours (under JAX also ours with JAX's differentiation of its scan instead
of the hand-written gradient: the layer as it was before). On a machine shared with other work,
``OMP_NUM_THREADS=1`` for torch: its OpenMP threads otherwise wait on each other for most of each small
product.

Every row also gives the arithmetic rate of ours and of Keras' LSTM: a forward pass is
8 x units x (features + units) x timesteps x batch floating-point operations (the four gates' products),
a training step about three times that (the backward pass does two products per forward one), and the
share of this machine's single-precision matrix-product peak, measured in the same run (the best of a
few NumPy float32 4096 x 4096 products, before the shapes and after; the larger is the peak).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from forecaster.layers import LSTM, cpu_kernel

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

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
    return {"shape": (timesteps, units), "median_ms": med, "times": times, "max_abs_diff": drift}


def _fit_model(layer: keras.layers.Layer, timesteps: int, features: int, jit: bool | str) -> keras.Model:
    inputs = keras.Input((timesteps, features))
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit)
    return model


@contextlib.contextmanager
def _xla_loops():
    """Our layer without its CPU kernel (`forecaster.layers.cpu_kernel`) while tracing in this block."""
    before = os.environ.get("FORECASTER_CPU_KERNEL")
    os.environ["FORECASTER_CPU_KERNEL"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["FORECASTER_CPU_KERNEL"]
        else:
            os.environ["FORECASTER_CPU_KERNEL"] = before


@contextlib.contextmanager
def _jax_own_gradient():
    """Under JAX, our layer with JAX's differentiation of its scan instead of the hand-written gradient
    (`jax_loop.HAND_WRITTEN_GRADIENT`) while tracing in this block: the layer as it was before."""
    from forecaster.layers import jax_loop

    jax_loop.HAND_WRITTEN_GRADIENT = False
    try:
        yield
    finally:
        jax_loop.HAND_WRITTEN_GRADIENT = True


class _EpochClock(keras.callbacks.Callback):
    """The seconds spent inside epochs. A `model.fit` call can take up to ~0.25 s after its last epoch
    (measured here: after ``on_train_end``, in the call's clean-up) before it returns; a user's fit of
    many epochs pays it once, a fit of 20 timed steps would pay it in every step's figure."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds += time.perf_counter() - self._start



def _time_models(models: dict, fit_model, x: np.ndarray, batch: int, steps: int, epochs: int, repeats: int,
                 calls: int) -> dict[str, dict[str, list[float]]]:
    """Per model, ``repeats`` times: ms a training step (``fit_model(model, epochs, clock)``, timed from
    each epoch's start to its end) and ms a ``predict_on_batch`` call, the models interleaved."""
    times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "train": []} for k in models}
    for _ in range(repeats):
        for name, model in models.items():
            clock = _EpochClock()
            fit_model(model, epochs, clock)
            times[name]["train"].append(clock.seconds / (epochs * steps) * 1e3)
            start = time.perf_counter()
            for i in range(calls):
                model.predict_on_batch(x[(i % steps) * batch:(i % steps + 1) * batch])
            times[name]["infer"].append((time.perf_counter() - start) / calls * 1e3)
    return times

def bench_fit_shape(timesteps: int, units: int, batch: int, features: int, repeats: int, steps: int,
                    epochs: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, timesteps, features)).astype("float32")
    y = rng.normal(size=(batch * steps, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(2)
    keras.utils.set_random_seed(0)
    models = {"keras": _fit_model(keras.layers.LSTM(units), timesteps, features, jit=False)}
    weights = models["keras"].get_weights()
    models["keras_xla"] = _fit_model(keras.layers.LSTM(units), timesteps, features, jit=True)
    models["ours"] = _fit_model(LSTM(units), timesteps, features, jit=False)
    models["ours_xla"] = _fit_model(LSTM(units), timesteps, features, jit=False)
    for model in models.values():
        model.set_weights(weights)
    probe = x[:batch]
    expected = models["keras"].predict_on_batch(probe)
    drift = 0.0
    for name, model in models.items():
        # The layer chooses its loops when its functions are traced: the first predict and fit here.
        with _xla_loops() if name == "ours_xla" else contextlib.nullcontext():
            if name.startswith("ours"):
                drift = max(drift, float(np.abs(model.predict_on_batch(probe) - expected).max()))
            model.fit(data, epochs=1, verbose=0)  # tracing, compilation, dataset cache
    calls = max(2, int(400 / timesteps))
    times = _time_models(models, lambda m, n, clock: m.fit(data, epochs=n, verbose=0, callbacks=[clock]),
                         x, batch, steps, epochs, repeats, calls)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    return {"shape": (timesteps, units), "median_ms": med, "times": times, "max_abs_diff": drift}


def bench_fit_shape_any_backend(timesteps: int, units: int, batch: int, features: int, repeats: int,
                                steps: int, epochs: int) -> dict:
    """`bench_fit_shape` under JAX or torch: NumPy arrays instead of tf.data, Keras' LSTM against ours."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, timesteps, features)).astype("float32")
    y = rng.normal(size=(batch * steps, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    models = {"keras": _fit_model(keras.layers.LSTM(units), timesteps, features, jit="auto")}
    models["ours"] = _fit_model(LSTM(units), timesteps, features, jit="auto")
    if BACKEND == "jax":
        models["ours_jaxgrad"] = _fit_model(LSTM(units), timesteps, features, jit="auto")
    for name in models:
        models[name].set_weights(models["keras"].get_weights())
    probe = x[:batch]
    drift = float(np.abs(models["ours"].predict_on_batch(probe) - models["keras"].predict_on_batch(probe)).max())
    fit = {"batch_size": batch, "shuffle": False, "verbose": 0}
    for name, model in models.items():
        # The JAX loop chooses its gradient when the model's functions are traced: the first fit here.
        with _jax_own_gradient() if name == "ours_jaxgrad" else contextlib.nullcontext():
            model.fit(x, y, epochs=1, **fit)  # tracing, compilation
    calls = max(2, int(400 / timesteps))
    times = _time_models(models, lambda m, n, clock: m.fit(x, y, epochs=n, callbacks=[clock], **fit),
                         x, batch, steps, epochs, repeats, calls)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in times.items()}
    return {"shape": (timesteps, units), "median_ms": med, "times": times, "max_abs_diff": drift}


def forward_gflop(timesteps: int, units: int, batch: int, features: int) -> float:
    """A forward pass's floating-point operations, in GFLOP: the four gates' products, 2 x 4u x (F + u)
    a row and step (the gating's elementwise work is a few percent of it and left out)."""
    return 8 * units * (features + units) * timesteps * batch / 1e9


# A training step: the forward products and the backward's two per forward one (d inputs and d weights).
TRAIN_FACTOR = 3


def sgemm_peak_gflops(size: int = 4096, repeats: int = 3) -> float:
    """This machine's single-precision matrix-product rate in GFLOP/s: the best of ``repeats`` NumPy
    float32 ``size`` x ``size`` products (NumPy's BLAS, all cores)."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(size, size)).astype("float32") for _ in range(2))
    a @ b  # warm-up: the BLAS's threads and buffers
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratio(times: dict[str, dict[str, list[float]]], slow: str, fast: str, mode: str) -> float:
    """The median over repeats of ``slow``'s time over ``fast``'s in the same repeat: a machine whose
    cores change speed for stretches (both development machines do) slows both sides of a pair alike."""
    return statistics.median(s / f for s, f in zip(times[slow][mode], times[fast][mode]))


def cpu_description() -> str:
    """The CPU's model name and the SIMD flags that matter to XLA and oneDNN (from /proc/cpuinfo)."""
    model, flags = cpu_kernel.cpu_info("model name") or "?", cpu_kernel.cpu_info("flags").split()
    wanted = [f for f in flags if f.startswith(("avx", "fma", "amx")) or f in ("sse4_2",)]
    return f"{model}; {os.cpu_count()} CPUs; flags {' '.join(sorted(set(wanted)))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--shapes", default=",".join(f"{t}x{u}" for t, u in SHAPES),
                        help="comma-separated TIMESTEPSxUNITS")
    parser.add_argument("--fit", action="store_true", help="time model.fit and predict_on_batch instead")
    parser.add_argument("--steps", type=int, default=40, help="--fit: batches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="--fit: timed epochs per repeat")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    tensorflow = BACKEND == "tensorflow"
    fit = args.fit or not tensorflow
    print("command: " + (f"KERAS_BACKEND={BACKEND} " if not tensorflow else "")
          + ".venv/bin/python " + " ".join(sys.argv))
    print(f"CPU: {cpu_description()}")
    peak_before = sgemm_peak_gflops()
    print(f"SGEMM peak (NumPy float32 4096 x 4096, best of 3): {peak_before:.0f} GFLOP/s")
    if tensorflow:
        print(f"the CPU kernel's products: {cpu_kernel.products()} (FORECASTER_KERNEL_PRODUCTS chooses)")
    versions = {"tensorflow": lambda: tf.__version__, "jax": lambda: __import__("jax").__version__,
                "torch": lambda: __import__("torch").__version__}
    print(f"backend {BACKEND} {versions.get(BACKEND, lambda: '?')()}, keras {keras.__version__}, "
          f"batch {args.batch}, {args.features} features, {args.repeats} interleaved repeats (ms: medians; "
          "ratios: medians of the ratios within a repeat; GFLOP/s and % of peak: of the median ms)"
          + (f", model.fit of {args.steps} steps x {args.epochs} epochs (Adam), predict_on_batch" if fit
             else ", tf.function steps (SGD)"))
    others = ["keras", "keras_xla"] if tensorflow else ["keras"]
    header = ("| (T, units) | mode | " + " | ".join(f"{n} ms" for n in others) + " | ours ms | "
              + " | ".join(f"{n}/ours" for n in others) + " | ours GFLOP/s | ours % of peak "
              "| keras GFLOP/s | keras % of peak | max abs diff |")
    if args.fit and tensorflow:
        header += " ours, XLA loops ms | XLA loops/ours |"
    if BACKEND == "jax":
        header += " ours, JAX's gradient ms | JAX's gradient/ours |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rows = []
    for t, u in shapes:
        if not tensorflow:
            r = bench_fit_shape_any_backend(t, u, args.batch, args.features, args.repeats, args.steps, args.epochs)
        elif args.fit:
            r = bench_fit_shape(t, u, args.batch, args.features, args.repeats, args.steps, args.epochs)
        else:
            r = bench_shape(t, u, args.batch, args.features, args.repeats)
        for mode in ("infer", "train"):
            gflop = forward_gflop(t, u, args.batch, args.features) * (TRAIN_FACTOR if mode == "train" else 1)
            ms = {n: r["median_ms"][n][mode] for n in r["median_ms"]}
            ratio = {n: paired_ratio(r["times"], n, "ours", mode) for n in others}
            rate = {n: gflop / (ms[n] / 1e3) for n in ("ours", "keras")}
            rows.append((t, u, mode, ms, ratio, rate, r, gflop))
            row = (f"| ({t}, {u}) | {mode} | " + " | ".join(f"{ms[n]:.1f}" for n in others) + f" | {ms['ours']:.1f} | "
                   + " | ".join(f"{ratio[n]:.2f}x" for n in others)
                   + f" | {rate['ours']:.0f} | {100 * rate['ours'] / peak_before:.0f} % | {rate['keras']:.0f} "
                   f"| {100 * rate['keras'] / peak_before:.0f} % | {r['max_abs_diff']:.1e} |")
            if args.fit and tensorflow:
                row += f" {ms['ours_xla']:.1f} | {paired_ratio(r['times'], 'ours_xla', 'ours', mode):.2f}x |"
            if BACKEND == "jax":
                row += f" {ms['ours_jaxgrad']:.1f} | {paired_ratio(r['times'], 'ours_jaxgrad', 'ours', mode):.2f}x |"
            print(row, flush=True)
    peak_after = sgemm_peak_gflops()
    print(f"SGEMM peak after the shapes: {peak_after:.0f} GFLOP/s (before: {peak_before:.0f}); the % of peak "
          f"above is of the first; of the larger ({max(peak_before, peak_after):.0f}), ours in training: "
          + ", ".join(f"({t}, {u}) {100 * rate['ours'] / max(peak_before, peak_after):.0f} %"
                      for t, u, mode, _, _, rate, _, _ in rows if mode == "train"))


if __name__ == "__main__":
    main()
