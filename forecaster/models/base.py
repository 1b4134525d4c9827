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
