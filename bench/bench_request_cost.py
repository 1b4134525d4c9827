"""What one request costs the model: `LSTMForecaster.predict` on frames of the shapes given, once each.

    .venv/bin/python bench/bench_request_cost.py --model models:/tiny/1 200x1000 2000x100 1x200000 20000x3

Each shape is ``<series>x<points>`` of hourly series (a daily sine plus noise). The figures behind the
server's default limits (`forecaster.ops.serving.Limits`) and `docs/reliability.md` rows 71-72: within the
limits a request's work is bounded, since the statistical members read a bounded tail of each series.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from pipelines import steps


def frame(series: int, points: int) -> pd.DataFrame:
    """``series`` hourly series of ``points`` values each."""
    t = np.arange(points)
    y = (100 + 20 * np.sin(2 * np.pi * t / 24))[None, :] + np.random.default_rng(0).normal(0, 1, (series, points))
    return pd.DataFrame({"unique_id": np.repeat([f"X{i}" for i in range(series)], points),
                         "ds": np.tile(pd.date_range("2024-01-01", periods=points, freq="h"), series),
                         "y": y.ravel()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models:/m4_hourly@champion")
    parser.add_argument("shapes", nargs="+", help="<series>x<points>")
    args = parser.parse_args()
    model = steps.load(args.model).forecaster
    for shape in args.shapes:
        series, points = (int(part) for part in shape.split("x"))
        data = frame(series, points)
        started = time.perf_counter()
        model.predict(data)
        print(f"{series} series x {points} points ({len(data)} rows): {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
