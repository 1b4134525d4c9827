"""One interface for every forecasting method the forecaster holds.

A model fits on prepared series (a `SeriesBatch`: validated, in a fixed order), forecasts a horizon for
the same kind of batch as an array in the data's scale, and gives its fitted state as plain data (JSON
values; the network's weights are the one exception, a Keras file the forecaster's state writes). The
shape follows StatsForecast's and NeuralForecast's models: the orchestrator owns the data's path and
the combination, each model only its own forecasts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from forecaster.data.frequency import seasonal_period
from forecaster.data.schema import observed_rows
from forecaster.data.validation import ValidatedFrame


class SeriesBatch:
    """Validated series, ``ids`` in the order every model's forecasts follow.

    ``histories`` (each series' target, masked or filled values interpolated) are read only by the
    models that need them and computed once per batch.
    """

    def __init__(self, vframe: ValidatedFrame, ids: list[str]) -> None:
        self.ids = list(ids)
        self.vframe = vframe.subset(self.ids)
        self.frame = self.vframe.frame

    @property
    def season(self) -> int:
        return seasonal_period(self.vframe.freq)

    @cached_property
    def histories(self) -> list[np.ndarray]:
        from forecaster.models.combination import series_histories

        return series_histories(self.frame, self.vframe.columns, self.ids)

    @cached_property
    def never_negative(self) -> np.ndarray:
        """For each series in ``ids`` order, whether none of its observed target values is below 0 (a
        series with none observed counts as never negative: nothing says it can be)."""
        columns = self.vframe.columns
        target = self.frame[columns.target].to_numpy("float64")
        rows = np.flatnonzero(observed_rows(self.frame, columns.target) & (target < 0))
        # Only the rows below 0 are looked up by id: most data has none, and a group-by over every row
        # cost ~0.2 CPU s per 8,192 hourly series, an eighth of a prediction chunk's frame work.
        negative = set(self.frame[columns.id].iloc[rows].astype(str)) if len(rows) else set()
        return np.fromiter((str(sid) not in negative for sid in self.ids), bool, len(self.ids))


#: What the forecaster does with forecasts below 0 (its ``nonnegative`` parameter): "auto" raises the
#: point and every quantile of a series whose history holds no negative value to at least 0, "never"
#: leaves them as the models give them.
SIGN_RULES = ("auto", "never")


def floor_at_zero(values: np.ndarray, never_negative: np.ndarray) -> np.ndarray:
    """``values`` (series, horizon, 1 + quantiles) with every value of a series that is never negative
    (``never_negative``, one per series: `SeriesBatch.never_negative`) at least 0.

    Why: a trend or drift extrapolated from a falling non-negative series (sales, counts, prices) goes
    below 0, which such a series cannot reach; its actuals are at or above 0, so raising a forecast or
    quantile to 0 never moves it further from them, and the quantiles stay in order.
    """
    if not len(values):
        return values
    keep = np.asarray(never_negative, dtype=bool)
    values[keep] = np.maximum(values[keep], 0.0) + 0.0  # + 0.0: no -0.0 in the output
    return values


class ForecastModel(ABC):
    """A forecasting method behind the forecaster: ``name`` is what its weights and scores are keyed by.

    ``forecast`` returns (series, horizon, 1 + quantiles) for a model with its own quantiles, or
    (series, horizon, 1) for a point-only one (``point_only``), in the data's scale, series in
    ``batch.ids`` order.
    """

    name: ClassVar[str]
    point_only: ClassVar[bool] = True

    def fit(self, batch: SeriesBatch, **options: Any) -> ForecastModel:
        """Learn from ``batch``. Local methods (fitted per series when they forecast) learn nothing here."""
        return self

    @abstractmethod
    def forecast(self, batch: SeriesBatch, horizon: int) -> np.ndarray:
        """The next ``horizon`` steps of every series of ``batch``."""

    def get_state(self) -> dict[str, Any]:
        """The fitted state as JSON values (none for a local method)."""
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ForecastModel:
        """The model ``get_state`` described."""
        return cls(**state)
