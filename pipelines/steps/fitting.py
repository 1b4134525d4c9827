"""Fit and backtest: the estimator from the config, its training with labelled epoch lines, the rolling-origin
backtest and the conformal calibration."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd

from forecaster.config import ModelConfig
from forecaster.contract import (
    FALLBACK_COLUMN,
    quantile_name,
)
from forecaster.data import splits
from forecaster.evaluation.backtest import BacktestResult, run_backtest
from forecaster.evaluation.calibration import SCALE_UNITS_CENTRED, SCALED, WIDTH_UNITS, scaled_in
from forecaster.evaluation.metrics import coverage, intervals
from forecaster.forecaster import LSTMForecaster
from pipelines.steps.prepare import Prepared, make_forecaster

log = logging.getLogger("forecaster.steps")


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's losses to the active MLflow run (``prefix`` tells fits apart)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=epoch)


class EpochLines(keras.callbacks.Callback):
    """One log line per epoch, in the job's own format and labelled with its fit ("final fit: epoch 2/3:
    loss 0.41, val_loss 0.44, 5.1 s"): what Keras' ``verbose=2`` prints, without the label, otherwise."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        losses = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if "loss" in k)
        log.info("%s: epoch %d/%d: %s, %.1f s", self.label, epoch + 1, self.params.get("epochs", 0), losses,
                 time.monotonic() - self._started)


def fit(config: ModelConfig, frame: pd.DataFrame, verbose: int = 1, prefix: str = "",
        initial: LSTMForecaster | None = None, label: str = "fit") -> LSTMForecaster:
    """A forecaster fitted on ``frame`` (losses logged to the active run under ``prefix``); ``initial``,
    a fitted forecaster of the same architecture, warm-starts it from its weights.

    ``verbose`` 2 (a log, not a terminal) gives one `EpochLines` line per epoch labelled ``label``
    instead of Keras' unlabelled ones; 1 keeps Keras' progress bar, 0 says nothing.
    """
    callbacks: list[keras.callbacks.Callback] = [EpochLogger(prefix)] if mlflow.active_run() else []
    if verbose == 2:
        callbacks.append(EpochLines(label))
        verbose = 0
    return make_forecaster(config, verbose).fit(frame, callbacks=callbacks, initial=initial)


def backtest(prepared: Prepared, verbose: int = 1,
             initial: LSTMForecaster | None = None) -> tuple[LSTMForecaster, BacktestResult]:
    """Fit on the data before the oldest origin (from ``initial``'s weights if given: it must not have
    seen data after that origin), then score it and seasonal naive on every window."""
    c = prepared.config
    n, columns = c.backtest.n_windows, prepared.columns
    log.info("backtest fit on the data before the first of %d origins%s", n,
             "" if initial is None else " (warm start)")
    model = fit(c, splits.before_first_origin(prepared.frame, columns, c.horizon, n, prepared.step), verbose,
                prefix="backtest_fit.", initial=initial, label="backtest fit")
    members = known = None
    if model.reviews_network():  # decided on the backtest's windows, then scored there as decided
        members = model.cross_validation(prepared.frame, n, prepared.step)
        model.combine_on_windows(members)
        known = model.window_forecasts(members)  # the same windows: their forecasts are not made again
    result = run_backtest(model.predict, prepared.frame, columns, c.horizon, n, prepared.step, prepared.season,
                          model.quantiles_, known=known)
    result.members = members
    if mlflow.active_run():
        for name, metrics in result.summary.items():
            mlflow.log_metrics({f"backtest.{name}.{k}": float(v) for k, v in metrics.items() if np.isfinite(v)})
    return model, result


def calibrate(model: LSTMForecaster, result: BacktestResult) -> str | None:
    """Set ``model``'s conformal interval corrections from the backtest's forecasts; log them, with
    each interval's backtest coverage, to the active run. A line saying what changed, or None."""
    model.calibrate(result.forecasts)
    if not model.calibration_:
        return None
    parts = []
    scored = result.forecasts[~result.forecasts[FALLBACK_COLUMN]]
    for interval in intervals(model.quantiles_):
        key, lo, hi = interval.key, interval.lo, interval.hi
        if key not in model.calibration_:
            continue
        corrections = model.calibration_[key]
        before = coverage(scored[model.columns_.target], scored[quantile_name(lo)], scored[quantile_name(hi)])
        mean = float(np.mean(corrections))
        parts.append(f"{key} covered {before:.3f} of the backtest (nominal {hi - lo:.2f}), width x{1 + 2 * mean:.2f}")
        if mlflow.active_run():
            mlflow.log_metrics({f"calibration.{key}.backtest_coverage": before,
                                f"calibration.{key}.mean_correction": mean})
    if scaled_in(model.calibration_):  # the combination's own errors set its intervals (calibration.method)
        scaled = [quantile_name(q) for q in model.quantiles_ if f"{SCALED}{quantile_name(q)}" in model.calibration_]
        centred = model.calibration_method() == SCALE_UNITS_CENTRED
        around = " around the point (their median left out)" if centred else ""
        parts = [f"{', '.join(scaled)} from the combination's backtest errors in units of each series' MASE scale"
                 f"{around} (the network's spread is not the combination's: calibration.method), the width "
                 f"corrections kept for series without a scale"]
    if mlflow.active_run():
        mlflow.log_param("calibration.method", model.calibration_method() if scaled_in(model.calibration_)
                         else WIDTH_UNITS)
        mlflow.log_dict(model.calibration_, "calibration.json")
    return "; ".join(parts)
