"""Calendar features: sine/cosine encodings of where a timestamp sits in its cycles.

Which cycles are encoded depends on the frequency, so every feature varies over the data:
sub-daily -> hour of day (plus minute of hour below one hour) and day of week; daily and business
daily -> day of week and day of year; weekly -> week of year; monthly -> month of year; quarterly ->
quarter of year; yearly -> nothing.  Features use local time for time-zone-aware timestamps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

DAY_NS = 86_400_000_000_000
HOUR_NS = 3_600_000_000_000


def _cycles(freq: str) -> list[str]:
    offset = to_offset(freq)
    if isinstance(offset, pd.offsets.Tick):
        if offset.nanos < HOUR_NS:
            return ["hour", "minute", "dow"]
        if offset.nanos < DAY_NS:
            return ["hour", "dow"]
        return ["dow", "doy"]
    if isinstance(offset, (pd.offsets.Day, pd.offsets.BusinessDay, pd.offsets.CustomBusinessDay)):
        return ["dow", "doy"]
    if isinstance(offset, pd.offsets.Week):
        return ["woy"]
    if isinstance(offset, (pd.offsets.MonthBegin, pd.offsets.MonthEnd, pd.offsets.BusinessMonthBegin,
                           pd.offsets.BusinessMonthEnd, pd.offsets.SemiMonthBegin, pd.offsets.SemiMonthEnd)):
        return ["month"]
    if isinstance(offset, (pd.offsets.QuarterBegin, pd.offsets.QuarterEnd, pd.offsets.BQuarterBegin,
                           pd.offsets.BQuarterEnd)):
        return ["quarter"]
    return []


def calendar_feature_names(freq: str) -> list[str]:
    """Names of the features :func:`calendar_features` returns for ``freq``, in column order."""
    return [f"{cycle}_{fn}" for cycle in _cycles(freq) for fn in ("sin", "cos")]


def _phase(index: pd.DatetimeIndex, cycle: str) -> np.ndarray:
    """Position within the cycle as a fraction in [0, 1)."""
    if cycle == "hour":
        return (index.hour.to_numpy() + index.minute.to_numpy() / 60.0) / 24.0
    if cycle == "minute":
        return index.minute.to_numpy() / 60.0
    if cycle == "dow":
        return index.dayofweek.to_numpy() / 7.0
    if cycle == "doy":
        days = np.where(index.is_leap_year, 366.0, 365.0)
        return (index.dayofyear.to_numpy() - 1) / days
    if cycle == "woy":
        return (index.isocalendar().week.to_numpy(dtype=np.float64) - 1) / 53.0
    if cycle == "month":
        return (index.month.to_numpy() - 1) / 12.0
    if cycle == "quarter":
        return (index.quarter.to_numpy() - 1) / 4.0
    raise ValueError(f"unknown cycle {cycle!r}")


def calendar_features(timestamps: pd.Series | pd.DatetimeIndex, freq: str) -> tuple[np.ndarray, list[str]]:
    """Float32 array (n, k) of calendar features in [-1, 1] and their names (see module doc).

    Computed once per distinct timestamp and spread to the rows: many series over the same hours (a
    chunk of 8,192 series of a week's hours has 1.4 M rows but 168 distinct times) cost one series' work.
    """
    index = pd.DatetimeIndex(timestamps)
    names = calendar_feature_names(freq)
    rows, distinct = pd.factorize(index, use_na_sentinel=False)  # the rows' values, each once
    if len(distinct) == len(index):
        rows, distinct = None, index
    out = np.empty((len(distinct), len(names)), dtype=np.float32)
    for j, cycle in enumerate(_cycles(freq)):
        angle = 2.0 * np.pi * _phase(pd.DatetimeIndex(distinct), cycle)
        out[:, 2 * j] = np.sin(angle)
        out[:, 2 * j + 1] = np.cos(angle)
    return (out if rows is None else out[rows]), names
