"""`LSTMForecaster`: one global model over many series, with scikit-learn's fit/predict shape.

Data flows one way: raw long frame -> `validate_frame` -> per-series scaled feature arrays ->
streamed windows -> the network (our LSTM encoder + a horizon head) -> the long forecast frame.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from forecaster import distribute, splits
from forecaster.baselines import seasonal_naive_batch, seasonal_naive_intervals_batch
from forecaster.calibration import apply_corrections, conformal_corrections
from forecaster.combination import APPLIED, check_combine, choose, combine, holdout_scores, series_histories
from forecaster.contract import BASELINE, FORECAST_COLUMN, LSTM, MODEL_COLUMN, quantile_name
from forecaster.data.frequency import future_grid, future_indexes, seasonal_period
from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.data.validation import ValidatedFrame, validate_frame
from forecaster.data.windows import (
    CovariateStats,
    build_feature_arrays,
    future_calendar,
    future_features,
    last_windows,
    make_window_dataset,
)
from forecaster.defaults import Derived, SeriesRules, default_input_size, derive
from forecaster.errors import ConfigError, ModelError, ShortHistoryError, ValueRangeError
from forecaster.integrity import sha256
from forecaster.losses import PointAndQuantileLoss
from forecaster.network import NetworkSpec, build_network
from forecaster.params import check_fields, check_not_removed, check_value

MODEL_FILES = ("network.keras", "scaler.json", "forecaster.json")
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


PREDICT_CHUNK = 1024
"""Windows per call of the compiled network at prediction. 1,024 rather than 8,192: the LSTM's per-step
buffers (1,024 x 4 units floats) stay in the core's cache; the network alone on 8,192 windows took
1.3-2.2 s against 1.9-3.4 s (2-core Xeon, loaded; docs/prediction.md), outputs bit-identical."""
LR_SCHEDULES = ("constant", "cosine")


def _check_finite(out: pd.DataFrame, value_columns: list[str], columns: Any) -> None:
    """A forecast is never NaN or infinite: ValueRangeError naming the series and times where it is."""
    bad = ~np.isfinite(out[value_columns].to_numpy(dtype="float64")).all(axis=1)
    if bad.any():
        raise ValueRangeError("the forecast is not finite: the series' values are beyond what the model can "
                              "carry", column=FORECAST_COLUMN, series=pd.unique(out.loc[bad, columns.id]),
                              timestamps=list(out.loc[bad, columns.time]))


def _average_members(members: list[keras.Model]) -> keras.Model:
    """One Keras model whose output is the mean of the members' outputs (an ensemble, saved as one file)."""
    inputs = {name: keras.Input(tensor.shape[1:], name=name) for name, tensor in members[0].input.items()}
    outs = [member(inputs) for member in members]
    return keras.Model(inputs, keras.layers.Average(name="ensemble_mean")(outs), name="lstm_ensemble")


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
    optimised Theta model's, static and dynamic, and exponential smoothing's (``"otm+dotm+ets"``), or the
    latter unless the network alone is far better on the fit's holdout (``"auto"``, the default:
    `forecaster.combination`); the fitted choice is ``combine_``, its holdout scores ``combine_scores_``.
    ``budget_windows``: the window-epochs a fit may train where ``epochs`` or ``max_windows_per_series``
    are left to be derived (`forecaster.defaults`): training is decided by the data's size, never by a
    clock, so a seeded fit gives the same weights on an idle and on a loaded machine.
    """

    def __init__(
        self,
        horizon: int,
        input_size: int | None = None,
        freq: str | None = None,
        columns: Columns | None = None,
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
        network: NetworkSpec | None = None,
        epochs: int | None = None,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        patience: int = 5,
        scaler: str = "standard",
        point_loss: str = "mae",
        missing_policy: str = "error",
        max_windows_per_series: int | None = None,
        seed: int = 0,
        verbose: int = 2,
        ensemble: int = 1,
        lr_schedule: str = "constant",
        strategy: str = "none",
        budget_windows: int | None = None,
        combine: str = "auto",
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
        self.combine = combine

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
    def from_config(cls, config: Any, verbose: int = 2) -> LSTMForecaster:
        """The unfitted forecaster a `forecaster.config.ModelConfig` describes: the one way the config,
        the pipelines and the benches make estimators."""
        t = config.training
        return cls(
            horizon=config.horizon, input_size=t.input_size, freq=config.data.freq, columns=config.data.columns(),
            quantiles=config.quantiles, network=config.network, epochs=t.epochs, batch_size=t.batch_size,
            learning_rate=t.learning_rate, patience=t.patience, scaler=t.scaler, point_loss=t.point_loss,
            missing_policy=config.data.missing_policy, max_windows_per_series=t.max_windows_per_series,
            seed=t.seed, verbose=verbose, ensemble=t.ensemble, lr_schedule=t.lr_schedule, strategy=t.strategy,
            budget_windows=t.budget_windows, combine=config.combine,
        )

    # ------------------------------------------------------------------ fit

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
        """
        checked = ("horizon", "input_size", "quantiles", "epochs", "batch_size", "learning_rate", "patience",
                   "max_windows_per_series", "seed", "ensemble", "budget_windows")
        # Conformed values go back: np.int64(12) becomes 12, which the saved description's JSON can hold.
        for key, value in check_fields(type(self).__init__, {k: getattr(self, k) for k in checked}).items():
            setattr(self, key, value)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        check_combine(self.combine)
        strategy = distribute.strategy(self.strategy)  # first: a multi-worker strategy precedes any TF work
        columns = self.columns or Columns()
        keras.utils.set_random_seed(self.seed)
        vframe = validate_frame(df, columns, freq=self.freq, missing_policy=self.missing_policy)
        freq = vframe.freq
        all_lengths = vframe.frame.groupby(columns.id, sort=False).size().to_numpy()
        if initial is not None:
            initial._check_fitted()
        rules = self.series_rules(freq, all_lengths, initial)
        input_size, min_history = rules.input_size, rules.min_history
        frame, untrained = self._trainable(vframe, rules)
        if untrained:  # they stay out of training, scaler and covariate statistics alike
            vframe = ValidatedFrame(frame=frame, freq=freq, columns=columns, report=vframe.report,
                                    missing_policy=vframe.missing_policy)
        # The validation split: each series' last horizon rows score the epochs, unseen by training and scaler.
        last_train = splits.holdout_cutoffs(frame, columns, self.horizon)
        until = {str(k): v for k, v in last_train.items()}
        lengths = frame.groupby(columns.id, sort=False).size().to_numpy()
        # A warm start keeps the initial network where this forecaster leaves it to be derived.
        network = self.network
        if network is None and initial is not None and getattr(initial, "resolved_", None) is not None:
            network = initial.resolved_.network
        resolved = derive(freq, self.horizon, lengths, min_history, network=network, input_size=input_size,
                          max_windows_per_series=self.max_windows_per_series, epochs=self.epochs,
                          budget_windows=self.budget_windows, ensemble=self.ensemble)
        not_given = [name for name in ("input_size", "network") if getattr(self, name) is None]
        resolved = replace(resolved, derived=(*not_given, *(d for d in resolved.derived if d not in not_given)))
        epochs, max_windows = resolved.epochs, resolved.max_windows_per_series
        scaler = SeriesScaler(self.scaler).fit(frame, columns, until=until)
        arrays = build_feature_arrays(vframe, scaler, self.horizon, until=until)
        seen = {str(k): int(n) for k, n in splits.rows_until(frame, columns, last_train).items()}
        cutoff = {sid: seen[sid] - 1 for sid in arrays.ids}  # index of each series' last training row
        train_ds = make_window_dataset(arrays, input_size, self.horizon, self.batch_size, cutoff=cutoff,
                                       shuffle=True, seed=self.seed, max_windows_per_series=max_windows,
                                       min_context=min_history)
        val_ds = make_window_dataset(arrays, input_size, self.horizon, self.batch_size, shuffle=False,
                                     start_after=cutoff, min_context=min_history)
        padded = bool(rules.padded(arrays.lengths).any())
        train_ds, val_ds = (distribute.shard_by_data(d, self.strategy) for d in (train_ds, val_ds))
        quantiles = tuple(sorted(float(q) for q in self.quantiles))
        spec = resolved.network
        shapes = (len(arrays.past_names), len(arrays.future_names), len(arrays.static_names), len(quantiles))
        steps = int(train_ds.cardinality().numpy())
        members, histories = [], []
        for k in range(self.ensemble):
            seed = self.seed + 1000 * k
            keras.utils.set_random_seed(seed)
            with strategy.scope():
                member = build_network(spec, input_size, self.horizon, *shapes, seed=seed,
                                       season=seasonal_period(freq), mask_padding=padded,
                                       name=f"member_{k}" if self.ensemble > 1 else "lstm_forecaster")
                if initial is not None:
                    self._warm_start(member, initial, self.ensemble)
                member.compile(optimizer=keras.optimizers.Adam(self._learning_rate(steps, epochs), clipnorm=1.0),
                               loss=PointAndQuantileLoss(quantiles, point_loss=self.point_loss))
                # Its slots made now, not inside the first traced step: TensorFlow traces a step that
                # creates variables twice, which is most of a short fit's time.
                member.optimizer.build(member.trainable_variables)
            distribute.prepare_model(member, self.strategy)
            stop = keras.callbacks.EarlyStopping(patience=self.patience, restore_best_weights=True)
            data = train_ds if k == 0 else distribute.shard_by_data(make_window_dataset(
                arrays, input_size, self.horizon, self.batch_size, cutoff=cutoff, shuffle=True, seed=seed,
                max_windows_per_series=max_windows, min_context=min_history), self.strategy)
            try:
                history = member.fit(data, validation_data=val_ds, epochs=epochs, verbose=self.verbose,
                                     shuffle=False, callbacks=[stop, *(callbacks or [])])
            except Exception as exc:
                distribute.raise_if_worker_lost(exc, self.strategy)
                raise
            members.append(member)
            histories.append({key: [float(v) for v in vals] for key, vals in history.history.items()})
        model = members[0] if len(members) == 1 else _average_members(members)
        self.model_ = model
        self.scaler_ = scaler
        self.stats_ = arrays.stats
        self.freq_ = freq
        self.columns_ = columns
        self.input_size_ = input_size
        self.min_history_ = min_history
        self.resolved_ = resolved
        self.untrained_series_ = untrained
        self.padded_ = padded
        self.quantiles_ = quantiles
        self.history_ = histories[0]
        self.member_histories_ = histories
        val = self.history_.get("val_loss", [])
        self.best_epoch_ = int(np.argmin(val)) + 1 if val else len(self.history_.get("loss", []))
        self.report_ = vframe.report
        self.data_end_ = str(frame[columns.time].max())  # the newest time it was trained on
        self.calibration_: dict[str, list[float]] = {}
        self._predict_fn = None
        # Scored whatever was asked, so that a run can show what the other choice would have done.
        self.combine_scores_ = self._holdout_scores(frame, last_train)
        self.combine_ = choose(self.combine_scores_) if self.combine == "auto" else self.combine
        return self

    def _holdout_scores(self, frame: pd.DataFrame, last_train: pd.Series) -> dict[str, float]:
        """Each combination's MASE on the fit's holdout (each series' last horizon, which early stopping
        watched but training never saw), forecast from the history before it."""
        columns = self.columns_
        history = splits.history(frame, columns, last_train)
        self.combine_ = "none"  # the network alone here; fit sets the choice right after
        network = self.predict(history, calibrated=False)
        network = network[network[MODEL_COLUMN] == LSTM]
        ids = list(pd.unique(network[columns.id]))
        if not ids:
            return {}
        actual = splits.following(frame, columns, last_train, self.horizon)
        actual = actual.set_index(columns.id).loc[ids, columns.target].to_numpy("float64").reshape(len(ids), -1)
        point = network[FORECAST_COLUMN].to_numpy("float64").reshape(len(ids), -1)
        histories = series_histories(history, columns, ids)
        return holdout_scores(actual, point, histories, seasonal_period(self.freq_))

    def calibrate(self, backtest_forecasts: pd.DataFrame) -> LSTMForecaster:
        """Set the conformal corrections of the intervals from a backtest's out-of-sample forecasts
        (`forecaster.calibration`); `predict` applies them unless ``calibrated=False``."""
        self._check_fitted()
        self.calibration_ = conformal_corrections(backtest_forecasts, self.columns_, self.quantiles_, self.horizon)
        return self

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

    @staticmethod
    def _warm_start(member: keras.Model, initial: LSTMForecaster, ensemble: int) -> None:
        """Copy ``initial``'s weights into ``member`` (an ensemble's member k from initial's member k);
        ConfigError if the networks differ."""
        source = initial.model_
        if ensemble > 1:
            names = [layer.name for layer in source.layers]
            source = source.get_layer(member.name) if member.name in names else None
        shapes = None if source is None else [tuple(w.shape) for w in source.weights]
        if shapes is None or len(member.weights) != len(shapes) or any(
                tuple(w.shape) != s for w, s in zip(member.weights, shapes)):
            raise ConfigError("cannot warm-start: the initial forecaster's network differs from this one's "
                              "(units, layers, input size, horizon, quantiles, covariates or ensemble changed)")
        member.set_weights(source.get_weights())

    def _learning_rate(self, steps_per_epoch: int,
                       epochs: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
        """The constant rate, or a cosine decay from it to 5 % of it over all the epochs' steps."""
        if self.lr_schedule == "constant" or steps_per_epoch <= 0:
            return self.learning_rate
        return keras.optimizers.schedules.CosineDecay(self.learning_rate, steps_per_epoch * epochs, alpha=0.05)

    # ------------------------------------------------------------------ predict

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ModelError("this forecaster is not fitted: call fit(df) or load a saved one")

    def _network_outputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The network on ``inputs`` in chunks, through one compiled function (not `model.predict`)."""
        if self._predict_fn is None:
            import tensorflow as tf

            model = self.model_
            self._predict_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        n = len(inputs["past"])
        out = [np.asarray(self._predict_fn({k: v[i : i + PREDICT_CHUNK] for k, v in inputs.items()}))
               for i in range(0, n, PREDICT_CHUNK)]
        out = np.concatenate(out) if out else np.zeros((0, self.horizon, 1 + len(self.quantiles_)), "float32")
        return out.reshape(n, self.horizon, -1)

    def predict(self, df: pd.DataFrame, horizon: int | None = None,
                quantiles: list[float] | tuple[float, ...] | None = None, calibrated: bool = True) -> pd.DataFrame:
        """Forecast the ``horizon`` steps after each series' last observed target.

        ``df`` holds the history (and, with known-future covariates, the future rows carrying them).
        ``horizon`` may be at most the trained horizon; ``quantiles`` must be among the trained ones.
        Series never seen in training are scaled on the history given; series shorter than
        ``min_history_`` get the seasonal-naive forecast and intervals, marked in the ``model`` column.
        Intervals carry the conformal corrections set by `calibrate` (``calibrated=False``: the quantile
        head's own).
        """
        self._check_fitted()
        horizon = self.horizon if horizon is None else check_value("", "horizon", horizon, int)
        if not 1 <= horizon <= self.horizon:
            raise ConfigError(f"horizon must be between 1 and the trained horizon {self.horizon}, got {horizon}")
        wanted = requested_quantiles(self.quantiles_, quantiles)
        columns = self.columns_
        vframe = validate_frame(df, columns, freq=self.freq_, missing_policy=self.missing_policy,
                                min_length=self.min_history_, horizon=self.horizon, for_prediction=True)
        short = set(vframe.short_series)
        all_ids = vframe.ids
        parts, part_ids = [], []
        model_ids = [sid for sid in all_ids if sid not in short]
        if model_ids:
            parts.append(self._predict_model(vframe, model_ids, calibrated))
            part_ids += model_ids
        if short:
            parts.append(self._predict_fallback(vframe, sorted(short)))
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
        return out

    def _empty_output(self) -> pd.DataFrame:
        names = [quantile_name(q) for q in self.quantiles_]
        return pd.DataFrame(columns=[self.columns_.id, self.columns_.time, FORECAST_COLUMN, *names, MODEL_COLUMN])

    def _future_times(self, vframe: ValidatedFrame, ids: list[str]) -> dict[str, pd.DatetimeIndex]:
        last = vframe.frame.groupby(self.columns_.id, sort=False)[self.columns_.time].max()
        return future_indexes(last.loc[ids], self.freq_, self.horizon)

    def _predict_model(self, vframe: ValidatedFrame, ids: list[str], calibrated: bool = True) -> pd.DataFrame:
        columns = self.columns_
        frame = vframe.frame if len(ids) == len(vframe.ids) else vframe.frame[vframe.frame[columns.id].isin(ids)]
        sub = ValidatedFrame(frame=frame, freq=vframe.freq, columns=columns, report=vframe.report,
                             missing_policy=vframe.missing_policy)
        scaler = self.scaler_
        if any(sid not in scaler.center_ for sid in ids):
            scaler = copy.deepcopy(scaler)
            scaler.fit_missing(frame, columns)
        arrays = build_feature_arrays(sub, scaler, self.horizon, stats=self.stats_)
        times = future_grid(arrays.last_times, self.freq_, self.horizon)  # series after series
        feats: Any
        if columns.known_future and vframe.future is not None:
            feats = future_features(vframe.future[vframe.future[columns.id].isin(ids)], self.freq_, columns,
                                    self.stats_)
        else:
            feats = future_calendar(times, self.freq_, self.horizon)
        inputs, order = last_windows(arrays, self.input_size_, self.horizon, feats)
        raw = self._network_outputs(inputs)  # (n, H, 1 + Q), scaled
        n, h, k = raw.shape
        values = scaler.inverse_transform(raw.reshape(n, h * k), order).reshape(n, h, k)
        if self.combine_ != "none":  # the histories are read only for a combination
            values = combine(values, series_histories(frame, columns, order), self.combine_,
                             seasonal_period(self.freq_))
        if k > 1:
            values[..., 1:] = np.sort(values[..., 1:], axis=-1)  # quantiles never cross
            if calibrated and getattr(self, "calibration_", None):
                values[..., 1:] = apply_corrections(values[..., 1:], self.quantiles_, self.calibration_)
        data = {
            columns.id: pd.array(order, dtype=str).take(np.repeat(np.arange(n), h)),
            columns.time: times,
            FORECAST_COLUMN: values[..., 0].reshape(-1),
        }
        for j, q in enumerate(self.quantiles_):
            data[quantile_name(q)] = values[..., 1 + j].reshape(-1)
        data[MODEL_COLUMN] = LSTM
        return pd.DataFrame(data)

    def _predict_fallback(self, vframe: ValidatedFrame, ids: list[str]) -> pd.DataFrame:
        columns = self.columns_
        m = seasonal_period(self.freq_)
        times = self._future_times(vframe, ids)
        frame = vframe.frame[vframe.frame[columns.id].isin(ids)]
        target = frame[columns.target].to_numpy(dtype="float64")
        rows = {str(sid): at for sid, at in frame.groupby(columns.id, sort=False).indices.items()}
        histories = [target[rows[sid]] for sid in ids]
        # One vectorised call for all of them: 20,000 short series took 46 s one at a time.
        point = seasonal_naive_batch(histories, self.horizon, m)
        qs = seasonal_naive_intervals_batch(histories, self.horizon, m, list(self.quantiles_))
        data = {columns.id: np.repeat(np.asarray(ids, dtype=object), self.horizon),
                columns.time: np.concatenate([times[sid].to_numpy() for sid in ids]),
                FORECAST_COLUMN: point.reshape(-1)}
        data.update({quantile_name(q): qs[:, :, j].reshape(-1) for j, q in enumerate(self.quantiles_)})
        data[MODEL_COLUMN] = BASELINE
        return pd.DataFrame(data)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted forecaster to a folder: ``network.keras``, ``scaler.json``, ``forecaster.json``.

        No pickles: the network is a Keras file (loaded in safe mode), the rest plain JSON.
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model_.save(path / "network.keras")
        self.scaler_.save_json(path / "scaler.json")
        meta = {
            "format": 1,
            "horizon": self.horizon,
            "input_size": self.input_size_,
            "min_history": self.min_history_,
            "untrained_series": self.untrained_series_,
            "freq": self.freq_,
            "columns": self.columns_.to_dict(),
            "quantiles": list(self.quantiles_),
            "missing_policy": self.missing_policy,
            "covariate_stats": self.stats_.to_dict(),
            "best_epoch": self.best_epoch_,
            "ensemble": int(getattr(self, "ensemble", 1)),
            "history": self.history_,
            "data_end": getattr(self, "data_end_", None),
            "params": _params_to_json(self.get_params()),
            "calibration": getattr(self, "calibration_", {}),
            "resolved": self.resolved_.to_dict() if hasattr(self, "resolved_") else None,
            "combine": self.combine_,
            "combine_scores": getattr(self, "combine_scores_", {}),
        }
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
                self = cls(**_params_from_json(meta["params"]))
            else:  # saved before parameters were recorded: the ones prediction needs
                self = cls(horizon=int(meta["horizon"]), input_size=int(meta["input_size"]), freq=meta["freq"],
                           columns=Columns.from_dict(meta["columns"]), quantiles=tuple(meta["quantiles"]),
                           missing_policy=meta["missing_policy"])
            stats = CovariateStats.from_dict(meta["covariate_stats"])
            calibration = {str(k): [float(x) for x in v] for k, v in meta.get("calibration", {}).items()}
            resolved = Derived.from_dict(meta["resolved"]) if meta.get("resolved") else None
            combined = meta.get("combine", "none")  # saved before combinations: the network alone
            if combined not in APPLIED:
                raise ValueError(f"combine is {combined!r}, not one of {APPLIED}")
            combine_scores = {str(k): float(v) for k, v in meta.get("combine_scores", {}).items()}
            if not all(np.isfinite(v).all() for v in calibration.values()):
                raise ValueError("calibration holds a value that is not a finite number")
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path / 'forecaster.json'}: not a forecaster description ({_first_line(exc)})") from None
        try:
            self.model_ = keras.saving.load_model(path / "network.keras", safe_mode=True, compile=False)
        except Exception as exc:  # Keras raises ValueError, zipfile and h5 errors alike for a bad file
            raise ModelError(f"{path / 'network.keras'}: cannot load the network ({_first_line(exc)})") from None
        try:
            self.scaler_ = SeriesScaler.load_json(path / "scaler.json")
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path / 'scaler.json'}: not a scaler ({_first_line(exc)})") from None
        bad = [k for k, v in self.scaler_.scale_.items() if not (np.isfinite(v) and v > 0)]
        bad += [k for k, v in self.scaler_.center_.items() if not np.isfinite(v)]
        if bad:
            raise ModelError(f"{path / 'scaler.json'}: scale must be finite and > 0 and center finite, "
                             f"not so for series {sorted(set(bad))[:5]}")
        self.stats_ = stats
        self.freq_ = meta["freq"]
        self.columns_ = Columns.from_dict(meta["columns"])
        self.input_size_ = int(meta["input_size"])
        self.min_history_ = int(meta.get("min_history", self.input_size_))  # saved before: the full window
        self.untrained_series_ = list(meta.get("untrained_series", []))
        self.calibration_ = calibration
        self.combine_ = combined
        self.combine_scores_ = combine_scores
        if resolved is not None:  # the settings its fit used (saved before: unknown)
            self.resolved_ = resolved
        self.quantiles_ = tuple(float(q) for q in meta["quantiles"])
        self.best_epoch_ = meta.get("best_epoch")
        self.ensemble = int(meta.get("ensemble", 1))
        self.history_ = meta.get("history", {})
        self.data_end_ = meta.get("data_end")
        self._predict_fn = None
        return self
