"""Turn a user frame into a sorted, regular, typed frame, or say precisely what is wrong with it.

Checks run in a fixed order and each raises its own :class:`~forecaster.errors.DataError` subclass
naming the column, series and timestamps at fault: missing columns, id type, time type, numeric
target/covariates, duplicate (id, time) rows, frequency, gaps, missing targets, covariates, history
length and (for prediction) future covariate coverage.  Rows are never dropped silently: unsorted input
is sorted, gaps and missing targets are handled by ``missing_policy`` and everything done is counted in
``ValidatedFrame.report``.

Decisions worth knowing:

* Ids become pandas' ``str`` dtype (integer ids are converted with ``str``); float, bool and mixed
  str/int id columns are refused because their text form is ambiguous.
* Times become ``datetime64[ns]`` (time zone kept).  Strings are parsed with ``pd.to_datetime``;
  numbers (epochs of unknown unit) are refused.  Dates written day and month then year (``01/02/2024``)
  are read in the order that parses every value and leaves the series regular; where both orders do,
  ColumnTypeError (`_day_or_month_first`). Year-first dates are read year-month-day (ISO 8601) wherever
  that reads every value and leaves every series regular, else year-day-month where that does, with a
  warning (`_year_day_month`).
* Targets must be numeric and not bool.  Covariates may be bool (read as 0.0/1.0).  Text columns are
  accepted only if every value parses as a number.  Everything numeric becomes float64.
* Under every policy the output has an ``observed`` column: 1.0 where the target was given and finite,
  0.0 where it was filled ("fill") or masked ("mask"); the policies differ only in the target value
  of those rows (interpolated, or 0.0).  Interpolation is linear in grid steps within the series, with
  the nearest value at the edges.
* ``for_prediction`` with known-future columns: rows after each series' last finite target are future
  rows and go to ``ValidatedFrame.future``.  Without known-future columns no rows are split off and
  trailing missing targets are handled by the policy like any other.  Future rows beyond the horizon
  are ignored (counted in the report as ``future_rows_ignored``).
* Report keys: rows_in, rows_out, series, freq, missing_policy, sorted (True when validation had to
  sort the rows), gaps_filled (rows inserted), targets_filled / targets_masked (rows with observed=0,
  gap rows included), future_rows, future_rows_ignored, short_series (count) and per_series (only
  series with filled or masked rows).  A summary is logged at INFO on "forecaster.data" whenever
  something was filled or masked.
* For prediction, a series with no finite target at all raises ShortHistoryError: nothing can be
  forecast from it.  For training it follows the policy ("mask" keeps it fully masked, "fill" cannot
  fill it and raises MissingValueError).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from forecaster.data.frequency import (
    build_grid,
    fixed_step_ns,
    future_index,
    infer_from_sorted,
    seasonal_periods,
)
from forecaster.data.frequency import normalize_frequency as _normalize_frequency
from forecaster.data.outliers import DEFAULT_THRESHOLD, LEVEL_RUN, TREATMENTS, find_outliers
from forecaster.data.schema import OBSERVED, Columns, observed_rows
from forecaster.errors import (
    ColumnTypeError,
    ConfigError,
    CovariateError,
    DuplicateRowsError,
    FrequencyError,
    GapError,
    MissingColumnError,
    MissingValueError,
    OutlierError,
    ShortHistoryError,
    ValueRangeError,
    summarize,
)

logger = logging.getLogger("forecaster.data")

POLICIES = ("error", "fill", "mask")
#: The largest target magnitude accepted. The network computes in float32 and the statistical methods
#: sum squares of values: a value of 1e30 among hundreds made every forecast of its series NaN. Data of
#: larger magnitudes is to be rescaled (thousands, millions) before it is forecast.
MAX_ABS_TARGET = 1e15


#: Held by the makers of a `ValidatedFrame` (`validate_frame`, `ValidatedFrame.subset`) and nobody else.
_VOUCHED = object()


@dataclass
class ValidatedFrame:
    """A frame that passed validation, with what validation learnt and did.

    ``frame`` is sorted by (id, time), regular at ``freq`` and holds the columns id, time, target,
    covariates (``columns.covariates()`` order) and ``observed``.  ``future`` holds future rows (id,
    time, known-future columns) for prediction, ``short_series`` the series with fewer
    than ``min_length`` observed readings when validating for prediction.

    Only `validate_frame` makes one, and `subset` takes some of its series: built by hand (or by
    `dataclasses.replace`) it would vouch for a frame nobody checked, so that is a TypeError.
    """

    frame: pd.DataFrame
    freq: str
    columns: Columns
    report: dict[str, Any]
    future: pd.DataFrame | None = None
    short_series: list[str] = field(default_factory=list)
    missing_policy: str = "error"
    _vouched: InitVar[object] = None

    def __post_init__(self, _vouched: object) -> None:
        if _vouched is not _VOUCHED:
            raise TypeError("a ValidatedFrame is made by validate_frame (or .subset of one), not by hand: it "
                            "vouches that its frame passed validation")

    def subset(self, ids: Iterable[str]) -> ValidatedFrame:
        """The same validated data restricted to the series ``ids`` (frame order kept): the rows of
        whole series of a valid frame are a valid frame."""
        wanted = set(ids)
        frame = self.frame if wanted.issuperset(self.ids) else self.frame[self.frame[self.columns.id].isin(wanted)]
        future = self.future
        if future is not None:
            future = future[future[self.columns.id].isin(wanted)]
        return ValidatedFrame(frame, self.freq, self.columns, self.report, future,
                              [s for s in self.short_series if s in wanted], self.missing_policy, _VOUCHED)

    @cached_property
    def ids(self) -> list[str]:
        """Series ids in frame order (computed once: the frame is not to be changed once validated)."""
        return list(pd.unique(self.frame[self.columns.id]))

    @cached_property
    def constant_series(self) -> list[str]:
        """Ids (frame order) of the series whose observed readings (`observed_rows`: blanks and treated
        outliers aside) are all one value: a dead product's zeros, a capped meter. Every statistical method
        forecasts such a history as its value, with no spread; the forecaster does too (its fallback)."""
        target = self.columns.target
        readings = np.where(observed_rows(self.frame, target), self.frame[target].to_numpy("float64"), np.nan)
        grouped = pd.Series(readings).groupby(self.frame[self.columns.id].to_numpy(), sort=False)
        same = (grouped.max() == grouped.min()).to_numpy()  # a series without a reading: NaN, not the same
        return [str(sid) for sid in grouped.max().index[same]]


# --------------------------------------------------------------------------- column checks


def _check_columns(df: pd.DataFrame, columns: Columns) -> None:
    wanted = [columns.id, columns.time, columns.target, *columns.covariates()]
    missing = [name for name in wanted if name not in df.columns]
    if missing:
        raise MissingColumnError(
            f"missing column(s) {missing}; frame has {summarize([str(c) for c in df.columns], 20)}",
            column=", ".join(missing),
        )
    # A frame built in Python or a served request (``dataframe_split``) may name a column twice; a file cannot.
    twice = [name for name in dict.fromkeys(wanted) if int((df.columns == name).sum()) > 1]
    if twice:
        raise ColumnTypeError(f"column(s) {twice} appear more than once in the frame: keep one of each",
                              column=", ".join(twice))


def _rows_text(rows: np.ndarray) -> str:
    return summarize([int(r) for r in rows])


def _id_column(col: pd.Series, name: str) -> pd.Series:
    if col.isna().any():
        rows = np.flatnonzero(col.isna().to_numpy())
        raise ColumnTypeError(f"id column has missing values at rows {_rows_text(rows)}", column=name)
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(col.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(col):
        raise ColumnTypeError("id column must hold strings or integers, not booleans", column=name)
    if pd.api.types.is_integer_dtype(col):
        return col.astype(str)
    if pd.api.types.is_string_dtype(col) or col.dtype == object:
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind in ("string", "integer", "empty"):
            return col.astype(str)
        raise ColumnTypeError(
            f"id column must hold only strings or only integers, found {kind} values "
            f"such as {summarize([repr(v) for v in col.head(3)])}",
            column=name,
        )
    raise ColumnTypeError(f"id column must hold strings or integers, not {col.dtype}", column=name)


#: Zones whose daylight saving changes `_daylight_saving` recognises in naive times (one per rule).
_DST_ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago", "America/Denver",
              "America/Los_Angeles", "Australia/Sydney", "Pacific/Auckland", "America/Santiago", "Asia/Tehran")


def _daylight_saving(stamps: pd.DatetimeIndex, kind: str) -> str:
    """When every one of ``stamps`` (naive times missing from, or repeated in, the data) is an hour that
    does not exist ("nonexistent": clocks spring forward) or exists twice ("ambiguous": they fall back)
    in a zone with daylight saving time, what to do about it; else "". Local wall-clock times cannot
    be one regular series: 'fill' would invent the spring hour and nothing can merge the autumn one."""
    if stamps.tz is not None or not len(stamps):
        return ""
    for zone in _DST_ZONES:
        try:
            local = stamps.tz_localize(zone, nonexistent="NaT", ambiguous="NaT")
        except (ValueError, TypeError):
            continue
        if local.isna().all():
            change, wrong = (("spring forward", "do not fill the gap, which would invent an hour")
                             if kind == "nonexistent" else
                             ("fall back", "do not drop a repeat, which would lose an hour"))
            return (f": these are local wall-clock times where clocks {change} for daylight saving time (as in "
                    f"{zone}); give the times with their UTC offset, or localise them "
                    f"(pandas: ds.dt.tz_localize('{zone}', ambiguous='infer')), or give UTC times; {wrong}")
    return ""


def _refuse_unconverted(col: pd.Series, converted: pd.Series, name: str, problem: str,
                        ids: pd.Series | None = None) -> None:
    """ColumnTypeError naming the rows whose value the conversion turned into NaN (it was not missing), and
    their series when ``ids`` are given: a row's position is the frame's, which is not the file's where the
    frame is one chunk of a file (`forecaster predict` reads large files a chunk of series at a time)."""
    bad = (converted.isna() & col.notna()).to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ColumnTypeError(
            f"{problem}; found values such as {summarize([repr(v) for v in col.iloc[rows[:3]]])}"
            f" at rows {_rows_text(rows)}",
            column=name,
            series=[] if ids is None else list(pd.unique(ids.iloc[rows])),
        )


_OFFSET = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$"


def _utc_offsets(col: pd.Series) -> pd.Series:
    """The UTC offset written at the end of each time string ("+01:00", "Z"), NaN where there is none."""
    text = col.where(col.map(lambda v: isinstance(v, str)), None).astype("string").str.strip()
    return text.str.extract(_OFFSET, expand=False).replace("Z", "+00:00").str.replace(":", "", regex=False)


def _local_dates(col: pd.Series, utc: pd.Series, dayfirst: bool = False) -> pd.Series:
    """Times written with several UTC offsets, every one at local midnight (daily or coarser data of a
    zone with daylight saving: ``2024-03-30T00:00+01:00``, ``2024-03-31T00:00+02:00``) are dates: their
    local dates as written, naive, so that a day stays a day (in UTC they are 23 or 25 hours apart and
    no frequency fits). Any other times: ``utc``, unchanged."""
    text = col.astype("string").str.strip()
    offset = text.str.extract(_OFFSET, expand=False)
    wall = pd.to_datetime([t[: len(t) - len(o)] if isinstance(o, str) else t for t, o in zip(text, offset)],
                          errors="coerce", dayfirst=dayfirst)
    if wall.isna().any() or not (wall == wall.normalize()).all():
        return utc
    return pd.Series(wall, index=col.index)


def _inserted_rows(times: pd.Series, ids: pd.Series | None) -> float:
    """How many rows the regular grid of ``times`` (series by ``ids``; without them, the distinct times as
    one time line) would insert: 0 for regular series, inf where no frequency fits or a series repeats a time."""
    stamps = pd.DatetimeIndex(times).as_unit("ns")
    if ids is None:
        stamps = stamps.unique()
    codes = np.zeros(len(stamps), dtype=np.int64) if ids is None else pd.factorize(ids)[0]
    order = np.lexsort((stamps.asi8, codes))
    codes, stamps = codes[order], stamps[order]
    if ((codes[1:] == codes[:-1]) & (stamps.asi8[1:] == stamps.asi8[:-1])).any():
        return np.inf
    n_series = int(codes.max()) + 1 if len(codes) else 0
    bounds = _bounds(codes, n_series)
    try:
        grid = build_grid(stamps, bounds, infer_from_sorted(stamps, bounds, list(range(n_series))))
    except FrequencyError:
        return np.inf
    return np.inf if (grid.positions < 0).any() else float(grid.lengths.sum() - len(stamps))


#: A date written day and month (either order) then year, with one separator: ``01/02/2024``, ``1.2.24``.
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})([/.\- ])(\d{1,2})\2(\d{4}|\d{2})(?!\d)")


def _day_month_layouts(text: str) -> tuple[str | None, str | None] | None:
    """The month-first and day-first layouts (``strptime``) of a time written as `_DAY_MONTH_YEAR` plus
    an optional time of day (``02/01/24 13:00+01:00``), (None, None) where pandas knows no layout for that
    time of day (``12:00 AM``: each value is then read on its own, in either order); None for any other
    text. pandas guesses no layout at all for two-digit years, and reads those dates month first one by one."""
    date = _DAY_MONTH_YEAR.match(text)
    if date is None:
        return None
    sep, year = date.group(2), "%Y" if len(date.group(4)) == 4 else "%y"
    rest = text[date.end():]
    iso = "%Y-%m-%d"
    tail = guess_datetime_format("2000-01-13" + rest) if rest else iso  # the time of day's own layout
    if tail is None or not tail.startswith(iso):
        return None, None
    tail = tail[len(iso):]
    return f"%m{sep}%d{sep}{year}{tail}", f"%d{sep}%m{sep}{year}{tail}"


def _day_or_month_first(col: pd.Series, name: str, ids: pd.Series | None, utc: bool) -> tuple[pd.Series | None, bool]:
    """Dates written with the day and the month in an order the text does not tell (``01/02/2024``):
    pandas reads them month first, so ten days written day first became ten months, exit 0. Of the two
    readings that parse every value, the one whose series are regular with the fewest inserted rows is
    the data (a 13th day, or the months of two years, decide); where both are as regular, only the
    writer knows: ColumnTypeError. Returns the reading and whether it is day first; (None, False) where the
    layout is not ambiguous (year first, ISO 8601, words) or no reading parses every value."""
    given = col[col.notna()]
    first = given.iloc[0] if len(given) else None
    if not isinstance(first, str):
        return None, False
    layouts = _day_month_layouts(first.strip())
    if layouts is None:
        return None, False
    month_first, day_first = layouts
    readings = {}
    for order, layout in (("month first", month_first), ("day first", day_first)):
        try:
            with warnings.catch_warnings():  # without a layout pandas warns that it reads value by value
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(col.astype("string").str.strip(), errors="coerce", utc=utc,
                                        **({"format": layout} if layout else {"dayfirst": order == "day first"}))
        except (TypeError, ValueError):  # values of other kinds: pandas' own reading says what is wrong
            return None, False
        if not (parsed.isna() & col.notna()).any():
            readings[order] = parsed
    if len(readings) < 2:
        return next(iter(readings.values()), None), "day first" in readings
    # Missing times are left to the missing-values check: they are no reading's evidence.
    given_rows = col.notna().to_numpy()
    differ = np.flatnonzero((readings["month first"] != readings["day first"]).to_numpy() & given_rows)
    if not len(differ):
        return readings["month first"], False
    inserted = {order: _inserted_rows(parsed[given_rows], None if ids is None else ids[given_rows])
                for order, parsed in readings.items()}
    if inserted["month first"] != inserted["day first"]:
        chosen = min(inserted, key=inserted.get)
        return readings[chosen], chosen == "day first"
    either = ("either reading makes regular series" if np.isfinite(inserted["day first"]) else
              "neither reading makes regular series (a time repeated in a series, or no frequency fits)")
    row = int(differ[0])
    raise ColumnTypeError(
        f"time column's dates read both day first and month first, and {either}: "
        f"{col.iloc[row]!r} (row {row}) is {readings['day first'].iloc[row]:%Y-%m-%d} day first, "
        f"{readings['month first'].iloc[row]:%Y-%m-%d} month first; write the dates year first (YYYY-MM-DD, "
        "ISO 8601)",
        column=name,
        series=[] if ids is None else list(pd.unique(ids.iloc[differ[:1]])),
    )


#: A date written year first, then the month and the day in either order, with one separator: ``2024-01-13``,
#: ``2024-13-01``, ``2024/1/13``.
_YEAR_FIRST = re.compile(r"(\d{4})([/.\-])(\d{1,2})\2(\d{1,2})(?!\d)")


def _year_first_layouts(text: str) -> tuple[str, str] | None:
    """The year-month-day and year-day-month layouts (``strptime``) of a time written as `_YEAR_FIRST`
    plus an optional time of day pandas knows the layout of; None for any other text."""
    date = _YEAR_FIRST.match(text)
    if date is None:
        return None
    sep, rest, iso = date.group(2), text[date.end():], "%Y-%m-%d"
    tail = guess_datetime_format("2000-01-13" + rest) if rest else iso  # the time of day's own layout
    if tail is None or not tail.startswith(iso):
        return None
    tail = tail[len(iso):]
    return f"%Y{sep}%m{sep}%d{tail}", f"%Y{sep}%d{sep}%m{tail}"


def _year_day_month(col: pd.Series, name: str, ids: pd.Series | None, utc: bool) -> pd.Series | None:
    """Dates written year, day, month (``2024-13-01`` for 13 January): pandas reads a year-first date
    year-month-day, and where no day was past the 12th the dates were silently wrong. Year-month-day (ISO
    8601) wins wherever it reads every value and leaves every series regular (no row to insert) or month by
    month (one day of the month, one time of day: ``2024-01-05``, ``2024-02-05``, ... is a monthly bill, not
    1-12 May); where it does not, and year-day-month reads every value and leaves every series regular, that reading is
    returned and a warning says so. None otherwise: the column is read as before, ISO 8601 unchanged.
    Times with several UTC offsets (read in UTC) are left to that reading. Each distinct value is parsed
    once: a time column repeats its times in every series (M4 Hourly: 353,500 rows, 1,000-odd times)."""
    given = col[col.notna()]
    first = given.iloc[0] if len(given) else None
    if utc or not isinstance(first, str):
        return None
    layouts = _year_first_layouts(first.strip())
    if layouts is None:
        return None
    distinct = pd.unique(given.to_numpy())
    if not all(isinstance(value, str) for value in distinct):  # values of other kinds: pandas' reading says
        return None
    text = pd.Series(distinct, dtype="string").str.strip()
    iso, swapped = (pd.to_datetime(text, format=layout, errors="coerce") for layout in layouts)
    if swapped.isna().any():  # a month past 12 written last (any ISO date past the 12th), or other text
        return None
    codes = pd.Index(distinct).get_indexer(col)  # -1 where the time is missing

    def rows(parsed: pd.Series) -> pd.Series:
        return pd.Series(parsed.array.take(codes, allow_fill=True), index=col.index)

    def regular(parsed: pd.Series) -> bool:
        present = codes >= 0
        return _inserted_rows(rows(parsed)[present], None if ids is None else ids[present]) == 0

    def monthly(parsed: pd.Series) -> bool:
        """Whether each series' times are one day of the month at one time of day: a month-by-month cadence
        (a bill on the 5th) that pandas has no frequency for unless the day is the 1st, which year-day-month
        would make consecutive days of one month."""
        present = codes >= 0
        place = parsed.dt.day.to_numpy("int64") * 86_400 * 10**9 + (parsed - parsed.dt.normalize()).to_numpy(
            "timedelta64[ns]").astype("int64")  # the time from the month's start, per distinct value
        series = np.zeros(int(present.sum()), dtype=np.int64) if ids is None else ids[present].to_numpy()
        return bool(pd.Series(place[codes[present]]).groupby(series).nunique().max(skipna=True) <= 1)

    failed = iso.isna().to_numpy()
    if not failed.any() and ((iso == swapped).all() or regular(iso) or monthly(iso)):
        # The day is the month in every value, or ISO 8601 reads it and leaves every series regular or
        # month by month: ISO's reading, as before.
        return None
    if not regular(swapped):
        return None
    shown = np.flatnonzero(failed if failed.any() else (iso != swapped).to_numpy())  # distinct values to name
    row = int(np.flatnonzero(np.isin(codes, shown))[0])
    why = ("does not read every value" if failed.any() else
           "leaves a series irregular (rows to insert), and year-day-month leaves every one regular")
    chosen = rows(swapped)
    logger.warning(
        "time column %r read year-day-month: year-month-day (ISO 8601) %s; %r (row %d) is %s; write the dates "
        "YYYY-MM-DD to be sure", name, why, col.iloc[row], row, f"{chosen.iloc[row]:%Y-%m-%d}")
    return chosen


def parse_ids(col: pd.Series, name: str) -> pd.Series:
    """A raw id column as validation reads it: text (integers written with ``str``), typed errors otherwise."""
    return _id_column(col, name)


def parse_times(col: pd.Series, name: str) -> pd.Series:
    """A raw time column parsed as validation parses it (typed errors naming the rows at fault)."""
    return _time_column(col, name)


def _time_column(col: pd.Series, name: str, ids: pd.Series | None = None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    elif pd.api.types.is_string_dtype(col) or col.dtype == object:
        offsets = _utc_offsets(col)
        present = offsets.notna() & col.notna()
        if present.any() and not present[col.notna()].all():
            with_offset = np.flatnonzero(present.to_numpy())
            without = np.flatnonzero((~present & col.notna()).to_numpy())
            raise ColumnTypeError(
                f"time column mixes values with a UTC offset (rows {_rows_text(with_offset)}) and values without "
                f"one (rows {_rows_text(without)}): give every timestamp an offset, or none",
                column=name,
            )
        # Several offsets (daylight saving time, series from several zones) are one time line in UTC.
        to_utc = offsets[present].nunique() > 1
        parsed, dayfirst = _day_or_month_first(col, name, ids, to_utc)
        if parsed is None:
            parsed = _year_day_month(col, name, ids, to_utc)
        if parsed is None:
            try:
                parsed = pd.to_datetime(col, errors="coerce", utc=to_utc)
            except (TypeError, ValueError) as exc:
                raise ColumnTypeError(f"time column cannot be parsed as datetimes: {exc}", column=name) from exc
        _refuse_unconverted(col, parsed, name, "time column has values that are not datetimes", ids)
        if to_utc:
            parsed = _local_dates(col, parsed, dayfirst)
    else:
        raise ColumnTypeError(
            f"time column must be datetime64 or datetime strings, not {col.dtype}", column=name
        )
    if parsed.isna().any():
        rows = np.flatnonzero(parsed.isna().to_numpy())
        raise ColumnTypeError(f"time column has missing values at rows {_rows_text(rows)}", column=name,
                              series=[] if ids is None else list(pd.unique(ids.iloc[rows])))
    try:
        return parsed.dt.as_unit("ns")
    except pd.errors.OutOfBoundsDatetime:  # years past 2262 or before 1677: name them (pandas names one)
        rows = np.flatnonzero([not _fits_nanoseconds(t) for t in parsed])
        raise ColumnTypeError(
            f"time column has times outside 1677-09-21 .. 2262-04-11, what nanosecond times hold, such as "
            f"{parsed.iloc[rows[0]]} at rows {_rows_text(rows)}", column=name,
            series=[] if ids is None else list(pd.unique(ids.iloc[rows]))) from None


def _fits_nanoseconds(stamp: pd.Timestamp) -> bool:
    try:
        stamp.as_unit("ns")
    except pd.errors.OutOfBoundsDatetime:
        return False
    return True


def _numeric_column(col: pd.Series, name: str, allow_bool: bool, ids: pd.Series | None = None) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        if allow_bool:
            return col.to_numpy(dtype=np.float64, na_value=np.nan)
        raise ColumnTypeError("target must be numeric, not bool", column=name)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(col) or col.dtype == object:
        converted = pd.to_numeric(col, errors="coerce")
        if not allow_bool and col.dtype == object:  # True among numbers would be read as 1.0
            flags = col.map(lambda v: isinstance(v, (bool, np.bool_))).astype(bool).to_numpy()
            # Only the booleans are named so: other text keeps "column must be numeric" below.
            only_bools = pd.Series(np.where(flags, np.nan, 0.0), index=col.index)
            _refuse_unconverted(col, only_bools, name, "target must be numeric, not bool", ids)
        _refuse_unconverted(col, converted, name, "column must be numeric", ids)
        return converted.to_numpy(dtype=np.float64, na_value=np.nan)
    raise ColumnTypeError(f"column must be numeric, not {col.dtype}", column=name)


# --------------------------------------------------------------------------- helpers on sorted rows


def _series_at(labels: list, codes: np.ndarray) -> list:
    """The ids of the series that rows with these series ``codes`` belong to, once each, in row order."""
    return [labels[c] for c in pd.unique(codes)]


def _sorted_by(codes: np.ndarray, times: np.ndarray) -> bool:
    """Whether rows are in (series code, time) order already, ties included: then the stable sort by
    both keys would leave every row where it is."""
    step = np.diff(codes)
    return bool((step >= 0).all() and (np.diff(times)[step == 0] >= 0).all())


def _bounds(codes: np.ndarray, n_series: int) -> np.ndarray:
    """Row offsets of each series in rows sorted by series code."""
    return np.searchsorted(codes, np.arange(n_series + 1))


def _grouped_fill(values: np.ndarray, codes: np.ndarray, backward: bool) -> np.ndarray:
    """Forward (then backward, if asked) fill of NaN within each series; vectorised over all series."""
    frame = pd.DataFrame(values)
    filled = frame.groupby(codes).ffill()
    if backward:
        filled = filled.groupby(codes).bfill()
    return filled.to_numpy(dtype=np.float64)


def interpolate_series(values: np.ndarray, valid: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``values`` where ``valid``, elsewhere linear interpolation over positions within each series
    (rows of one ``codes`` value, in order), the nearest valid value at the edges."""
    position = np.arange(len(values), dtype=np.float64)
    known = pd.Series(np.where(valid, position, np.nan))
    prev_pos = known.groupby(codes).ffill().to_numpy()
    next_pos = known.groupby(codes).bfill().to_numpy()
    prev_val = values[np.nan_to_num(prev_pos).astype(np.int64)]
    next_val = values[np.nan_to_num(next_pos).astype(np.int64)]
    has_prev, has_next = ~np.isnan(prev_pos), ~np.isnan(next_pos)
    span = np.where(has_prev & has_next, next_pos - prev_pos, 1.0)
    span[span == 0] = 1.0
    weight = np.where(has_prev & has_next, (position - prev_pos) / span, 0.0)
    inner = prev_val + (next_val - prev_val) * weight
    out = np.where(has_prev, np.where(has_next, inner, prev_val), np.where(has_next, next_val, np.nan))
    return np.where(valid, values, out)


def _future_expectation(
    last: pd.DatetimeIndex, freq: str, horizon: int
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Series code and timestamp of every expected future step (``horizon`` per series)."""
    n_series = len(last)
    codes = np.repeat(np.arange(n_series), horizon)
    step = fixed_step_ns(freq, last.tz)
    if step is not None:
        i8 = np.repeat(last.asi8, horizon) + np.tile(np.arange(1, horizon + 1), n_series) * step
        times = pd.DatetimeIndex(i8.view("M8[ns]"))
        return codes, times.tz_localize("UTC").tz_convert(last.tz) if last.tz is not None else times
    cache: dict[pd.Timestamp, pd.DatetimeIndex] = {}
    parts = []
    for ts in last:
        if ts not in cache:
            cache[ts] = future_index(ts, freq, horizon)
        parts.append(cache[ts])
    return codes, parts[0].append(parts[1:]) if parts else pd.DatetimeIndex([], tz=last.tz).as_unit("ns")


# --------------------------------------------------------------------------- main entry point


def validate_frame(
    df: pd.DataFrame,
    columns: Columns,
    freq: str | None = None,
    missing_policy: str = "error",
    min_length: int = 0,
    horizon: int = 0,
    for_prediction: bool = False,
    outliers: str = "keep",
    outlier_threshold: float = DEFAULT_THRESHOLD,
) -> ValidatedFrame:
    """Validate ``df`` against ``columns`` and return it sorted, regular and typed (see module doc).

    ``freq`` is inferred when None; ``missing_policy`` is "error", "fill" or "mask"; ``min_length``
    is the fewest observed readings a series may have (the ``observed`` rows: given, finite and not
    treated as an outlier; filled or masked rows do not count); ``horizon`` is the forecast length that
    known-future covariates must cover when ``for_prediction`` is true. ``outliers = "interpolate"`` treats the
    readings more than ``outlier_threshold`` IQRs beyond their series' quartiles as unobserved
    (`forecaster.data.outliers`: the rule, its threshold and why); "keep" (the default here; the
    forecaster's own default is "interpolate") keeps every reading as given.
    """
    if missing_policy not in POLICIES:
        raise ConfigError(f"missing_policy must be one of {POLICIES}, got {missing_policy!r}")
    if outliers not in TREATMENTS:
        raise ConfigError(f"outliers must be one of {TREATMENTS}, got {outliers!r}")
    if not 0 < outlier_threshold < np.inf:
        raise ConfigError(f"outlier_threshold must be a number > 0, got {outlier_threshold!r}")
    if min_length < 0 or horizon < 0:
        raise ConfigError(f"min_length and horizon must be >= 0, got {min_length} and {horizon}")
    _check_columns(df, columns)
    covariates = columns.covariates()
    rows_in = len(df)

    ids = _id_column(df[columns.id], columns.id)
    times = _time_column(df[columns.time], columns.time, ids)  # errors name the series: rows are the frame's
    target = _numeric_column(df[columns.target], columns.target, allow_bool=False, ids=ids)
    if missing_policy == "mask" and OBSERVED in df.columns:  # a frame validated before: its 0.0 stays masked
        target = np.where(observed_rows(df, columns.target), target, np.nan)
    cov = np.column_stack(
        [_numeric_column(df[c], c, allow_bool=True, ids=ids) for c in covariates]
    ) if covariates else np.empty((rows_in, 0))

    # Sort by (id, time) through integer codes: cheaper than sorting the text column.
    codes, labels = pd.factorize(ids, sort=True)  # the Series, not .to_numpy(): no Python object per row
    time_index = pd.DatetimeIndex(times)
    was_sorted = _sorted_by(codes, time_index.asi8)
    if not was_sorted:  # sorted rows (the usual file) skip the sort and the four gathers: the same arrays
        order = np.lexsort((time_index.asi8, codes))
        codes, time_index, target, cov = codes[order], time_index[order], target[order], cov[order]
    labels = [str(label) for label in labels]
    n_series = len(labels)
    bounds = _bounds(codes, n_series)

    same = (codes[1:] == codes[:-1]) & (time_index.asi8[1:] == time_index.asi8[:-1])
    if same.any():
        rows = np.flatnonzero(same) + 1
        raise DuplicateRowsError(
            f"{len(rows)} duplicate (id, time) row(s)" + _daylight_saving(time_index[rows], "ambiguous"),
            column=f"{columns.id}, {columns.time}",
            series=_series_at(labels, codes[rows]),
            timestamps=list(time_index[rows]),
        )

    if n_series == 0:
        raise ShortHistoryError("the frame has no rows", column=columns.target)
    freq = _normalize_frequency(freq) if freq is not None else infer_from_sorted(time_index, bounds, labels)

    # Future rows (prediction with known-future covariates): after each series' last finite target.
    finite = np.isfinite(target)
    position = np.arange(rows_in) - bounds[codes]
    last_obs = np.maximum.reduceat(np.where(finite, position, -1), bounds[:-1])
    no_history = np.flatnonzero(last_obs < 0)
    if len(no_history) and for_prediction:
        raise ShortHistoryError(
            "series without any finite target value", column=columns.target,
            series=[labels[s] for s in no_history],
        )
    split_future = for_prediction and bool(columns.known_future)
    is_future = position > last_obs[codes] if split_future else np.zeros(rows_in, dtype=bool)
    future_rows = {
        "codes": codes[is_future], "times": time_index[is_future],
        "known": cov[is_future][:, len(columns.static) : len(columns.static) + len(columns.known_future)],
    }
    hist = ~is_future
    codes, time_index, target, cov = codes[hist], time_index[hist], target[hist], cov[hist]
    finite = finite[hist]
    bounds = _bounds(codes, n_series)

    grid = build_grid(time_index, bounds, freq)
    off = np.flatnonzero(grid.positions < 0)
    if len(off):
        raise FrequencyError(
            f"{len(off)} timestamp(s) are not on the {freq!r} grid of their series",
            column=columns.time,
            series=_series_at(labels, codes[off]),
            timestamps=list(time_index[off]),
        )
    grid_bounds = np.concatenate([[0], np.cumsum(grid.lengths)])
    total = int(grid_bounds[-1])
    grid_codes = np.repeat(np.arange(n_series), grid.lengths)
    dest = grid_bounds[codes] + grid.positions
    present = np.zeros(total, dtype=bool)
    present[dest] = True
    n_gaps = total - len(dest)
    if n_gaps and missing_policy == "error":
        gap_rows = np.flatnonzero(~present)
        raise GapError(
            f"{n_gaps} timestamp(s) missing inside series"
            + (_daylight_saving(grid.times[gap_rows], "nonexistent") or " (use missing_policy='fill' or 'mask')"),
            column=columns.time,
            series=_series_at(labels, grid_codes[gap_rows]),
            timestamps=list(grid.times[gap_rows]),
        )
    bad_target = np.flatnonzero(~finite)
    if len(bad_target) and missing_policy == "error":
        raise MissingValueError(
            f"{len(bad_target)} missing or non-finite target value(s) (use missing_policy='fill' or 'mask')",
            column=columns.target,
            series=_series_at(labels, codes[bad_target]),
            timestamps=list(time_index[bad_target]),
        )

    huge = np.flatnonzero(finite & (np.abs(np.where(finite, target, 0.0)) > MAX_ABS_TARGET))
    if len(huge):
        raise ValueRangeError(
            f"{len(huge)} target value(s) beyond +-{MAX_ABS_TARGET:.0e}, more than the model can carry (first: "
            f"{target[huge[0]]:.6g}); rescale the series (e.g. to thousands) or remove the value",
            column=columns.target,
            series=_series_at(labels, codes[huge]),
            timestamps=list(time_index[huge]),
        )

    y = np.full(total, np.nan)
    y[dest] = np.where(finite, target, np.nan)
    observed = np.zeros(total)
    observed[dest] = finite
    x = np.full((total, len(covariates)), np.nan)
    x[dest] = cov
    outlier = np.zeros(total, dtype=bool)
    if outliers == "interpolate":
        found = find_outliers(y, observed == 1.0, grid_codes, outlier_threshold, seasonal_periods(freq),
                              grid.times.asi8)
        if found.ending.any():
            rows = np.flatnonzero(found.ending)
            raise OutlierError(
                f"{len(rows)} reading(s) more than {outlier_threshold:g} IQRs beyond the rest of their series end "
                f"it, {LEVEL_RUN} or more in a row (first: {y[rows[0]]:.6g}): a new level or a run of bad readings, "
                "which cannot be told apart there; correct or remove them, or set [data] outliers = \"keep\" "
                "(outliers=\"keep\") to forecast from them as given",
                column=columns.target,
                series=_series_at(labels, grid_codes[rows]),
                timestamps=list(grid.times[rows]),
            )
        outlier = found.treat
        observed[outlier] = 0.0
        y[outlier] = np.nan

    if covariates:
        x = _fill_covariates(x, present, grid_codes, grid.times, covariates, labels, missing_policy, columns)

    # Under "error" the treated readings are the only rows to fill: interpolated within the series that hold
    # one ("fill" interpolates them below with every other unobserved row; "mask" zeroes them).
    if outlier.any() and missing_policy == "error":
        affected = np.zeros(n_series, dtype=bool)
        affected[grid_codes[outlier]] = True
        rows = np.flatnonzero(affected[grid_codes])
        between = interpolate_series(np.nan_to_num(y[rows]), observed[rows] == 1.0, grid_codes[rows])
        y[rows] = np.where(outlier[rows], between, y[rows])
    if missing_policy == "fill":
        y = interpolate_series(y, observed == 1.0, grid_codes)
        empty = np.flatnonzero(np.isnan(y))
        if len(empty):
            raise MissingValueError(
                "cannot fill series without any finite target value",
                column=columns.target,
                series=_series_at(labels, grid_codes[empty]),
            )
    elif missing_policy == "mask":
        y = np.where(observed == 1.0, y, 0.0)

    # Readings, not grid rows: a series of 100 rows of which 80 are blanks holds 20 readings to forecast from.
    readings = np.bincount(grid_codes, weights=observed, minlength=n_series).astype(np.int64)
    short = np.flatnonzero(readings < min_length)
    short_series: list[str] = []
    if len(short):
        if not for_prediction:
            raise ShortHistoryError(
                f"series with fewer than min_length={min_length} observed readings: "
                f"{summarize([f'{labels[s]} ({readings[s]} of {grid.lengths[s]} rows observed)' for s in short])}",
                column=columns.target,
                series=[labels[s] for s in short],
            )
        short_series = [labels[s] for s in short]

    future, ignored = None, 0
    if split_future:
        future, ignored = _future_frame(
            future_rows, grid.times[grid_bounds[1:] - 1], freq, horizon, labels, columns
        )

    frame = pd.DataFrame(
        {
            columns.id: pd.Series(pd.array(labels, dtype=str).take(grid_codes)),
            columns.time: grid.times,
            columns.target: y,
            **{name: x[:, j] for j, name in enumerate(covariates)},
            OBSERVED: observed,
        }
    )
    report = _report(
        rows_in, frame, labels, grid_codes, present, observed, was_sorted, missing_policy, freq,
        int(is_future.sum()), ignored, len(short_series), outlier, outliers, outlier_threshold,
    )
    return ValidatedFrame(frame, freq, columns, report, future, short_series, missing_policy, _VOUCHED)


def _fill_covariates(
    x: np.ndarray,
    present: np.ndarray,
    grid_codes: np.ndarray,
    times: pd.DatetimeIndex,
    covariates: list[str],
    labels: list[str],
    policy: str,
    columns: Columns,
) -> np.ndarray:
    """Reject or fill NaN covariates, forward-fill inserted gap rows, then check statics are constant."""
    missing = ~np.isfinite(x) & present[:, None]
    if missing.any() and policy != "fill":
        j = int(np.flatnonzero(missing.any(axis=0))[0])
        rows = np.flatnonzero(missing[:, j])
        raise CovariateError(
            f"covariate has {len(rows)} missing or non-finite value(s) (missing_policy='fill' fills them)",
            column=covariates[j],
            series=_series_at(labels, grid_codes[rows]),
            timestamps=list(times[rows]),
        )
    x = np.where(np.isfinite(x), x, np.nan)
    x = _grouped_fill(x, grid_codes, backward=policy == "fill")
    still = np.isnan(x)
    if still.any():
        j = int(np.flatnonzero(still.any(axis=0))[0])
        rows = np.flatnonzero(still[:, j])
        raise CovariateError(
            "covariate has no value at all in some series",
            column=covariates[j],
            series=_series_at(labels, grid_codes[rows]),
        )
    starts = np.flatnonzero(np.r_[True, grid_codes[1:] != grid_codes[:-1]])
    for j, name in enumerate(columns.static):
        varies = np.minimum.reduceat(x[:, j], starts) != np.maximum.reduceat(x[:, j], starts)
        if varies.any():
            raise CovariateError(
                "static covariate is not constant within series",
                column=name,
                series=[labels[grid_codes[starts[s]]] for s in np.flatnonzero(varies)],
            )
    return x


def _future_frame(
    rows: dict[str, Any],
    last_times: pd.DatetimeIndex,
    freq: str,
    horizon: int,
    labels: list[str],
    columns: Columns,
) -> tuple[pd.DataFrame, int]:
    """Future rows as a frame; with a horizon, check they hold exactly the next ``horizon`` steps."""
    codes, times, known = rows["codes"], rows["times"], rows["known"]
    ignored = 0
    if horizon > 0:
        exp_codes, exp_times = _future_expectation(last_times, freq, horizon)
        given = pd.MultiIndex.from_arrays([codes, times.asi8])
        expected = pd.MultiIndex.from_arrays([exp_codes, exp_times.asi8])
        found = expected.isin(given)
        if not found.all():
            lost = np.flatnonzero(~found)
            raise CovariateError(
                f"known-future covariates do not cover the {horizon}-step horizon: "
                f"{len(lost)} future timestamp(s) missing",
                column=", ".join(columns.known_future),
                series=_series_at(labels, exp_codes[lost]),
                timestamps=list(exp_times[lost]),
            )
        wanted = given.isin(expected)
        horizon_end = exp_times.asi8[np.arange(len(labels)) * horizon + horizon - 1]
        beyond = ~wanted & (times.asi8 > horizon_end[codes])
        stray = np.flatnonzero(~wanted & ~beyond)
        if len(stray):
            raise CovariateError(
                f"future rows are not on the {freq!r} grid following the history",
                column=columns.time,
                series=_series_at(labels, codes[stray]),
                timestamps=list(times[stray]),
            )
        ignored = int(beyond.sum())
        codes, times, known = codes[wanted], times[wanted], known[wanted]
        bad = ~np.isfinite(known)
        if bad.any():
            j = int(np.flatnonzero(bad.any(axis=0))[0])
            rows_bad = np.flatnonzero(bad[:, j])
            raise CovariateError(
                "known-future covariate has missing values inside the horizon",
                column=columns.known_future[j],
                series=_series_at(labels, codes[rows_bad]),
                timestamps=list(times[rows_bad]),
            )
    frame = pd.DataFrame(
        {
            columns.id: pd.Series(np.asarray(labels, dtype=object)[codes], dtype=str),
            columns.time: times,
            **{name: known[:, j] for j, name in enumerate(columns.known_future)},
        }
    )
    return frame, ignored


def _report(
    rows_in: int,
    frame: pd.DataFrame,
    labels: list[str],
    grid_codes: np.ndarray,
    present: np.ndarray,
    observed: np.ndarray,
    was_sorted: bool,
    policy: str,
    freq: str,
    future_rows: int,
    future_ignored: int,
    n_short: int,
    outlier: np.ndarray,
    outliers: str,
    outlier_threshold: float,
) -> dict[str, Any]:
    """Counts of everything validation did; logs a summary when values were filled, masked or treated
    as outliers."""
    n_series = len(labels)
    gaps = np.bincount(grid_codes[~present], minlength=n_series)
    treated = np.bincount(grid_codes[outlier], minlength=n_series)
    unobserved = np.bincount(grid_codes[observed == 0.0], minlength=n_series) - treated
    key = "targets_filled" if policy == "fill" else "targets_masked"
    per_series = {
        labels[s]: {"gaps_filled": int(gaps[s]), key: int(unobserved[s])}
        for s in np.flatnonzero(unobserved)
    }
    per_series_outliers = {labels[s]: int(treated[s]) for s in np.flatnonzero(treated)}
    report = {
        "rows_in": rows_in,
        "rows_out": len(frame),
        "series": n_series,
        "freq": freq,
        "missing_policy": policy,
        "sorted": not was_sorted,
        "gaps_filled": int(gaps.sum()),
        "targets_filled": int(unobserved.sum()) if policy == "fill" else 0,
        "targets_masked": int(unobserved.sum()) if policy == "mask" else 0,
        "future_rows": future_rows,
        "future_rows_ignored": future_ignored,
        "short_series": n_short,
        "per_series": per_series,
        "outliers": outliers,
        "outlier_threshold": float(outlier_threshold),
        "outlier_readings": int(outlier.sum()),
        "outlier_series": per_series_outliers,
    }
    if per_series:
        logger.info(
            "validation %s: %d gap row(s) inserted, %d target(s) %s in %d of %d series",
            policy, report["gaps_filled"], int(unobserved.sum()),
            "filled" if policy == "fill" else "masked", len(per_series), n_series,
        )
    if per_series_outliers:
        shown = ", ".join(f"{sid} ({n})" for sid, n in list(per_series_outliers.items())[:5])
        logger.info(
            "outliers: %d reading(s) more than %g IQRs beyond their series' quartiles treated as unobserved "
            "and interpolated, in %d of %d series: %s%s", report["outlier_readings"], outlier_threshold,
            len(per_series_outliers), n_series, shown, " ..." if len(per_series_outliers) > 5 else "",
        )
    return report
