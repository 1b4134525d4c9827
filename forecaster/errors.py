"""One exception hierarchy for the whole project.

Every error raised on purpose by forecaster derives from :class:`ForecasterError`, so callers (the CLI,
the HTTP service) can catch one type.  Errors about user-supplied frames are :class:`DataError`s: they
carry the offending column, series ids and timestamps as attributes, name them in the message, and turn
into a JSON-safe dict with :meth:`DataError.to_dict` for HTTP 400 bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

#: How many series ids / timestamps a message names before summarising the rest as "and N more".
MESSAGE_ITEMS = 5
#: How many series ids / timestamps :meth:`DataError.to_dict` lists; the totals are always given.
DICT_ITEMS = 100


class ForecasterError(Exception):
    """Base class of every error forecaster raises on purpose."""


class ConfigError(ForecasterError, ValueError):
    """A setting or argument is invalid (unknown policy, bad column spec, ...)."""


class LockHeldError(ForecasterError):
    """Another live process held a lock we need for longer than we were willing to wait."""


class NoChampionError(ForecasterError):
    """The scheduled job has no champion to forecast with (its retrained version was not promoted)."""


class WorkerLostError(ForecasterError):
    """Multi-worker training stopped because another worker of the cluster stopped or cannot be reached."""


class ModelError(ForecasterError):
    """A model cannot be built, trained, loaded or used as asked."""


def _plain(value: Any) -> Any:
    """Turn numpy scalars into Python scalars so ids survive ``json.dumps``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _iso(value: Any) -> str:
    """ISO 8601 text of a timestamp-like value (anything else: its ``str``)."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    return "NaT" if pd.isna(ts) else ts.isoformat()


def summarize(items: list[Any], limit: int = MESSAGE_ITEMS) -> str:
    """Comma-separated first ``limit`` items, then "and N more" when the list is longer."""
    shown = ", ".join(str(item) for item in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


class DataError(ForecasterError, ValueError):
    """An input frame is unusable; says which column, series and timestamps are at fault.

    ``reason`` is the bare explanation; ``str(error)`` appends the column, series and timestamps so
    the message alone is enough to find the bad rows.
    """

    def __init__(
        self,
        reason: str,
        *,
        column: str | None = None,
        series: Iterable[Any] = (),
        timestamps: Iterable[Any] = (),
    ) -> None:
        self.reason = reason
        self.column = column
        self.series = [_plain(s) for s in series]
        self.timestamps = list(timestamps)
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = []
        if self.column is not None:
            parts.append(f"column: {self.column!r}")
        if self.series:
            parts.append(f"series: {summarize(self.series)}")
        if self.timestamps:
            parts.append(f"timestamps: {summarize([_iso(t) for t in self.timestamps])}")
        return f"{self.reason} ({'; '.join(parts)})" if parts else self.reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for API error bodies.

        Lists are capped at ``DICT_ITEMS`` entries; ``n_series`` / ``n_timestamps`` give the full counts.
        """
        return {
            "error": type(self).__name__,
            "message": str(self),
            "column": self.column,
            "series": self.series[:DICT_ITEMS],
            "timestamps": [_iso(t) for t in self.timestamps[:DICT_ITEMS]],
            "n_series": len(self.series),
            "n_timestamps": len(self.timestamps),
        }


class MissingColumnError(DataError):
    """Columns named in the column spec are absent from the frame."""


class ColumnTypeError(DataError):
    """A column has a type that cannot be used (non-numeric target, unparseable timestamps, ...)."""


class DuplicateRowsError(DataError):
    """The same (series id, timestamp) pair appears more than once."""


class FrequencyError(DataError):
    """The sampling frequency is unknown, irregular, invalid or differs between series."""


class GapError(DataError):
    """Timestamps are missing inside a series' range."""


class MissingValueError(DataError):
    """Target values are missing or not finite."""


class ValueRangeError(DataError):
    """A target value beyond what the model can carry (`forecaster.data.validation.MAX_ABS_TARGET`), or a
    forecast that came out not finite: refused rather than answered with NaN or inf."""


class OutlierError(DataError):
    """A series ends in readings far outside its range (`forecaster.data.outliers`): a new level or a run
    of bad readings, which the data cannot tell apart there."""


class RequestTooLargeError(DataError):
    """A request to the model server over one of its documented limits (`forecaster.ops.serving.Limits`)."""


class ShortHistoryError(DataError):
    """A series has fewer rows than required."""


class CovariateError(DataError):
    """A covariate is unusable: static not constant per series, NaN values, or future values missing.

    Future values are missing when known-future covariates do not cover the forecast horizon.
    """
