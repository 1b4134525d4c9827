"""Rolling-origin backtest of any forecast function, always beside seasonal naive on the same windows.

Window k (0 = oldest) of a series of length n forecasts from origin n - H - (n_windows - 1 - k) * step:
the history is everything before the origin, the actuals the next H values. The forecast function
is anything that maps a history frame to our forecast frame (a fitted `LSTMForecaster`, the registry's
champion loaded as pyfunc), so models are compared on exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.baselines import seasonal_naive_batch, seasonal_naive_intervals
from forecaster.data.schema import Columns
from forecaster.errors import DataError
from forecaster.metrics import per_series_metrics, quantile_name, summarize

BASELINE = "seasonal_naive"


@dataclass
class BacktestResult:
    """Per-series metrics (one row per window, series and model), their means, and the forecasts."""

    per_series: pd.DataFrame
    summary: dict[str, dict[str, float]]
    forecasts: pd.DataFrame


def first_origin_frame(frame: pd.DataFrame, columns: Columns, horizon: int, n_windows: int, step: int) -> pd.DataFrame:
    """The part of ``frame`` before the oldest backtest origin: what a model may train on."""
    return frame[_steps_from_end(frame, columns) >= horizon + (n_windows - 1) * step]


def _steps_from_end(frame: pd.DataFrame, columns: Columns) -> np.ndarray:
    """For each row, how many rows of its series come after it (0 for the last)."""
    return frame.groupby(columns.id, sort=False).cumcount(ascending=False).to_numpy()


def run_backtest(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    frame: pd.DataFrame,
    columns: Columns,
    horizon: int,
    n_windows: int,
    step: int,
    season: int,
    quantiles: tuple[float, ...] = (),
    name: str = "lstm",
) -> BacktestResult:
    """Score ``predict`` and seasonal naive on ``n_windows`` rolling origins of a validated ``frame``.

    Every series must have at least one history point before the oldest origin (else DataError).
    """
    lengths = frame.groupby(columns.id, sort=False).size()
    need = horizon + (n_windows - 1) * step + 1
    short = lengths[lengths < need]
    if len(short):
        raise DataError(f"series too short for a {n_windows}-window backtest of horizon {horizon} (need {need} "
                        f"points)", column=columns.id, series=[str(s) for s in short.index])
    per_series, forecasts = [], []
    qnames = [quantile_name(q) for q in quantiles]
    pos = _steps_from_end(frame, columns)  # the same for every window: computed once
    for k in range(n_windows):
        drop = horizon + (n_windows - 1 - k) * step
        history = frame[pos >= drop]
        actual = frame[(pos < drop) & (pos >= drop - horizon)]
        ids = list(pd.unique(history[columns.id]))
        y_true = actual[columns.target].to_numpy("float64").reshape(len(ids), horizon)
        hist_groups = history.groupby(columns.id, sort=False)[columns.target]
        insample = [hist_groups.get_group(sid).to_numpy("float64") for sid in ids]

        out = predict(history)
        out = out.set_index(columns.id).loc[ids].reset_index()
        point = out["forecast"].to_numpy("float64").reshape(len(ids), horizon)
        qpred = None
        if qnames:
            qpred = np.stack([out[c].to_numpy("float64").reshape(len(ids), horizon) for c in qnames], -1)
        base_point = seasonal_naive_batch(insample, horizon, season)
        base_q = (np.stack([seasonal_naive_intervals(h, horizon, season, list(quantiles)) for h in insample])
                  if quantiles else None)
        for model, p, q in ((name, point, qpred), (BASELINE, base_point, base_q)):
            metrics = per_series_metrics(y_true, p, insample, season, q, list(quantiles) if quantiles else None,
                                         index=ids)
            metrics.insert(0, "model", model)
            metrics.insert(0, "window", k)
            per_series.append(metrics.rename_axis(columns.id).reset_index())
        f = actual[[columns.id, columns.time, columns.target]].copy()
        f["window"] = k
        f["forecast"] = point.reshape(-1)
        for j, c in enumerate(qnames):
            f[c] = qpred[..., j].reshape(-1)
        f[BASELINE] = base_point.reshape(-1)
        forecasts.append(f)
    table = pd.concat(per_series, ignore_index=True)
    summary = {model: summarize(group.drop(columns=["window", "model", columns.id]))
               for model, group in table.groupby("model", sort=False)}
    return BacktestResult(per_series=table, summary=summary, forecasts=pd.concat(forecasts, ignore_index=True))
