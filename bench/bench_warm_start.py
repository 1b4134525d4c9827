"""Warm start against a full refit, where the scheduled job retrains: M4 Hourly, a week apart.

A forecaster is fitted on the M4 Hourly training data up to a week before its end (the "champion"
of last week). At the end of the training data, the retrain is done twice, from the same data:
a full refit (the config's epochs, from random weights) and a warm start (the champion's weights,
``[schedule] warm_epochs`` epochs). Both are scored on the official 48-hour M4 test part, which
neither saw, by MASE and sMAPE beside seasonal naive; fit wall times are measured in the same run.

    python bench/bench_warm_start.py [--config models/m4_hourly.toml] [--warm-epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from forecaster.config import load_config  # noqa: E402
from forecaster.data import splits  # noqa: E402
from forecaster.datasets import load_m4_hourly  # noqa: E402
from forecaster.evaluation.metrics import mase, smape  # noqa: E402
from forecaster.models.baselines import seasonal_naive_batch  # noqa: E402
from pipelines import steps  # noqa: E402


def _score(model, train: pd.DataFrame, test: pd.DataFrame, horizon: int, season: int) -> dict[str, float]:
    out = model.predict(train).set_index(["unique_id", "ds"])
    ids = list(pd.unique(train["unique_id"]))
    actual = test.set_index(["unique_id", "ds"])["y"]
    y = actual.loc[ids].to_numpy().reshape(len(ids), horizon)
    f = out["forecast"].loc[actual.index].loc[ids].to_numpy().reshape(len(ids), horizon)
    insample = [g.to_numpy("float64") for _, g in train.groupby("unique_id", sort=False)["y"]]
    naive = seasonal_naive_batch(insample, horizon, season)
    return {"mase": float(mase(y, f, insample, season)), "smape": float(smape(y, f)),
            "seasonal_naive_mase": float(mase(y, naive, insample, season))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "models" / "m4_hourly.toml"))
    parser.add_argument("--warm-epochs", type=int)
    parser.add_argument("--gap", default="7D", help="how long before the end last week's champion was trained")
    args = parser.parse_args()
    config = load_config(args.config)
    warm_epochs = args.warm_epochs or config.schedule.warm_epochs
    train = load_m4_hourly(split="train")
    test = load_m4_hourly(split="test")
    columns = config.data.columns()
    end = train["ds"].max()
    earlier = splits.as_of_cut(train, columns, end - pd.Timedelta(args.gap))

    started = time.perf_counter()
    champion = steps.fit(config, earlier, verbose=0)
    t_champion = time.perf_counter() - started
    started = time.perf_counter()
    full = steps.fit(config, train, verbose=0)
    t_full = time.perf_counter() - started
    warm_config = replace(config, training=replace(config.training, epochs=warm_epochs))
    started = time.perf_counter()
    warm = steps.fit(warm_config, train, verbose=0, initial=champion)
    t_warm = time.perf_counter() - started

    horizon, season = config.horizon, 24
    rows = {
        "not retrained": {"fit_s": t_champion, "epochs": len(champion.history_["loss"]),
                          **_score(champion, train, test, horizon, season)},
        "full refit": {"fit_s": t_full, "epochs": len(full.history_["loss"]),
                       **_score(full, train, test, horizon, season)},
        "warm start": {"fit_s": t_warm, "epochs": len(warm.history_["loss"]),
                       **_score(warm, train, test, horizon, season)},
    }
    print(json.dumps({"config": args.config, "gap": args.gap, "warm_epochs": warm_epochs,
                      "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "results": rows}, indent=1, default=float))
    print(f"warm start: {1 - t_warm / t_full:.0%} less fit time than the full refit ({t_full:.0f} s -> "
          f"{t_warm:.0f} s); test MASE {rows['full refit']['mase']:.4f} (full) vs {rows['warm start']['mase']:.4f}")


if __name__ == "__main__":
    main()
