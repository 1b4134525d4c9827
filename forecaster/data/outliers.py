"""Gross outliers: readings so far outside their series' robust range that they cannot be the series.

One reading of 1e12 in a series around 377 (a meter glitch, a unit slip, a sentinel value) made the
standard scaler take it as the series' scale and the statistical methods as its trend: forecasts from
-1.7e10 to 4e10, with exit 0. This module owns the rule that finds such readings; `validate_frame`
applies it (the one place on the data's path), so the scaler, the network's windows, the statistical
members, the fallback and the backtest all read the same treated history, at fit and at predict
(the local, streaming and Spark engines, the scheduled job and the served model share the forecaster's
`predict`, which validates its input).

The rule, per series, on its observed values. With ``q1``, ``q3`` the quartiles and ``IQR = q3 - q1``,
a reading is out of its series' range when it lies more than ``threshold`` IQRs beyond the quartiles
(below ``q1 - threshold * IQR`` or above ``q3 + threshold * IQR``). Tukey's fences take 1.5 or 3 IQRs;
the default here, `DEFAULT_THRESHOLD` = 20, is far wider: on the training parts of the development
suite's eight sets (M4 Hourly, M3, M1) the rule as a whole treats nothing at 20 IQRs; at 10 it would
treat 8 readings, at Tukey's 3 IQRs 149 (docs/outliers.md). The quartiles ignore the outliers themselves as
long as they are fewer than a quarter of the series' readings; a series with more extreme readings than
that has no one level to be judged against, and nothing in it is treated.

What keeps real features of a series, and where the rule says it cannot tell:

* **Seasonal peaks.** A reading out of its series' range is an outlier only if it is also out of the
  range of its own seasonal position (the same hour of the day, hour of the week, month of the year:
  each of the frequency's `seasonal_periods` whose position holds at least `MIN_PHASE_READINGS`
  readings), by the same rule: a daily peak hour 100 times the night's level recurs at its hour and
  stays. Where the position holds fewer readings (a monthly series of three years, an hourly one of
  four days), a reading out of its series' range on the same side as another reading of its position
  in another cycle (a yearly peak that recurs each November) recurs there and stays too: a glitch
  does not come back at the same time of the year. So does one out of range on the same side as
  another reading a whole number of years before or after it, within `YEAR_SLACK_DAYS` (Black Friday
  or Christmas in daily or weekly data, whose seasonal periods are the week, or whose weeks drift
  against the year).
* **Bursts.** A reading is treated only if it is also more than ``threshold`` spreads from the nearest
  reading within the series' range on each side (`_apart`): a reading inside a burst of high readings
  (M4 Hourly's H130: 2,490, 5,892, 5,756, 3,740 in four hours) is part of an event, not a glitch.
* **A level shift.** A level shift inside the series moves the quartiles and stays within the fences.
  Out-of-range readings that end a series in a run of `LEVEL_RUN` or more cannot be told from a broken
  sensor there, and they are what the forecast starts from: treating them would forecast the old level,
  keeping them would forecast 1e12 (the members follow them, the network does not: both were seen in a
  probe). That is `OutlierError` (a `DataError`: exit 3, HTTP 400) naming the series and the readings,
  saying to correct them or to set ``outliers = "keep"`` to forecast from them as given. A shorter run
  at the end (one or two readings: a spike at the forecast's starting point) is treated.
* **Flat or intermittent series.** Where the middle half of a series is constant (IQR = 0: intermittent
  demand, mostly zeros, or a flat series), the spread is the median of its readings' non-zero deviations
  from the median (the typical size of a sale) when at least two readings differ from it, else the
  median's own size (a flat series at 377 with one reading of 1e12); a series flat at 0 with one other
  reading is left as it is (one sale cannot be told from one glitch).

The treatment: the reading is marked unobserved (``observed`` = 0, like a missing target, so neither the
scaler nor the training targets read it) and takes the value linear interpolation between its neighbours
gives (`interpolate_series`, as ``missing_policy = "fill"`` fills; 0.0 under "mask", as masked values):
nothing is dropped, and each treated reading is counted in the validation report (``outlier_readings``,
and per series).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

#: Choices of the ``outliers`` parameter: treat gross outliers, or keep every reading as given.
TREATMENTS = ("interpolate", "keep")
#: The default width of the fences, in IQRs beyond the quartiles (module doc).
DEFAULT_THRESHOLD = 20.0
#: The fewest readings a seasonal position needs for its own range to be judged (five cycles: the
#: quartiles of five readings ignore one spike among them).
MIN_PHASE_READINGS = 5
#: Out-of-range readings that end a series in a run this long or longer are a new level or bad readings,
#: which the data cannot tell apart: `OutlierError` (module doc).
LEVEL_RUN = 3
#: How far from a whole number of years (365.25 days) another out-of-range reading may lie for a reading
#: to recur yearly: a week, as far as a holiday tied to a weekday (Black Friday) moves between years.
YEAR_SLACK_DAYS = 7.0


@dataclass(frozen=True)
class Outliers:
    """What `find_outliers` found: ``treat``, a mask of the rows to treat; ``ending``, a mask of the rows
    of out-of-range runs of `LEVEL_RUN` or more that end their series (a new level or bad readings:
    not treated, `OutlierError` for the caller)."""

    treat: np.ndarray
    ending: np.ndarray


#: Series sorted at a time by `_group_quantiles`: a block of similar lengths (`_blocks`), padded to the longest.
_BLOCK = 1024


def _blocks(ascending: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """``order`` (series by ``ascending`` size) cut into blocks of at most `_BLOCK` series whose longest is
    under twice their shortest, so a block's padding is under its own values: one series of a million
    values among a thousand short ones is a block of its own, not a thousand rows of a million."""
    octave = np.floor(np.log2(np.maximum(ascending, 1))).astype(np.int64)
    bounds = np.flatnonzero(np.r_[True, octave[1:] != octave[:-1], True])
    return [order[first : min(first + _BLOCK, end)] for start, end in pairwise(bounds)
            for first in range(start, end, _BLOCK)]


def _group_quantiles(values: np.ndarray, keys: np.ndarray, levels: tuple[float, ...]) -> list[np.ndarray]:
    """Each row's group's quantiles at ``levels`` (linear interpolation, as pandas' and NumPy's default),
    groups being the runs of equal ``keys`` (each group's rows contiguous, as a validated frame's series
    are). Series of similar length are sorted as rows of a padded block: one pass over memory, where
    pandas' grouped quantile or a global argsort took several seconds for 4 M rows."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    found = [np.empty(len(starts)) for _ in levels]
    by_size = np.argsort(sizes, kind="stable")
    for groups in _blocks(sizes[by_size], by_size):
        size = sizes[groups]
        column = np.arange(int(size.max()))
        inside = column[None, :] < size[:, None]
        block = np.full(inside.shape, np.inf)
        block[inside] = values[(starts[groups][:, None] + column[None, :])[inside]]
        block.sort(axis=1)
        for j, level in enumerate(levels):
            at = level * (size - 1)
            low = np.floor(at).astype(np.int64)
            high = np.minimum(low + 1, size - 1)
            lo = block[np.arange(len(groups)), low]
            found[j][groups] = lo + (at - low) * (block[np.arange(len(groups)), high] - lo)
    return [np.repeat(value, sizes) for value in found]


def _outside(values: np.ndarray, keys: np.ndarray, threshold: float,
             min_deviations: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(beyond, judged, spread, above): whether each of ``values`` lies beyond the fences of its group (a run
    of rows sharing a ``keys`` value), ``threshold`` spreads beyond the group's quartiles, and whether its group
    has a spread to judge by, and that spread (module doc; the typical non-zero deviation stands in for a zero IQR where
    at least ``min_deviations`` readings differ from the median), and whether it lies above the group's median."""
    q1, median, q3 = _group_quantiles(values, keys, (0.25, 0.5, 0.75))
    spread = q3 - q1
    flat = np.flatnonzero(~(spread > 0))
    if len(flat):  # intermittent or flat groups: the typical non-zero deviation, else the level
        deviation = np.abs(values[flat] - median[flat])
        nonzero = pd.Series(np.where(deviation > 0, deviation, np.nan))
        grouped = nonzero.groupby(keys[flat])
        typical = grouped.transform("median").to_numpy()
        count = grouped.transform("count").to_numpy()
        level = np.abs(median[flat])
        # Where the few readings that differ are themselves the glitches (two of 1e12 in a flat series), their
        # typical deviation is no spread: a non-zero level bounds it.
        typical = np.where(level > 0, np.fmin(typical, level), typical)
        spread[flat] = np.where(count >= min_deviations, typical, level)
    judged = spread > 0
    with np.errstate(invalid="ignore"):
        beyond = judged & ((values < q1 - threshold * spread) | (values > q3 + threshold * spread))
    return beyond, judged, spread, values > median


def _recurring(phase: np.ndarray, out: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Whether each out-of-range reading (``out``) shares its seasonal position (``phase``) and its side
    of the series' median (``above``) with another out-of-range reading: a peak that recurs each cycle."""
    key = pd.Series(phase * 2 + above)
    return out & (key.map(key[out].value_counts()).fillna(0).to_numpy() >= 2)


def _yearly(days: np.ndarray, codes: np.ndarray, out: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Whether each out-of-range reading (``out``; ``days``: its time in days) has another out-of-range
    reading of its series on the same side of the median (``above``) a whole number of years away,
    within `YEAR_SLACK_DAYS`: a yearly event (module doc)."""
    found = np.zeros(len(out), dtype=bool)
    if out.sum() < 2:
        return found
    # One sorted line of (series, side, time): a group's entries lie within ``span`` of each other, and a
    # query reaches at most span + a year + the slack beyond them, short of the next group's.
    span = float(days[out].max() - days[out].min())
    width = 3 * span + 1e4
    line = (codes[out].astype(np.float64) * 2 + above[out]) * width + days[out]
    line.sort()
    at = (codes.astype(np.float64) * 2 + above) * width + days
    for years in range(1, int(span / 365.25 + 1) + 1):
        for sign in (1.0, -1.0):
            centre = at + sign * 365.25 * years
            low = np.searchsorted(line, centre - YEAR_SLACK_DAYS, side="left")
            high = np.searchsorted(line, centre + YEAR_SLACK_DAYS, side="right")
            found |= high > low
    return found & out


def _apart(values: np.ndarray, codes: np.ndarray, rows: np.ndarray, anchors: np.ndarray,
           distance: np.ndarray) -> np.ndarray:
    """Whether each of ``rows`` lies more than ``distance`` (one per row) from the nearest reading within
    its series' range (``anchors``, sorted rows) on each side that has one: a reading inside a burst of
    high readings (M4 Hourly's H130: 2,490, 5,892, 5,756, 3,740 in four hours) is part of an event, not a
    spike; one reading of 1e12 among readings of 377, or a run of them, is apart from both sides."""
    apart = np.ones(len(rows), dtype=bool)
    if not len(anchors):
        return apart
    at = np.searchsorted(anchors, rows)
    for side in (at - 1, at):  # the nearest anchor before, and after
        has = (side >= 0) & (side < len(anchors))
        near = anchors[np.clip(side, 0, len(anchors) - 1)]
        has &= codes[near] == codes[rows]
        apart &= ~has | (np.abs(values[rows] - values[near]) > distance)
    return apart


def find_outliers(values: np.ndarray, valid: np.ndarray, codes: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                  periods: tuple[int, ...] = (1,), times: np.ndarray | None = None) -> Outliers:
    """The gross outliers among ``values``: rows sharing a ``codes`` value are one series, in time order
    and contiguous; only rows where ``valid`` are judged or used to judge; ``periods`` are the series'
    seasonal periods in steps; ``times`` (nanoseconds since the epoch), when given, lets a reading recur yearly (module
    doc)."""
    treat = np.zeros(len(values), dtype=bool)
    keep = valid & np.isfinite(values)
    if not keep.any():
        return Outliers(treat, np.zeros(len(values), dtype=bool))
    rows = np.flatnonzero(keep)
    out, _, spread, above = _outside(values[rows], codes[rows], threshold)
    if out.any():  # only the few series with a candidate: their seasonal positions judged too
        anchors = rows[~out]  # the readings within their series' range
        candidate = np.zeros(int(codes.max()) + 1, dtype=bool)
        candidate[codes[rows][out]] = True
        series = candidate[codes[rows]]
        rows, out, spread, above = rows[series], out[series], spread[series], above[series]
        starts = np.searchsorted(codes, codes[rows])  # each series' first row (rows grouped by code)
        position = rows - starts
        beyond_series = out.copy()  # out of the series' range, before the seasonal positions judge them
        for period in periods:
            if period <= 1:
                continue
            phase = codes[rows].astype(np.int64) * period + position % period
            sizes = pd.Series(phase).map(pd.Series(phase).value_counts()).to_numpy()
            order = np.argsort(phase, kind="stable")  # each position's readings contiguous
            beyond, judged = np.empty_like(out), np.empty_like(out)
            beyond[order], judged[order], _, _ = _outside(values[rows][order], phase[order], threshold,
                                                          min_deviations=3)
            few = sizes < MIN_PHASE_READINGS  # too few cycles to judge the position: does the peak recur?
            out &= (~(judged & ~few) | beyond) & ~(few & _recurring(phase, out, above))
        if times is not None and out.any():
            days = times[rows] / 86_400e9
            out &= ~_yearly(days, codes[rows], beyond_series, above)
        out &= _apart(values, codes, rows, anchors, threshold * spread)
        treat[rows[out]] = True
    # A run of out-of-range readings ending a series: a new level or bad readings (module doc).
    ending = np.zeros(len(values), dtype=bool)
    if treat.any():
        ends = np.r_[np.flatnonzero(codes[1:] != codes[:-1]), len(codes) - 1]
        for end in ends[treat[ends] | ~keep[ends]]:
            first = end
            while first > 0 and codes[first - 1] == codes[end] and (treat[first - 1] or not keep[first - 1]):
                first -= 1
            run = slice(first, end + 1)
            if treat[run].sum() >= LEVEL_RUN:
                ending[run] = treat[run]
                treat[run] = False
    return Outliers(treat, ending)
