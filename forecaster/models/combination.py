"""The network's forecasts combined with statistical methods': the forecast users get.

Averaging a learned model's forecasts with simple statistical methods' is one of the most reliable
gains in forecasting practice: their errors are far from perfectly correlated, and the average is
rarely worse than the better of its members. Each combination makes a series' point forecast the
equal-weight mean of the network's and its methods': ``"theta"`` the classical Theta method
(`baselines.theta_batch`); ``"theta+ets"`` Theta and exponential smoothing (`baselines.ets_batch`, its
trend form chosen per series); ``"otm+dotm+ets"`` the optimised Theta model with a static and with a
dynamic trend line (`baselines.optimised_theta_batch`) and exponential smoothing; ``"otm+dotm+aets"``
the same Theta models and the state-space exponential smoothing with seasonal states, its form chosen
per series by AICc (`forecaster.models.ets.aets_batch`); ``"otm+dotm+aets+rtrend+rtrend8"`` those three
and two random walks with a robust drift, the median first difference of the whole series and of its last
8 values (`baselines.robust_trend_batch`), for yearly and other data without a season;
``"otm+dotm+aets+rtrend+rtrend8+ces"`` those five and complex exponential smoothing (`baselines.ces_batch`),
opt-in (on the development suite it did not beat the five, docs/accuracy.md). The network's
quantiles move by the same amount as its point, so that the intervals stay centred on the forecast;
the conformal calibration, fitted on the backtest's forecasts, then corrects the intervals of the
combination itself. ``"none"``: the network's forecasts alone. ``"auto"`` (the default): a fit scores
each on its own holdout (each series' last horizon, unseen by its training) and keeps the data's default
combination (`forecaster.defaults.default_combination`: by its seasonal period) unless the network
alone is far better there (`choose`): the statistical methods are good partners on
monthly, quarterly, yearly and other short data and poor ones on long hourly series, where the
network alone is far ahead (docs/accuracy.md); on data without a season, a training run then drops
the network from it where the backtest windows say its statistical members do better alone
(`without_network`, `LSTMForecaster.combine_on_windows`). ``"learned"``: weights chosen by greedy ensemble
selection (`greedy_weights`, Caruana's selection with replacement as AutoGluon does it) on the members'
out-of-sample forecasts of the backtest windows (`LSTMForecaster.learn_combination`), or of the fit's
holdout where a fit has no backtest. Every combination is a weight per member (`weights_of`): one
vector for the point, the quantiles moving with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.contract import LSTM
from forecaster.data.schema import Columns, observed_rows
from forecaster.data.validation import interpolate_series
from forecaster.evaluation.metrics import mase
from forecaster.models.naive import SeasonalNaive
from forecaster.models.statistical import METHODS, Statistical

#: The statistical methods each named combination averages with the network.
MEMBERS: dict[str, tuple[str, ...]] = {"none": (), "theta": ("theta",), "theta+ets": ("theta", "ets"),
                                        "otm+dotm+ets": ("otm", "dotm", "ets"),
                                        "otm+dotm+aets": ("otm", "dotm", "aets"),
                                        "otm+dotm+aets+rtrend+rtrend8": ("otm", "dotm", "aets", "rtrend", "rtrend8"),
                                        "otm+dotm+aets+rtrend+rtrend8+ces": ("otm", "dotm", "aets", "rtrend", "rtrend8",
                                                                             "ces")}
#: Methods only a named combination a user asks for runs, never a learned one nor a training's backtest
#: by default: complex exponential smoothing (greedy weights with it were mixed on the season-1 sets'
#: backtest windows, 6 % worse than without it at one origin of M3 Yearly, docs/accuracy.md).
OPT_IN_METHODS: tuple[str, ...] = ("ces",)
#: The point models a learned combination chooses from besides the network, by name (the cross-validation
#: of a training on data without a season forecasts each at every backtest window).
CANDIDATES: tuple[str, ...] = (*(m for m in METHODS if m not in OPT_IN_METHODS), SeasonalNaive.name)
LEARNED = "learned"
#: What a fitted forecaster can apply ("auto" resolves to one of the named ones at fit).
APPLIED = (*MEMBERS, LEARNED)
COMBINES = ("auto", *APPLIED)
#: What "auto" combines with on seasonal data unless the network alone is clearly better (the choice by
#: the data's season is `forecaster.defaults.default_combination`'s). Chosen on validation windows of
#: the development suite (docs/accuracy.md): "otm+dotm+ets" was the only combination at or below the
#: best of AutoETS and AutoTheta on every M3 set there; since 2026-12-06 its ETS is the seasonal
#: state-space one, whose mean with OTM and DOTM is 1.3-2.7 % lower on the four seasonal sets.
AUTO = "otm+dotm+aets"
#: How much worse than the network alone (relative holdout MASE) "auto" still takes the combination.
#: Chosen on validation windows of the development suite, where any value from 0.07 to 0.85 made the
#: same choices (docs/accuracy.md).
PREFER_COMBINED = 0.2
#: Rounds of greedy ensemble selection: weights are multiples of 1 / ROUNDS.
ROUNDS = 20


def weights_of(method: str) -> dict[str, float]:
    """A named combination's weights: the network and its `MEMBERS`, equal, in that order."""
    names = (LSTM, *MEMBERS[method])
    return {name: 1.0 / len(names) for name in names}


def series_histories(frame: pd.DataFrame, columns: Columns, ids: list[str]) -> list[np.ndarray]:
    """Each series' target history in ``ids`` order, from a validated frame: values that were filled
    or masked (``observed`` = 0) are interpolated as the "fill" policy does (`interpolate_series`), so
    that a masked 0.0 never reaches a statistical method."""
    target = frame[columns.target].to_numpy("float64")
    observed = observed_rows(frame, columns.target)
    groups = frame.groupby(columns.id, sort=False)
    values = interpolate_series(target, observed, groups.ngroup().to_numpy())
    positions = {str(sid): rows for sid, rows in groups.indices.items()}
    return [values[positions[str(sid)]] for sid in ids]


#: Series per call of a statistical method: each holds (series x candidates) arrays (ETS: 312
#: candidates; AETS: up to 40, times the season's length for its seasonal states), so a large frame
#: goes through in parts of bounded memory (~100 MB for ETS).
CHUNK = 4096


def point_model(name: str) -> Statistical | SeasonalNaive:
    """The point model a combination's member ``name`` is (`CANDIDATES`)."""
    return SeasonalNaive() if name == SeasonalNaive.name else Statistical(name)


def member_forecasts(histories: list[np.ndarray], horizon: int, season: int,
                     methods: set[str] | None = None) -> dict[str, np.ndarray]:
    """Each statistical method's point forecasts (series, horizon) from ``histories``, by the names
    `MEMBERS` uses; ``methods`` (default: those of the named combinations) picks which, seasonal naive
    (``"seasonal_naive"``) included. Each method reads at most the last `forecaster.models.baselines.tail_length`
    values of a series, so the cost does not grow with a history."""
    methods = {m for ms in MEMBERS.values() for m in ms} if methods is None else methods
    parts = [histories[i : i + CHUNK] for i in range(0, len(histories), CHUNK)] or [histories]
    return {name: np.concatenate([point_model(name).point(part, horizon, season) for part in parts])
            for name in sorted(methods)}


def _weighted(network: np.ndarray, members: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted mean of the members' point forecasts (the network's is ``network``); equal weights
    are the plain mean, summed in the weights' order."""
    names = [name for name, w in weights.items() if w > 0]
    forecasts = [network if name == LSTM else members[name] for name in names]
    w = [weights[name] for name in names]
    if len(set(w)) == 1:
        return np.mean(forecasts, axis=0)
    return sum(wi * f for wi, f in zip(w, forecasts)) / sum(w)


def combine(values: np.ndarray, histories: list[np.ndarray], method: str | dict[str, float],
            season: int) -> np.ndarray:
    """``values`` (series, horizon, 1 + quantiles), the network's forecasts in the data's scale, combined
    with ``method``'s statistical forecasts from ``histories`` (one per series, in the same order):
    a named combination or the weights of each member (`weights_of`). The quantiles move by as much as
    the point: a point-only member's quantiles are its point with the network's spread around it."""
    if isinstance(method, str):
        if method not in MEMBERS:
            raise ValueError(f"a fitted forecaster applies one of {APPLIED}, not {method!r}")
        method = weights_of(method)
    others = {name for name, w in method.items() if w > 0 and name != LSTM}
    if not others or not len(values):
        return values
    return combined(values, member_forecasts(histories, values.shape[1], season, others), method)


def combined(values: np.ndarray, members: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """``values`` (series, horizon, 1 + quantiles), the network's forecasts, moved to the ``weights``'
    mean of the network's point and the ``members``' point forecasts (series, horizon), the quantiles by
    as much as the point: what `combine` does once the members have forecast (also from forecasts made
    before, as a backtest's, `LSTMForecaster.window_forecasts`)."""
    shift = _weighted(values[..., 0], members, weights) - values[..., 0]
    return values + shift[..., None]


def holdout_scores(actual: np.ndarray, network: np.ndarray, histories: list[np.ndarray],
                   season: int) -> dict[str, float]:
    """MASE of each named combination on a holdout: ``actual`` and the network's point forecasts
    ``network`` (series, horizon), from ``histories`` (the series up to the holdout)."""
    members = member_forecasts(histories, network.shape[1], season)
    return {method: float(mase(actual, _weighted(network, members, weights_of(method)), histories, season))
            for method in MEMBERS}


def choose(scores: dict[str, float], default: str) -> str:
    """``default`` (the data's default combination, `forecaster.defaults.default_combination`) unless
    the network alone is better on the holdout by more than `PREFER_COMBINED`.

    The holdout is the window early stopping watched, so the network's score there is flattering (on
    the development suite's M3 Quarterly and Other it looked 3 % and 6 % better than the mean with
    Theta and ETS, which was 8 % and 1.5 % better on validation windows; measured when that mean was
    `AUTO`), and one window per series is too noisy to pick between combinations: the mean of the
    methods keeps the benefit of the doubt,
    and the network alone is kept where it is far ahead, as on long hourly series. Without a finite
    score for the network alone, the combination; without one for the combination, the network alone.
    """
    none, combined = (float(scores.get(k, np.nan)) for k in ("none", default))
    if not np.isfinite(combined):
        return "none"
    if np.isfinite(none) and combined > (1.0 + PREFER_COMBINED) * none:
        return "none"
    return default


def scored_rows(actual: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The rows of backtest windows (``actual``: rows, horizon; ``scale``: one per row) a MASE can
    score: a finite, positive scale and every actual value finite."""
    return np.isfinite(scale) & (scale > 0) & np.isfinite(actual).all(axis=1)


def without_network(actual: np.ndarray, forecasts: dict[str, np.ndarray], scale: np.ndarray, method: str,
                    margin: float) -> tuple[dict[str, float] | None, dict[str, float]]:
    """Whether the named combination ``method`` does better without the network on backtest windows
    (``actual``, ``forecasts`` and ``scale`` as `greedy_weights` takes them): the equal weights of its
    statistical members alone where their mean's MASE there is below ``method``'s (with the network)
    by more than ``margin`` (relative), else None; and the MASE there of each member and of both means
    (``"with_network"``, ``"without_network"``). Rows a member cannot forecast (non-finite) count
    against neither; where no row is left: None and no scores."""
    names = MEMBERS[method]
    keep = scored_rows(actual, scale)
    keep &= np.all([np.isfinite(forecasts[n]).all(axis=1) for n in (LSTM, *names)], axis=0)
    if not names or not keep.any():
        return None, {}
    y, s = actual[keep], scale[keep, None]
    network = forecasts[LSTM][keep]
    members = {n: forecasts[n][keep] for n in names}
    scores = {name: float(np.mean(np.abs(y - f) / s)) for name, f in {LSTM: network, **members}.items()}
    scores["with_network"] = float(np.mean(np.abs(y - _weighted(network, members, weights_of(method))) / s))
    scores["without_network"] = float(np.mean(np.abs(y - np.mean(list(members.values()), axis=0)) / s))
    dropped = scores["without_network"] < (1.0 - margin) * scores["with_network"]
    return ({n: 1.0 / len(names) for n in names} if dropped else None), scores


def greedy_weights(actual: np.ndarray, forecasts: dict[str, np.ndarray], scale: np.ndarray,
                   rounds: int = ROUNDS, start: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """Greedy ensemble selection with replacement (Caruana et al. 2004, as AutoGluon's ensembles):
    ``rounds`` times add the member whose addition makes the mean of those chosen so far closest to
    ``actual`` in MASE (absolute errors over ``scale``, one per row). ``actual`` and each forecast:
    (rows, horizon), a row being one series at one backtest origin. Returns the weights (times chosen
    / rounds, members never chosen left out, in ``forecasts``' order) and each member's own MASE.
    Ties go to the member first in ``forecasts``; members with a non-finite forecast are not chosen.
    ``start``: members counted once each before the first round (an equal-weight mean the selection
    moves away from only where the windows say so)."""
    keep = scored_rows(actual, scale)
    y, s = actual[keep], scale[keep, None]
    names = [n for n, f in forecasts.items() if np.isfinite(f[keep]).all()]
    scores = {n: float(np.mean(np.abs(y - forecasts[n][keep]) / s)) if keep.any() else np.nan for n in forecasts}
    if not keep.any() or not names:
        return {names[0] if names else LSTM: 1.0}, scores
    total = np.zeros_like(y)
    counts = dict.fromkeys(names, 0)
    for name in (n for n in start if n in counts):
        counts[name] += 1
        total += forecasts[name][keep]
    chosen = sum(counts.values())
    for k in range(chosen + 1, chosen + rounds + 1):
        errors = [np.mean(np.abs(y - (total + forecasts[n][keep]) / k) / s) for n in names]
        best = names[int(np.argmin(errors))]
        counts[best] += 1
        total += forecasts[best][keep]
    return {n: c / (chosen + rounds) for n, c in counts.items() if c}, scores
