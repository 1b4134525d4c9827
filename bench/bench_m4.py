"""M4 Hourly accuracy of the forecaster, trained through the same code path as a user's config.

    .venv/bin/python bench/bench_m4.py /work/shared/benchmarks/m4-hourly [--config models/m4_hourly.toml]
        [--quick] [--validate] [--set training.epochs=4 ...]

Default (test) mode: fit `make_forecaster(load_config(config))` on ``Hourly-train.csv``, forecast the 48
hours after every series' end, and score them against ``Hourly-test.csv`` with the competition's sMAPE,
MASE and OWA (and MSIS / coverage of the 95 % interval when the config has the 0.025 and 0.975
quantiles), beside the published rows of the benchmark's README and our own seasonal naive / Naive2.

``--validate`` never reads the test file: it fits on each training series minus its last 48 hours and
scores those 48 hours (the selection target for settings).  ``--quick`` is a smoke run on 24 series
and 2 epochs.  ``--set section.key=value`` overrides one config key (repeatable; values are TOML;
``--set quantiles=[...]`` for the top-level key).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import tomllib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from forecaster.config import ModelConfig, load_config  # noqa: E402
from forecaster.contract import quantile_name  # noqa: E402
from forecaster.data.splits import before_first_origin  # noqa: E402
from forecaster.datasets.m4_hourly import M4_HOURLY, load_m4_hourly  # noqa: E402
from forecaster.evaluation.metrics import coverage, mase, msis, owa, smape  # noqa: E402
from forecaster.models.baselines import naive2, seasonal_naive_batch  # noqa: E402
from pipelines.steps import make_forecaster  # noqa: E402

PUBLISHED = [  # the README's "Evaluation and Ranks" rows: method, sMAPE, MASE, OWA
    ("Doornik et al. (best on Hourly)", 8.913, 0.801, 0.410),
    ("Smyl - ES-RNN, an LSTM hybrid (M4 winner)", 9.328, 0.893, 0.440),
    ("Pawlikowski et al.", 9.611, 0.873, 0.444),
    ("Seasonal naive", 13.912, 1.193, 0.627),
    ("M4's MLP benchmark", 13.842, 2.607, 0.921),
    ("Naive2", 18.383, 2.395, 1.000),
    ("M4's RNN benchmark", 14.698, 3.048, 1.036),
]
PUBLISHED_MSIS = "95 % intervals, published: best MSIS 6.139 (Doornik et al.), ARIMA 7.538, Smyl 7.928"
QUICK_SERIES = 24


def apply_overrides(config: ModelConfig, assignments: list[str]) -> ModelConfig:
    """``section.key=value`` (value parsed as TOML) replaced in a loaded config."""
    for item in assignments:
        key, _, text = item.partition("=")
        section, _, field = key.partition(".")
        if not text or not hasattr(config, section):
            raise SystemExit(f"--set needs section.key=value (or quantiles=[...]), got {item!r}")
        value = tomllib.loads(f"v = {text}")["v"]
        value = tuple(value) if isinstance(value, list) else value
        if not field:
            config = dataclasses.replace(config, **{section: value})
            continue
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section),
                                                                             **{field: value})})
    return config


def wide(frame: pd.DataFrame, ids: list[str], column: str, horizon: int) -> np.ndarray:
    """(n_series, horizon) values of ``column`` in the order of ``ids`` from a long frame."""
    ordered = frame.set_index("unique_id").loc[ids]
    return ordered[column].to_numpy("float64").reshape(len(ids), horizon)


def score(y_true: np.ndarray, forecasts: pd.DataFrame, ids: list[str], insample: list[np.ndarray],
          quantiles: tuple[float, ...], naive2_ref: tuple[float, float]) -> dict[str, float]:
    """sMAPE, MASE and OWA of the point forecast; MSIS and coverage when the 95 % quantiles exist."""
    h, m = y_true.shape[1], int(M4_HOURLY["seasonality"])
    point = wide(forecasts, ids, "forecast", h)
    out = {"smape": smape(y_true, point), "mase": mase(y_true, point, insample, m)}
    out["owa"] = owa(out["smape"], out["mase"], *naive2_ref)
    has = {round(q, 6) for q in quantiles}
    if {0.025, 0.975} <= has:
        lo, hi = wide(forecasts, ids, quantile_name(0.025), h), wide(forecasts, ids, quantile_name(0.975), h)
        out["msis"] = msis(y_true, lo, hi, insample, m, alpha=0.05)
        out["coverage_95"] = coverage(y_true, lo, hi)
    return out


def baseline_scores(y_true: np.ndarray, insample: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Seasonal naive and Naive2 computed here on the same target (checks the metric code)."""
    h, m = y_true.shape[1], int(M4_HOURLY["seasonality"])
    snaive = seasonal_naive_batch(insample, h, m)
    n2 = np.stack([naive2(x, h, m) for x in insample])
    out = {}
    for name, pred in (("Naive2", n2), ("Seasonal naive", snaive)):
        out[name] = {"smape": smape(y_true, pred), "mase": mase(y_true, pred, insample, m)}
    ref = (out["Naive2"]["smape"], out["Naive2"]["mase"])
    for row in out.values():
        row["owa"] = owa(row["smape"], row["mase"], *ref)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder holding Hourly-train.csv and Hourly-test.csv")
    parser.add_argument("--config", default=str(ROOT / "models" / "m4_hourly.toml"))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SERIES} series, 2 epochs (smoke run)")
    parser.add_argument("--validate", action="store_true",
                        help="score the last 48 hours of the training part instead of the test file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--json", help="also write the scores and timings to this file")
    parser.add_argument("--forecasts", help="also write the forecasts frame (CSV) to this file, for study")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    config = apply_overrides(load_config(args.config), args.set)
    if args.quick:
        config = dataclasses.replace(config, training=dataclasses.replace(
            config.training, epochs=min(config.training.epochs, 2)))
    horizon = int(M4_HOURLY["horizon"])
    if config.horizon != horizon:
        raise SystemExit(f"the config's horizon is {config.horizon}; M4 Hourly is scored at {horizon}")
    columns = config.data.columns()
    train = load_m4_hourly(args.data_dir, split="train")
    ids = list(pd.unique(train["unique_id"]))
    if args.quick:
        ids = ids[:QUICK_SERIES]
        train = train[train["unique_id"].isin(ids)]

    if args.validate:
        history = before_first_origin(train, columns, horizon, 1, horizon)
        target = train.drop(history.index)
        mode = "validation (last 48 h of each training series; test file unread)"
    else:
        history = train
        target = load_m4_hourly(args.data_dir, split="test")
        target = target[target["unique_id"].isin(ids)]
        mode = "test (Hourly-test.csv)"
    y_true = wide(target.rename(columns={columns.target: "y"}), ids, "y", horizon)
    insample = [g.to_numpy("float64") for _, g in history.groupby("unique_id", sort=False)[columns.target]]
    insample = [insample[i] for i in pd.Index(pd.unique(history["unique_id"])).get_indexer(ids)]

    start = time.perf_counter()
    model = make_forecaster(config, verbose=args.verbose).fit(history)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    forecasts = model.predict(history)
    predict_s = time.perf_counter() - start

    baselines = baseline_scores(y_true, insample)
    if args.validate or args.quick:
        ref = (baselines["Naive2"]["smape"], baselines["Naive2"]["mase"])
    else:
        ref = (float(M4_HOURLY["naive2_smape"]), float(M4_HOURLY["naive2_mase"]))
    ours = score(y_true, forecasts, ids, insample, model.quantiles_, ref)
    lstm_share = float((forecasts["model"] == "lstm").mean())

    print(f"\nM4 Hourly, {len(ids)} series, h={horizon}: {mode}")
    print(f"config {args.config}" + (f"  overrides {' '.join(args.set)}" if args.set else ""))
    print(f"best epoch {model.best_epoch_} of {len(model.history_.get('loss', []))}; "
          f"{lstm_share:.0%} of forecasts from the network")
    print("\n| method | sMAPE | MASE | OWA |\n| --- | --- | --- | --- |")
    print(f"| **ours ({config.name})** | {ours['smape']:.3f} | {ours['mase']:.3f} | {ours['owa']:.3f} |")
    for name, row in baselines.items():
        print(f"| {name}, computed here | {row['smape']:.3f} | {row['mase']:.3f} | {row['owa']:.3f} |")
    if not (args.validate or args.quick):
        for name, s, m_, o in PUBLISHED:
            print(f"| {name} (published) | {s:.3f} | {m_:.3f} | {o:.3f} |")
    if "msis" in ours:
        print(f"\n95 % interval: MSIS {ours['msis']:.3f}, coverage {ours['coverage_95']:.3f}. {PUBLISHED_MSIS}")
    print(f"\nwall-clock on this machine ({os.cpu_count()} CPU cores): train {fit_s:.0f} s, "
          f"forecast {predict_s:.1f} s, total {fit_s + predict_s:.0f} s")
    if args.forecasts:
        forecasts.to_csv(args.forecasts, index=False)
    if args.json:
        record = {"config": args.config, "overrides": args.set, "mode": "validate" if args.validate else "test",
                  "quick": args.quick, "n_series": len(ids), "scores": ours, "baselines": baselines,
                  "fit_s": fit_s, "predict_s": predict_s, "best_epoch": model.best_epoch_,
                  "epochs_run": len(model.history_.get("loss", []))}
        Path(args.json).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
