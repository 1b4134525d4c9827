"""Simple benchmark forecasters: seasonal naive, M4's Naive2, the Theta methods, exponential smoothing, a
random walk with a robust drift, and seasonal-naive quantiles.

These are the yardsticks the learned models are compared against (and the fallback the service
uses when a model cannot forecast a series), so they follow the M4 competition's definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "acf",
    "acf_rows",
    "ces_batch",
    "ets_batch",
    "naive2",
    "optimised_theta_batch",
    "robust_trend_batch",
    "seasonal_indices",
    "seasonal_indices_rows",
    "seasonal_naive",
    "seasonal_naive_batch",
    "seasonal_naive_intervals",
    "seasonal_naive_intervals_batch",
    "seasonality_test",
    "seasonality_test_rows",
    "theta_batch",
]


def _check(horizon: int, m: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if m < 1:
        raise ValueError(f"seasonal period m must be >= 1, got {m}")


def _history(history: np.ndarray) -> np.ndarray:
    x = np.asarray(history, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"history must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot forecast from an empty history")
    return x


def seasonal_naive(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Repeat the last ``m`` observed values over ``horizon`` steps.

    With fewer than ``m`` values there is no full season to repeat, so the last value is repeated
    (plain naive). An empty history raises ValueError.
    """
    return seasonal_naive_batch([history], horizon, m)[0]


def seasonal_naive_batch(histories: Sequence[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """`seasonal_naive` for many series of possibly different lengths at once: shape (n, horizon).

    All histories are concatenated and the forecast values gathered with one fancy-indexing step.
    """
    _check(horizon, m)
    arrays = [_history(h) for h in histories]
    if not arrays:
        return np.empty((0, horizon))
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    step = np.arange(horizon)[None, :]
    # position inside each history: last season repeated, or the last value when shorter than m
    pos = np.where(lengths[:, None] >= m, lengths[:, None] - m + step % m, lengths[:, None] - 1)
    return np.concatenate(arrays)[starts[:, None] + pos]


# --------------------------------------------------------------------------- Naive2


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations r_1..r_max_lag (the usual biased estimator, as R's ``acf``).

    r_k = sum_t (x_t - mean)(x_{t+k} - mean) / sum_t (x_t - mean)^2; a constant series gives zeros.
    """
    return acf_rows(np.asarray(x, dtype=np.float64)[None, :], max_lag)[0]


def acf_rows(x: np.ndarray, max_lag: int) -> np.ndarray:
    """`acf` of each row of ``x`` (n, T), shape (n, max_lag), without a loop over rows; each row's
    values are bit for bit the row's own (a stacked ``matmul`` of row vectors is a dot product per row)."""
    x = np.asarray(x, dtype=np.float64)
    n, size = x.shape
    dev = x - x.mean(axis=1, keepdims=True)
    denom = np.matmul(dev[:, None, :], dev[:, :, None])[:, 0, 0]
    out = np.zeros((n, max_lag))
    varied = denom != 0.0
    if not varied.any():
        return out
    dev, denom = dev[varied], denom[varied]
    for k in range(1, min(max_lag, size - 1) + 1):
        out[varied, k - 1] = np.matmul(dev[:, None, :-k], dev[:, k:, None])[:, 0, 0] / denom
    return out


def seasonality_test(x: np.ndarray, m: int) -> bool:
    """M4's 90 % autocorrelation test for seasonality at lag ``m``.

    Seasonal if |r_m| > 1.645 * sqrt((1 + 2 * sum_{k=1}^{m-1} r_k^2) / n). As in the M4 benchmark
    code, series shorter than 3 seasons (and m = 1) are treated as not seasonal.
    """
    return bool(seasonality_test_rows(np.asarray(x, dtype=np.float64)[None, :], m)[0])


def seasonality_test_rows(x: np.ndarray, m: int) -> np.ndarray:
    """`seasonality_test` of each row of ``x`` (n, T), a boolean per row, without a loop over rows."""
    x = np.asarray(x, dtype=np.float64)
    if m < 2 or x.shape[1] < 3 * m:
        return np.zeros(len(x), dtype=bool)
    r = acf_rows(x, m)
    limit = 1.645 * np.sqrt((1.0 + 2.0 * np.sum(r[:, : m - 1] ** 2, axis=1)) / x.shape[1])
    return np.abs(r[:, m - 1]) > limit


def seasonal_indices(x: np.ndarray, m: int, *, additive: bool = False) -> np.ndarray:
    """Seasonal indices of classical decomposition, shape (m,): multiplicative (mean 1) or, with
    ``additive``, additive (mean 0).

    Index p belongs to positions t with t mod m == p (t counted from the start of ``x``). The trend is
    the centred moving average of order m (2 x m for even m); each index is the mean of x / trend (x -
    trend when additive) over the positions where the trend exists, and the indices are rescaled to
    average 1 (shifted to average 0).
    """
    return seasonal_indices_rows(np.asarray(x, dtype=np.float64)[None, :], m, additive=additive)[0]


def seasonal_indices_rows(x: np.ndarray, m: int, *, additive: bool = False) -> np.ndarray:
    """`seasonal_indices` of each row of ``x`` (n, T), shape (n, m), without a loop over rows: the
    statistical members compute them for thousands of series a call, where a call per series cost
    ~0.14 ms of Python each. Each row's indices are bit for bit those of the row alone: the moving
    average is one ``np.convolve`` over the rows laid end to end (each output the same dot product of
    its window; the windows that straddle two rows are dropped) and the other steps are elementwise
    or reduce within a row in the same order."""
    x = np.asarray(x, dtype=np.float64)
    n, size = x.shape
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = weights.size // 2
    trend = np.full((n, size), np.nan)
    if size >= weights.size and n:
        flat = np.convolve(np.ascontiguousarray(x).reshape(-1), weights, mode="valid")
        starts = np.arange(n)[:, None] * size + np.arange(size - weights.size + 1)[None, :]
        trend[:, half : size - half] = flat[starts]
    ratio = x - trend if additive else x / trend
    padded = np.full((n, -(-size // m) * m), np.nan)
    padded[:, :size] = ratio
    by_position = padded.reshape(n, -1, m)
    observed = ~np.isnan(by_position)
    index = np.where(observed, by_position, 0.0).sum(axis=1) / observed.sum(axis=1)
    centre = index.mean(axis=1, keepdims=True)
    return index - centre if additive else index / centre


def naive2(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """M4's Naive2 benchmark: naive forecast on seasonally adjusted data.

    If `seasonality_test` finds seasonality at lag m, the series is divided by its multiplicative
    `seasonal_indices`, the last adjusted value is carried forward, and the forecast is multiplied
    back by the indices of the future positions. Otherwise it is plain naive. As in M4's definition
    (the yardstick of OWA), the whole history is read, and a history with a value <= 0 is forecast
    naively.
    """
    _check(horizon, m)
    adjusted, lengths, season = _adjusted([history], horizon, m, members=False)
    return season.apply(adjusted[:1, lengths[0] - 1 : lengths[0]] * np.ones((1, horizon)))[0]


# --------------------------------------------------------------------------- Theta

# The smoothing constants SES is fitted over: a coarse grid, then a fine one around each series' best.
_ALPHAS = np.linspace(0.02, 1.0, 50)
_REFINE = np.linspace(-0.02, 0.02, 9)


def _ses_sse(x: np.ndarray, lengths: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SES of each left-aligned row of ``x`` (its first ``lengths`` values) for each of its ``alphas``.

    ``alphas`` is (n, A). The level starts at the first value; returns the in-sample sum of squared
    one-step errors and the final level, both (n, A). One pass over time for all series and alphas.
    """
    level = np.repeat(x[:, :1], alphas.shape[1], axis=1)
    sse = np.zeros_like(level)
    for t in range(1, x.shape[1]):
        active = (t < lengths)[:, None]
        error = x[:, t : t + 1] - level
        sse += np.where(active, error * error, 0.0)
        level = np.where(active, level + alphas * error, level)
    return sse, level


#: The most values of a series the statistical methods read: its last ones (at least `MEMBER_SEASONS`
#: seasons where that is more). Their cost, and a request's, depends on this, not on a history's length.
MEMBER_TAIL = 1000
MEMBER_SEASONS = 10


def tail_length(m: int) -> int:
    """How many of a series' last values the statistical methods read at seasonal period ``m``."""
    return max(MEMBER_TAIL, MEMBER_SEASONS * m)


@dataclass(frozen=True)
class Reseason:
    """The seasonal part of each series' future, (n, horizon) each: a forecast of the adjusted series
    times ``index`` plus ``offset`` is the forecast of the series."""

    index: np.ndarray
    offset: np.ndarray

    def apply(self, forecast: np.ndarray) -> np.ndarray:
        return forecast * self.index + self.offset


def _adjusted(histories: Sequence[np.ndarray], horizon: int, m: int,
              members: bool = True) -> tuple[np.ndarray, np.ndarray, Reseason]:
    """The histories' last `tail_length` values, seasonally adjusted as M4's benchmarks do, left-aligned
    in one matrix (``members=False``: the whole histories, and no additive adjustment, for `naive2`).

    A series that `seasonality_test` finds seasonal at lag ``m`` is divided by its multiplicative
    `seasonal_indices` when all its values are positive (M4's way), and otherwise has its additive
    indices subtracted: a zero or a negative value keeps the seasonality (multiplicative indices need
    positive values; M4's code then dropped the seasonality altogether). Additive adjustment commutes
    with shifting and negating the series, so the methods' forecasts do too. The others are kept.
    Returns (adjusted (n, T), lengths (n,), `Reseason`).
    """
    keep = tail_length(m) if members else None
    arrays = [_history(h)[-keep:] if keep else _history(h) for h in histories]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    adjusted = np.zeros((len(arrays), int(lengths.max(initial=1))))
    future_index, future_offset = np.ones((len(arrays), horizon)), np.zeros((len(arrays), horizon))
    # The series of one length at a time, as rows of a matrix: no loop over series.
    for size in np.unique(lengths):
        rows = np.flatnonzero(lengths == size)
        x = np.stack([arrays[k] for k in rows])
        seasonal = seasonality_test_rows(x, m)
        positive = x.min(axis=1) > 0
        position, future = np.arange(size) % m, np.arange(size, size + horizon) % m
        for pick, additive in ((seasonal & positive, False), (seasonal & ~positive & members, True)):
            if pick.any():
                si = seasonal_indices_rows(x[pick], m, additive=additive)
                if additive:
                    x[pick], future_offset[rows[pick]] = x[pick] - si[:, position], si[:, future]
                else:
                    x[pick], future_index[rows[pick]] = x[pick] / si[:, position], si[:, future]
        adjusted[rows, :size] = x
    return adjusted, lengths, Reseason(future_index, future_offset)


def row_sums(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's sum of its first ``lengths`` values, bit for bit the sum of that row alone.

    Why not ``np.where(inside, x, 0).sum(axis=1)``: numpy sums a row pairwise, in blocks set by the
    row's width, so a series padded to the width of a longer one beside it was summed in another
    order, and the last bits of its forecast depended on the series batched with it (a chunked
    prediction then differed from the whole frame's). Rows of one length are summed in one call.
    """
    out = np.empty(len(x))
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        out[rows] = x[rows, : int(length)].sum(axis=1)
    return out


def _line(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares line through each left-aligned row of ``x`` (its first ``lengths`` values,
    against t = 0, 1, ...): (value at t = 0, slope), each (n,); a one-value row has slope 0."""
    t = np.arange(x.shape[1], dtype=np.float64)[None, :]
    inside = t < lengths[:, None]
    mean_t = (lengths - 1) / 2.0
    centred_t = np.where(inside, t - mean_t[:, None], 0.0)
    spread = row_sums(centred_t * centred_t, lengths)
    slope = np.divide(row_sums(centred_t * x, lengths), spread, out=np.zeros(len(x)), where=spread > 0)
    return row_sums(x, lengths) / lengths - slope * mean_t, slope


def theta_batch(histories: Sequence[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """The Theta method's forecasts for many series at once, shape (n, horizon).

    The classical Theta method (Assimakopoulos and Nikolopoulos, 2000) in the form Hyndman and Billah
    (2003) showed it equals: simple exponential smoothing plus half the slope b of the least-squares
    line through the series, y(h) = level_n + b / 2 * (h - 1 + (1 - (1 - alpha)^n) / alpha). As in M4's
    benchmark, the series is seasonally adjusted first (`_adjusted`) and the forecast reseasonalised.
    alpha minimises the in-sample one-step squared error (a grid of 50 values in [0.02, 1], then
    a finer one around the best). A one-value history is forecast naively.
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon))
    adjusted, lengths, season = _adjusted(histories, horizon, m)
    n = len(lengths)
    _, slope = _line(adjusted, lengths)
    sse, _ = _ses_sse(adjusted, lengths, np.broadcast_to(_ALPHAS, (n, _ALPHAS.size)))
    best = _ALPHAS[np.argmin(sse, axis=1)]
    fine = np.clip(best[:, None] + _REFINE[None, :], 1e-3, 1.0)
    sse, level = _ses_sse(adjusted, lengths, fine)
    pick = np.argmin(sse, axis=1)
    rows = np.arange(n)
    alpha, level = fine[rows, pick], level[rows, pick]
    drift = (1.0 - (1.0 - alpha) ** lengths) / alpha
    steps = np.arange(horizon, dtype=np.float64)[None, :]
    forecast = level[:, None] + 0.5 * slope[:, None] * (steps + drift[:, None])
    return season.apply(forecast)


_OTM_ALPHAS = np.linspace(0.02, 0.99, 50)
_OTM_MIN_LENGTH = 4  # fewer values than this fit any line exactly: forecast naively


def optimised_theta_batch(histories: Sequence[np.ndarray], horizon: int, m: int, *,
                          dynamic: bool = False) -> np.ndarray:
    """The optimised Theta model for many series at once, shape (n, horizon); ``dynamic``: its form whose
    trend line is refitted at every step.

    The Theta method as the state-space model of Fiorucci et al. (2016): with the trend line's
    intercept A and slope B (time counted from 1), the one-step forecast of y_t is
    l_(t-1) + w ((1 - a)^(t-1) A + (1 - (1 - a)^t) / a B), the level l_t = a y_t + (1 - a) l_(t-1), and
    w = 1 - 1 / theta. The classical method is theta = 2 (w = 1/2, `theta_batch`); here theta >= 1
    (w in [0, 0.99]) is fitted, with the initial level l_0, for the lowest in-sample squared one-step
    error: for each smoothing constant a on a grid of 50 in [0.02, 0.99], the error is linear in l_0
    and w, so both have closed forms. A and B are the least-squares line through the whole series
    (the optimised Theta model, OTM) or, with ``dynamic``, through the values before each step (DOTM,
    the line starting at the first value, flat): the forecast then follows a trend that has moved
    lately. As in M4's benchmark, the series is seasonally adjusted first (`_adjusted`) and the
    forecast reseasonalised. The h-step forecast is l_n + w ((1 - a)^n A + B (h + (1 - a)(1 - (1 - a)^n)
    / a)). A series of fewer than four values, which two free parameters and a line fit exactly, is
    forecast naively.
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon))
    adjusted, lengths, season = _adjusted(histories, horizon, m)
    n, longest = adjusted.shape
    # The model is shift-invariant (l_0 absorbs a constant), so each row is fitted about its mean: the
    # sums below would otherwise lose their precision to a level far above the series' movement.
    inside = np.arange(longest)[None, :] < lengths[:, None]
    centre = row_sums(adjusted, lengths) / lengths
    adjusted = np.where(inside, adjusted - centre[:, None], 0.0)
    alpha = _OTM_ALPHAS[None, :]
    keep = 1.0 - alpha
    if dynamic:
        intercept, slope = adjusted[:, 0].copy(), np.zeros(n)
        count, total, weighted = np.zeros(n), np.zeros(n), np.zeros(n)
    else:
        at_zero, slope = _line(adjusted, lengths)
        intercept = at_zero - slope  # the line's value one step before the first value
    level = np.zeros((n, alpha.size))  # the level from l_0 = 0; l_0's share is (1 - a)^t l_0
    # Sums over steps of r^2, g r, g^2, K r, K^2, g K: r the error with l_0 = w = 0, g the weight of
    # l_0 and K the weight of w in the forecast.
    sums = np.zeros((6, n, alpha.size))
    for t in range(1, longest + 1):
        active = (t <= lengths)[:, None]
        value = adjusted[:, t - 1 : t]
        g = np.broadcast_to(keep ** (t - 1), level.shape)
        trend_term = g * intercept[:, None] + (1.0 - keep**t) / alpha * slope[:, None]
        error = value - level
        terms = (error * error, g * error, g * g, trend_term * error, trend_term * trend_term, g * trend_term)
        for k, term in enumerate(terms):
            sums[k] += np.where(active, term, 0.0)
        level = np.where(active, alpha * value + keep * level, level)
        if dynamic:
            seen = active[:, 0]
            count += seen
            total += np.where(seen, value[:, 0], 0.0)
            weighted += np.where(seen, t * value[:, 0], 0.0)
            sum_t, sum_t2 = count * (count + 1) / 2, count * (count + 1) * (2 * count + 1) / 6
            spread = count * sum_t2 - sum_t * sum_t
            slope = np.divide(count * weighted - sum_t * total, spread, out=np.zeros(n), where=spread > 0)
            intercept = np.where(count > 0, (total - slope * sum_t) / np.maximum(count, 1), intercept)
    rr, gr, gg, kr, kk, gk = sums
    det = gg * kk - gk * gk
    solvable = det > 1e-10 * gg * kk
    w = np.divide(gg * kr - gk * gr, det, out=np.full_like(det, 0.5), where=solvable)
    w = np.where(solvable, np.clip(w, 0.0, 0.99), 0.5)  # no slope to weigh: any w fits alike
    l0 = (gr - w * gk) / gg
    sse = rr - 2 * l0 * gr - 2 * w * kr + l0 * l0 * gg + 2 * l0 * w * gk + w * w * kk
    pick = np.argmin(sse, axis=1)
    rows = np.arange(n)
    a, w, q = _OTM_ALPHAS[pick], w[rows, pick], keep[0, pick]
    decay = q**lengths
    final_level = level[rows, pick] + decay * l0[rows, pick]
    steps = np.arange(1, horizon + 1, dtype=np.float64)[None, :]
    drift = (q * (1.0 - decay) / a)[:, None]
    forecast = final_level[:, None] + w[:, None] * ((decay * intercept)[:, None] + slope[:, None] * (steps + drift))
    short = lengths < _OTM_MIN_LENGTH
    forecast[short] = adjusted[rows[short], lengths[short] - 1][:, None]
    return season.apply(forecast + centre[:, None])


# --------------------------------------------------------------------------- robust trend

#: How many of a series' last values the recent robust trend (member ``"rtrend8"``) reads: its drift is
#: the median of their 7 first differences. Chosen on the development suite's validation windows among
#: 4, 6, 8, 10, 12, 15 and 20 (docs/accuracy.md, 2026-12-06, third session).
RECENT_VALUES = 8


def robust_trend_batch(histories: Sequence[np.ndarray], horizon: int, m: int, *,
                       last: int | None = None) -> np.ndarray:
    """A random walk with a robust drift for many series at once, shape (n, horizon): the last value
    plus h times the median of the first differences, of the last ``last`` values (None: every value
    read, `tail_length`), on the series seasonally adjusted as M4's benchmarks do (`_adjusted`) and
    reseasonalised.

    The random walk with drift (ARIMA(0,1,0) with a constant) is a yardstick hard to beat on yearly
    data; the median instead of the mean of the differences (the slope of the line from the first to
    the last value) keeps one jump or one outlier from setting the trend, and a recent window follows a
    trend that has changed. A one-value history (no difference) is forecast naively. Deterministic and
    vectorised: one padded matrix of differences and one median.
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon))
    adjusted, lengths, season = _adjusted(histories, horizon, m)
    n, width = adjusted.shape
    first = lengths - (lengths if last is None else np.minimum(lengths, max(int(last), 1)))
    position = np.arange(width - 1)[None, :]  # difference j is x[j + 1] - x[j]
    inside = (position >= first[:, None]) & (position + 1 < lengths[:, None])
    differences = np.where(inside, np.diff(adjusted, axis=1), np.nan)
    drift = np.zeros(n)
    has = inside.any(axis=1)
    if has.any():
        drift[has] = np.nanmedian(differences[has], axis=1)
    rows = np.arange(n)
    steps = np.arange(1, horizon + 1, dtype=np.float64)[None, :]
    return season.apply(adjusted[rows, lengths - 1][:, None] + drift[:, None] * steps)


# --------------------------------------------------------------------------- exponential smoothing

# The candidates `ets_batch` fits: (alpha, beta as a share of alpha, phi) for the level-only, the
# linear-trend and the damped-trend forms, and each form's number of estimated values (smoothing
# constants and initial states) for the AICc.
_ETS_ALPHAS = np.array([0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0])
_ETS_BETAS = np.array([0.01, 0.05, 0.1, 0.2, 0.4])
_ETS_PHIS = np.array([0.8, 0.88, 0.94, 0.98])


def _ets_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, beta, phi, estimated values) of every candidate, each (C,)."""
    forms = [(a, 0.0, 1.0, 2) for a in _ETS_ALPHAS]  # level only: alpha, l0
    forms += [(a, f * a, 1.0, 4) for a in _ETS_ALPHAS for f in _ETS_BETAS]  # trend: + beta, b0
    forms += [(a, f * a, p, 5) for a in _ETS_ALPHAS for f in _ETS_BETAS for p in _ETS_PHIS]  # + phi
    return tuple(np.array(column, dtype=np.float64) for column in zip(*forms))


def ets_batch(histories: Sequence[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """Exponential smoothing with additive errors, the trend form chosen per series, shape (n, horizon).

    Each series, seasonally adjusted as M4's benchmarks do (`_adjusted`), is fitted in three forms:
    level only (simple exponential smoothing), a linear trend (Holt) and a damped trend (Gardner and
    McKenzie); the form and its constants are those with the lowest AICc, n log(SSE / n) + 2k +
    2k(k + 1) / (n - k - 1), over a grid of constants (alpha; beta as a share of alpha; phi), k counting
    the constants and initial states. The initial level and trend are the least-squares line through
    the first ten values (Hyndman et al.'s heuristic), so short series need no extra search. A series
    too short for a form's AICc (n <= k + 1) is fitted by the forms it can carry; a one-value history
    is forecast naively. The forecast is reseasonalised.

    Damped trends are the workhorse of automatic exponential smoothing on yearly and quarterly data; it
    is the partner of the Theta models in ``"theta+ets"`` and ``"otm+dotm+ets"``
    (`forecaster.models.combination`); the default's is `forecaster.models.ets.aets_batch`, whose seasonal
    states are smoothed with the level.
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon))
    adjusted, lengths, season = _adjusted(histories, horizon, m)
    n = len(lengths)
    alpha, beta, phi, k = _ets_grid()

    l0, b0 = _line(adjusted[:, :10], np.minimum(lengths, 10))

    trend = np.where(k[None, :] > 2, b0[:, None], 0.0)
    level = l0[:, None] - phi * trend  # the state one step before the first value, whose forecast is l0
    sse = np.zeros_like(level)
    for step in range(adjusted.shape[1]):
        active = (step < lengths)[:, None]
        fitted = level + phi * trend
        error = adjusted[:, step : step + 1] - fitted
        sse += np.where(active, error * error, 0.0)
        level = np.where(active, fitted + alpha * error, level)
        trend = np.where(active, phi * trend + beta * error, trend)

    size = lengths[:, None].astype(np.float64)
    usable = size > k[None, :] + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        aicc = size * np.log(np.maximum(sse, 1e-300) / size) + 2 * k + 2 * k * (k + 1) / (size - k - 1)
    aicc = np.where(usable, aicc, np.inf)
    aicc[~usable.any(axis=1), 0] = 0.0  # too short for any AICc: the level-only form
    pick = np.argmin(np.where(np.isnan(aicc), np.inf, aicc), axis=1)
    rows = np.arange(n)
    damping = np.cumsum(phi[pick][:, None] ** np.arange(1, horizon + 1)[None, :], axis=1)
    forecast = level[rows, pick][:, None] + damping * trend[rows, pick][:, None]
    forecast[lengths == 1] = adjusted[lengths == 1, :1]
    return season.apply(forecast)


# --------------------------------------------------------------------------- quantiles


MIN_OWN_ERRORS = 5
"""The fewest in-sample errors whose own quantiles place the seasonal naive's interval; below it they are
pooled with their negatives (chosen on the suite's validation windows, docs/accuracy.md)."""


def seasonal_naive_intervals(
    history: np.ndarray, horizon: int, m: int, quantiles: Sequence[float]
) -> np.ndarray:
    """Quantile forecasts around the seasonal naive forecast, shape (horizon, n_quantiles).

    Method: the in-sample one-season-ahead errors e_t = y_t - y_{t-m} (every t with both values
    observed) form an empirical error distribution. Step j (1-based) of the forecast is k = ceil(j/m)
    seasons ahead; treating the seasonal naive as a seasonal random walk, its error is a sum of k
    independent season errors, so the spread grows like sqrt(k):

        quantile_q(step j) = seasonal_naive(step j) + sqrt(k) * empirical_quantile_q(e)

    (``np.quantile``, linear interpolation). When the history is not longer than m, lag-1 errors are
    used instead with k = j, matching the naive fallback of `seasonal_naive`. A one-point history has
    no errors at all: every quantile is then the point forecast (zero width), which says "unknown
    spread", not "certain". The quantiles are non-decreasing in q, and q0.5 is not forced onto the
    point forecast (the median error may be non-zero if the history is biased).

    With fewer than `MIN_OWN_ERRORS` errors their own quantiles say nothing about a tail (one error
    gave a zero-width interval beside the point; a short rising history one wholly above it), so the
    errors are pooled with their negatives: a symmetric spread, centred on the point, as wide as the
    changes seen (docs/accuracy.md, "The seasonal naive's intervals on short histories").
    """
    return seasonal_naive_intervals_batch([history], horizon, m, quantiles)[0]


def seasonal_naive_intervals_batch(histories: Sequence[np.ndarray], horizon: int, m: int,
                                   quantiles: Sequence[float]) -> np.ndarray:
    """`seasonal_naive_intervals` for many series at once, shape (n, horizon, n_quantiles): one padded
    matrix of errors and one quantile call, no loop over series (20,000 series of 3 values took 46 s
    one at a time)."""
    _check(horizon, m)
    arrays = [_history(h) for h in histories]
    qs = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if np.any(~(qs > 0) | ~(qs < 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {qs.tolist()}")
    if not arrays:
        return np.empty((0, horizon, qs.size))
    point = seasonal_naive_batch(arrays, horizon, m)
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    padded = np.full((len(arrays), int(lengths.max())), np.nan)
    padded[np.arange(padded.shape[1])[None, :] < lengths[:, None]] = np.concatenate(arrays)
    lag = np.where(lengths > m, m, 1)
    later = np.arange(padded.shape[1])[None, :] + lag[:, None]
    rows = np.arange(len(arrays))[:, None]
    errors = np.where(later < lengths[:, None], padded[rows, np.minimum(later, padded.shape[1] - 1)] - padded, np.nan)
    has_errors = (~np.isnan(errors)).any(axis=1)
    few = (~np.isnan(errors)).sum(axis=1) < MIN_OWN_ERRORS
    errors = np.concatenate([errors, np.where(few[:, None], -errors, np.nan)], axis=1)
    spread = np.zeros((len(arrays), qs.size))
    if has_errors.any():
        spread[has_errors] = np.nanquantile(errors[has_errors], qs, axis=1).T
    seasons_ahead = np.ceil(np.arange(1, horizon + 1)[None, :] / lag[:, None])
    return point[:, :, None] + np.sqrt(seasons_ahead)[:, :, None] * spread[:, None, :]


# --------------------------------------------------------------------------- complex exponential smoothing

#: The coarse grid of complex smoothing parameters a0 + i a1 `ces_batch` starts from (the admissible ones,
#: `_ces_admissible`), then `_CES_ROUNDS` rounds of a pattern search from each series' best, the step
#: halved each round.
_CES_A0 = np.round(np.arange(0.1, 3.0, 0.15), 4)
_CES_A1 = np.round(np.arange(-1.0, 2.2, 0.15), 4)
_CES_ROUNDS = 4
_CES_STEP = 0.075
#: The initial level is the mean of a series' first values (this many), the initial potential the level
#: over `_CES_POTENTIAL`: fitting both by least squares instead scored far worse alone (M1 Yearly's
#: validation MASE 3.13 against 2.80, docs/accuracy.md): two more free values overfit short series.
_CES_FIRST = 10
_CES_POTENTIAL = 1.1
#: Fewer values than this are forecast naively (two constants fitted on fewer errors say nothing).
CES_MIN_LENGTH = 4
#: How far beyond its history's span a CES forecast may go, in multiples of the history's range, before
#: the series is forecast naively instead: admissible constants let the trajectory grow by up to ~1.6 a
#: step, so on a short history a long horizon can compound to absurd values (a 20-value random walk at
#: horizon 168: 1e13 times its range). Far wider than any yearly trend it extrapolates (at most ~4 times
#: at horizon 6 in the same probes), so it changes no forecast of the development suite's yearly sets.
CES_REACH = 10.0
#: The most of a series' last values `ces_batch` reads: a pass over time per candidate and round, so a
#: long history would cost more than the other members do without telling a yearly model more.
CES_VALUES = 300


def _ces_admissible(a0: np.ndarray, a1: np.ndarray) -> np.ndarray:
    """Whether a0 + i a1 gives a stable model: both eigenvalues of the discount matrix
    ``[[1 - a0 + a1, a1 - 1], [1 - a0 - a1, 1 - a0]]`` (how the states forget their start) inside the
    unit circle, by Jury's conditions on its trace and determinant (Svetunkov and Kourentzes' admissible
    bounds)."""
    trace = 2.0 - 2.0 * a0 + a1
    det = (1.0 - a0 + a1) * (1.0 - a0) + (1.0 - a1) * (1.0 - a0 - a1)
    return (np.abs(det) < 1.0) & (np.abs(trace) < 1.0 + det)


def _ces_pass(x: np.ndarray, lengths: np.ndarray, a0: np.ndarray, a1: np.ndarray,
              level: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-seasonal CES over each left-aligned row of ``x`` (its first ``lengths`` values) for each of its
    candidates (``a0``, ``a1``: (n, C) or (1, C)), from the initial ``level`` (n, 1) and the potential
    ``level / _CES_POTENTIAL``. With e the one-step error (the forecast of the next value is the level l),
    the level and the potential c move as ``l' = l - (1 - a1) c + (a0 - a1) e`` and
    ``c' = l + (1 - a0) c + (a0 + a1) e``. Returns the in-sample sum of squared errors (inadmissible
    candidates: inf) and the final level and potential, each (n, C)."""
    shape = np.broadcast_shapes(a0.shape, a1.shape, level.shape)
    level = np.broadcast_to(level, shape).copy()
    potential = level / _CES_POTENTIAL
    sse = np.zeros(shape)
    for t in range(x.shape[1]):
        active = (t < lengths)[:, None]
        error = x[:, t : t + 1] - level
        sse += np.where(active, error * error, 0.0)
        level, potential = (np.where(active, level - (1.0 - a1) * potential + (a0 - a1) * error, level),
                            np.where(active, level + (1.0 - a0) * potential + (a0 + a1) * error, potential))
    sse = np.where(_ces_admissible(a0, a1) & np.isfinite(sse), sse, np.inf)
    return sse, level, potential


def ces_batch(histories: Sequence[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """Complex exponential smoothing without a season (Svetunkov, Kourentzes and Ord, 2022) for many
    series at once, shape (n, horizon).

    The series y_t is read with its one-step error e_t as the complex number y_t + i e_t and smoothed
    with a complex constant a0 + i a1: the level l (the forecast) and the potential c follow
    ``l' = l - (1 - a1) c + (a0 - a1) e``, ``c' = l + (1 - a0) c + (a0 + a1) e``, and the h-step forecast
    carries both on without errors. One model and no trend to choose: by a0 and a1 it follows a level, a
    trend or a slow swing (statsforecast's AutoCES was among the best single models on yearly data,
    docs/accuracy.md). a0 and a1 are fitted per series for the least in-sample squared one-step error
    (the Gaussian likelihood) among the admissible ones (`_ces_admissible`): a coarse grid, then a
    pattern search, all series and candidates in one pass over time per round; the initial level is the
    mean of the first `_CES_FIRST` values and the potential the level over `_CES_POTENTIAL`. As the other
    members, the series is seasonally adjusted first (`_adjusted`) and the forecast reseasonalised; at
    most the last `CES_VALUES` values are read. Each series is fitted divided by its largest absolute
    value (the model is linear: the forecast scales with the series). A series of fewer than
    `CES_MIN_LENGTH` values, a constant one, or one whose forecast is not finite or goes more than
    `CES_REACH` times its history's range beyond that range is forecast naively.
    Unlike the other members it is not invariant to a shift of the series: its level feeds its potential,
    so a constant added moves the forecast by more than the constant (centring the series before the fit
    made it far worse, docs/accuracy.md). Its trajectory can compound (a1 > 1 grows geometrically).
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon))
    adjusted, lengths, season = _adjusted([_history(h)[-CES_VALUES:] for h in histories], horizon, m)
    rows = np.arange(len(lengths))
    inside = np.arange(adjusted.shape[1])[None, :] < lengths[:, None]
    size = np.where(inside, np.abs(adjusted), 0.0).max(axis=1)
    size = np.where(size > 0, size, 1.0)
    x = np.where(inside, adjusted / size[:, None], 0.0)
    last = x[rows, lengths - 1]
    spread = np.where(inside, x, last[:, None])
    fit = (lengths >= CES_MIN_LENGTH) & (spread.max(axis=1) > spread.min(axis=1))
    forecast = np.repeat(last[:, None], horizon, axis=1)
    if fit.any():
        forecast[fit] = _ces_forecast(x[fit], lengths[fit], horizon)
    low, high = spread.min(axis=1, keepdims=True), spread.max(axis=1, keepdims=True)
    reach = CES_REACH * (high - low)
    with np.errstate(invalid="ignore"):
        sane = (np.isfinite(forecast) & (forecast >= low - reach) & (forecast <= high + reach)).all(axis=1)
    forecast = np.where(sane[:, None], forecast, last[:, None])
    return season.apply(forecast * size[:, None])


def _ces_forecast(x: np.ndarray, lengths: np.ndarray, horizon: int) -> np.ndarray:
    """`ces_batch`'s fit and forecast of the rows it fits (scaled, seasonally adjusted)."""
    rows = np.arange(len(x))
    first = np.minimum(lengths, _CES_FIRST)
    start = (row_sums(x, first) / first)[:, None]
    a0, a1 = (g.ravel()[None, :] for g in np.meshgrid(_CES_A0, _CES_A1, indexing="ij"))
    keep = _ces_admissible(a0, a1)[0]
    a0, a1 = a0[:, keep], a1[:, keep]
    sse, level, potential = _ces_pass(x, lengths, a0, a1, start)
    pick = np.argmin(sse, axis=1)
    best0, best1, best = a0[0, pick], a1[0, pick], sse[rows, pick]
    level, potential = level[rows, pick], potential[rows, pick]
    moves = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)], dtype=np.float64)
    step = _CES_STEP
    for _ in range(_CES_ROUNDS):
        c0 = best0[:, None] + step * moves[None, :, 0]
        c1 = best1[:, None] + step * moves[None, :, 1]
        sse, levels, potentials = _ces_pass(x, lengths, c0, c1, start)
        pick = np.argmin(sse, axis=1)
        better = sse[rows, pick] < best
        best0 = np.where(better, c0[rows, pick], best0)
        best1 = np.where(better, c1[rows, pick], best1)
        best = np.where(better, sse[rows, pick], best)
        level = np.where(better, levels[rows, pick], level)
        potential = np.where(better, potentials[rows, pick], potential)
        step /= 2.0
    out = np.empty((len(x), horizon))
    for h in range(horizon):
        out[:, h] = level
        level, potential = level - (1.0 - best1) * potential, level + (1.0 - best0) * potential
    return out
