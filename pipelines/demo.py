"""A first look at the layer: train a small model on one real hourly series and forecast two days.

    .venv/bin/python -m pipelines.demo [--series H1] [--epochs 8] [--out out/]

Builds `Input -> forecaster.layers.LSTM -> Dense(horizon)` on the M4 Hourly series that ships with
the package, trains it on sliding windows of the training part, forecasts the 48 held-out hours,
prints the error beside seasonal naive, and writes a plot to ``out/demo_forecast.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from forecaster.datasets import load_m4_hourly
from forecaster.layers import LSTM

INPUT_SIZE, HORIZON, SEASON = 168, 48, 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="H1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    frame = load_m4_hourly(split="both")
    y = frame.loc[frame["unique_id"] == args.series, "y"].to_numpy("float32")
    train, test = y[:-HORIZON], y[-HORIZON:]
    center, scale = train.mean(), train.std() or 1.0
    z = (train - center) / scale
    starts = np.arange(0, len(z) - INPUT_SIZE - HORIZON + 1)
    x = np.stack([z[s : s + INPUT_SIZE] for s in starts])[..., None]
    t = np.stack([z[s + INPUT_SIZE : s + INPUT_SIZE + HORIZON] for s in starts])

    model = keras.Sequential([keras.Input((INPUT_SIZE, 1)), LSTM(32), keras.layers.Dense(HORIZON)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mae")
    print(f"series {args.series}: {len(train)} training hours, {len(starts)} windows; training {args.epochs} epochs")
    model.fit(x, t, epochs=args.epochs, batch_size=64, verbose=2)

    forecast = np.asarray(model(z[None, -INPUT_SIZE:, None]))[0] * scale + center
    naive = np.tile(train[-SEASON:], HORIZON // SEASON)
    mae, mae_naive = np.abs(forecast - test).mean(), np.abs(naive - test).mean()
    print(f"MAE over the 48 held-out hours: LSTM {mae:.1f}, seasonal naive {mae_naive:.1f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4))
    hist = np.arange(-3 * SEASON, 0)
    ax.plot(hist, train[-3 * SEASON :], color="black", label="history")
    ax.plot(np.arange(HORIZON), test, color="black", linestyle=":", label="actual")
    ax.plot(np.arange(HORIZON), forecast, label=f"forecaster LSTM (MAE {mae:.0f})")
    ax.plot(np.arange(HORIZON), naive, alpha=0.6, label=f"seasonal naive (MAE {mae_naive:.0f})")
    ax.set_title(f"M4 Hourly {args.series}: 48-hour forecast")
    ax.legend()
    path = args.out / "demo_forecast.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
