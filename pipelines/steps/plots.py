"""The pictures a run logs: loss curves across fits and forecasts against actuals for chosen series."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.contract import (
    BASELINE,
    CUTOFF_COLUMN,
    FORECAST_COLUMN,
    LSTM,
    MODEL_COLUMN,
    WINDOW_COLUMN,
    quantile_name,
)
from forecaster.data.schema import Columns, observations_only
from forecaster.errors import ConfigError
from forecaster.evaluation.backtest import BacktestResult
from pipelines.steps.prepare import Prepared

log = logging.getLogger("forecaster.steps")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def epoch_numbers(fits: dict[str, dict[str, list[float]]]) -> dict[str, np.ndarray]:
    """The epoch numbers `plot_losses` gives each fit: one after another, so a later fit's epochs are
    numbered on after the earlier ones' (a warm-started final fit continues the backtest fit's curve)."""
    numbers, first = {}, 0
    for label, history in fits.items():
        epochs = max((len(v) for v in history.values()), default=0)
        numbers[label] = np.arange(first + 1, first + epochs + 1)
        first += epochs
    return numbers


def plot_losses(fits: dict[str, dict[str, list[float]]], path: Path, continues: bool = True) -> None:
    """Each fit's losses per epoch, numbered on across fits (`epoch_numbers`), with a line where each
    later fit starts saying whether it went on from the one before (``continues``) or from scratch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    colours: dict[str, str] = {}
    numbers = epoch_numbers(fits)
    for n, (label, history) in enumerate(fits.items()):
        x = numbers[label]
        if n > 0 and len(x):
            ax.axvline(x[0] - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f" {label}" + (" (warm start)" if continues else " (from scratch)"), (x[0] - 0.5, 0.98),
                        xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top", color="grey")
        for key, values in history.items():
            colour = colours.setdefault(key, f"C{len(colours)}")
            ax.plot(x[:len(values)], values, color=colour, marker=".",
                    linestyle="-" if n == len(fits) - 1 else "--", label=f"{label} {key}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("loss (scaled)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def check_plot_series(prepared: Prepared) -> None:
    """ConfigError naming the series of ``[backtest] plot_series`` that are not in the data (checked
    before training, so a typo costs no fit)."""
    known = set(prepared.frame[prepared.columns.id].astype(str))
    missing = [s for s in prepared.config.backtest.plot_series if str(s) not in known]
    if missing:
        raise ConfigError(f"[backtest] plot_series names series not in the data: {missing[:5]}")


def plotted_series(prepared: Prepared, result: BacktestResult) -> dict[str, str]:
    """The series `plot_forecasts` draws, each with why: the worst, median and best by the network's
    backtest MASE, then those ``[backtest] plot_series`` names (see `check_plot_series`)."""
    id_col = prepared.columns.id
    check_plot_series(prepared)
    table = result.per_series[result.per_series[MODEL_COLUMN] == LSTM]
    scores = table.groupby(table[id_col].astype(str))["mase"].mean().dropna().sort_values(kind="stable")
    chosen: dict[str, str] = {}
    if len(scores):
        for why, at in (("worst", len(scores) - 1), ("median", (len(scores) - 1) // 2), ("best", 0)):
            chosen.setdefault(str(scores.index[at]), f"{why} MASE")
    for sid in prepared.config.backtest.plot_series:
        chosen.setdefault(str(sid), "named in [backtest] plot_series")
    return chosen


def plotted_actuals(series: pd.DataFrame, forecasts: pd.DataFrame, columns: Columns, horizon: int) -> pd.DataFrame:
    """The rows of one validated series that `plot_forecasts` draws as its actual: three horizons before
    its first backtest origin (``forecasts``: its backtest rows) and all after, or its last three
    horizons; the target NaN where it is no observation (a masked reading's 0.0, a filled or treated
    one), so that the line breaks there instead of drawing what was never read."""
    if len(forecasts):
        first = forecasts[CUTOFF_COLUMN].min()
        before = series[series[columns.time] <= first].tail(3 * horizon)
        series = pd.concat([before, series[series[columns.time] > first]])
    else:
        series = series.tail(3 * horizon)
    return observations_only(series, columns.target)


def plot_forecasts(prepared: Prepared, result: BacktestResult, path: Path) -> None:
    """Forecasts against actuals for the series of `plotted_series`: three horizons of history before the
    first backtest origin, every window's forecast with its outer quantile band and seasonal naive, and
    each series' scores over the windows in its title."""
    plt = _pyplot()
    config, c = prepared.config, prepared.columns
    chosen = plotted_series(prepared, result)
    forecasts = result.forecasts.assign(_id=result.forecasts[c.id].astype(str))
    frame = prepared.frame.assign(_id=prepared.frame[c.id].astype(str))
    table = result.per_series.assign(_id=result.per_series[c.id].astype(str))
    qs = sorted(config.quantiles)
    band = (quantile_name(qs[0]), quantile_name(qs[-1])) if len(qs) >= 2 else None
    fig, axes = plt.subplots(max(len(chosen), 1), 1, figsize=(10, 2.6 * max(len(chosen), 1)), squeeze=False)
    for ax, (sid, why) in zip(axes[:, 0], chosen.items()):
        part = forecasts[forecasts["_id"] == sid]
        series = plotted_actuals(frame[frame["_id"] == sid], part, c, config.horizon)
        ax.plot(series[c.time], series[c.target], color="black", linewidth=1, label="actual")
        for n, (_, window) in enumerate(part.groupby(WINDOW_COLUMN, sort=True)):
            ax.plot(window[c.time], window[FORECAST_COLUMN], color="C0", label="forecast" if n == 0 else None)
            ax.plot(window[c.time], window[BASELINE], color="C1", alpha=0.6, linestyle="--",
                    label="seasonal naive" if n == 0 else None)
            if band is not None and band[0] in window and band[1] in window:
                ax.fill_between(window[c.time], window[band[0]], window[band[1]], color="C0", alpha=0.2,
                                label=f"{band[0]}-{band[1]}" if n == 0 else None)
            ax.axvline(window[CUTOFF_COLUMN].iloc[0], color="grey", linestyle=":", linewidth=1)
        scores = table[table["_id"] == sid].groupby(MODEL_COLUMN)[["mase", "smape"]].mean()
        figures = ", ".join(f"{'forecast' if m == LSTM else 'seasonal naive'} MASE {scores.loc[m, 'mase']:.3f}"
                            for m in (LSTM, BASELINE) if m in scores.index)
        ax.set_title(f"{sid} ({why})" + (f": {figures}" if figures else ": not backtested (too short)"),
                     fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
