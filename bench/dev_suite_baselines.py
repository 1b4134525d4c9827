"""Seasonal naive, AutoETS and AutoTheta from statsforecast on one data set: run by bench_dev_suite.py in
.venv-baselines (bench/setup-baselines.sh), since statsforecast needs pandas < 3.

Reads the training part (CSV: unique_id, ds, y), forecasts ``--horizon`` steps with each model and its
80 % interval, and writes one Parquet file (unique_id, ds, <model>, <model>-lo-80, <model>-hi-80) and a
JSON line of wall times (fit + predict, per model, on ``--cores`` processes).
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--season", type=int, required=True)
    parser.add_argument("--freq", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    train = pd.read_csv(args.train, parse_dates=["ds"])
    models = {"SeasonalNaive": SeasonalNaive(season_length=args.season),
              "AutoETS": AutoETS(season_length=args.season),
              "AutoTheta": AutoTheta(season_length=args.season)}
    parts, seconds = [], {}
    for name, model in models.items():
        started = time.perf_counter()
        sf = StatsForecast(models=[model], freq=args.freq, n_jobs=args.cores)
        out = sf.forecast(df=train, h=args.horizon, level=[80])
        seconds[name] = time.perf_counter() - started
        parts.append(out.set_index(["unique_id", "ds"]))
    pd.concat(parts, axis=1).reset_index().to_parquet(args.out, index=False)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
