"""Sampling frequencies: inference, normalisation, seasonal periods and per-series time grids.

Frequencies are pandas 3 offset aliases ("h", "15min", "D", "B", "W-MON", "MS", "QS-JAN", ...).  The
canonical spelling of a frequency is ``to_offset(freq).freqstr``; deprecated spellings pandas no longer
parses (upper-case "H", "T", "S", "M", "Q", "A") are rejected with a FrequencyError that suggests the
current alias rather than silently reinterpreted.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecaster.data.schema import Columns
from forecaster.errors import FrequencyError, summarize

DAY_NS = 86_400_000_000_000

_SUGGESTIONS = {"H": "h", "T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns", "M": "ME", "Q": "QE",
                "A": "YE", "Y": "YE", "BH": "bh"}


def normalize_frequency(freq: str) -> str:
    """Canonical pandas alias of ``freq`` ("W" -> "W-SUN", "QS" -> "QS-JAN"); FrequencyError if invalid."""
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError) as exc:
        stripped = str(freq).lstrip("0123456789")
        hint = _SUGGESTIONS.get(stripped)
        advice = f"; did you mean {str(freq)[: len(str(freq)) - len(stripped)]}{hint!s}?" if hint else ""
        raise FrequencyError(f"invalid frequency {freq!r}{advice}") from exc
    if offset is None:
        raise FrequencyError(f"invalid frequency {freq!r}")
    return offset.freqstr


def fixed_step_ns(freq: str, tz: object = None) -> int | None:
    """Step length in nanoseconds when every step has the same duration, else None.

    Calendar days are fixed only without a time zone (DST makes local days 23 or 25 hours long).
    """
    offset = to_offset(freq)
    if isinstance(offset, pd.offsets.Tick):
        return int(offset.nanos)
    if isinstance(offset, pd.offsets.Day) and tz is None:
        return int(offset.nanos)
    return None


def seasonal_period(freq: str) -> int:
    """Number of steps in the dominant seasonal cycle of ``freq``; 1 when there is none or it is unknown.

    Hours and multi-minute steps cycle over a day (h -> 24, 2h -> 12, 15min -> 96), single minutes and
    seconds over the next larger unit (min -> 60, s -> 60), days over a week (D -> 7, B -> 5), weeks,
    months and quarters, calendar or business ones, over a year (W -> 52, MS -> 12, BMS -> 12, QS -> 4,
    BQS -> 4).
    """
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError):
        return 1
    n = offset.n

    def per(cycle: int) -> int:
        steps, rest = divmod(cycle, n)
        return steps if rest == 0 and steps > 1 else 1

    if isinstance(offset, pd.offsets.Tick):
        if isinstance(offset, pd.offsets.Second):
            return per(60)
        if isinstance(offset, pd.offsets.Minute):
            return 60 if n == 1 else per(24 * 60)
        if isinstance(offset, pd.offsets.Hour):
            return per(24)
        return 1
    if isinstance(offset, pd.offsets.Day):
        return 7 if n == 1 else 1
    if isinstance(offset, pd.offsets.BusinessDay):
        return 5 if n == 1 else 1
    if isinstance(offset, pd.offsets.Week):
        return 52 if n == 1 else 1
    if isinstance(offset, (pd.offsets.MonthBegin, pd.offsets.MonthEnd, pd.offsets.BusinessMonthBegin,
                           pd.offsets.BusinessMonthEnd, pd.offsets.CustomBusinessMonthBegin,
                           pd.offsets.CustomBusinessMonthEnd)):
        return per(12)
    if isinstance(offset, (pd.offsets.QuarterBegin, pd.offsets.QuarterEnd, pd.offsets.BQuarterBegin,
                           pd.offsets.BQuarterEnd)):
        return per(4)
    return 1


WEEK_STEPS_MAX = 336


def seasonal_periods(freq: str) -> tuple[int, ...]:
    """The seasonal cycles worth repeating at ``freq``: the dominant one (`seasonal_period`), and for
    steps under a day, the week too when it is a whole number of at most ``WEEK_STEPS_MAX`` steps (h ->
    (24, 168), 30min -> (48, 336), 15min -> (96,), D -> (7,), MS -> (12,), YS -> (1,)): a longer week
    would make every input window longer than most series."""
    season = seasonal_period(freq)
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError):
        return (season,)
    if isinstance(offset, pd.offsets.Tick) and season > 1:
        steps = pd.Timedelta(days=7) / pd.Timedelta(offset)
        if steps == int(steps) and season < int(steps) <= WEEK_STEPS_MAX and int(steps) % season == 0:
            return (season, int(steps))
    return (season,)


def future_index(last_timestamp: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps following ``last_timestamp`` at ``freq`` (time zone kept)."""
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    offset = to_offset(freq)
    last = pd.Timestamp(last_timestamp)
    if horizon == 0:
        return pd.DatetimeIndex([], tz=last.tz).as_unit("ns")
    return pd.date_range(start=last + offset, periods=horizon, freq=offset).as_unit("ns")


def future_grid(last: pd.DatetimeIndex, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after each of ``last``, series after series: ``len(last) * horizon``.

    Fixed-length steps (hours, minutes, days without a zone) are one array operation for all series;
    calendar steps (months, weeks, zoned days) fall back to one ``date_range`` per series.
    """
    times = pd.DatetimeIndex(last)
    step = fixed_step_ns(freq, times.tz)
    if step is None or horizon <= 0 or len(times) == 0:
        parts = [future_index(t, freq, horizon) for t in times]
        return parts[0].append(parts[1:]) if parts else pd.DatetimeIndex([], tz=times.tz).as_unit("ns")
    start = times.as_unit("ns").asi8 if times.tz is None else times.tz_convert("UTC").as_unit("ns").asi8
    grid = start[:, None] + step * np.arange(1, horizon + 1, dtype=np.int64)[None, :]
    return _from_i8(grid.reshape(-1), times.tz)


def future_indexes(last: pd.Series, freq: str, horizon: int) -> dict[str, pd.DatetimeIndex]:
    """`future_index` for many series at once: ``last`` maps series id -> last timestamp."""
    flat = future_grid(pd.DatetimeIndex(last.to_numpy()), freq, horizon)
    return {str(sid): flat[k * horizon : (k + 1) * horizon] for k, sid in enumerate(last.index)}


@dataclass
class SeriesGrid:
    """The regular timestamp grid of each series, from its first to its last timestamp.

    ``positions[i]`` is input row ``i``'s step on its series' grid (-1 when the row is off the grid),
    ``lengths[s]`` the number of grid steps of series ``s`` and ``times`` all grids concatenated.
    """

    positions: np.ndarray
    lengths: np.ndarray
    times: pd.DatetimeIndex


def _from_i8(values: np.ndarray, tz: object) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(np.asarray(values, dtype=np.int64).view("M8[ns]"))
    return index.tz_localize("UTC").tz_convert(tz) if tz is not None else index


def build_grid(times: pd.DatetimeIndex, bounds: np.ndarray, freq: str) -> SeriesGrid:
    """Grid of every series at ``freq``; rows of series ``s`` are ``times[bounds[s]:bounds[s+1]]``.

    ``times`` must be sorted within each series and every series non-empty.  Fixed-length steps are
    computed with integer arithmetic; calendar offsets use one ``date_range`` per distinct
    (first, last) pair, so many series sharing a span cost one range.
    """
    times = times.as_unit("ns")
    tz = times.tz
    offset = to_offset(freq)
    counts = np.diff(bounds)
    n_series = len(counts)
    codes = np.repeat(np.arange(n_series), counts)
    i8 = times.asi8
    first = i8[bounds[:-1]]
    last = i8[bounds[1:] - 1]
    step = fixed_step_ns(freq, tz)
    if step is not None:
        rel = i8 - first[codes]
        positions = np.where(rel % step == 0, rel // step, -1)
        lengths = (last - first) // step + 1
        starts = np.concatenate([[0], np.cumsum(lengths)])
        local = np.arange(starts[-1]) - np.repeat(starts[:-1], lengths)
        grid_i8 = np.repeat(first, lengths) + local * step
        return SeriesGrid(positions, lengths, _from_i8(grid_i8, tz))

    pairs, pair_of_series = np.unique(np.stack([first, last], axis=1), axis=0, return_inverse=True)
    pair_of_series = pair_of_series.reshape(-1)
    ranges = [
        pd.date_range(_from_i8(np.array([f]), tz)[0], _from_i8(np.array([la]), tz)[0], freq=offset)
        .as_unit("ns").asi8
        for f, la in pairs
    ]
    row_pair = pair_of_series[codes]
    order = np.argsort(row_pair, kind="stable")
    pair_bounds = np.searchsorted(row_pair[order], np.arange(len(pairs) + 1))
    positions = np.full(len(i8), -1, dtype=np.int64)
    for p, grid in enumerate(ranges):
        rows = order[pair_bounds[p] : pair_bounds[p + 1]]
        if len(grid) == 0:
            continue
        pos = np.searchsorted(grid, i8[rows])
        hit = grid[np.minimum(pos, len(grid) - 1)] == i8[rows]
        positions[rows] = np.where(hit, pos, -1)
    lengths = np.array([len(ranges[p]) for p in pair_of_series], dtype=np.int64)
    grid_i8 = np.concatenate([ranges[p] for p in pair_of_series]) if n_series else np.array([], np.int64)
    return SeriesGrid(positions, lengths, _from_i8(grid_i8, tz))


def _infer_one(times: pd.DatetimeIndex) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            inferred = pd.infer_freq(times)
        except (TypeError, ValueError):
            return None
    if inferred is None:
        return None
    return to_offset(inferred).freqstr


def _series_votes(times: pd.DatetimeIndex, bounds: np.ndarray) -> list[str | None]:
    """Frequency each series with >= 3 timestamps implies (None: irregular or too short)."""
    i8 = times.asi8
    counts = np.diff(bounds)
    n_series = len(counts)
    votes: list[str | None] = [None] * n_series
    diffs = np.diff(i8, prepend=i8[:1])
    heads = bounds[:-1]
    multi = counts >= 2
    diffs[heads[multi]] = diffs[heads[multi] + 1]
    dmin = np.minimum.reduceat(diffs, heads) if n_series else np.array([], np.int64)
    dmax = np.maximum.reduceat(diffs, heads) if n_series else np.array([], np.int64)
    limit = DAY_NS if times.tz is None else DAY_NS - 1
    fast = (counts >= 3) & (dmin == dmax) & (dmin > 0) & (dmin <= limit)
    by_step: dict[int, str] = {}
    for s in np.flatnonzero(fast):
        step = int(dmin[s])
        if step not in by_step:
            by_step[step] = "D" if step == DAY_NS else to_offset(pd.Timedelta(step, unit="ns")).freqstr
        votes[s] = by_step[step]
    # Series with the same first/last timestamps and length are regular the same way, or one of them
    # has off-grid timestamps, which the grid check reports; so one infer_freq per such key suffices.
    cache: dict[tuple[int, int, int], str | None] = {}
    for s in np.flatnonzero((counts >= 3) & ~fast):
        key = (int(i8[bounds[s]]), int(i8[bounds[s + 1] - 1]), int(counts[s]))
        if key not in cache:
            cache[key] = _infer_one(times[bounds[s] : bounds[s + 1]])
        votes[s] = cache[key]
    return votes


def _fallback_votes(times: pd.DatetimeIndex, bounds: np.ndarray, series: np.ndarray) -> Counter:
    """Frequencies implied by runs of three consecutive timestamps, for series with gaps."""
    found: Counter = Counter()
    for s in series[:20]:
        chunk = times[bounds[s] : bounds[s + 1]]
        for start in range(min(len(chunk) - 2, 50)):
            inferred = _infer_one(chunk[start : start + 3])
            if inferred is not None:
                found[inferred] += 1
                break
    return found


def infer_from_sorted(times: pd.DatetimeIndex, bounds: np.ndarray, labels: list) -> str:
    """Infer the common frequency of series laid out as in :func:`build_grid`.

    Series with fewer than three timestamps do not vote.  Series whose own timestamps do not imply a
    frequency (gaps, irregular) must sit on the grid of the winning frequency; series that imply a
    different frequency are accepted only if they sit on that grid without gaps (e.g. three weekdays
    inferred as "D" inside business-daily data).  Otherwise FrequencyError names the series.
    """
    times = times.as_unit("ns")
    counts = np.diff(bounds)
    votes = _series_votes(times, bounds)
    tally = Counter(v for v in votes if v is not None)
    unresolved = np.array([s for s, v in enumerate(votes) if v is None and counts[s] >= 3], dtype=np.int64)
    if len(tally) == 1 and len(unresolved) == 0:
        return next(iter(tally))
    if not tally:
        tally = _fallback_votes(times, bounds, unresolved)
    if not tally:
        raise FrequencyError(
            "cannot infer the frequency: no series has three regularly spaced timestamps; pass freq",
            series=[labels[s] for s in unresolved],
        )
    votes_arr = np.array(votes, dtype=object)
    for candidate, _ in tally.most_common():
        grid = build_grid(times, bounds, candidate)
        on_grid = np.minimum.reduceat(grid.positions, bounds[:-1]) >= 0
        other = np.array([v is not None and v != candidate for v in votes_arr], dtype=bool)
        if on_grid.all() and (grid.lengths[other] == counts[other]).all():
            return candidate
    best = tally.most_common(1)[0][0]
    grid = build_grid(times, bounds, best)
    codes = np.repeat(np.arange(len(counts)), counts)
    off_rows = np.flatnonzero(grid.positions < 0)
    offenders = sorted(
        {int(s) for s, v in enumerate(votes) if v is not None and v != best} | set(codes[off_rows].tolist())
    )
    described = summarize([f"{f!r} ({n} series)" for f, n in tally.most_common()])
    raise FrequencyError(
        f"series do not share one regular frequency: inferred {described}; expected {best!r}",
        series=[labels[s] for s in offenders],
        timestamps=list(times[off_rows]),
    )


def infer_frequency(frame: pd.DataFrame, columns: Columns) -> str:
    """Common frequency of all series in ``frame`` (canonical alias); FrequencyError when there is none."""
    data = pd.DataFrame(
        {"id": frame[columns.id].to_numpy(), "t": pd.to_datetime(frame[columns.time])}
    ).sort_values(["id", "t"], kind="stable")
    codes, labels = pd.factorize(data["id"], sort=True)
    bounds = np.searchsorted(codes, np.arange(len(labels) + 1))
    return infer_from_sorted(pd.DatetimeIndex(data["t"]), bounds, list(labels))
