"""`LSTMForecaster`: one global model over many series, with scikit-learn's fit/predict shape.

Data flows one way: raw long frame -> `validate_frame` -> the models of `forecaster.models` (the
network on per-series scaled windows, the statistical methods on the histories, seasonal naive for
series too short for the network) -> their combination -> the conformal calibration -> the long
forecast frame. The forecaster orchestrates; each model owns its own forecasts.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
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
from forecaster.data import splits
from forecaster.data.frequency import future_indexes, seasonal_period
from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.data.validation import ValidatedFrame, validate_frame
from forecaster.data.windows import build_feature_arrays
from forecaster.defaults import (
    NETWORK_REVIEW_MARGIN,
    Derived,
    SeriesRules,
    default_combination,
    default_input_size,
    derive,
    reviews_network,
)
from forecaster.errors import (
    ConfigError,
    DataError,
    MissingColumnError,
    ModelError,
    ShortHistoryError,
    ValueRangeError,
)
from forecaster.evaluation.calibration import (
    apply_corrections,
    apply_scaled,
    corrections_for,
    method,
    scaled_in,
)
from forecaster.evaluation.metrics import mase_scale
from forecaster.models import distribute
from forecaster.models.base import SeriesBatch, floor_at_zero
from forecaster.models.combination import (
    CANDIDATES,
    LEARNED,
    MEMBERS,
    choose,
    combine,
    combined,
    greedy_weights,
    holdout_scores,
    member_forecasts,
    series_histories,
    weights_of,
    without_network,
)
from forecaster.models.keras_network import NetworkSpec
from forecaster.models.naive import SeasonalNaive
from forecaster.models.network import NetworkModel, TrainingPlan
from forecaster.models.state import NETWORK_FILE, SCALER_FILE, FittedState, json_value
from forecaster.ops.integrity import sha256
from forecaster.params import check_estimator, check_not_removed, check_value, requested_horizon
from forecaster.params import estimator_default as _D

#: The key of a forecast frame's ``attrs`` that counts the readings of its history treated as outliers.
OUTLIER_READINGS = "outlier_readings"
MODEL_FILES = (NETWORK_FILE, SCALER_FILE, "forecaster.json")
MANIFEST = "manifest.json"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _check_files(path: Path) -> None:
    """Every file of a saved forecaster is there and, where a manifest was saved, unchanged since."""
    if not path.is_dir():
        raise ModelError(f"{path}: no saved forecaster here (not a folder)")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path}: a saved forecaster needs {list(MODEL_FILES)}; missing {missing}")
    if not (path / MANIFEST).is_file():
        return  # saved before manifests existed
    try:
        recorded = json.loads((path / MANIFEST).read_text())
    except ValueError as exc:
        raise ModelError(f"{path / MANIFEST}: not a manifest ({_first_line(exc)})") from None
    changed = [name for name in MODEL_FILES if recorded.get(name) != sha256(path / name)]
    if changed:
        raise ModelError(f"{path}: {changed} differ from the SHA-256 recorded when the model was saved "
                         f"(truncated, corrupted or replaced): refusing to load them")




def _fallback_series(vframe: ValidatedFrame) -> set[str]:
    """The series of a frame validated for prediction that the fallback forecasts, not the network: too
    few observed readings (``short_series``), or a constant history, which seasonal naive forecasts as its
    value at every quantile (the network's answer was near it, not it). One rule for `predict` and for
    the windows `cross_validation` leaves out, so that a backtest reusing them forecasts what `predict` would."""
    return set(vframe.short_series) | set(vframe.constant_series)


def _check_finite(out: pd.DataFrame, value_columns: list[str], columns: Any) -> None:
    """A forecast is never NaN or infinite: ValueRangeError naming the series and times where it is."""
    bad = ~np.isfinite(out[value_columns].to_numpy(dtype="float64")).all(axis=1)
    if bad.any():
        raise ValueRangeError("the forecast is not finite: the series' values are beyond what the model can "
                              "carry", column=FORECAST_COLUMN, series=pd.unique(out.loc[bad, columns.id]),
                              timestamps=list(out.loc[bad, columns.time]))


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if isinstance(out.get("network"), NetworkSpec):
        out["network"] = out["network"].to_dict()
    if isinstance(out.get("columns"), Columns):
        out["columns"] = out["columns"].to_dict()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _params_from_json(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out.pop("time_budget", None)  # saved before training budgets were counted in windows: unused by predict
    if out.get("network") is not None:
        out["network"] = NetworkSpec.from_dict(out["network"])
    if out.get("columns") is not None:
        out["columns"] = Columns.from_dict(out["columns"])
    if out.get("quantiles") is not None:
        out["quantiles"] = tuple(out["quantiles"])
    return out


def requested_quantiles(trained: tuple[float, ...], quantiles: Any = None) -> tuple[float, ...]:
    """The trained quantiles a request asks for (all when ``quantiles`` is None), in trained order;
    ConfigError naming those that were not trained. Matched in one array operation, so a request's
    list of a million entries costs milliseconds, not a Python loop of ``np.isclose`` per entry."""
    if quantiles is None:
        return tuple(trained)
    try:
        wanted = np.asarray(quantiles, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ConfigError(f"quantiles must be numbers, got {str(quantiles)[:100]}") from None
    match = np.isclose(wanted[:, None], np.asarray(trained, dtype=float)[None, :])
    unknown = wanted[~match.any(axis=1)]
    if unknown.size:
        shown = ", ".join(str(q) for q in unknown[:5]) + (f" and {unknown.size - 5} more" if unknown.size > 5 else "")
        raise ConfigError(f"quantiles [{shown}] were not trained; available: {list(trained)}")
    return tuple(q for q, asked in zip(trained, match.any(axis=0)) if asked)


class LSTMForecaster:
    """A global LSTM forecaster over a long frame of many series (`fit(df)`, `predict(df)`).

    Output frame columns: the id and time columns of the input, ``forecast`` (the point forecast),
    one column per quantile named ``q<value>`` (``q0.1``, ``q0.5``, ``q0.9``...) and ``model``
    (``lstm``, or ``seasonal_naive`` for series whose history is shorter than ``min_history_``: one
    season or one horizon; series shorter than ``input_size`` are left-padded and the padding masked).
    ``verbose`` is Keras' ``fit`` verbosity: 2 (the default) one line per epoch, 1 a per-batch
    progress bar, 0 nothing. ``combine``: the network's forecasts alone (``"none"``), averaged with the
    Theta method's (``"theta"``), with Theta's and exponential smoothing's (``"theta+ets"``) or with the
    optimised Theta model's, static and dynamic, and exponential smoothing's (``"otm+dotm+ets"``) or the
    same Theta models' and the seasonal state-space exponential smoothing's (``"otm+dotm+aets"``) or the
    same three and two robust trends' (``"otm+dotm+aets+rtrend+rtrend8"``), or those five and complex
    exponential smoothing's (``"otm+dotm+aets+rtrend+rtrend8+ces"``, opt-in), or the data's default
    combination (`forecaster.defaults.default_combination`: the last on yearly and other data without a
    season, else the one before) unless the network alone is far better on the fit's holdout (``"auto"``,
    the default: `forecaster.models.combination`; on data without a season a training run then asks
    the backtest windows whether the network helps it, `combine_on_windows`), or weighed by greedy
    ensemble selection (``"learned"``: on the fit's holdout, or on backtest windows with
    `learn_combination`); the fitted
    choice is ``combine_``, its holdout scores ``combine_scores_``, the members' weights ``weights_``.
    The orchestrator of the models of `forecaster.models`: its fitted state is one
    `forecaster.models.state.FittedState`.
    ``budget_windows``: the window-epochs a fit may train where ``epochs`` or ``max_windows_per_series``
    are left to be derived (`forecaster.defaults`): training is decided by the data's size, never by a
    clock, so a seeded fit gives the same weights on an idle and on a loaded machine. ``weight_average``:
    the span in epochs of the moving average of the steps' weights that the epochs are scored on and the
    fit keeps (`forecaster.models.averaging`; 0: the last step's weights; None: derived). ``outliers`` and
    ``outlier_threshold``: readings far outside their series' range are treated as unobserved and
    interpolated in every frame it reads, at fit and at predict (`forecaster.data.outliers`; "keep"
    keeps them). ``nonnegative``: "auto" forecasts a series whose history holds no negative value at or
    above 0, point and quantiles (`forecaster.models.base.floor_at_zero`); "never" as the models give them.
    """

    def __init__(
        self,
        horizon: int,
        input_size: int | None = _D("input_size"),
        freq: str | None = _D("freq"),
        columns: Columns | None = None,
        quantiles: tuple[float, ...] = _D("quantiles"),
        network: NetworkSpec | None = None,
        epochs: int | None = _D("epochs"),
        batch_size: int = _D("batch_size"),
        learning_rate: float = _D("learning_rate"),
        patience: int = _D("patience"),
        scaler: str = _D("scaler"),
        point_loss: str = _D("point_loss"),
        missing_policy: str = _D("missing_policy"),
        max_windows_per_series: int | None = _D("max_windows_per_series"),
        seed: int = _D("seed"),
        verbose: int = _D("verbose"),
        ensemble: int = _D("ensemble"),
        lr_schedule: str = _D("lr_schedule"),
        strategy: str = _D("strategy"),
        budget_windows: int | None = _D("budget_windows"),
        weight_average: float | None = _D("weight_average"),
        combine: str = _D("combine"),
        outliers: str = _D("outliers"),
        outlier_threshold: float = _D("outlier_threshold"),
        nonnegative: str = _D("nonnegative"),
    ) -> None:
        self.horizon = horizon
        self.input_size = input_size
        self.freq = freq
        self.columns = columns
        self.quantiles = quantiles
        self.network = network
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.scaler = scaler
        self.point_loss = point_loss
        self.missing_policy = missing_policy
        self.max_windows_per_series = max_windows_per_series
        self.seed = seed
        self.verbose = verbose
        self.ensemble = ensemble
        self.lr_schedule = lr_schedule
        self.strategy = strategy
        self.budget_windows = budget_windows
        self.weight_average = weight_average
        self.combine = combine
        self.outliers = outliers
        self.outlier_threshold = outlier_threshold
        self.nonnegative = nonnegative

    # ------------------------------------------------------------------ parameters

    @classmethod
    def _param_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters as set (scikit-learn's estimator protocol: `clone` works)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> LSTMForecaster:
        """Set constructor parameters by name; ConfigError naming any that do not exist."""
        check_not_removed("LSTMForecaster.", params)
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise ConfigError(f"LSTMForecaster has no parameters {unknown}; it has {self._param_names()}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    @classmethod
    def from_config(cls, config: Any, verbose: int = _D("verbose")) -> LSTMForecaster:
        """The unfitted forecaster a `forecaster.config.ModelConfig` describes: the one way the config,
        the pipelines and the benches make estimators."""
        t = config.training
        return cls(
            horizon=config.horizon, input_size=t.input_size, freq=config.data.freq, columns=config.data.columns(),
            quantiles=config.quantiles, network=config.network, epochs=t.epochs, batch_size=t.batch_size,
            learning_rate=t.learning_rate, patience=t.patience, scaler=t.scaler, point_loss=t.point_loss,
            missing_policy=config.data.missing_policy, max_windows_per_series=t.max_windows_per_series,
            seed=t.seed, verbose=verbose, ensemble=t.ensemble, lr_schedule=t.lr_schedule, strategy=t.strategy,
            budget_windows=t.budget_windows, weight_average=t.weight_average, combine=config.combine,
            outliers=config.data.outliers, outlier_threshold=config.data.outlier_threshold,
            nonnegative=config.nonnegative,
        )

    # ------------------------------------------------------------------ fit

    def _validate(self, df: pd.DataFrame, columns: Columns, freq: str | None, **options: Any) -> ValidatedFrame:
        """``df`` validated as every step of this forecaster reads it: its missing-value policy and its
        outlier treatment (`forecaster.data.outliers`), the same at fit and at predict."""
        return validate_frame(df, columns, freq=freq, missing_policy=self.missing_policy, outliers=self.outliers,
                              outlier_threshold=self.outlier_threshold, **options)

    def series_rules(self, freq: str, lengths: np.ndarray | None = None,
                     initial: LSTMForecaster | None = None) -> SeriesRules:
        """The window and the per-series length rules a fit on series of ``lengths`` applies.

        ``input_size`` is the given one, else ``initial``'s (a warm start keeps its network), else
        derived from the data (`forecaster.defaults`). ``min_history``: the fewest observed steps for
        the network to forecast a series, one season or one horizon, whichever is longer, at most the
        window. Shorter windows are left-padded and the padding masked; shorter series get the
        seasonal-naive fallback at prediction, and train the network only with at least
        ``min_history + horizon`` steps (one window and its targets).
        """
        if self.input_size:
            input_size = int(self.input_size)
        elif initial is not None:
            input_size = int(initial.input_size_)
        else:
            input_size = default_input_size(freq, self.horizon, lengths)
        min_history = max(1, min(input_size, max(seasonal_period(freq), self.horizon)))
        return SeriesRules(input_size=input_size, min_history=min_history, horizon=int(self.horizon))

    def fit(self, df: pd.DataFrame, callbacks: list[keras.callbacks.Callback] | None = None,
            initial: LSTMForecaster | None = None) -> LSTMForecaster:
        """Validate ``df``, scale it, train on windows with early stopping on the last horizon of each series.

        The validation split is time-ordered: each series' last ``horizon`` steps are held out from
        training targets and from the scaler, and score the epochs; the best epoch's weights are kept.
        With ``ensemble`` = K > 1, K networks are trained this way (seeds ``seed + 1000 k``, each on its
        own sample of windows) and ``model_`` is one Keras model averaging their outputs; ``history_``
        is the first member's, ``member_histories_`` all of them.  ``lr_schedule="cosine"`` decays the
        learning rate to 5 % of ``learning_rate`` over ``epochs``. ``initial``, a fitted forecaster with
        the same network (a single member), warm-starts training from its weights: a fine-tune on new
        data instead of a refit from random weights (the scaler is fitted afresh on ``df``).

        The steps: check the parameters, prepare the data (`_prepare`), train the network
        (`forecaster.models.network.NetworkModel`), then score the combinations on the holdout and
        choose one (`_combination`); the fitted state is set once, at the end.
        """
        # Every parameter checked before the data is read; conformed values go back (np.int64(12)
        # becomes 12, which the saved description's JSON can hold).
        for key, value in check_estimator(self).items():
            setattr(self, key, value)
        strategy = distribute.strategy(self.strategy)  # first: a multi-worker strategy precedes any TF work
        keras.utils.set_random_seed(self.seed)
        if initial is not None:
            initial._check_fitted()
        data = self._prepare(df, initial)
        network = NetworkModel(self).fit(data.batch, plan=data.plan, strategy=strategy, callbacks=callbacks,
                                         initial=None if initial is None else initial.model_)
        self._predict_fn = None
        state = self._trained_state(data, network)
        self._fitted = self._combination(state, data)
        return self

    def _prepare(self, df: pd.DataFrame, initial: LSTMForecaster | None) -> _Prepared:
        """Validate, apply the length rules, derive the settings left open, fit the scaler on the data
        before the holdout (each series' last horizon, unseen by training and scaler) and build the
        feature arrays the network trains on."""
        columns = self.columns or Columns()
        vframe = self._validate(df, columns, self.freq)
        freq = vframe.freq
        all_lengths = vframe.frame.groupby(columns.id, sort=False).size().to_numpy()
        rules = self.series_rules(freq, all_lengths, initial)
        frame, untrained = self._trainable(vframe, rules)
        if untrained:  # they stay out of training, scaler and covariate statistics alike
            vframe = vframe.subset(set(vframe.ids) - set(untrained))
        # The validation split: each series' last horizon rows score the epochs, unseen by training and scaler.
        last_train = splits.holdout_cutoffs(frame, columns, self.horizon)
        until = {str(k): v for k, v in last_train.items()}
        lengths = frame.groupby(columns.id, sort=False).size().to_numpy()
        # A warm start keeps the initial network where this forecaster leaves it to be derived.
        network, weight_average = self.network, self.weight_average
        if network is None and initial is not None and getattr(initial, "resolved_", None) is not None:
            network = initial.resolved_.network
            if weight_average is None:
                weight_average = initial.resolved_.weight_average
        resolved = derive(freq, self.horizon, lengths, rules.min_history, network=network,
                          input_size=rules.input_size, max_windows_per_series=self.max_windows_per_series,
                          epochs=self.epochs, budget_windows=self.budget_windows, ensemble=self.ensemble,
                          weight_average=weight_average)
        not_given = [name for name in ("input_size", "network", "weight_average") if getattr(self, name) is None]
        resolved = replace(resolved, derived=(*not_given, *(d for d in resolved.derived if d not in not_given)))
        scaler = SeriesScaler(self.scaler, seasonal_period(freq)).fit(frame, columns, until=until)
        arrays = build_feature_arrays(vframe, scaler, self.horizon, until=until)
        seen = {str(k): int(n) for k, n in splits.rows_until(frame, columns, last_train).items()}
        plan = TrainingPlan(arrays=arrays, cutoff={sid: seen[sid] - 1 for sid in arrays.ids},
                            spec=resolved.network, input_size=rules.input_size, horizon=int(self.horizon),
                            min_history=rules.min_history, quantiles=tuple(sorted(float(q) for q in self.quantiles)),
                            epochs=resolved.epochs, max_windows=resolved.max_windows_per_series,
                            padded=bool(rules.padded(arrays.lengths).any()), season=seasonal_period(freq),
                            weight_average=resolved.weight_average)
        return _Prepared(vframe=vframe, frame=frame, rules=rules, untrained=untrained, last_train=last_train,
                         resolved=resolved, scaler=scaler, plan=plan)

    def _trained_state(self, data: _Prepared, network: NetworkModel) -> FittedState:
        """The fitted state of the trained network, the network alone (no combination yet)."""
        histories = network.histories
        val = histories[0].get("val_loss", [])
        columns = data.vframe.columns
        return FittedState(
            model=network.model, scaler=data.scaler, stats=network.stats, freq=data.vframe.freq, columns=columns,
            input_size=data.rules.input_size, min_history=data.rules.min_history, quantiles=data.plan.quantiles,
            resolved=data.resolved, untrained_series=data.untrained, padded=data.plan.padded,
            history=histories[0], member_histories=histories,
            best_epoch=int(np.argmin(val)) + 1 if val else len(histories[0].get("loss", [])),
            report=json.loads(json.dumps(data.vframe.report, default=json_value)),
            data_end=str(data.frame[columns.time].max()),  # the newest time it was trained on
            calibration={}, combine="none", combine_scores={}, weights=weights_of("none"), member_scores={})

    def _combination(self, state: FittedState, data: _Prepared) -> FittedState:
        """``state`` with the combination ``combine`` asks for: each named combination's MASE on the
        fit's holdout (each series' last horizon, which early stopping watched but training never saw),
        scored whatever was asked so that a run can show what another choice would have done; "auto"
        chooses by `forecaster.models.combination.choose`, "learned" weighs the members on that holdout
        (`learn_combination` weighs them on backtest windows instead)."""
        columns = state.columns
        history = splits.history(data.frame, columns, data.last_train)
        actual = splits.actuals(data.frame, columns, data.last_train, self.horizon)  # masked: NaN, not scored
        ids, points, histories, _ = self._member_points(state, history, learned=self.combine == LEARNED)
        default = default_combination(seasonal_period(state.freq))
        if not ids:
            chosen = choose({}, default) if self.combine == "auto" else self.combine
            return replace(state, combine=chosen, weights=weights_of("none" if chosen == LEARNED else chosen))
        actual = actual.set_index(columns.id).loc[ids, columns.target].to_numpy("float64").reshape(len(ids), -1)
        scores = holdout_scores(actual, points[LSTM], histories, seasonal_period(state.freq))
        if self.combine == LEARNED:
            scale = mase_scale(histories, seasonal_period(state.freq))
            weights, member_scores = greedy_weights(actual, points, scale)
            return replace(state, combine=LEARNED, combine_scores=scores, weights=weights,
                           member_scores=member_scores)
        chosen = choose(scores, default) if self.combine == "auto" else self.combine
        return replace(state, combine=chosen, combine_scores=scores, weights=weights_of(chosen))

    def _member_points(self, state: FittedState, history: pd.DataFrame, learned: bool = True
                       ) -> tuple[list[str], dict[str, np.ndarray], list[np.ndarray], _NetworkOutput | None]:
        """The ids of the series of ``history`` the network forecasts (not the fallback's), each
        member's point forecasts (series, horizon) for them: the network's (uncombined, uncalibrated) and,
        with ``learned``, every candidate's of `forecaster.models.combination.CANDIDATES`, from the
        histories `predict` combines them from (its validated frame's); those series' histories as given
        (`series_histories`, for the MASE scale); and the network's whole output with what `predict`
        needs besides to finish it (`_NetworkOutput`; None where no series is forecast)."""
        vframe = self._validate(history, state.columns, state.freq, min_length=state.min_history,
                                horizon=self.horizon, for_prediction=True)
        short = _fallback_series(vframe)
        ids = [sid for sid in vframe.ids if sid not in short]
        if not ids:
            return [], {}, [], None
        network = self._network(state)
        batch = SeriesBatch(vframe, ids)
        values = network.forecast(batch, self.horizon)
        points = {LSTM: values[..., 0].astype("float64")}
        self._predict_fn = network.predict_fn
        # The MASE scale reads the history as given (a slice of a validated frame), as the backtest does.
        histories = series_histories(history, state.columns, ids)
        if learned:
            points.update(member_forecasts(batch.histories, self.horizon, seasonal_period(state.freq),
                                           set(CANDIDATES)))
        return ids, points, histories, _NetworkOutput(values, batch.never_negative)

    def calibrate(self, backtest_forecasts: pd.DataFrame) -> LSTMForecaster:
        """Set the conformal corrections of the intervals from a backtest's out-of-sample forecasts
        (`forecaster.evaluation.calibration`); `predict` applies them unless ``calibrated=False``.
        How is `calibration_method`'s: widening the network's quantiles, or the combined point plus the
        backtest's errors in units of each series' MASE scale (`calibration.scaled_offsets`; the
        forecast frame needs its ``scale`` column, as `run_backtest` gives it), the width corrections
        kept for series without a scale."""
        self._check_fitted()
        found = corrections_for(self.calibration_method(), backtest_forecasts, self.columns_, self.quantiles_,
                            self.horizon)
        self._fitted = replace(self._fitted, calibration=found)
        return self

    def calibration_method(self) -> str:
        """How `calibrate` sets the intervals (`calibration.method`, which owns the rule): in scale units
        where the combination gives the network no weight, centred on the point on seasonal data where
        the network is one member among statistical ones, else widening the network's quantiles
        (docs/accuracy.md, issue #27, sixth and seventh sessions)."""
        self._check_fitted()
        return method(seasonal_period(self._fitted.freq), self._fitted.weights)

    def cross_validation(self, df: pd.DataFrame, n_windows: int, step: int | None = None) -> pd.DataFrame:
        """Each member's out-of-sample point forecasts at ``n_windows`` rolling origins ``step`` apart
        (`forecaster.data.splits.backtest_cutoffs`, the backtest's windows): one row per series, origin and
        step with the id, time, target (NaN where it is no observation: masked), ``window``, ``cutoff``,
        ``scale`` (the series' MASE scale at that origin) and one column per member (``lstm`` and
        `forecaster.models.combination.CANDIDATES`), then the
        network's quantiles (``lstm_q0.1``, ...) and ``never_negative`` (the series' history holds no
        negative value). Series the fallback forecasts at an origin are left out of it. What
        `learn_combination` weighs, and what `window_forecasts` turns into the forecasts `predict` makes
        there, so that a backtest on the same windows forecasts nothing twice."""
        self._check_fitted()
        n_windows = check_value("", "n_windows", n_windows)
        step = self.horizon if step is None else check_value("", "step", step)
        state = self._fitted
        columns = state.columns
        frame = self._validate(df, columns, state.freq).frame
        longest = int(frame.groupby(columns.id, sort=False).size().max())
        if longest - splits.origin_offset(self.horizon, n_windows, step, 0) < state.min_history:
            raise ConfigError(f"n_windows = {n_windows} windows {step} steps apart leave the longest series "
                              f"({longest} rows) fewer than the {state.min_history} rows the network needs "
                              f"before the oldest origin: fewer windows or a smaller step")
        season = seasonal_period(state.freq)
        parts = []
        plan = splits.backtest_cutoffs(frame, columns, self.horizon, n_windows, step)
        for k, window in plan.groupby(WINDOW_COLUMN, sort=True):
            cutoffs = window.set_index(columns.id)[CUTOFF_COLUMN]
            history = splits.history(frame, columns, cutoffs)
            ids, points, histories, output = self._member_points(state, history)
            if output is None:
                continue
            actual = splits.actuals(frame, columns, cutoffs, self.horizon).set_index(columns.id).loc[ids]
            part = actual.reset_index()[[columns.id, columns.time, columns.target]]
            part[WINDOW_COLUMN] = k
            part[CUTOFF_COLUMN] = part[columns.id].map(cutoffs)
            part["scale"] = np.repeat(mase_scale(histories, season), self.horizon)
            for name, values in points.items():
                part[name] = values.reshape(-1)
            for j, q in enumerate(state.quantiles):  # the network's quantiles, for `window_forecasts`
                part[network_quantile(q)] = output.values[..., 1 + j].reshape(-1)
            part[NEVER_NEGATIVE] = np.repeat(output.never_negative, self.horizon)
            parts.append(part)
        if not parts:
            raise ShortHistoryError("no backtest window has a series the network forecasts", column=columns.target)
        return pd.concat(parts, ignore_index=True)

    def learn_combination(self, members: pd.DataFrame) -> LSTMForecaster:
        """Set the combination's weights by greedy ensemble selection on ``members``, the members'
        out-of-sample forecasts of `cross_validation` (of this forecaster or of one fitted on less data,
        as the backtest's): ``combine_`` becomes "learned", ``weights_`` the weights and
        ``member_scores_`` each member's MASE there. Calibrate after it: the corrections are for the
        combined forecast."""
        self._check_fitted()
        actual, points, scale = self._windows(members)
        weights, scores = greedy_weights(actual, points, scale)
        self._fitted = replace(self._fitted, combine=LEARNED, weights=weights, member_scores=scores)
        return self

    def window_forecasts(self, members: pd.DataFrame) -> pd.DataFrame:
        """The forecasts `predict` makes at each origin of ``members`` (`cross_validation`'s frame, of this
        forecaster) for the series the network forecasts there, from the forecasts the frame holds: the
        network's output combined by this forecaster's weights now, the quantiles sorted, calibrated and
        floored as `predict` does them. One row per series, origin and step: id, time, ``window``,
        ``forecast``, the quantiles and ``model``. For `forecaster.evaluation.backtest.run_backtest`'s
        ``known``: the backtest after a cross-validation forecasts nothing again. (Intervals calibrated in
        scale units take the frame's ``scale``, of the history as given; `predict` takes it from the
        history it validated: the two differ only where a reading was treated as an outlier.)"""
        self._check_fitted()
        state = self._fitted
        qcolumns = [network_quantile(q) for q in state.quantiles]
        others = [n for n in state.weights if n != LSTM]
        actual, points, _ = self._windows(members, needs=(*qcolumns, NEVER_NEGATIVE, *others))
        h = self.horizon
        # The network's output as it came (float32), so that the combination's sums round as in `predict`.
        values = np.stack([members[c].to_numpy() for c in (LSTM, *qcolumns)], axis=-1)
        values = values.astype(members[qcolumns[0]].dtype if qcolumns else values.dtype).reshape(len(actual), h, -1)
        if others:
            values = combined(values, {n: points[n] for n in others}, state.weights)
        values = self._finish(state, values, members[NEVER_NEGATIVE].to_numpy(bool)[::h], calibrated=True,
                              scale=members["scale"].to_numpy("float64")[::h])
        columns = state.columns
        out = members[[columns.id, columns.time, WINDOW_COLUMN]].reset_index(drop=True)
        out[FORECAST_COLUMN] = values[..., 0].reshape(-1)
        for j, q in enumerate(state.quantiles):
            out[quantile_name(q)] = values[..., 1 + j].reshape(-1)
        out[MODEL_COLUMN] = LSTM
        return out

    def reviews_network(self) -> bool:
        """Whether this fit's combination is decided again on backtest windows (`combine_on_windows`):
        "learned" weighs its members there; "auto" on data without a season, where it took the data's
        default combination (the network with statistical methods), asks there whether the network
        helps it (`forecaster.defaults.reviews_network`; once: its answer is no longer that default)."""
        self._check_fitted()
        if self.combine == LEARNED:
            return True
        season = seasonal_period(self.freq_)
        return self.combine == "auto" and reviews_network(season) and self.combine_ == default_combination(season)

    def combine_on_windows(self, members: pd.DataFrame) -> LSTMForecaster:
        """The combination decided on ``members`` (`cross_validation`'s frame, as for
        `learn_combination`) where `reviews_network` says so: "learned" weighs them
        (`learn_combination`); "auto" drops the network from its combination where the mean of its
        statistical members alone scores lower there by more than
        `forecaster.defaults.NETWORK_REVIEW_MARGIN` (`combination.without_network`): ``combine_`` then
        becomes "learned", with those members' equal weights. ``member_scores_``: the MASE there of each
        member and of the two means. Otherwise nothing changes."""
        if not self.reviews_network():
            return self
        if self.combine == LEARNED:
            return self.learn_combination(members)
        actual, points, scale = self._windows(members, needs=MEMBERS[self.combine_])
        weights, scores = without_network(actual, points, scale, self.combine_, NETWORK_REVIEW_MARGIN)
        dropped = {} if weights is None else {"combine": LEARNED, "weights": weights}
        self._fitted = replace(self._fitted, member_scores=scores, **dropped)
        return self

    def _windows(self, members: pd.DataFrame, needs: tuple[str, ...] = ()
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """``members`` (`cross_validation`'s frame) as (actual, each member's forecasts, scale): rows of
        one series at one origin, horizon columns; DataError or MissingColumnError naming what is not
        such a frame, or a member of ``needs`` it lacks."""
        h = self.horizon
        if not isinstance(members, pd.DataFrame):
            raise DataError(f"members must be the frame cross_validation returns, got {type(members).__name__}")
        for column in (self.columns_.target, "scale", LSTM, *needs):
            if column not in members.columns:
                raise MissingColumnError("members has no column it needs (cross_validation's frame has it)",
                                         column=column)
        if not len(members) or len(members) % h:
            raise DataError(f"members must hold horizon = {h} rows per series and window, as cross_validation's "
                            f"frame does; it has {len(members)} rows", column=self.columns_.target)
        names = [name for name in (LSTM, *CANDIDATES) if name in members.columns]
        actual = members[self.columns_.target].to_numpy("float64").reshape(-1, h)
        points = {name: members[name].to_numpy("float64").reshape(-1, h) for name in names}
        return actual, points, members["scale"].to_numpy("float64")[::h]

    def _trainable(self, vframe: ValidatedFrame, rules: SeriesRules) -> tuple[pd.DataFrame, list[str]]:
        """The rows of the series long enough to train on, and the ids of the others;
        ShortHistoryError when no series is."""
        columns = vframe.columns
        frame = vframe.frame
        lengths = frame.groupby(columns.id, sort=False).size()
        short = lengths.index[~rules.trainable(lengths.to_numpy())]
        if len(short) == len(lengths):
            need = rules.min_history + rules.horizon
            raise ShortHistoryError(
                f"no series is long enough to train on: each needs {need} steps (min_history "
                f"{rules.min_history} + horizon {rules.horizon}); the longest has {int(lengths.max())}",
                column=columns.target, series=[str(s) for s in short[:20]])
        if not len(short):
            return frame, []
        return frame[~frame[columns.id].isin(short)], sorted(str(s) for s in short)


    # ------------------------------------------------------------------ predict

    def _check_fitted(self) -> None:
        if self.__dict__.get("_fitted") is None:
            raise ModelError("this forecaster is not fitted: call fit(df) or load a saved one")

    def predict(self, df: pd.DataFrame, horizon: int | None = None,
                quantiles: list[float] | tuple[float, ...] | None = None, calibrated: bool = True) -> pd.DataFrame:
        """Forecast the ``horizon`` steps after each series' last observed target.

        ``df`` holds the history (and, with known-future covariates, the future rows carrying them).
        ``horizon`` may be at most the trained horizon; ``quantiles`` must be among the trained ones.
        Series never seen in training are scaled on the history given; series with fewer than
        ``min_history_`` observed readings (blanks do not count) get the seasonal-naive forecast and
        intervals, marked in the ``model`` column; so do series whose observed history is one value (its
        value is the point and every quantile, `ValidatedFrame.constant_series`).
        Intervals carry the conformal corrections set by `calibrate` (``calibrated=False``: the quantile
        head's own). Readings of ``df`` far outside their series' range are treated as at fit
        (``outliers``, `forecaster.data.outliers`); the output's ``attrs["outlier_readings"]`` counts them.
        Series whose history holds no negative value are forecast at or above 0 (``nonnegative``).
        """
        self._check_fitted()
        check_value("", "nonnegative", self.nonnegative)
        horizon = requested_horizon(self.horizon, horizon)
        wanted = requested_quantiles(self.quantiles_, quantiles)
        state = self._fitted
        columns = state.columns
        vframe = self._validate(df, columns, state.freq, min_length=state.min_history, horizon=self.horizon,
                                for_prediction=True)
        short = _fallback_series(vframe)
        all_ids = vframe.ids
        parts, part_ids = [], []
        model_ids = [sid for sid in all_ids if sid not in short]
        if model_ids:
            parts.append(self._predict_model(state, SeriesBatch(vframe, model_ids), calibrated))
            part_ids += model_ids
        if short:
            parts.append(self._predict_fallback(state, SeriesBatch(vframe, sorted(short))))
            part_ids += sorted(short)
        out = pd.concat(parts, ignore_index=True) if parts else self._empty_output()
        # Every part holds self.horizon rows per series, in time order, series in ``part_ids`` order:
        # put the series in frame order and keep their first ``horizon`` steps, by row numbers.
        rank = {sid: i for i, sid in enumerate(all_ids)}
        series = np.argsort([rank[sid] for sid in part_ids], kind="stable")
        rows = (series[:, None] * self.horizon + np.arange(horizon)[None, :]).reshape(-1)
        keep = [columns.id, columns.time, FORECAST_COLUMN]
        keep += [quantile_name(q) for q in wanted]
        out = out[[*keep, MODEL_COLUMN]].take(rows).reset_index(drop=True)
        _check_finite(out, keep[2:], columns)
        out.attrs[OUTLIER_READINGS] = int(vframe.report["outlier_readings"])
        return out

    def _empty_output(self) -> pd.DataFrame:
        names = [quantile_name(q) for q in self.quantiles_]
        return pd.DataFrame(columns=[self.columns_.id, self.columns_.time, FORECAST_COLUMN, *names, MODEL_COLUMN])

    def _network(self, state: FittedState) -> NetworkModel:
        """The network of ``state`` as a model, with the compiled call this forecaster keeps
        (`_keep_compiled` takes it back after a forecast)."""
        return NetworkModel(self, state.model, state.scaler, state.stats, state.input_size, state.freq,
                            state.quantiles, predict_fn=self.__dict__.get("_predict_fn"))

    def _predict_model(self, state: FittedState, batch: SeriesBatch, calibrated: bool = True) -> pd.DataFrame:
        """The network's forecasts of ``batch``, combined by ``state``'s weights, quantiles sorted and
        calibrated: the output frame's rows for those series."""
        columns = state.columns
        network = self._network(state)
        values, times = network.forecast_with_times(batch, self.horizon)
        self._predict_fn = network.predict_fn
        if set(state.weights) - {LSTM}:  # the histories are read only for a combination
            values = combine(values, batch.histories, state.weights, batch.season)
        scale = mase_scale(batch.histories, batch.season) if calibrated and scaled_in(state.calibration) else None
        values = self._finish(state, values, batch.never_negative if self.nonnegative == "auto" else None,
                              calibrated, scale)
        n, h, _ = values.shape
        data = {
            columns.id: pd.array(batch.ids, dtype=str).take(np.repeat(np.arange(n), h)),
            columns.time: times,
            FORECAST_COLUMN: values[..., 0].reshape(-1),
        }
        for j, q in enumerate(state.quantiles):
            data[quantile_name(q)] = values[..., 1 + j].reshape(-1)
        data[MODEL_COLUMN] = LSTM
        return pd.DataFrame(data)

    def _finish(self, state: FittedState, values: np.ndarray, never_negative: np.ndarray | None,
                calibrated: bool, scale: np.ndarray | None = None) -> np.ndarray:
        """The combined forecasts ``values`` (series, horizon, 1 + quantiles) as `predict` answers them:
        the quantiles sorted (they never cross), calibrated (with ``calibrated`` and corrections set:
        in scale units from each series' MASE ``scale`` where the calibration has them and the scale is
        positive, `calibration.apply_scaled`) and, where ``nonnegative`` is "auto", each series marked in
        ``never_negative`` floored at 0."""
        if values.shape[-1] > 1:
            values[..., 1:] = np.sort(values[..., 1:], axis=-1)
            if calibrated and state.calibration:
                widened = apply_corrections(values[..., 1:], state.quantiles, state.calibration)
                if scale is not None and scaled_in(state.calibration):
                    values = apply_scaled(values, state.quantiles, state.calibration, scale)
                    unscaled = ~(np.isfinite(scale) & (scale > 0))
                    values[unscaled, :, 1:] = widened[unscaled]
                else:
                    values[..., 1:] = widened
        if self.nonnegative == "auto" and never_negative is not None:
            values = floor_at_zero(values, never_negative)
        return values

    def _predict_fallback(self, state: FittedState, batch: SeriesBatch) -> pd.DataFrame:
        """Seasonal naive's forecasts and intervals (`forecaster.models.naive.SeasonalNaive`) for the
        series of ``batch``, too short for the network."""
        columns, ids = state.columns, batch.ids
        last = batch.frame.groupby(columns.id, sort=False)[columns.time].max()
        times = future_indexes(last.loc[ids], state.freq, self.horizon)
        values = SeasonalNaive(state.quantiles).forecast(batch, self.horizon)
        if self.nonnegative == "auto":
            values = floor_at_zero(values, batch.never_negative)
        data = {columns.id: np.repeat(np.asarray(ids, dtype=object), self.horizon),
                columns.time: np.concatenate([times[sid].to_numpy() for sid in ids]),
                FORECAST_COLUMN: values[..., 0].reshape(-1)}
        data.update({quantile_name(q): values[:, :, 1 + j].reshape(-1) for j, q in enumerate(state.quantiles)})
        data[MODEL_COLUMN] = BASELINE
        return pd.DataFrame(data)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted forecaster to a folder: ``network.keras``, ``scaler.json``, ``forecaster.json``.

        No pickles: the network is a Keras file (loaded in safe mode), the rest plain JSON. Every field
        of the fitted state is written (`forecaster.models.state.FittedState`), with the parameters.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self._fitted
        state.save_files(path)
        meta = {"format": 1, "horizon": self.horizon, "missing_policy": self.missing_policy,
                "ensemble": int(getattr(self, "ensemble", 1)), "params": _params_to_json(self.get_params()),
                **state.to_json()}
        (path / "forecaster.json").write_text(json.dumps(meta, indent=2))
        manifest = {name: sha256(path / name) for name in MODEL_FILES}
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LSTMForecaster:
        """Read a folder written by `save`; the network file is loaded with ``safe_mode=True``."""
        import forecaster.layers  # noqa: F401  (registers the layer classes for deserialisation)

        path = Path(path)
        _check_files(path)
        try:
            meta = json.loads((path / "forecaster.json").read_text())
            if "params" in meta:  # every parameter it was trained with
                loaded = cls(**_params_from_json(meta["params"]))
            else:  # saved before parameters were recorded: the ones prediction needs
                loaded = cls(horizon=int(meta["horizon"]), input_size=int(meta["input_size"]),
                              freq=meta["freq"], columns=Columns.from_dict(meta["columns"]),
                              quantiles=tuple(meta["quantiles"]), missing_policy=meta["missing_policy"])
            state = FittedState.decode(meta, model=None, scaler=None)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path / 'forecaster.json'}: not a forecaster description ({_first_line(exc)})") from None
        try:
            model = keras.saving.load_model(path / NETWORK_FILE, safe_mode=True, compile=False)
        except Exception as exc:  # Keras raises ValueError, zipfile and h5 errors alike for a bad file
            raise ModelError(f"{path / NETWORK_FILE}: cannot load the network ({_first_line(exc)})") from None
        try:
            scaler = SeriesScaler.load_json(path / SCALER_FILE)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path / SCALER_FILE}: not a scaler ({_first_line(exc)})") from None
        bad = [k for k, v in scaler.scale_.items() if not (np.isfinite(v) and v > 0)]
        bad += [k for k, v in scaler.center_.items() if not np.isfinite(v)]
        if bad:
            raise ModelError(f"{path / SCALER_FILE}: scale must be finite and > 0 and center finite, "
                             f"not so for series {sorted(set(bad))[:5]}")
        loaded._fitted = replace(state, model=model, scaler=scaler)
        loaded._predict_fn = None
        return loaded


#: `LSTMForecaster.cross_validation`'s column that says a series' history holds no negative value.
NEVER_NEGATIVE = "never_negative"


def network_quantile(q: float) -> str:
    """`LSTMForecaster.cross_validation`'s column of the network's quantile ``q`` (``lstm_q0.1``)."""
    return f"{LSTM}_{quantile_name(q)}"


@dataclass(frozen=True)
class _NetworkOutput:
    """The network's forecasts (series, horizon, 1 + quantiles) of a batch, as it made them, and which
    series are never negative: what `LSTMForecaster.window_forecasts` finishes as `predict` does."""

    values: np.ndarray
    never_negative: np.ndarray


@dataclass(frozen=True)
class _Prepared:
    """A fit's data after `LSTMForecaster._prepare`: the trainable series, their length rules, the
    holdout's cutoffs, the derived settings, the scaler and the network's training plan."""

    vframe: ValidatedFrame
    frame: pd.DataFrame
    rules: SeriesRules
    untrained: list[str]
    last_train: pd.Series
    resolved: Derived
    scaler: SeriesScaler
    plan: TrainingPlan

    @property
    def batch(self) -> SeriesBatch:
        return SeriesBatch(self.vframe, list(self.plan.arrays.ids))


def _fitted_attribute(name: str) -> property:
    """``<name>_``: the fitted state's field ``name`` (AttributeError before a fit, as scikit-learn's
    fitted attributes). Setting it replaces the state with one holding the new value; setting
    ``combine_`` to a named combination sets its weights too."""

    def get(self: LSTMForecaster) -> Any:
        state = self.__dict__.get("_fitted")
        if state is None:
            raise AttributeError(f"{name}_: this forecaster is not fitted")
        return getattr(state, name)

    def set_(self: LSTMForecaster, value: Any) -> None:
        self._check_fitted()
        extra = {"weights": weights_of(value)} if name == "combine" and value != LEARNED else {}
        self._fitted = replace(self._fitted, **{name: value}, **extra)

    return property(get, set_, doc=f"The fitted state's ``{name}`` (`forecaster.models.state.FittedState`).")


for _name in FittedState.names():
    setattr(LSTMForecaster, f"{_name}_", _fitted_attribute(_name))
