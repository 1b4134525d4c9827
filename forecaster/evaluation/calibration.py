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

Where the network's spread is not the point's (a combination that dropped the network, or holds it
among statistical members on seasonal data), the intervals come instead from the combination's own
backtest errors in units of each series' MASE scale (`scaled_offsets`, `apply_scaled`); `method` owns
which, `corrections_for` what each sets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from forecaster.contract import FALLBACK_COLUMN, FORECAST_COLUMN, LSTM, WINDOW_COLUMN, quantile_name
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


#: The prefix of a quantile's calibration key in scale units (``"scaled.q0.9"``, `scaled_offsets`).
SCALED = "scaled."
#: The forecast frame's column of each row's MASE scale (`forecaster.evaluation.backtest.run_backtest`).
SCALE_COLUMN = "scale"


def scaled_offsets(forecasts: pd.DataFrame, columns: Columns, quantiles: tuple[float, ...],
                   horizon: int, centred: bool = False) -> dict[str, list[float]]:
    """Per quantile ``q`` (key ``"scaled.q0.9"``; every quantile asked for, the median and a quantile
    without a pair included), the ``horizon`` offsets ``o_j`` of a forecast's quantile from its point in
    units of the series' MASE scale: the quantile ``q`` of the backtest's errors ``(y - forecast) /
    scale`` at step j, the conformal order statistic ``ceil((n + 1) q)`` above the median and
    ``floor((n + 1) q)`` below it (split conformal, each tail alone; the median itself for 0.5), all
    steps pooled where one has fewer than `MIN_PER_STEP` errors.

    Why: where the combined point is not the network's (a combination that dropped the network), the
    network's spread says little about the combination's errors, and widening it by how often it missed
    (`conformal_corrections`) made M1 Yearly's intervals far too wide (docs/accuracy.md); errors in
    units of the series' own scale pool series of any size and take the combination's error straight
    from the windows. ``forecasts``: a backtest's forecast frame with `SCALE_COLUMN`; fallback rows and
    rows without a finite positive scale or actual are left out. No usable row: {}.

    ``centred``: each step's errors less their median (the median's offset 0: the point), the spread
    taken and the backtest's bias left (`method`: where the backtest's network is in the point, its bias
    is not the final network's).
    """
    rows = forecasts
    if FALLBACK_COLUMN in rows.columns:
        rows = rows[~rows[FALLBACK_COLUMN].to_numpy(bool)]
    if SCALE_COLUMN not in rows.columns or not len(rows):
        return {}
    step = rows.groupby([columns.id, WINDOW_COLUMN], sort=False).cumcount().to_numpy()
    scale = rows[SCALE_COLUMN].to_numpy("float64")
    errors = rows[columns.target].to_numpy("float64") - rows[FORECAST_COLUMN].to_numpy("float64")
    usable = np.isfinite(errors) & np.isfinite(scale) & (scale > 0)
    errors, step = errors[usable] / scale[usable], step[usable]
    if not len(errors):
        return {}
    per_step = [np.sort(errors[step == j]) for j in range(horizon)]
    if min(len(e) for e in per_step) < MIN_PER_STEP:
        per_step = [np.sort(errors)] * horizon
    # Centred: each order statistic less its step's median (the median's own offset then 0 exactly;
    # the median of the shifted errors kept a rounding of the shift).
    centre = [float(np.median(e)) if centred else 0.0 for e in per_step]
    return {f"{SCALED}{quantile_name(q)}": [_order_statistic(e, q) - c for e, c in zip(per_step, centre)]
            for q in sorted(set(quantiles))}


def _order_statistic(ordered: np.ndarray, q: float) -> float:
    n = len(ordered)
    if abs(q - 0.5) < 1e-9:
        return float(np.median(ordered))
    k = math.ceil((n + 1) * q) if q > 0.5 else math.floor((n + 1) * q)
    return float(ordered[min(max(k, 1), n) - 1])


def apply_scaled(values: np.ndarray, quantiles: tuple[float, ...], offsets: dict[str, list[float]],
                 scale: np.ndarray) -> np.ndarray:
    """``values`` (n, H, 1 + quantiles): the point, then the quantiles; each quantile with offsets
    (`scaled_offsets`) set to the point plus the series' ``scale`` (n) times its step's offset, then
    all sorted. Series whose scale is not finite and positive (a constant history) keep theirs."""
    out = values.copy()
    ok = np.isfinite(scale) & (scale > 0)
    h = values.shape[1]
    for j, q in enumerate(quantiles):
        o = offsets.get(f"{SCALED}{quantile_name(q)}")
        if o is not None:
            moved = values[..., 0] + scale[:, None] * np.asarray(o[:h], dtype="float64")[None, :]
            out[ok, :, 1 + j] = moved[ok]
    out[..., 1:] = np.sort(out[..., 1:], axis=-1)
    return out


#: How `method` says a forecaster's intervals are calibrated (logged as ``calibration.method``).
WIDTH_UNITS, SCALE_UNITS, SCALE_UNITS_CENTRED = "width_units", "scale_units", "scale_units_centred"


def method(season: int, weights: Mapping[str, float]) -> str:
    """How a forecaster whose combination weighs its members ``weights`` (``"lstm"`` the network) on data
    of seasonal period ``season`` calibrates its intervals on its backtest (`corrections_for`):

    - the network dropped (weight 0): `SCALE_UNITS`, the combination's errors in units of each series'
      MASE scale (`scaled_offsets`): the network's spread says nothing of that point (M1 Yearly, sixth
      session);
    - seasonal data with the network one member among statistical ones: `SCALE_UNITS_CENTRED`, the
      same errors' spread around the point, their median (the backtest network's bias) left out;
    - otherwise (the network alone, or data without a season with the network kept): `WIDTH_UNITS`,
      the network's quantiles widened or narrowed (`conformal_corrections`): they are the point's own
      spread, or the scale units lost (M3 Yearly, sixth session).

    Why (docs/accuracy.md, issue #27, seventh session): on M3's and M1's monthly and quarterly sets,
    each backtest window calibrated on the other and the validation window on both, the centred scale
    units had a lower MSIS than the width corrections at 10 of 12 such origins and a lower pinball at
    11, and at every validation window (the backtest's network calibrating the final one, as a
    training run does) a lower MSIS than uncalibrated quantiles too; the bias kept instead lost to the
    uncalibrated ones on M3 Quarterly's. The network alone (M4 Hourly) did better widened at 2 of 3.
    Read once on the four sets' test parts: MSIS 2-8 % lower than the width corrections on three, 3.8 %
    higher on M3 Monthly.
    """
    network = weights.get(LSTM, 0.0)
    if network <= 0.0:
        return SCALE_UNITS
    others = any(w > 0.0 for member, w in weights.items() if member != LSTM)
    return SCALE_UNITS_CENTRED if others and season > 1 else WIDTH_UNITS


def corrections_for(how: str, forecasts: pd.DataFrame, columns: Columns, quantiles: tuple[float, ...],
                horizon: int) -> dict[str, list[float]]:
    """The calibration `method` named ``how`` sets from a backtest's ``forecasts``: the width corrections
    always (`conformal_corrections`: series without a scale keep them), and in scale units the offsets
    (`scaled_offsets`, centred for `SCALE_UNITS_CENTRED`) that `apply_scaled` then applies instead."""
    out = conformal_corrections(forecasts, columns, quantiles, horizon)
    if how != WIDTH_UNITS:
        out.update(scaled_offsets(forecasts, columns, quantiles, horizon, centred=how == SCALE_UNITS_CENTRED))
    return out


def scaled_in(calibration: dict[str, list[float]]) -> bool:
    """Whether ``calibration`` holds offsets in scale units (`scaled_offsets`)."""
    return any(key.startswith(SCALED) for key in calibration)
