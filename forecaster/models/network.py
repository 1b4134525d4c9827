"""The network as a model: trains the ensemble's members on the forecaster's windows and forecasts from
each series' last window. Its fitted state is the Keras model (``network.keras``), the scaler and the
covariate statistics, held in the forecaster's `forecaster.models.state.FittedState`."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from forecaster.contract import LSTM
from forecaster.data.frequency import future_grid
from forecaster.data.scaling import SeriesScaler
from forecaster.data.windows import (
    CovariateStats,
    SeriesArrays,
    build_feature_arrays,
    future_calendar,
    future_features,
    last_windows,
    make_window_dataset,
)
from forecaster.errors import ConfigError
from forecaster.models import distribute
from forecaster.models.averaging import WeightAverage, momentum
from forecaster.models.base import ForecastModel, SeriesBatch
from forecaster.models.keras_network import NetworkSpec, build_network
from forecaster.models.losses import PointAndQuantileLoss

#: Series per call of the compiled network at prediction.
PREDICT_CHUNK = 1024
"""Windows per call of the compiled network at prediction. 1,024 rather than 8,192: the LSTM's per-step
buffers (1,024 x 4 units floats) stay in the core's cache; the network alone on 8,192 windows took
1.3-2.2 s against 1.9-3.4 s (2-core Xeon, loaded; docs/prediction.md), outputs bit-identical."""


@dataclass(frozen=True)
class TrainingPlan:
    """What the members train on and how, as the forecaster's fit prepared it."""

    arrays: SeriesArrays
    cutoff: dict[str, int]  # index of each series' last training row
    spec: NetworkSpec
    input_size: int
    horizon: int
    min_history: int
    quantiles: tuple[float, ...]
    epochs: int
    max_windows: int | None
    padded: bool
    season: int
    weight_average: float = 0.0  # the span in epochs of the weights' moving average kept (0: the last step's)


def average_members(members: list[keras.Model]) -> keras.Model:
    """One Keras model whose output is the mean of the members' outputs (an ensemble, saved as one file)."""
    inputs = {name: keras.Input(tensor.shape[1:], name=name) for name, tensor in members[0].input.items()}
    outs = [member(inputs) for member in members]
    return keras.Model(inputs, keras.layers.Average(name="ensemble_mean")(outs), name="lstm_ensemble")


def warm_start(member: keras.Model, source: keras.Model, ensemble: int) -> None:
    """Copy ``source``'s weights into ``member`` (an ensemble's member k from source's member k);
    ConfigError if the networks differ."""
    if ensemble > 1:
        names = [layer.name for layer in source.layers]
        source = source.get_layer(member.name) if member.name in names else None
    shapes = None if source is None else [tuple(w.shape) for w in source.weights]
    if shapes is None or len(member.weights) != len(shapes) or any(
            tuple(w.shape) != s for w, s in zip(member.weights, shapes)):
        raise ConfigError("cannot warm-start: the initial forecaster's network differs from this one's "
                          "(units, layers, input size, horizon, quantiles, covariates or ensemble changed)")
    member.set_weights(source.get_weights())


class NetworkModel(ForecastModel):
    """The LSTM network (one or an ensemble of members averaged) with its scaler and covariate statistics.

    ``params`` is the forecaster (its constructor's parameters: batch size, learning rate, seeds...),
    read, never changed. ``predict_fn``, when given, is the compiled call of ``model`` to reuse.
    """

    name = LSTM
    point_only = False

    def __init__(self, params: Any, model: keras.Model | None = None, scaler: SeriesScaler | None = None,
                 stats: CovariateStats | None = None, input_size: int = 0, freq: str = "",
                 quantiles: tuple[float, ...] = (), predict_fn: Any = None) -> None:
        self.params = params
        self.model, self.scaler, self.stats = model, scaler, stats
        self.input_size, self.freq, self.quantiles = input_size, freq, quantiles
        self.predict_fn = predict_fn
        self.histories: list[dict[str, list[float]]] = []

    # ------------------------------------------------------------------ fit

    def fit(self, batch: SeriesBatch, plan: TrainingPlan | None = None,  # type: ignore[override]
            strategy: Any = None, callbacks: list[keras.callbacks.Callback] | None = None,
            initial: keras.Model | None = None, **options: Any) -> NetworkModel:
        """Train ``params.ensemble`` members on ``plan``'s windows (seeds ``seed + 1000 k``, each on its
        own sample of windows), early-stopped on the windows after each series' cutoff; ``initial``
        (a network of the same shape) warm-starts them from its weights. With ``plan.weight_average`` > 0
        each member keeps the moving average of its steps' weights (`forecaster.models.averaging`)."""
        if plan is None:
            raise ValueError("the network trains on a TrainingPlan")
        p = self.params
        arrays = plan.arrays

        def windows(seed: int) -> Any:
            return distribute.shard_by_data(make_window_dataset(
                arrays, plan.input_size, plan.horizon, p.batch_size, cutoff=plan.cutoff, shuffle=True,
                seed=seed, max_windows_per_series=plan.max_windows, min_context=plan.min_history), p.strategy)

        train_ds = windows(p.seed)
        val_ds = distribute.shard_by_data(make_window_dataset(
            arrays, plan.input_size, plan.horizon, p.batch_size, shuffle=False, start_after=plan.cutoff,
            min_context=plan.min_history), p.strategy)
        shapes = (len(arrays.past_names), len(arrays.future_names), len(arrays.static_names), len(plan.quantiles))
        steps = int(train_ds.cardinality().numpy())
        members, histories = [], []
        for k in range(p.ensemble):
            seed = p.seed + 1000 * k
            keras.utils.set_random_seed(seed)
            # A lost peer fails the variables' first broadcast (building, under the strategy) as it fails
            # the fit's all-reduces: both are the same one line.
            try:
                with strategy.scope():
                    member = build_network(plan.spec, plan.input_size, plan.horizon, *shapes, seed=seed,
                                           season=plan.season, mask_padding=plan.padded,
                                           name=f"member_{k}" if p.ensemble > 1 else "lstm_forecaster")
                    if initial is not None:
                        warm_start(member, initial, p.ensemble)
                    # Named: Keras' own names count up in a process (``adam_1``), and the saved file holds them.
                    member.compile(optimizer=keras.optimizers.Adam(self._learning_rate(steps, plan.epochs),
                                                                   clipnorm=1.0, name="adam"),
                                   loss=PointAndQuantileLoss(plan.quantiles, point_loss=p.point_loss,
                                                             name="point_and_quantile_loss"))
                    # Its slots made now, not inside the first traced step: TensorFlow traces a step that
                    # creates variables twice, which is most of a short fit's time.
                    member.optimizer.build(member.trainable_variables)
                distribute.prepare_model(member, p.strategy)
                stop = keras.callbacks.EarlyStopping(patience=p.patience, restore_best_weights=True)
                rate = momentum(plan.weight_average, steps)
                average = [WeightAverage(rate, warm=initial is not None)] if rate > 0 else []
                data = train_ds if k == 0 else windows(seed)
                history = member.fit(data, validation_data=val_ds, epochs=plan.epochs, verbose=p.verbose,
                                     shuffle=False, callbacks=[*average, stop, *(callbacks or [])])
            except Exception as exc:
                distribute.raise_if_worker_lost(exc, p.strategy)
                raise
            members.append(member)
            histories.append({key: [float(v) for v in vals] for key, vals in history.history.items()})
        self.model = members[0] if len(members) == 1 else average_members(members)
        self.histories = histories
        self.stats, self.input_size, self.quantiles = arrays.stats, plan.input_size, plan.quantiles
        return self

    def _learning_rate(self, steps_per_epoch: int,
                       epochs: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
        """The constant rate, or a cosine decay from it to 5 % of it over all the epochs' steps."""
        p = self.params
        if p.lr_schedule == "constant" or steps_per_epoch <= 0:
            return p.learning_rate
        return keras.optimizers.schedules.CosineDecay(p.learning_rate, steps_per_epoch * epochs, alpha=0.05)

    # ------------------------------------------------------------------ forecast

    def compiled(self) -> Any:
        """The network's call, compiled once (not `model.predict`, whose per-call set-up dominates)."""
        if self.predict_fn is None:
            import tensorflow as tf

            model = self.model
            self.predict_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return self.predict_fn

    def outputs(self, inputs: dict[str, np.ndarray], horizon: int) -> np.ndarray:
        """The network on ``inputs`` in chunks of `PREDICT_CHUNK` series: (n, horizon, 1 + Q), scaled."""
        fn = self.compiled()
        n = len(inputs["past"])
        out = [np.asarray(fn({k: v[i : i + PREDICT_CHUNK] for k, v in inputs.items()}))
               for i in range(0, n, PREDICT_CHUNK)]
        out = np.concatenate(out) if out else np.zeros((0, horizon, 1 + len(self.quantiles)), "float32")
        return out.reshape(n, horizon, -1)

    def forecast(self, batch: SeriesBatch, horizon: int) -> np.ndarray:
        """The trained horizon from each series' last window, in the data's scale."""
        return self.forecast_with_times(batch, horizon)[0]

    def forecast_with_times(self, batch: SeriesBatch, horizon: int) -> tuple[np.ndarray, Any]:
        """`forecast` and the times it forecasts (series after series); series never seen in training
        are scaled on the history given."""
        vframe, columns = batch.vframe, batch.vframe.columns
        scaler = self.scaler
        if any(sid not in scaler.center_ for sid in batch.ids):
            scaler = copy.deepcopy(scaler)
            scaler.fit_missing(batch.frame, columns)
        arrays = build_feature_arrays(vframe, scaler, horizon, stats=self.stats)
        times = future_grid(arrays.last_times, self.freq, horizon)  # series after series
        feats: Any
        if columns.known_future and vframe.future is not None:
            feats = future_features(vframe.future[vframe.future[columns.id].isin(batch.ids)], self.freq, columns,
                                    self.stats)
        else:
            feats = future_calendar(times, self.freq, horizon)
        inputs, order = last_windows(arrays, self.input_size, horizon, feats)
        if list(order) != batch.ids:
            raise AssertionError("the network's windows are not in the batch's series order")
        raw = self.outputs(inputs, horizon)  # (n, H, 1 + Q), scaled
        n, h, k = raw.shape
        return scaler.inverse_transform(raw.reshape(n, h * k), order).reshape(n, h, k), times
