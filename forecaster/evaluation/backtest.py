"""Rolling-origin backtest of any forecast function, always beside seasonal naive on the same windows.

The windows come from `forecaster.data.splits`: window k (0 = oldest) sees each series up to its cutoff and
forecasts the next H values; every output row carries its ``window`` and ``cutoff``. The forecast function
is anything that maps a history frame to our forecast frame (a fitted `LSTMForecaster`, the registry's
champion loaded as pyfunc), so models are compared on exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.contract import (
    BASELINE,
    CUTOFF_COLUMN,
    FALLBACK_COLUMN,
    FORECAST_COLUMN,
    LSTM,
    MODEL_COLUMN,
    WINDOW_COLUMN,
    quantile_name,
)
from forecaster.data import splits
from forecaster.data.schema import Columns
from forecaster.errors import DataError
from forecaster.evaluation.calibration import SCALE_COLUMN
from forecaster.evaluation.metrics import mase_scale, per_series_metrics, summarize
from forecaster.models.baselines import seasonal_naive_batch, seasonal_naive_intervals
from forecaster.models.combination import series_histories


@dataclass
class BacktestResult:
    """Per-series metrics (one row per window, series and model), their means, and the forecasts;
    ``members``, where a learned combination was weighed on these windows, each member's forecasts
    there (`LSTMForecaster.cross_validation`)."""

    per_series: pd.DataFrame
    summary: dict[str, dict[str, float]]
    forecasts: pd.DataFrame
    members: pd.DataFrame | None = None


def run_backtest(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    frame: pd.DataFrame,
    columns: Columns,
    horizon: int,
    n_windows: int,
    step: int,
    season: int,
    quantiles: tuple[float, ...] = (),
    name: str = LSTM,
    known: pd.DataFrame | None = None,
) -> BacktestResult:
    """Score ``predict`` and seasonal naive on ``n_windows`` rolling origins of a validated ``frame``.

    A series is scored on every window before whose origin it has at least one step: series shorter
    than ``horizon + 1`` steps cannot be scored and are left out (DataError if no series can be).
    The ``fallback`` column marks the rows where ``predict`` answered with its seasonal-naive fallback
    (its output's ``model`` column), so that they are counted, not hidden. An actual that is not an
    observation (``observed`` 0: masked, filled or treated as an outlier) is NaN, left out of the scores
    and of the calibration, as monitoring leaves it out (`forecaster.evaluation.monitoring`); the histories
    (MASE's scale, seasonal naive's forecast, the ``scale`` column) are read as `predict` reads them, a
    masked reading interpolated (`forecaster.models.combination.series_histories`), never as its 0.0.

    ``known``: forecasts already made on these windows (id, time, ``window`` and ``predict``'s columns,
    as `LSTMForecaster.window_forecasts` gives them), used as they are; ``predict`` is then asked only
    for the series a window's part of ``known`` lacks (none: it is not called), so that a backtest after
    a cross-validation on the same windows forecasts nothing twice. Forecasts of ``known`` not at their
    window's times (made at other origins) are refused (DataError), never scored against other actuals.
    """
    if not len(splits.holdout_cutoffs(frame, columns, horizon)):
        raise DataError(f"no series can be backtested: each needs at least {horizon + 1} steps (horizon + 1)",
                        column=columns.id)
    per_series, forecasts = [], []
    qnames = [quantile_name(q) for q in quantiles]
    plan = splits.backtest_cutoffs(frame, columns, horizon, n_windows, step)
    for k, window in plan.groupby(WINDOW_COLUMN, sort=True):
        cutoffs = window.set_index(columns.id)[CUTOFF_COLUMN]
        history = splits.history(frame, columns, cutoffs)
        actual = splits.actuals(frame, columns, cutoffs, horizon)  # a masked reading's 0.0: NaN, not scored
        ids = list(pd.unique(history[columns.id]))
        y_true = actual[columns.target].to_numpy("float64").reshape(len(ids), horizon)
        # The histories `predict` reads (masked readings interpolated, not the 0.0 the "mask" policy leaves
        # in the target): MASE's scale, seasonal naive's forecast and `calibration.scaled_offsets`' scale.
        insample = series_histories(history, columns, ids)

        window_known = None if known is None else known[known[WINDOW_COLUMN] == k]
        out = _forecasts(predict, history, columns, window_known)
        out = out.set_index(columns.id).loc[ids].reset_index()
        if window_known is not None and len(window_known):
            _check_known(out, actual, window_known, columns, k)
        fell_back = np.zeros(len(ids), dtype=bool)
        if MODEL_COLUMN in out.columns:
            fell_back = (out.groupby(columns.id, sort=False)[MODEL_COLUMN].first().loc[ids] == BASELINE).to_numpy()
        point = out[FORECAST_COLUMN].to_numpy("float64").reshape(len(ids), horizon)
        qpred = None
        if qnames:
            qpred = np.stack([out[c].to_numpy("float64").reshape(len(ids), horizon) for c in qnames], -1)
        base_point = seasonal_naive_batch(insample, horizon, season)
        base_q = (np.stack([seasonal_naive_intervals(h, horizon, season, list(quantiles)) for h in insample])
                  if quantiles else None)
        for model, p, q in ((name, point, qpred), (BASELINE, base_point, base_q)):
            metrics = per_series_metrics(y_true, p, insample, season, q, list(quantiles) if quantiles else None,
                                         index=ids)
            metrics.insert(0, FALLBACK_COLUMN, fell_back if model == name else False)
            metrics.insert(0, MODEL_COLUMN, model)
            metrics.insert(0, CUTOFF_COLUMN, cutoffs.loc[ids].to_numpy())
            metrics.insert(0, WINDOW_COLUMN, k)
            per_series.append(metrics.rename_axis(columns.id).reset_index())
        f = actual[[columns.id, columns.time, columns.target]].copy()
        f[WINDOW_COLUMN] = k
        f[CUTOFF_COLUMN] = f[columns.id].map(cutoffs)
        f[FORECAST_COLUMN] = point.reshape(-1)
        for j, c in enumerate(qnames):
            f[c] = qpred[..., j].reshape(-1)
        f[BASELINE] = base_point.reshape(-1)
        f[SCALE_COLUMN] = np.repeat(mase_scale(insample, season), horizon)
        f[FALLBACK_COLUMN] = np.repeat(fell_back, horizon)
        forecasts.append(f)
    table = pd.concat(per_series, ignore_index=True)
    summary = {model: summary_of(group, columns) for model, group in table.groupby(MODEL_COLUMN, sort=False)}
    return BacktestResult(per_series=table, summary=summary, forecasts=pd.concat(forecasts, ignore_index=True))


def _forecasts(predict: Callable[[pd.DataFrame], pd.DataFrame], history: pd.DataFrame, columns: Columns,
               known: pd.DataFrame | None) -> pd.DataFrame:
    """``predict``'s forecasts from ``history``, taking those of ``known`` (one window's) as they are and
    asking ``predict`` only for the other series (their own rows of ``history``)."""
    if known is None or not len(known):
        return predict(history)
    known = known.drop(columns=[WINDOW_COLUMN])
    rest = ~history[columns.id].isin(set(known[columns.id]))
    if not rest.any():
        return known
    return pd.concat([known, predict(history[rest])], ignore_index=True)


def _check_known(out: pd.DataFrame, actual: pd.DataFrame, known: pd.DataFrame, columns: Columns, k: int) -> None:
    """DataError naming the series and times where window ``k``'s forecasts taken from ``known`` are not at
    that window's times (forecasts of other origins: a cross-validation with another ``n_windows``,
    ``step`` or frame), which would otherwise be scored against the wrong actuals."""
    if len(out) != len(actual):
        wrong = np.ones(len(actual), dtype=bool)
    else:
        taken = actual[columns.id].isin(set(known[columns.id])).to_numpy()
        wrong = taken & (out[columns.time].to_numpy() != actual[columns.time].to_numpy())
    if wrong.any():
        raise DataError(f"known holds forecasts for window {k} that are not at its times: forecasts of other "
                        "origins (the cross-validation must have the backtest's n_windows, step and frame)",
                        column=columns.time, series=pd.unique(actual[columns.id].to_numpy()[wrong]),
                        timestamps=actual[columns.time].to_numpy()[wrong][:5])


def summary_of(rows: pd.DataFrame, columns: Columns) -> dict[str, float]:
    """The mean of each metric over per-series backtest ``rows`` (their label columns left aside)."""
    labels = [WINDOW_COLUMN, CUTOFF_COLUMN, MODEL_COLUMN, FALLBACK_COLUMN, columns.id]
    return summarize(rows.drop(columns=[c for c in labels if c in rows.columns]))
