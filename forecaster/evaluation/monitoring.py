"""Monitoring: the forecasts earlier runs wrote, scored against the actuals that have arrived since.

Each forecast row is joined to the observed actual at its series and time; rows whose actual has not
arrived (or was missing and filled) are left out and counted. Scores follow `forecaster.evaluation.metrics`:
MASE scales each series' absolute errors by its in-sample seasonal-naive error up to that forecast's
as-of, sMAPE is in percent, ``coverage_XX`` is the share of actuals inside each symmetric quantile
pair. Seasonal naive, made from the same history at the same as-of, is scored beside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.contract import (
    AS_OF_COLUMN,
    FORECAST_COLUMN,
    MODEL_VERSION_COLUMN,
    quantile_name,
    quantiles_in,
)
from forecaster.data.schema import OBSERVED, Columns
from forecaster.evaluation.metrics import intervals, mase_scale
from forecaster.models.baselines import seasonal_naive_batch
from forecaster.models.combination import series_histories

STEP = "step"


@dataclass
class Monitoring:
    """Scores of earlier forecasts: per as-of (and its worst series), per horizon step, and overall."""

    by_as_of: pd.DataFrame
    by_step: pd.DataFrame
    overall: dict[str, float]
    rows_scored: int
    rows_waiting: int  # forecast rows whose actual has not arrived yet


def score(forecasts: pd.DataFrame, frame: pd.DataFrame, columns: Columns, season: int) -> Monitoring:
    """Score ``forecasts`` (the output contract's columns plus ``as_of``) against a validated ``frame``."""
    c = columns
    levels = quantiles_in(list(forecasts.columns))
    pairs = [(i.metric, quantile_name(i.lo), quantile_name(i.hi)) for i in intervals(levels)]
    f = forecasts.sort_values([AS_OF_COLUMN, c.id, c.time], kind="stable").copy()
    f[STEP] = f.groupby([AS_OF_COLUMN, c.id], sort=False).cumcount() + 1
    actual = frame[[c.id, c.time, c.target]][frame[OBSERVED].to_numpy() > 0] if OBSERVED in frame else \
        frame[[c.id, c.time, c.target]]
    actual = actual.assign(**{c.id: actual[c.id].astype(str)})
    f[c.id] = f[c.id].astype(str)
    joined = f.merge(actual, on=[c.id, c.time], how="inner")
    waiting = len(f) - len(joined)
    if joined.empty:
        return Monitoring(pd.DataFrame(), pd.DataFrame(), {}, 0, waiting)

    horizon = int(f[STEP].max())
    scale_parts, naive_parts = [], []
    values = frame.assign(**{c.id: frame[c.id].astype(str)})
    for as_of, group in joined.groupby(AS_OF_COLUMN, sort=True):
        ids = list(pd.unique(group[c.id]))
        seen = values[(values[c.time] <= as_of).to_numpy() & values[c.id].isin(ids).to_numpy()]
        present = set(seen[c.id])
        ids = [sid for sid in ids if sid in present]
        # As `predict` and the backtest read them: a masked reading interpolated, not a fall to 0.0.
        insample = series_histories(seen, c, ids)
        scale_parts.append(pd.DataFrame({AS_OF_COLUMN: as_of, c.id: ids,
                                         "scale": mase_scale(insample, season, len(ids))}))
        naive = seasonal_naive_batch(insample, horizon, season)
        naive_parts.append(pd.DataFrame({AS_OF_COLUMN: as_of, c.id: np.repeat(ids, horizon),
                                         STEP: np.tile(np.arange(1, horizon + 1), len(ids)),
                                         "naive": naive.reshape(-1)}))
    joined = joined.merge(pd.concat(scale_parts), on=[AS_OF_COLUMN, c.id]).merge(
        pd.concat(naive_parts), on=[AS_OF_COLUMN, c.id, STEP])
    y, point, naive = (joined[k].to_numpy("float64") for k in (c.target, FORECAST_COLUMN, "naive"))
    scale = joined["scale"].to_numpy("float64")
    rows = pd.DataFrame({AS_OF_COLUMN: joined[AS_OF_COLUMN], c.id: joined[c.id], STEP: joined[STEP],
                         MODEL_VERSION_COLUMN: joined[MODEL_VERSION_COLUMN],
                         "mase": np.abs(y - point) / scale, "smape": _smape(y, point),
                         "seasonal_naive_mase": np.abs(y - naive) / scale, "seasonal_naive_smape": _smape(y, naive)})
    for name, lo, hi in pairs:  # a missing bound (an earlier config had other quantiles) is unknown, not a miss
        low, high = joined[lo].to_numpy("float64"), joined[hi].to_numpy("float64")
        inside = ((y >= low) & (y <= high)).astype(float)
        rows[name] = np.where(np.isnan(low) | np.isnan(high), np.nan, inside)
    metrics = [k for k in rows.columns if k not in (AS_OF_COLUMN, c.id, STEP, MODEL_VERSION_COLUMN)]

    # M4 style: average each series over its arrived steps, then average over series.
    per_series = rows.groupby([AS_OF_COLUMN, c.id], sort=True).agg(
        {**{k: "mean" for k in metrics}, STEP: "max", MODEL_VERSION_COLUMN: "first"})
    by_as_of = per_series.groupby(level=0).agg({**{k: "mean" for k in metrics}, STEP: "max",
                                                MODEL_VERSION_COLUMN: "first"})
    by_as_of = by_as_of.rename(columns={STEP: "steps_arrived"})
    # Complete: every row forecast at that as-of has its actual.
    written = f.groupby(AS_OF_COLUMN).size()
    by_as_of["complete"] = rows.groupby(AS_OF_COLUMN).size().reindex(by_as_of.index) == written.reindex(
        by_as_of.index)
    by_as_of["n_series"] = per_series.groupby(level=0).size()
    worst, worst_value = [], []
    for as_of in by_as_of.index:
        scores = per_series.loc[as_of, "mase"].dropna()  # a series with no seasonal variation has no MASE
        worst.append(scores.idxmax() if len(scores) else None)
        worst_value.append(float(scores.max()) if len(scores) else np.nan)
    by_as_of["worst_series"] = worst
    by_as_of["worst_series_mase"] = worst_value
    by_step = rows.groupby(STEP)[metrics].mean()
    overall = {k: float(per_series[k].mean()) for k in metrics}
    return Monitoring(by_as_of.reset_index(), by_step.reset_index(), overall, len(rows), waiting)


def _smape(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    denominator = np.abs(y) + np.abs(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 200.0 * np.abs(y - f) / denominator, 0.0)


def degraded(monitoring: Monitoring, metric: str, promise: float | None, version: str, window: int,
             tolerance: float, since: pd.Timestamp | None = None) -> tuple[bool, str]:
    """Whether ``version``'s last ``window`` complete as-of times (after ``since``, the last training's
    as-of: older evidence has been acted on) score worse than ``promise`` (its backtest figure) by more
    than ``tolerance``; and a sentence saying why or why not."""
    if promise is None or not np.isfinite(promise) or monitoring.by_as_of.empty:
        return False, "no monitored figures to judge yet"
    table = monitoring.by_as_of
    keep = table["complete"].to_numpy() & (table[MODEL_VERSION_COLUMN].astype(str) == str(version)).to_numpy()
    if since is not None:
        keep &= (pd.to_datetime(table[AS_OF_COLUMN]) > since).to_numpy()
    done = table[keep].tail(window)
    if done.empty:
        return False, f"no complete as-of forecast by version {version} yet" + (
            "" if since is None else f" after the last training ({since})")
    observed = float(done[metric].mean())
    limit = promise * (1.0 + tolerance)
    verdict = observed > limit
    return verdict, (f"monitored {metric} {observed:.4g} over the last {len(done)} complete as-of time(s) "
                     f"{'>' if verdict else '<='} {limit:.4g} (backtest {promise:.4g} + {tolerance:.0%})")
