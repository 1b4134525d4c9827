"""Mixed precision on a CPU: `model.fit` and predict of our layer and Keras' LSTM under the float32 and
``mixed_bfloat16`` dtype policies, each in a fresh process (a policy is process-wide). The question it
answers for training speed: do bfloat16 products (AMX / AVX-512 BF16 on recent Xeons) make a fit faster
where users train? Model ``Input(T, 8) -> LSTM(units) -> Dense(1, float32)``, Adam, MSE, batch 256.

    .venv/bin/python bench/bench_precision.py [--shape 168x64] [--steps 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _one(policy: str, layer: str, timesteps: int, units: int, steps: int, repeats: int) -> dict[str, float]:
    import keras
    import numpy as np

    from forecaster.layers import LSTM

    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256 * steps, timesteps, 8)).astype("float32")
    y = rng.normal(size=(256 * steps, 1)).astype("float32")
    inputs = keras.Input((timesteps, 8))
    recurrent = LSTM(units) if layer == "ours" else keras.layers.LSTM(units)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(recurrent(inputs)))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)  # compiles
    fit = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=256, epochs=1, verbose=0)
        fit.append((time.perf_counter() - start) / steps * 1000)
    model.predict_on_batch(x[:256])
    start = time.perf_counter()
    for _ in range(5):
        model.predict_on_batch(x[:256])
    return {"fit_ms": float(np.median(fit)), "predict_ms": (time.perf_counter() - start) / 5 * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="168x64")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    timesteps, units = (int(v) for v in args.shape.split("x"))
    if args.child:
        print(json.dumps(_one(*args.child, timesteps, units, args.steps, args.repeats)))
        return 0
    print(f"(T, units) = ({timesteps}, {units}), batch 256, {args.steps} batches an epoch, median of {args.repeats}")
    print("| layer | policy | fit ms/step | predict ms |\n|---|---|---|---|")
    for layer in ("ours", "keras"):
        for policy in ("float32", "mixed_bfloat16"):
            out = subprocess.run([sys.executable, __file__, "--shape", args.shape, "--steps", str(args.steps),
                                  "--repeats", str(args.repeats), "--child", policy, layer],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {layer} | {policy} | {row['fit_ms']:.1f} | {row['predict_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
