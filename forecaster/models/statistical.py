"""The statistical methods as models: each a local method fitted per series when it forecasts, on at
most the last `forecaster.models.baselines.tail_length` values of a series (so its cost does not grow with a
history), point forecasts only (a combination moves the network's quantiles with its point). The
forecaster calls them in parts of `forecaster.models.combination.CHUNK` series, for bounded memory."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from forecaster.models.base import ForecastModel, SeriesBatch
from forecaster.models.baselines import (
    RECENT_VALUES,
    ces_batch,
    ets_batch,
    optimised_theta_batch,
    robust_trend_batch,
    theta_batch,
)
from forecaster.models.ets import aets_batch


class Statistical(ForecastModel):
    """One of the project's own statistical methods (`METHODS`), by name."""

    def __init__(self, name: str) -> None:
        if name not in METHODS:
            raise ValueError(f"no statistical method {name!r}; there are {sorted(METHODS)}")
        self.name = name  # type: ignore[misc]  (per instance: one class serves every method)

    def forecast(self, batch: SeriesBatch, horizon: int) -> np.ndarray:
        return self.point(batch.histories, horizon, batch.season)[..., None]

    def point(self, histories: list[np.ndarray], horizon: int, season: int) -> np.ndarray:
        """The point forecasts (series, horizon) from ``histories`` (each series' target)."""
        return METHODS[self.name](histories, horizon, season)

    def get_state(self) -> dict[str, object]:
        return {"name": self.name}


#: The methods by the names combinations, weights and scores use.
METHODS: dict[str, Callable[..., np.ndarray]] = {
    "theta": theta_batch,
    "ets": ets_batch,
    "otm": optimised_theta_batch,
    "dotm": partial(optimised_theta_batch, dynamic=True),
    "aets": aets_batch,
    "rtrend": robust_trend_batch,
    "rtrend8": partial(robust_trend_batch, last=RECENT_VALUES),  # the name is in saved models' weights
    "ces": ces_batch,
}
