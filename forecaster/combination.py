"""The network's forecasts combined with statistical methods': the forecast users get.

Averaging a learned model's forecasts with simple statistical methods' is one of the most reliable
gains in forecasting practice: their errors are far from perfectly correlated, and the average is
rarely worse than the better of its members. Each combination makes a series' point forecast the
equal-weight mean of the network's and its methods': ``"theta"`` the classical Theta method
(`baselines.theta_batch`); ``"theta+ets"`` Theta and exponential smoothing (`baselines.ets_batch`, its
trend form chosen per series); ``"otm+dotm+ets"`` the optimised Theta model with a static and with a
dynamic trend line (`baselines.optimised_theta_batch`) and exponential smoothing. The network's
quantiles move by the same amount as its point, so that the intervals stay centred on the forecast;
the conformal calibration, fitted on the backtest's forecasts, then corrects the intervals of the
combination itself. ``"none"``: the network's forecasts alone. ``"auto"`` (the default): a fit scores
each on its own holdout (each series' last horizon, unseen by its training) and keeps `AUTO` unless
the network alone is far better there (`choose`): the statistical methods are good partners on
monthly, quarterly, yearly and other short data and poor ones on long hourly series, where the
network alone is far ahead (docs/accuracy.md).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from forecaster.baselines import ets_batch, optimised_theta_batch, theta_batch
from forecaster.data.schema import OBSERVED, Columns
from forecaster.data.validation import interpolate_series
from forecaster.errors import ConfigError
from forecaster.metrics import mase

#: The statistical methods each applied combination averages with the network.
MEMBERS: dict[str, tuple[str, ...]] = {"none": (), "theta": ("theta",), "theta+ets": ("theta", "ets"),
                                        "otm+dotm+ets": ("otm", "dotm", "ets")}
_METHODS = {"theta": theta_batch, "ets": ets_batch, "otm": optimised_theta_batch,
            "dotm": partial(optimised_theta_batch, dynamic=True)}
#: What a fitted forecaster can apply ("auto" resolves to one of them at fit).
APPLIED = tuple(MEMBERS)
COMBINES = ("auto", *APPLIED)
#: What "auto" combines with unless the network alone is clearly better. Chosen on validation windows
#: of the development suite: the only combination at or below the best of AutoETS and AutoTheta on
#: every M3 set there (docs/accuracy.md).
AUTO = "otm+dotm+ets"
#: How much worse than the network alone (relative holdout MASE) "auto" still takes the combination.
#: Chosen on validation windows of the development suite, where any value from 0.07 to 0.85 made the
#: same choices (docs/accuracy.md).
PREFER_COMBINED = 0.2


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


#: Series per call of a statistical method: each holds (series x candidates) arrays (ETS: 312
#: candidates), so a large frame goes through in parts of bounded memory (~100 MB for ETS).
CHUNK = 4096


def member_forecasts(histories: list[np.ndarray], horizon: int, season: int,
                     methods: set[str] | None = None) -> dict[str, np.ndarray]:
    """Each statistical method's point forecasts (series, horizon) from ``histories``, by the names
    `MEMBERS` uses; ``methods`` (default: all of them) picks which. Each method reads at most the last
    `forecaster.baselines.tail_length` values of a series, so the cost does not grow with a history."""
    methods = {m for ms in MEMBERS.values() for m in ms} if methods is None else methods
    parts = [histories[i : i + CHUNK] for i in range(0, len(histories), CHUNK)] or [histories]
    return {name: np.concatenate([_METHODS[name](part, horizon, season) for part in parts])
            for name in sorted(methods)}


def _mean(network: np.ndarray, members: dict[str, np.ndarray], method: str) -> np.ndarray:
    return np.mean([network, *(members[name] for name in MEMBERS[method])], axis=0)


def combine(values: np.ndarray, histories: list[np.ndarray], method: str, season: int) -> np.ndarray:
    """``values`` (series, horizon, 1 + quantiles), the network's forecasts in the data's scale, combined
    with ``method``'s statistical forecasts from ``histories`` (one per series, in the same order)."""
    if method not in APPLIED:
        raise ValueError(f"a fitted forecaster applies one of {APPLIED}, not {method!r}")
    if method == "none" or not len(values):
        return values
    members = member_forecasts(histories, values.shape[1], season, set(MEMBERS[method]))
    shift = _mean(values[..., 0], members, method) - values[..., 0]
    return values + shift[..., None]


def holdout_scores(actual: np.ndarray, network: np.ndarray, histories: list[np.ndarray],
                   season: int) -> dict[str, float]:
    """MASE of each applied combination on a holdout: ``actual`` and the network's point forecasts
    ``network`` (series, horizon), from ``histories`` (the series up to the holdout)."""
    members = member_forecasts(histories, network.shape[1], season)
    return {method: float(mase(actual, _mean(network, members, method), histories, season))
            for method in APPLIED}


def choose(scores: dict[str, float]) -> str:
    """`AUTO` unless the network alone is better on the holdout by more than `PREFER_COMBINED`.

    The holdout is the window early stopping watched, so the network's score there is flattering (on
    the development suite's M3 Quarterly and Other it looked 3 % and 6 % better than the mean with
    Theta and ETS, which was 8 % and 1.5 % better on validation windows; measured when that mean was
    `AUTO`), and one window per series is too noisy to pick between combinations: the mean of the
    methods keeps the benefit of the doubt,
    and the network alone is kept where it is far ahead, as on long hourly series. Without a finite
    score for the network alone, the combination; without one for the combination, the network alone.
    """
    none, combined = (float(scores.get(k, np.nan)) for k in ("none", AUTO))
    if not np.isfinite(combined):
        return "none"
    if np.isfinite(none) and combined > (1.0 + PREFER_COMBINED) * none:
        return "none"
    return AUTO
