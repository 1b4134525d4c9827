"""Time splits, as per-series cutoff timestamps: the one place where time is cut.

A *cutoff* is the timestamp of the last row a model may see of a series; what comes after it is what
it must forecast. Every split in the product is made here:

- fit's validation split: each series' last ``horizon`` rows are held out for early stopping
  (`holdout_cutoffs` with ``last = horizon``);
- the backtest's rolling origins: window k (0 = oldest) of ``n_windows``, ``step`` apart, holds out the
  last ``origin_offset(horizon, n_windows, step, k)`` rows, so the newest window forecasts exactly the
  last ``horizon`` rows of each series; windows are aligned on each series' own end;
- the scheduled job's as-of cut: the rows at or before the as-of time (`as_of_cut`, `as_of_split`).

Frames are validated frames: one row per series and time step, sorted by series then time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.contract import CUTOFF_COLUMN, WINDOW_COLUMN
from forecaster.data.schema import Columns, observations_only
from forecaster.data.validation import parse_times
from forecaster.errors import ConfigError, MissingColumnError


def origin_offset(horizon: int, n_windows: int, step: int, k: int) -> int:
    """How many rows of each series window ``k`` of a rolling-origin backtest holds out."""
    return horizon + (n_windows - 1 - k) * step


def steps_from_end(frame: pd.DataFrame, columns: Columns) -> np.ndarray:
    """For each row, how many rows of its series come after it (0 for the last)."""
    return frame.groupby(columns.id, sort=False).cumcount(ascending=False).to_numpy()


def has_cutoff(lengths: np.ndarray, last: int) -> np.ndarray:
    """Which series of ``lengths`` rows have a cutoff ``last`` rows before their end: more than ``last``
    rows (one seen row at least). The backtest scores a series only where it has one (``last`` = the
    horizon for its newest window)."""
    return np.asarray(lengths) > last


def holdout_cutoffs(frame: pd.DataFrame, columns: Columns, last: int) -> pd.Series:
    """Per series (index: id), the time of its last row before its final ``last`` rows.

    Series without one (`has_cutoff`: nothing would be left to see) are absent.
    """
    rows = frame[steps_from_end(frame, columns) == last]
    return pd.Series(rows[columns.time].to_numpy(), index=rows[columns.id].to_numpy(), name=CUTOFF_COLUMN)


def _cutoff_per_row(frame: pd.DataFrame, columns: Columns, cutoffs: pd.Series) -> pd.Series:
    return frame[columns.id].map(cutoffs)


def history(frame: pd.DataFrame, columns: Columns, cutoffs: pd.Series) -> pd.DataFrame:
    """The rows at or before each series' cutoff (series without a cutoff are left out)."""
    cut = _cutoff_per_row(frame, columns, cutoffs)
    return frame[cut.notna().to_numpy() & (frame[columns.time] <= cut).to_numpy()]


def following(frame: pd.DataFrame, columns: Columns, cutoffs: pd.Series, horizon: int) -> pd.DataFrame:
    """The ``horizon`` rows after each series' cutoff (fewer where the series ends sooner)."""
    cut = _cutoff_per_row(frame, columns, cutoffs)
    after = frame[cut.notna().to_numpy() & (frame[columns.time] > cut).to_numpy()]
    return after[after.groupby(columns.id, sort=False).cumcount().to_numpy() < horizon]


def actuals(frame: pd.DataFrame, columns: Columns, cutoffs: pd.Series, horizon: int) -> pd.DataFrame:
    """`following`'s rows with the target NaN where it is no observation (``observed`` 0: masked, filled
    or treated as an outlier; `forecaster.data.schema.observations_only`): what a forecast is scored against,
    so that a masked reading's 0.0 is never an actual (the backtest, the cross-validation's windows and the
    fit's holdout alike; monitoring likewise scores observations only)."""
    return observations_only(following(frame, columns, cutoffs, horizon), columns.target)


def rows_until(frame: pd.DataFrame, columns: Columns, cutoffs: pd.Series) -> pd.Series:
    """Per series, how many of its rows lie at or before its cutoff."""
    part = history(frame, columns, cutoffs)
    return part.groupby(columns.id, sort=False).size()


def backtest_cutoffs(frame: pd.DataFrame, columns: Columns, horizon: int, n_windows: int,
                     step: int) -> pd.DataFrame:
    """One row per (window, series): ``window`` (0 = oldest) and ``cutoff``, the last time it may see."""
    parts = []
    for k in range(n_windows):
        cut = holdout_cutoffs(frame, columns, origin_offset(horizon, n_windows, step, k))
        parts.append(pd.DataFrame({WINDOW_COLUMN: k, columns.id: cut.index, CUTOFF_COLUMN: cut.to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def before_first_origin(frame: pd.DataFrame, columns: Columns, horizon: int, n_windows: int,
                        step: int) -> pd.DataFrame:
    """What a backtest model may train on: each series up to the cutoff of the oldest window."""
    return history(frame, columns, holdout_cutoffs(frame, columns, origin_offset(horizon, n_windows, step, 0)))


def parse_as_of(as_of: str | pd.Timestamp) -> pd.Timestamp:
    """An as-of time as given (with its UTC offset, if any); ConfigError if it is not a timestamp.

    Only a written date and time: a relative one (``now``, ``today``) would be a new as-of at each call
    and undo the job's idempotence; a fraction of a second is refused, since an as-of is done per second
    (its folder's name), and ``...T00:00:00.700`` would count as the done ``...T00:00:00``.
    """
    text = str(as_of).strip() if isinstance(as_of, str) else None
    if text is not None and not text[:4].isdigit():
        raise ConfigError(f"as-of {as_of!r} is not a written time: give the date and time, e.g. 2026-11-26T00:00 "
                          f"(a relative time such as 'now' would make each run a new as-of)")
    try:
        stamp = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"as-of {as_of!r} is not a timestamp (e.g. 2026-11-26T00:00): {exc}") from None
    if stamp is pd.NaT:
        raise ConfigError(f"as-of {as_of!r} is not a timestamp (e.g. 2026-11-26T00:00)")
    if stamp != stamp.floor("s"):
        raise ConfigError(f"as-of {as_of!r} has a fraction of a second: as-of times are whole seconds "
                          f"(give {stamp.floor('s').isoformat()})")
    return stamp


def as_of_timestamp(as_of: str | pd.Timestamp, like: pd.Series) -> pd.Timestamp:
    """``as_of`` as a timestamp comparable with the time column ``like``.

    With time-zone-naive data (taken as UTC), an as-of with an offset is converted to UTC; with aware
    data, a naive as-of is read in the data's zone. ConfigError if it is not a timestamp.
    """
    stamp = parse_as_of(as_of)
    zone = getattr(like.dtype, "tz", None)
    if zone is None and stamp.tzinfo is not None:
        return stamp.tz_convert("UTC").tz_localize(None)
    if zone is not None and stamp.tzinfo is None:
        return stamp.tz_localize(zone)
    return stamp


def as_of_cut(frame: pd.DataFrame, columns: Columns, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """The rows known at ``as_of``: those at or before it (`as_of_split` says where it cut)."""
    return as_of_split(frame, columns, as_of)[0]


def as_of_split(frame: pd.DataFrame, columns: Columns,
                as_of: str | pd.Timestamp) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The rows of ``frame`` (raw or validated) known at ``as_of``, those at or before it, and the cut as
    a timestamp comparable with its time column: the one place the scheduled job's data is cut.

    The time column is read as validation reads it (typed errors naming the rows at fault);
    MissingColumnError when it is absent, ConfigError when the as-of is before every row."""
    if columns.time not in frame.columns:
        raise MissingColumnError(f"missing column {columns.time!r}; input has {list(frame.columns)}",
                                 column=columns.time)
    times = parse_times(frame[columns.time], columns.time)
    stamp = as_of_timestamp(as_of, times)
    kept = (times <= stamp).to_numpy()
    if len(frame) and not kept.any():
        raise ConfigError(f"as-of {as_of} is before any data: the first time in the source is {times.min()}; "
                          f"nothing is known at the as-of")
    return frame[kept], stamp
