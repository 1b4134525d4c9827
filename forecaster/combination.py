"""The network's forecasts combined with a statistical method's: the forecast users get.

Averaging a learned model's forecasts with a simple statistical method's is one of the most reliable
gains in forecasting practice: their errors are far from perfectly correlated, and the average is
rarely worse than the better of the two. ``"theta"`` makes each series' point forecast the
equal-weight mean of the network's and the Theta method's (`baselines.theta_batch`, on the same
history), and moves the network's quantiles by the same amount, so that the intervals stay centred on
the forecast; the conformal calibration, fitted on the backtest's forecasts, then corrects the
intervals of the combination itself. ``"none"``: the network's forecasts alone. ``"auto"`` (the
default): a fit scores both on its own holdout (each series' last horizon, unseen by its training)
and keeps the combination unless the network alone is clearly better there (`choose`): Theta is a
good partner on monthly, quarterly and yearly data and a poor one on long hourly series, where the
network alone is far ahead (docs/accuracy.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.baselines import theta_batch
from forecaster.data.schema import OBSERVED, Columns
from forecaster.data.validation import interpolate_series
from forecaster.errors import ConfigError
from forecaster.metrics import mase

COMBINES = ("auto", "none", "theta")
#: What a fitted forecaster can apply ("auto" resolves to one of them at fit).
APPLIED = ("none", "theta")
#: How much worse than the network alone (relative holdout MASE) "auto" still takes the combination.
#: Chosen on validation windows of the development suite: any value from 0.02 to 0.09 made the same
#: choices there (docs/accuracy.md).
PREFER_COMBINED = 0.05


def check_combine(value: str) -> str:
    """``value`` if it names a combination, else ConfigError naming the key."""
    if value not in COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINES)}, got {value!r}")
    return value


def series_histories(frame: pd.DataFrame, columns: Columns, ids: list[str]) -> list[np.ndarray]:
    """Each series' target history in ``ids`` order, from a validated frame: values that were filled
    or masked (``observed`` = 0) are interpolated as the "fill" policy does (`interpolate_series`), so
    that a masked 0.0 never reaches a statistical method."""
    target = frame[columns.target].to_numpy("float64")
    observed = frame[OBSERVED].to_numpy() == 1.0 if OBSERVED in frame.columns else np.isfinite(target)
    groups = frame.groupby(columns.id, sort=False)
    values = interpolate_series(target, observed, groups.ngroup().to_numpy())
    positions = {str(sid): rows for sid, rows in groups.indices.items()}
    return [values[positions[str(sid)]] for sid in ids]


def combine(values: np.ndarray, histories: list[np.ndarray], method: str, season: int) -> np.ndarray:
    """``values`` (series, horizon, 1 + quantiles), the network's forecasts in the data's scale, combined
    with ``method``'s point forecasts from ``histories`` (one per series, in the same order)."""
    if method not in APPLIED:
        raise ValueError(f"a fitted forecaster applies one of {APPLIED}, not {method!r}")
    if method == "none" or not len(values):
        return values
    other = theta_batch(histories, values.shape[1], season)
    shift = 0.5 * (other - values[..., 0])
    return values + shift[..., None]


def holdout_scores(actual: np.ndarray, network: np.ndarray, histories: list[np.ndarray],
                   season: int) -> dict[str, float]:
    """MASE of each applied combination on a holdout: ``actual`` and the network's point forecasts
    ``network`` (series, horizon), from ``histories`` (the series up to the holdout)."""
    out = {}
    for method in APPLIED:
        point = combine(network[..., None], histories, method, season)[..., 0]
        out[method] = float(mase(actual, point, histories, season))
    return out


def choose(scores: dict[str, float]) -> str:
    """``"theta"`` unless the network alone is better on the holdout by more than `PREFER_COMBINED`.

    The holdout is the window early stopping watched, so the network's score there is flattering, and
    a combination is rarely much worse than its better member: the combination keeps the benefit of
    the doubt. Without a finite score for the network alone, the combination; without one for the
    combination (or any), the network alone.
    """
    none, theta = (float(scores.get(k, np.nan)) for k in APPLIED)
    if not np.isfinite(theta):
        return "none"
    if not np.isfinite(none):
        return "theta"
    return "theta" if theta <= (1.0 + PREFER_COMBINED) * none else "none"
