"""Forecast accuracy metrics, vectorised over many series with numpy.

Conventions shared by every function here:

- Point forecasts come as arrays of shape ``(n_series, horizon)``; a 1-D array is one series.
- ``NaN`` in ``y_true`` marks an unobserved target and is left out (each series is averaged over
  its observed points only). ``NaN`` in a forecast where the target *is* observed is not hidden:
  it propagates into that series' value, because it is a bug upstream, not missing data.
- A series with no observed target gets ``NaN``.
- Scalar point metrics (``mae``, ``rmse``, ``smape``, ``mase``, ``msis``, ``coverage``) are the mean
  over series of the per-series value, ignoring series whose value is ``NaN``. This is how the M4
  competition averages sMAPE and MASE, and it makes ``summarize(per_series_metrics(...))`` agree
  with the scalar functions. Pass ``per_series=True`` to get the per-series values instead.
- ``pinball`` is the exception: as a loss it is the mean over *all* observed points and quantiles
  (for equal horizons without gaps both averages coincide).

Quantile columns are named by `forecaster.contract.quantile_name` ("q0.1", "q0.975").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.contract import quantile_name

ArrayLike = np.ndarray | Sequence[float]
Insample = np.ndarray | Sequence[np.ndarray]

__all__ = [
    "Interval",
    "coverage",
    "intervals",
    "mae",
    "mase",
    "mase_scale",
    "msis",
    "owa",
    "per_series_metrics",
    "pinball",
    "pinball_per_quantile",
    "rmse",
    "smape",
    "summarize",
]


# --------------------------------------------------------------------------- helpers


def _as_2d(a: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        return arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 1-D (one series) or 2-D (n_series, horizon), got shape {arr.shape}")
    return arr


def _pair(y_true: ArrayLike, y_pred: ArrayLike, pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    y = _as_2d(y_true, "y_true")
    p = _as_2d(y_pred, pred_name)
    if y.shape != p.shape:
        raise ValueError(f"y_true has shape {y.shape} but {pred_name} has shape {p.shape}")
    return y, p


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row means of ``values`` over the ``mask``ed entries; NaN for rows with nothing observed.

    The row sums are accumulated left to right, so a row's mean does not depend on how many masked
    entries pad it: a series' MASE scale is the same to the last bit whether its history is padded to
    the longest series of a whole frame or of a streamed chunk (a pairwise sum regroups with the width)."""
    kept = np.where(mask, values, 0.0)
    total = np.cumsum(kept, axis=1)[:, -1] if kept.shape[1] else np.zeros(kept.shape[0])
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _mean_over_series(per_series: np.ndarray) -> float:
    finite = per_series[~np.isnan(per_series)]
    return float(finite.mean()) if finite.size else float("nan")


def _reduce(per_series: np.ndarray, per_series_flag: bool) -> np.ndarray | float:
    return per_series if per_series_flag else _mean_over_series(per_series)


def _insample_matrix(insample: Insample, n_series: int | None) -> np.ndarray:
    """In-sample histories as a NaN-padded 2-D array (one row per series)."""
    if isinstance(insample, np.ndarray):
        mat = np.asarray(insample, dtype=np.float64)
        if mat.ndim == 1:
            mat = mat[None, :]
    else:
        arrays = [np.asarray(a, dtype=np.float64) for a in insample]
        if arrays and all(a.ndim == 0 for a in arrays):  # a plain list of numbers: one series
            arrays = [np.asarray(arrays)]
        if any(a.ndim != 1 for a in arrays):
            raise ValueError("insample must be a list of 1-D arrays or a padded 2-D array")
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        width = int(lengths.max()) if lengths.size else 0
        mat = np.full((len(arrays), width), np.nan)
        mat[np.arange(width)[None, :] < lengths[:, None]] = np.concatenate(arrays) if arrays else []
    if mat.ndim != 2 or (n_series is not None and mat.shape[0] != n_series):
        raise ValueError(f"insample must hold one history per series ({n_series}), got shape {mat.shape}")
    return mat


def _mean_abs_lag_diff(mat: np.ndarray, m: int) -> np.ndarray:
    """Per row: mean |y_t - y_{t-m}| over pairs where both values are observed (NaN if none)."""
    if m >= mat.shape[1]:
        return np.full(mat.shape[0], np.nan)
    diff = np.abs(mat[:, m:] - mat[:, :-m])
    return _masked_mean(diff, ~np.isnan(diff))


def _mean_abs_lag_diff_ragged(flat: np.ndarray, codes: np.ndarray, position: np.ndarray, n: int,
                              m: int) -> np.ndarray:
    """`_mean_abs_lag_diff` of histories given end to end (``flat``; ``codes`` each value's series, ``position``
    its place in it): memory and time in the values given, not in the series times the longest one, so one
    series of a million values among thousands of short ones costs its million. Each series' pairs are
    summed in time order, as `_masked_mean` sums a padded row: the same bits."""
    if len(flat) <= m:
        return np.full(n, np.nan)
    later = np.flatnonzero(position[m:] >= m) + m  # pairs within one series
    diff = np.abs(flat[later] - flat[later - m])
    keep = ~np.isnan(diff)
    total = np.bincount(codes[later][keep], weights=diff[keep], minlength=n)
    count = np.bincount(codes[later][keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def mase_scale(insample: Insample, m: int, n_series: int | None = None) -> np.ndarray:
    """Per-series MASE denominator: mean |y_t - y_{t-m}| over the in-sample history.

    ``n_series``, when given, is checked against the number of histories (ValueError on mismatch).

    ``insample`` is a list of 1-D histories or a 2-D array padded with NaN (NaN pairs are skipped).
    Where that scale is 0 (e.g. a flat season-on-season history) or undefined (history not longer than
    ``m``), the lag-1 naive scale mean |y_t - y_{t-1}| is used instead; where that is still 0 or
    undefined (a constant or one-point history) the scale is NaN, so that series' MASE/MSIS is NaN
    rather than infinite, and the mean over series leaves it out.
    """
    if m < 1:
        raise ValueError(f"seasonal period m must be >= 1, got {m}")
    if isinstance(insample, np.ndarray):
        mat = _insample_matrix(insample, n_series)
        def lagged(k: int) -> np.ndarray:
            return _mean_abs_lag_diff(mat, k)
    else:  # histories of any lengths: never padded to the longest (`_mean_abs_lag_diff_ragged`)
        flat, codes, position, n = _ragged(insample, n_series)
        def lagged(k: int) -> np.ndarray:
            return _mean_abs_lag_diff_ragged(flat, codes, position, n, k)
    scale = lagged(m)
    bad = ~(scale > 0)
    if bad.any():
        scale = np.where(bad, lagged(1), scale)
        scale = np.where(scale > 0, scale, np.nan)
    return scale


def _ragged(insample: Sequence[ArrayLike], n_series: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Histories given as a list, end to end: the values, each one's series and place in it, and the count
    of series (the same checks as `_insample_matrix`)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in insample]
    if arrays and all(a.ndim == 0 for a in arrays):  # a plain list of numbers: one series
        arrays = [np.asarray(arrays)]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError("insample must be a list of 1-D arrays or a padded 2-D array")
    if n_series is not None and len(arrays) != n_series:
        raise ValueError(f"insample must hold one history per series ({n_series}), got {len(arrays)}")
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    codes = np.repeat(np.arange(len(arrays)), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
    return (np.concatenate(arrays) if arrays else np.empty(0)), codes, position, len(arrays)


# --------------------------------------------------------------------------- point metrics


def mae(y_true: ArrayLike, y_pred: ArrayLike, *, per_series: bool = False) -> np.ndarray | float:
    """Mean absolute error (mean over series of each series' MAE)."""
    y, p = _pair(y_true, y_pred)
    return _reduce(_masked_mean(np.abs(y - p), ~np.isnan(y)), per_series)


def rmse(y_true: ArrayLike, y_pred: ArrayLike, *, per_series: bool = False) -> np.ndarray | float:
    """Root mean squared error, computed per series and then averaged over series."""
    y, p = _pair(y_true, y_pred)
    return _reduce(np.sqrt(_masked_mean((y - p) ** 2, ~np.isnan(y))), per_series)


def smape(y_true: ArrayLike, y_pred: ArrayLike, *, per_series: bool = False) -> np.ndarray | float:
    """Symmetric MAPE on M4's 0-200 scale: 200/h * sum |y - yhat| / (|y| + |yhat|).

    A term where both the target and the forecast are 0 is a perfect forecast and counts 0.
    """
    y, p = _pair(y_true, y_pred)
    num = np.abs(y - p)
    den = np.abs(y) + np.abs(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(den == 0, 0.0, 200.0 * num / den)
    return _reduce(_masked_mean(terms, ~np.isnan(y)), per_series)


def mase(
    y_true: ArrayLike, y_pred: ArrayLike, insample: Insample, m: int, *, per_series: bool = False
) -> np.ndarray | float:
    """Mean absolute scaled error: each series' MAE divided by its `mase_scale` (seasonal period m).

    A series whose scale is 0 even at lag 1 gets NaN (see `mase_scale`) and is left out of the mean.
    """
    y, p = _pair(y_true, y_pred)
    scale = mase_scale(insample, m, n_series=y.shape[0])
    return _reduce(_masked_mean(np.abs(y - p), ~np.isnan(y)) / scale, per_series)


# --------------------------------------------------------------------------- quantile / interval metrics


def _quantile_inputs(
    y_true: ArrayLike, q_pred: ArrayLike, quantiles: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64)
    qp = np.asarray(q_pred, dtype=np.float64)
    qs = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if np.any(~(qs > 0) | ~(qs < 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {qs.tolist()}")
    if qp.shape != (*y.shape, qs.size):
        raise ValueError(
            f"q_pred must have shape y_true.shape + (n_quantiles,) = {(*y.shape, qs.size)}, got {qp.shape}"
        )
    return y, qp, qs


def _pinball_losses(y: np.ndarray, qp: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Elementwise pinball loss, shape of ``qp``: q*(y-yhat) if y >= yhat else (1-q)*(yhat-y)."""
    diff = y[..., None] - qp
    return np.maximum(qs * diff, (qs - 1.0) * diff)


def pinball(y_true: ArrayLike, q_pred: ArrayLike, quantiles: Sequence[float]) -> float:
    """Mean pinball (quantile) loss over all observed targets and all quantiles.

    ``q_pred`` has shape ``y_true.shape + (n_quantiles,)``; the loss of quantile q at one point is
    q*(y - yhat) when y >= yhat, else (1 - q)*(yhat - y) (no factor 2).
    """
    y, qp, qs = _quantile_inputs(y_true, q_pred, quantiles)
    mask = np.broadcast_to(~np.isnan(y)[..., None], qp.shape)
    count = int(mask.sum())
    if count == 0:
        return float("nan")
    return float(np.where(mask, _pinball_losses(y, qp, qs), 0.0).sum() / count)


def pinball_per_quantile(y_true: ArrayLike, q_pred: ArrayLike, quantiles: Sequence[float]) -> np.ndarray:
    """Mean pinball loss of each quantile separately (shape ``(n_quantiles,)``), same loss as `pinball`."""
    y, qp, qs = _quantile_inputs(y_true, q_pred, quantiles)
    mask = np.broadcast_to(~np.isnan(y)[..., None], qp.shape)
    losses = np.where(mask, _pinball_losses(y, qp, qs), 0.0).reshape(-1, qs.size)
    count = mask.reshape(-1, qs.size).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return losses.sum(axis=0) / count


def coverage(
    y_true: ArrayLike, lower: ArrayLike, upper: ArrayLike, *, per_series: bool = False
) -> np.ndarray | float:
    """Share of observed targets inside the closed interval [lower, upper] (per series, then averaged)."""
    y, lo = _pair(y_true, lower, "lower")
    _, hi = _pair(y_true, upper, "upper")
    inside = ((y >= lo) & (y <= hi)).astype(np.float64)
    inside[np.isnan(lo) | np.isnan(hi)] = np.nan  # a missing bound is a bug: propagate it
    return _reduce(_masked_mean(inside, ~np.isnan(y)), per_series)


def msis(
    y_true: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    insample: Insample,
    m: int,
    alpha: float = 0.05,
    *,
    per_series: bool = False,
) -> np.ndarray | float:
    """M4's mean scaled interval score of a (1 - alpha) interval.

    Per series: 1/h * sum[(U - L) + 2/alpha * (L - y) 1{y < L} + 2/alpha * (y - U) 1{y > U}], divided
    by the same in-sample scale as MASE (`mase_scale`, with its fallbacks). Lower is better: it
    rewards narrow intervals and penalises misses in proportion to how far they miss.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    y, lo = _pair(y_true, lower, "lower")
    _, hi = _pair(y_true, upper, "upper")
    penalty = (hi - lo) + (2.0 / alpha) * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))
    scale = mase_scale(insample, m, n_series=y.shape[0])
    return _reduce(_masked_mean(penalty, ~np.isnan(y)) / scale, per_series)


def owa(smape: float, mase: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4's overall weighted average: the mean of sMAPE and MASE, each relative to Naive2's."""
    return 0.5 * (smape / smape_naive2 + mase / mase_naive2)


# --------------------------------------------------------------------------- per-series table


#: What an interval's coverage metric is named with: ``coverage_80`` (`Interval.metric`).
COVERAGE_PREFIX = "coverage_"


@dataclass(frozen=True)
class Interval:
    """A central interval: the symmetric pair of quantiles ``lo`` and ``hi = 1 - lo`` (matched to 1e-9),
    at positions ``lo_index`` and ``hi_index`` of the quantiles it was found in. The one statement of
    the intervals a set of quantiles holds and of their names: the metrics' coverage columns
    (`metric`), calibration's corrections (`key`) and monitoring read them from `intervals`."""

    lo: float
    hi: float
    lo_index: int
    hi_index: int

    @property
    def nominal(self) -> float:
        """Its nominal coverage, ``hi - lo`` (0.8 for q0.1-q0.9)."""
        return self.hi - self.lo

    @property
    def metric(self) -> str:
        """The name of its coverage metric: ``coverage_`` + the nominal level in percent (``coverage_80``,
        ``coverage_97.5``)."""
        level = round(float(self.nominal) * 100.0, 9)
        return f"{COVERAGE_PREFIX}{int(level) if level.is_integer() else level!r}"

    @property
    def key(self) -> str:
        """The name of its calibration (``q0.1-q0.9``), from the quantile columns' names."""
        return f"{quantile_name(self.lo)}-{quantile_name(self.hi)}"


def intervals(quantiles: Sequence[float] | np.ndarray) -> list[Interval]:
    """The central intervals among ``quantiles`` (each ``q < 0.5`` with a partner ``1 - q``), narrowest
    first."""
    qs = np.asarray(quantiles, dtype=np.float64)
    found = []
    for i, q in enumerate(qs):
        if q >= 0.5 or np.isclose(q, 0.5):
            continue
        partners = np.flatnonzero(np.isclose(qs, 1.0 - q, rtol=0.0, atol=1e-9))
        if partners.size:
            j = int(partners[0])
            found.append(Interval(float(quantiles[i]), float(quantiles[j]), i, j))
    return sorted(found, key=lambda interval: (round(interval.nominal * 100.0, 9), interval.lo_index))


def per_series_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    insample: Insample,
    m: int,
    quantile_preds: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
    *,
    index: Sequence | pd.Index | None = None,
) -> pd.DataFrame:
    """One row per series with columns mae, rmse, smape, mase.

    With ``quantile_preds`` (shape ``(n_series, horizon, n_quantiles)``) and ``quantiles`` also:
    ``pinball`` (mean over horizon and quantiles) and ``coverage_XX`` for each symmetric pair of
    quantiles, XX being the nominal level in percent (q0.05/q0.95 -> coverage_90, q0.025/q0.975 ->
    coverage_95). ``index`` labels the rows (e.g. series ids); default 0..n_series-1.
    """
    y, p = _pair(y_true, y_pred)
    columns: dict[str, np.ndarray] = {
        "mae": mae(y, p, per_series=True),
        "rmse": rmse(y, p, per_series=True),
        "smape": smape(y, p, per_series=True),
        "mase": mase(y, p, insample, m, per_series=True),
    }
    if (quantile_preds is None) != (quantiles is None):
        raise ValueError("quantile_preds and quantiles must be given together")
    if quantile_preds is not None:
        yq, qp, qs = _quantile_inputs(y, quantile_preds, quantiles)
        mask = np.broadcast_to(~np.isnan(yq)[..., None], qp.shape).reshape(y.shape[0], -1)
        columns["pinball"] = _masked_mean(_pinball_losses(yq, qp, qs).reshape(y.shape[0], -1), mask)
        for interval in intervals(qs):
            columns[interval.metric] = coverage(y, qp[..., interval.lo_index], qp[..., interval.hi_index],
                                                per_series=True)
    if index is not None and len(index) != y.shape[0]:
        raise ValueError(f"index has {len(index)} labels for {y.shape[0]} series")
    return pd.DataFrame(columns, index=index)


def summarize(per_series_df: pd.DataFrame) -> dict[str, float]:
    """Mean over series of each metric column (NaN rows left out), the way M4 averages sMAPE and MASE."""
    return {
        str(col): _mean_over_series(per_series_df[col].to_numpy(dtype=np.float64))
        for col in per_series_df.columns
    }
