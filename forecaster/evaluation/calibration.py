"""Conformal calibration of the quantile head's intervals, per horizon step, from backtest errors.

The network's quantiles are learnt by the pinball loss on training windows; on new data their
intervals are often too narrow (or too wide). Each symmetric pair of trained quantiles ``(q, 1 - q)``
is an interval of nominal coverage ``1 - 2q``. On the backtest's out-of-sample forecasts, each
(series, window, horizon step) gives a conformity score, the actual's distance outside the interval
in units of the interval's own width:

    s = max(lo - y, y - hi) / (hi - lo)          (negative inside the interval)

For horizon step j, the correction ``c_j`` is the ``ceil((n_j + 1)(1 - 2q)) / n_j`` empirical quantile
of that step's n_j scores (split conformal; the largest score when there are too few), and the
calibrated interval is ``[lo - c_j w, hi + c_j w]`` with ``w = hi - lo``: wider where the backtest
found it too narrow, narrower where too wide. Scores in width units pool series of any scale and
keep each forecast's own uncertainty shape. With fewer than ``MIN_PER_STEP`` scores at a step, all
steps' scores are pooled into one correction. Rows the model answered with its seasonal-naive
fallback are left out (they have intervals of their own), and so are forecasts with a zero width.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from forecaster.contract import FALLBACK_COLUMN, WINDOW_COLUMN, quantile_name
from forecaster.data.schema import Columns
from forecaster.evaluation.metrics import intervals

MIN_PER_STEP = 30


def _correction(scores: np.ndarray, coverage: float) -> float:
    n = len(scores)
    k = math.ceil((n + 1) * coverage)
    ordered = np.sort(scores)
    return float(ordered[min(k, n) - 1])


def conformal_corrections(forecasts: pd.DataFrame, columns: Columns, quantiles: tuple[float, ...],
                          horizon: int) -> dict[str, list[float]]:
    """Per interval (its `forecaster.evaluation.metrics.Interval.key`, ``"q0.1-q0.9"``), the ``horizon`` width
    multipliers ``c_j`` (see the module doc).

    ``forecasts`` is a backtest's forecast frame: id, time, target, ``window``, the quantile columns and
    ``fallback``, each (series, window) with its steps in time order.
    """
    rows = forecasts
    if FALLBACK_COLUMN in rows.columns:
        rows = rows[~rows[FALLBACK_COLUMN].to_numpy(bool)]
    step = rows.groupby([columns.id, WINDOW_COLUMN], sort=False).cumcount().to_numpy()
    y = rows[columns.target].to_numpy("float64")
    out: dict[str, list[float]] = {}
    for interval in intervals(quantiles):
        lo, hi = interval.lo, interval.hi
        low, high = rows[quantile_name(lo)].to_numpy("float64"), rows[quantile_name(hi)].to_numpy("float64")
        width = high - low
        usable = np.isfinite(y) & np.isfinite(width) & (width > 0)
        scores = np.maximum(low - y, y - high)[usable] / width[usable]
        steps = step[usable]
        coverage = interval.nominal
        if not len(scores):
            continue
        per_step = [scores[steps == j] for j in range(horizon)]
        if min(len(s) for s in per_step) < MIN_PER_STEP:
            out[interval.key] = [_correction(scores, coverage)] * horizon
        else:
            out[interval.key] = [_correction(s, coverage) for s in per_step]
    return out


def apply_corrections(values: np.ndarray, quantiles: tuple[float, ...],
                      corrections: dict[str, list[float]]) -> np.ndarray:
    """``values`` (n, H, Q) sorted quantile forecasts with each calibrated pair widened or narrowed per
    step. Pairs are corrected from the innermost out, and a bound never passes the next inner
    quantile (the median, or the pair's centre), so the quantiles stay in order and the median stays."""
    out = values.copy()
    index = {q: i for i, q in enumerate(quantiles)}
    h = values.shape[1]
    median = next((i for q, i in index.items() if abs(q - 0.5) < 1e-9), None)
    inner_lo = inner_hi = None
    for interval in sorted(intervals(quantiles), key=lambda pair: -pair.lo):
        lo, hi = interval.lo, interval.hi
        low, high = values[..., index[lo]], values[..., index[hi]]
        if inner_lo is None:
            inner_lo = inner_hi = values[..., median] if median is not None else (low + high) / 2
        c = corrections.get(interval.key)
        if c is not None:
            c = np.asarray(c[:h], dtype=values.dtype)[None, :]
            width = high - low
            out[..., index[lo]] = np.minimum(low - c * width, inner_lo)
            out[..., index[hi]] = np.maximum(high + c * width, inner_hi)
        inner_lo, inner_hi = out[..., index[lo]], out[..., index[hi]]
    return out
