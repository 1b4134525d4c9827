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

from forecaster.evaluation.metrics import coverage, msis
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    print("set, values kept, series, errors: coverage own -> pooled; MSIS (alpha 0.2) own -> pooled")
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
            before = [y[:-horizon] for y in kept]  # MSIS's scale: the whole history before the window
            own = np.array([interval(h, horizon, m, False) for h in histories])
            pooled = np.array([interval(h, horizon, m, True) for h in histories])
            errors = n - (m if n > m else 1)

            def cover(q: np.ndarray, actual: np.ndarray = actual) -> float:
                return float(coverage(actual, q[..., 0], q[..., 1]))

            def score(q: np.ndarray, actual: np.ndarray = actual, before: list = before, m: int = m) -> float:
                return float(msis(actual, q[..., 0], q[..., 1], before, m, alpha=0.2))

            print(f"{name} n={n} ({len(kept)} series, {errors} errors): coverage {cover(own):.3f} -> "
                  f"{cover(pooled):.3f}; score {score(own):.2f} -> {score(pooled):.2f}")


if __name__ == "__main__":
    main()
