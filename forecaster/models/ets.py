"""State-space exponential smoothing with seasonal states, for many series at once (issue #27).

`aets_batch` fits, per series, the exponential smoothing models of Hyndman et al.'s taxonomy
(*Forecasting with Exponential Smoothing*, 2008) whose error is additive (A) or multiplicative (M),
whose trend is none (N), additive (A) or damped (Ad) and whose season is none (N), additive (A) or
multiplicative (M), and keeps the one with the lowest AICc, as statsforecast's and R's AutoETS do
(`FORMS`: as theirs by default, no multiplicative trend, and no additive error with a multiplicative
season, whose variance is infinite). Unlike `forecaster.models.baselines.ets_batch`, which smooths a
classically decomposed series with fixed seasonal indices, the seasonal states here are part of the
model and are smoothed (gamma) with the level and the trend, so a season that drifts is followed.
With e_t the one-step error and s the state of the same season one year before:

    N:  fitted = l + phi b                 l' = l + phi b + alpha e        b' = phi b + beta e
    A:  fitted = l + phi b + s             (same)                          s' = s + gamma e
    M:  fitted = (l + phi b) s             l' = l + phi b + alpha e / s    b' = phi b + beta e / s
                                           s' = s + gamma e / (l + phi b)

(no trend: b = 0; undamped: phi = 1). Written in the raw error e, the states follow the same equations
under either error type; the error type changes the likelihood the parameters are fitted for (squared
errors, or squared relative errors and the fitted values' logs), so the two give different fits.
Multiplicative errors and seasons are fitted only on series whose every value is positive.

The smoothing constants are fitted per series for the highest likelihood: a coarse grid, then `_ROUNDS`
rounds of a pattern search (each constant moved up and down by a step that halves every round, the best
kept), all series and candidates in one pass over time per round and form, with no loop over series in
the passes. The initial states are not searched: the season from a classical decomposition of the first
`_INIT_SEASONS` seasons (`forecaster.models.baselines.seasonal_indices_rows`, all series at once), the level
and trend from the least-squares line through the first max(10, 2m) deseasonalised values (Hyndman et
al.'s heuristic); they are counted in the AICc's parameters. (Fitting the initial level and trend
exactly, which the additive forms allow in closed form, made the validation scores worse: 0.3-2.9 % on
the development suite's seasonal sets, docs/accuracy.md.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forecaster.models.baselines import (
    MEMBER_SEASONS,
    _check,
    _history,
    _line,
    row_sums,
    seasonal_indices_rows,
    tail_length,
)

__all__ = ["FORMS", "MOST_VALUES", "aets_batch", "aets_fit", "values_read"]

#: The forms fitted, (error, trend, season): the first, level only with additive errors, is every
#: series' fallback.
FORMS: tuple[tuple[str, str, str], ...] = tuple(
    (e, t, s) for e in ("A", "M") for s in ("N", "A", "M") for t in ("N", "A", "Ad") if (e, s) != ("A", "M"))

# The coarse grid: alpha; beta as a share of alpha; gamma as a share of 1 - alpha; phi.
_ALPHAS = np.array([0.05, 0.2, 0.4, 0.7, 0.95])
_BETA_SHARES = np.array([0.05, 0.3])
_GAMMA_SHARES = np.array([0.05, 0.3])
_PHIS = np.array([0.9, 0.98])
# The pattern search: the first round's step per parameter (alpha, beta share, gamma share, phi), halved
# each round, and the box each stays in (phi as AutoETS bounds it).
_ROUNDS = 4
_STEPS = np.array([0.1, 0.15, 0.15, 0.04])
_LOW = np.array([1e-3, 0.0, 0.0, 0.8])
_HIGH = np.array([0.999, 1.0, 1.0, 0.98])
#: A seasonal form needs this many whole seasons of history (its initial states read the first ones).
MIN_SEASONS = 2
#: The most values of a series it reads: its last ones, at least `MEMBER_SEASONS` seasons where that
#: is more, and never more than the other members (`forecaster.models.baselines.tail_length`). Its cost
#: is a pass over time per candidate and round, a few numpy calls a step, so a long history (1,000
#: hours) would cost seconds a call whatever the number of series.
MOST_VALUES = 300
# The first seasons the initial seasonal states are estimated from.
_INIT_SEASONS = 3


def values_read(m: int) -> int:
    """How many of a series' last values `aets_fit` reads at seasonal period ``m`` (`MOST_VALUES`)."""
    return min(tail_length(m), max(MOST_VALUES, MEMBER_SEASONS * m))


def _free(trend: str, season: str) -> np.ndarray:
    """Which of (alpha, beta share, gamma share, phi) form (trend, season) fits."""
    return np.array([True, trend != "N", season != "N", trend == "Ad"])


def _grid(trend: str, season: str) -> np.ndarray:
    """The coarse grid of form (trend, season): (C, 4) rows of (alpha, beta share, gamma share, phi);
    unused parameters are 0 (phi: 1)."""
    free = _free(trend, season)
    axes = [_ALPHAS, _BETA_SHARES if free[1] else [0.0], _GAMMA_SHARES if free[2] else [0.0],
            _PHIS if free[3] else [1.0]]
    return np.array(np.meshgrid(*axes, indexing="ij")).reshape(4, -1).T


def _estimated(trend: str, season: str, m: int) -> int:
    """The AICc's count of a form's estimated values: smoothing constants and initial states."""
    free = _free(trend, season)
    return int(free.sum()) + 1 + (trend != "N") + ((m - 1) if season != "N" else 0)


def _constants(theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """(alpha, beta, gamma, phi) from (..., 4) parameters whose beta and gamma are shares."""
    alpha = theta[..., 0]
    return alpha, theta[..., 1] * alpha, theta[..., 2] * (1.0 - alpha), theta[..., 3]


#: Rows `_smooth` runs at a time: each step's (rows, candidates) arrays then stay in the core's cache
#: (1,024 x 40 doubles); 4,096 rows a pass cost ~25 % more CPU on hourly series (docs/prediction.md).
_BLOCK_ROWS = 1024


def _smooth(y: np.ndarray, lengths: np.ndarray, form: tuple[str, str, str], m: int, theta: np.ndarray,
            start: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """`_smooth_rows` on at most `_BLOCK_ROWS` rows at a time (each row's result is its own: the same
    bits), the results put together."""
    n = len(lengths)
    if n <= _BLOCK_ROWS:
        return _smooth_rows(y, lengths, form, m, theta, start)
    parts = [_smooth_rows(y[i : i + _BLOCK_ROWS], lengths[i : i + _BLOCK_ROWS], form, m,
                          theta[i : i + _BLOCK_ROWS], tuple(s[i : i + _BLOCK_ROWS] for s in start))
             for i in range(0, n, _BLOCK_ROWS)]
    lik, level, slope, states = zip(*parts)
    return np.concatenate(lik), np.concatenate(level), np.concatenate(slope), np.concatenate(states, axis=1)


def _smooth_rows(y: np.ndarray, lengths: np.ndarray, form: tuple[str, str, str], m: int, theta: np.ndarray,
                 start: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run ``form`` (error, trend, season) over the rows of ``y`` (left-aligned, ``lengths`` values each,
    longest first) for each row's candidate parameters ``theta`` (n, C, 4). ``start``: the level and
    trend one step before the first value (n,) and the seasonal states of the first season (n, m).

    Returns -2 log-likelihood less a constant (n, C): n log(SSE / n) for additive errors, n log(sum
    of squared relative errors / n) + 2 sum log(fitted) for multiplicative ones (inf where a state or
    a fitted value stopped being finite, or a fitted value is not positive under multiplicative
    errors); and the final level, trend (n, C) and seasonal states (m, n, C), the state of position p at
    ``S[p]`` (p the time index mod m). The states follow the same equations under either error (in the
    raw error e); only the likelihood differs. Rows are sorted by length, so the series still running at
    step t are a prefix and no masking is needed."""
    n, c = theta.shape[:2]
    error_kind, _, season = form
    alpha, beta, gamma, phi = _constants(theta)
    level = np.repeat(start[0][:, None], c, axis=1)
    slope = np.repeat(start[1][:, None], c, axis=1)
    states = np.repeat(start[2].T[:, :, None], c, axis=2)
    total = np.zeros((n, c))  # squared errors, or squared relative errors
    logs = np.zeros((n, c))
    running = np.searchsorted(-lengths, -np.arange(y.shape[1]), side="left")  # rows with length > t
    # The step's values are written into these (n, c) buffers, not new arrays: the same operations in
    # the same order (the same bits), without allocating and freeing ~12 arrays a step.
    damped, base, fitted, error, work = (np.empty((n, c)) for _ in range(5))
    with np.errstate(all="ignore"):
        for t in range(y.shape[1]):
            k = running[t]
            if k == 0:
                break
            lv, tr, pt, bs, ft, er, wk = level[:k], slope[:k], damped[:k], base[:k], fitted[:k], error[:k], work[:k]
            np.multiply(phi[:k], tr, out=pt)  # phi b
            np.add(lv, pt, out=bs)  # l + phi b
            if season == "N":
                ft[...] = bs
                np.subtract(y[:k, t : t + 1], ft, out=er)
                np.add(bs, np.multiply(alpha[:k], er, out=wk), out=lv)
                np.add(pt, np.multiply(beta[:k], er, out=wk), out=tr)
            else:
                s = states[t % m, :k]
                if season == "A":
                    np.add(bs, s, out=ft)
                    np.subtract(y[:k, t : t + 1], ft, out=er)
                    np.add(bs, np.multiply(alpha[:k], er, out=wk), out=lv)
                    np.add(pt, np.multiply(beta[:k], er, out=wk), out=tr)
                    np.add(s, np.multiply(gamma[:k], er, out=wk), out=s)
                else:
                    np.multiply(bs, s, out=ft)
                    np.subtract(y[:k, t : t + 1], ft, out=er)
                    scaled = er / s
                    np.add(bs, np.multiply(alpha[:k], scaled, out=wk), out=lv)
                    np.add(pt, np.multiply(beta[:k], scaled, out=wk), out=tr)
                    np.multiply(gamma[:k], er, out=wk)
                    np.add(s, np.divide(wk, bs, out=wk), out=s)
            if error_kind == "A":
                total[:k] += np.multiply(er, er, out=wk)
            else:
                np.divide(er, ft, out=wk)
                total[:k] += np.multiply(wk, wk, out=wk)
                logs[:k] += np.log(np.where(ft > 0, ft, np.nan))
        size = lengths[:, None].astype(np.float64)
        lik = size * np.log(np.maximum(total, 1e-300) / size) + 2 * logs
    return np.where(np.isfinite(lik), lik, np.inf), level, slope, states


def _start(y: np.ndarray, lengths: np.ndarray, trend: str, season: str,
           m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial states of form (``trend``, ``season``) for each row: the seasonal states (n, m) of a
    classical decomposition of the first `_INIT_SEASONS` seasons (fewer where the series is shorter;
    additive or multiplicative), then the least-squares line through the first max(10, 2m)
    deseasonalised values: with a trend, its value one step before the first value (the level) and its
    slope (the trend); without, its value at the first value and no trend."""
    n = len(lengths)
    states = np.ones((n, m)) if season == "M" else np.zeros((n, m))
    if season != "N":
        # Rows are sorted by length: those reading the same number of first values are consecutive.
        first = np.minimum(lengths, _INIT_SEASONS * m)
        edges = np.flatnonzero(np.diff(first)) + 1
        for begin, end in zip([0, *edges], [*edges, n]):
            states[begin:end] = seasonal_indices_rows(y[begin:end, : first[begin]], m, additive=season == "A")
    head = min(y.shape[1], max(10, 2 * m))
    tiled = np.tile(states, (1, -(-head // m)))[:, :head]
    adjusted = y[:, :head] - tiled if season != "M" else y[:, :head] / tiled
    at_zero, slope = _line(adjusted, np.minimum(lengths, head))
    if trend == "N":
        return at_zero, np.zeros(n), states
    return at_zero - slope, slope, states


def _fit_form(y: np.ndarray, lengths: np.ndarray, form: tuple[str, str, str], m: int,
              start: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The best parameters (n, 4) of ``form`` for each row and their -2 log-likelihood less a constant
    (n,): the coarse grid, then the pattern search."""
    n = len(lengths)
    _, trend, season = form
    free = _free(trend, season)
    grid = _grid(trend, season)
    lik = _smooth(y, lengths, form, m, np.broadcast_to(grid, (n, *grid.shape)), start)[0]
    pick = np.argmin(lik, axis=1)
    best, best_lik = grid[pick], lik[np.arange(n), pick]
    axes = np.flatnonzero(free)
    moves = np.zeros((1 + 2 * axes.size, 4))
    for j, axis in enumerate(axes):
        moves[1 + 2 * j, axis], moves[2 + 2 * j, axis] = 1.0, -1.0
    for round_ in range(_ROUNDS):
        candidates = np.clip(best[:, None, :] + moves[None] * (_STEPS / 2**round_), _LOW, _HIGH)
        candidates[..., ~free] = best[:, None, ~free]
        # The first candidate (no move) is ``best`` itself, whose likelihood is known: only the moves run.
        lik = np.concatenate([best_lik[:, None], _smooth(y, lengths, form, m, candidates[:, 1:], start)[0]], axis=1)
        pick = np.argmin(lik, axis=1)
        best, best_lik = candidates[np.arange(n), pick], lik[np.arange(n), pick]
    return best, best_lik


def aets_batch(histories: Sequence[np.ndarray], horizon: int, m: int) -> np.ndarray:
    """`aets_fit`'s forecasts alone, shape (n, horizon): the statistical member ``"aets"``."""
    return aets_fit(histories, horizon, m)[0]


def aets_fit(histories: Sequence[np.ndarray], horizon: int,
             m: int) -> tuple[np.ndarray, list[tuple[str, str, str] | None]]:
    """Seasonal state-space exponential smoothing, the form chosen per series by AICc: the forecasts
    (n, horizon) and each series' form (error, trend, season), None where it was forecast naively.

    Each series' last `values_read` values are fitted in the `FORMS` it can
    carry: the seasonal ones only where ``m > 1`` and the history holds `MIN_SEASONS` whole seasons, the
    multiplicative error and season only where every value is positive. The form with the lowest AICc,
    -2 log L + 2k + 2k(k + 1) / (n - k - 1) (k: `_estimated`), is kept; a form is left out where
    n <= k + 1 or its states or forecast stopped being finite. Fallbacks, so that no series goes without
    a finite forecast: a series too short for any form's AICc, or whose every form failed, takes the
    level-only form (simple exponential smoothing); a one-value history is forecast naively. The result is
    deterministic: a fixed grid and search, no randomness.
    """
    _check(horizon, m)
    if not len(histories):
        return np.empty((0, horizon)), []
    arrays = [_history(h)[-values_read(m):] for h in histories]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    lengths = lengths[order]
    n = len(lengths)
    y = np.zeros((n, int(lengths[0])))
    for row, source in enumerate(order):
        y[row, : lengths[row]] = arrays[source]
    # The additive forms are fitted about each row's mean (shift-invariant; the sums keep their
    # precision); the multiplicative ones need the values themselves.
    inside = np.arange(y.shape[1])[None, :] < lengths[:, None]
    centre = row_sums(y, lengths) / lengths
    positive = np.where(inside, y, np.inf).min(axis=1) > 0
    seasonal = (m > 1) & (lengths >= MIN_SEASONS * m)
    size = lengths.astype(np.float64)
    steps = np.arange(horizon)
    aicc = np.full((n, len(FORMS)), np.inf)
    forecasts = np.zeros((n, len(FORMS), horizon))
    for f, form in enumerate(FORMS):
        error_kind, trend, season = form
        k = _estimated(trend, season, m)
        rows = size > k + 1
        if season != "N":
            rows &= seasonal
        if "M" in (error_kind, season):
            rows &= positive
        if f == 0:
            rows = np.ones(n, dtype=bool)  # the level-only form is every series' fallback
        if not rows.any():
            continue
        shift = 0.0 if "M" in (error_kind, season) else centre[rows, None]
        part, part_lengths = np.where(inside[rows], y[rows] - shift, 0.0), lengths[rows]
        start = _start(part, part_lengths, trend, season, m)
        theta, lik = _fit_form(part, part_lengths, form, m, start)
        _, level, slope, states = _smooth(part, part_lengths, form, m, theta[:, None, :], start)
        phi = theta[:, 3:4]
        damped = np.cumsum(phi ** np.arange(1, horizon + 1)[None, :], axis=1)
        with np.errstate(all="ignore"):
            point = level[:, 0, None] + damped * slope[:, 0, None]
            if season != "N":
                position = (part_lengths[:, None] + steps[None, :]) % m
                future = states[position, np.arange(len(part_lengths))[:, None], 0]
                point = point + future if season == "A" else point * future
            point = point + shift
            sz = size[rows]
            score = lik + 2 * k + 2 * k * (k + 1) / (sz - k - 1)
        ok = np.isfinite(point).all(axis=1) & np.isfinite(lik) & (sz > k + 1)
        score = np.where(ok, score, np.inf)
        if f == 0:
            score = np.where(np.isfinite(score), score, np.finfo(np.float64).max)
        aicc[rows, f], forecasts[rows, f] = score, point
    pick = np.argmin(aicc, axis=1)
    out = forecasts[np.arange(n), pick]
    bad = (lengths == 1) | ~np.isfinite(out).all(axis=1)
    out[bad] = y[bad, lengths[bad] - 1][:, None]
    result = np.empty_like(out)
    result[order] = out
    forms: list[tuple[str, str, str] | None] = [None] * n
    for row, source in enumerate(order):
        forms[source] = None if bad[row] else FORMS[pick[row]]
    return result, forms
