"""The seasonal naive's 80 % interval on short histories: its errors' own quantiles against the errors
pooled with their negatives, on the development suite's validation windows (each series' last horizon of
the official training part; the test parts are not read).

The fallback forecasts series too short for the network with the seasonal naive, so its interval is what
those series get. Each history is cut to its last ``n`` values before the window; the rule of
`forecaster.models.baselines.MIN_OWN_ERRORS` was chosen from this table (docs/accuracy.md).

    PYTHONPATH=. .venv/bin/python bench/study_naive_intervals.py [--sets m3_yearly m1_monthly ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dev_suite import load_set

from forecaster.models import baselines as B

SETS = {"m3_yearly": 1, "m1_yearly": 1, "m3_other": 1, "m3_quarterly": 4, "m1_quarterly": 4,
        "m3_monthly": 12, "m1_monthly": 12}
LENGTHS = (3, 5, 8, 12, 20, 40)


def interval(history: np.ndarray, horizon: int, m: int, pooled: bool) -> np.ndarray:
    """(horizon, 2): the 10 % and 90 % quantiles, from the errors' own quantiles or pooled ones."""
    lag = m if history.size > m else 1
    errors = history[lag:] - history[:-lag]
    if pooled:
        errors = np.concatenate([errors, -errors])
    point = B.seasonal_naive(history, horizon, m)
    steps = np.sqrt(np.ceil(np.arange(1, horizon + 1) / lag))
    return point[:, None] + steps[:, None] * np.quantile(errors, [0.1, 0.9])[None, :]


def interval_score(q: np.ndarray, actual: np.ndarray, scale: np.ndarray, alpha: float = 0.2) -> float:
    """The mean interval (Winkler) score of an 80 % interval, each series divided by its MAE of naive steps."""
    lo, hi = q[..., 0], q[..., 1]
    score = (hi - lo) + 2 / alpha * ((lo - actual) * (actual < lo) + (actual - hi) * (actual > hi))
    return float(np.mean(score / scale[:, None]))


def coverage(q: np.ndarray, actual: np.ndarray) -> float:
    """The share of actual values inside the interval."""
    return float(np.mean((actual >= q[..., 0]) & (actual <= q[..., 1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    print("set, values kept, series, errors: coverage own -> pooled; scaled interval score own -> pooled")
    for name in args.sets:
        m = SETS[name]
        train, test = load_set(name)
        horizon = int(test.groupby("unique_id").size().min())
        full = [g["y"].to_numpy(float) for _, g in train.groupby("unique_id", sort=True)]
        for n in LENGTHS:
            kept = [y for y in full if y.size >= n + horizon]
            if len(kept) < 20:
                continue
            histories = [y[:-horizon][-n:] for y in kept]
            actual = np.array([y[-horizon:] for y in kept])
            scale = np.array([np.mean(np.abs(np.diff(y[:-horizon]))) or 1.0 for y in kept])
            own = np.array([interval(h, horizon, m, False) for h in histories])
            pooled = np.array([interval(h, horizon, m, True) for h in histories])
            errors = n - (m if n > m else 1)

            print(f"{name} n={n} ({len(kept)} series, {errors} errors): coverage {coverage(own, actual):.3f} -> "
                  f"{coverage(pooled, actual):.3f}; score {interval_score(own, actual, scale):.2f} -> "
                  f"{interval_score(pooled, actual, scale):.2f}")


if __name__ == "__main__":
    main()
