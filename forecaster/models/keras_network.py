"""The global forecasting network: our LSTM as encoder, a head that emits the whole horizon at once.

Two options change what the head predicts (both work in the per-series scaled space the forecaster
feeds in, so the training data pipeline is unchanged):

* ``window_norm`` - each input window is re-centred on its own level (the mean of its last season)
  and, for ``"standard"``, divided by its own spread; the network's outputs are mapped back with the
  same level and spread.  The encoder then sees shapes, not levels, and a series whose level drifted
  away from the one its scaler was fitted on looks like any other.
* ``seasonal_skip`` - the point forecast and the quantiles are the last season of the window,
  repeated over the horizon (seasonal naive), plus what the head adds; a head that outputs zeros
  gives exactly seasonal naive.  With several periods in ``skip_period`` (say a day and a week), the
  repeated base is a blend of the repeats of each, with weights the head sets for every window and
  horizon step (a softmax, equal weights at initialisation).  ``skip_drift`` adds a drifting repeat
  to that blend: the shortest season repeated plus the window's mean step change (from its first
  observed step to its last) times the steps ahead; with one period, the head then sets the share of
  drift, half at initialisation (a damped drift, as the Theta method's).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecaster.errors import ConfigError
from forecaster.layers import LSTM
from forecaster.models.network_spec import WINDOW_NORMS, NetworkSpec  # noqa: F401  (the spec build_network takes)


@keras.saving.register_keras_serializable(package="forecaster")
class WindowLevel(keras.layers.Layer):
    """Level and spread of each input window's target column, from the ``past`` input.

    ``level`` is the mean of the last ``period`` observed targets (``observed`` is the second past
    column; padded steps have weight 0).  ``scale`` is the root mean square deviation of the observed
    window from that level for ``mode="standard"``, floored at ``min_scale``; 1 for ``mode="level"``.
    Returns ``(past with its target column normalised, level (B, 1), scale (B, 1))``.
    """

    def __init__(self, period: int, mode: str = "standard", min_scale: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("level", "standard"):
            raise ValueError(f"mode must be 'level' or 'standard', got {mode!r}")
        self.period = int(period)
        self.mode = mode
        self.min_scale = float(min_scale)

    def call(self, past: Any) -> Any:
        y = past[..., 0]
        w = past[..., 1]
        recent_y, recent_w = y[:, -self.period :], w[:, -self.period :]
        level = ops.sum(recent_y * recent_w, axis=1, keepdims=True) / ops.maximum(
            ops.sum(recent_w, axis=1, keepdims=True), 1.0)
        if self.mode == "standard":
            dev = ops.square(y - level) * w
            var = ops.sum(dev, axis=1, keepdims=True) / ops.maximum(ops.sum(w, axis=1, keepdims=True), 1.0)
            scale = ops.maximum(ops.sqrt(var), self.min_scale)
        else:
            scale = ops.ones_like(level)
        y_norm = (y - level) / scale * w  # padded / masked steps stay 0
        past = ops.concatenate([ops.expand_dims(y_norm, -1), past[..., 1:]], axis=-1)
        return past, level, scale

    def compute_output_spec(self, past: Any) -> Any:
        batch = past.shape[0]
        return (keras.KerasTensor(past.shape, past.dtype), keras.KerasTensor((batch, 1), past.dtype),
                keras.KerasTensor((batch, 1), past.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "period": self.period, "mode": self.mode, "min_scale": self.min_scale}


@keras.saving.register_keras_serializable(package="forecaster")
class SeasonalRepeat(keras.layers.Layer):
    """The last ``period`` values of the past target column, repeated over ``horizon`` steps: (B, H)."""

    def __init__(self, period: int, horizon: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.period = int(period)
        self.horizon = int(horizon)

    def call(self, past: Any) -> Any:
        last = past[:, -self.period :, 0]
        reps = -(-self.horizon // self.period)
        return ops.tile(last, (1, reps))[:, : self.horizon]

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.horizon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "period": self.period, "horizon": self.horizon}


@keras.saving.register_keras_serializable(package="forecaster")
class DriftRepeat(SeasonalRepeat):
    """`SeasonalRepeat` plus a linear drift: h times the window's mean step change, from its first
    observed step (``observed``, the second past column, is 0 on padding) to its last: (B, H)."""

    def call(self, past: Any) -> Any:
        y, w = past[..., 0], past[..., 1]
        first = ops.argmax(w, axis=1)
        y_first = ops.take_along_axis(y, ops.expand_dims(first, 1), axis=1)
        span = ops.maximum(ops.cast(ops.shape(y)[1] - 1 - first, y.dtype), 1.0)
        slope = (y[:, -1:] - y_first) / ops.expand_dims(span, 1)
        ahead = ops.expand_dims(ops.arange(1, self.horizon + 1, dtype=y.dtype), 0)
        return super().call(past) + slope * ahead


@keras.saving.register_keras_serializable(package="forecaster")
class SeasonalBlend(keras.layers.Layer):
    """``sum_k softmax(logits)_k * repeats_k``: one (B, H) base from K seasonal repeats and (B, H, K) logits."""

    def call(self, repeats: list[Any], logits: Any) -> Any:
        weights = ops.softmax(logits, axis=-1)
        return ops.sum(ops.stack(repeats, axis=-1) * weights, axis=-1)

    def compute_output_shape(self, repeats_shape: Any, logits_shape: Any) -> Any:
        return tuple(logits_shape[:-1])


@keras.saving.register_keras_serializable(package="forecaster")
class Rescale(keras.layers.Layer):
    """``x * scale + level`` with ``x`` (B, H, C) and ``level``, ``scale`` (B, 1): back to the input space."""

    def call(self, x: Any, level: Any, scale: Any) -> Any:
        return x * ops.expand_dims(scale, -1) + ops.expand_dims(level, -1)

    def compute_output_shape(self, x_shape: Any, level_shape: Any, scale_shape: Any) -> Any:
        return x_shape


@keras.saving.register_keras_serializable(package="forecaster")
class AddToColumns(keras.layers.Layer):
    """``x + base[..., None]``: add a (B, H) base (the seasonal repeat) to every column of (B, H, C)."""

    def call(self, x: Any, base: Any) -> Any:
        return x + ops.expand_dims(base, -1)

    def compute_output_shape(self, x_shape: Any, base_shape: Any) -> Any:
        return x_shape


def build_network(
    spec: NetworkSpec,
    input_size: int,
    horizon: int,
    n_past: int,
    n_future: int,
    n_static: int,
    n_quantiles: int,
    seed: int = 0,
    season: int = 1,
    name: str = "lstm_forecaster",
    mask_padding: bool = False,
) -> keras.Model:
    """Inputs ``past`` (L, n_past), ``future`` (H, n_future), ``static`` (n_static,);
    output (H, 1 + n_quantiles): the point forecast, then each quantile, in the scaled space.

    The encoder reads the past window with stacked `forecaster.layers.LSTM`; the head sees its final
    state, the known-future features of every horizon step (calendar, user covariates) and the static
    covariates, and emits all horizon steps at once (no recursion, so no error feedback). Quantile
    columns are learnt by the pinball loss; the forecaster sorts them at prediction so they never cross.
    ``season`` is the data's seasonal period, used by ``seasonal_skip`` and ``window_norm`` unless
    ``spec.skip_period`` sets another. ``mask_padding`` masks the encoder's all-zero steps: the left
    padding of windows longer than their series (a real step is never all zero: its ``observed``
    column is 1), so that the LSTM starts at the series' first step.
    """
    periods = spec.periods(season)
    period = max(periods)
    uses_period = spec.seasonal_skip or spec.window_norm != "none"
    if uses_period and not 1 <= period <= input_size:
        raise ConfigError(f"the skip/window period {period} must be between 1 and input_size {input_size}")
    past = keras.Input((input_size, n_past), name="past")
    future = keras.Input((horizon, n_future), name="future")
    static = keras.Input((n_static,), name="static")
    h = past
    level = scale = None
    if spec.window_norm != "none":
        h, level, scale = WindowLevel(period, spec.window_norm, name="window_norm")(past)
    encoded = h
    if mask_padding:
        h = keras.layers.Masking(0.0, name="padding_mask")(h)
    for k in range(spec.num_layers):
        last = k == spec.num_layers - 1
        h = LSTM(spec.units, return_sequences=not last, dropout=spec.dropout, layer_norm=spec.layer_norm,
                 seed=seed + k, name=f"encoder_{k}")(h)
    parts = [h, keras.layers.Flatten(name="future_flat")(future)]
    if n_static:
        parts.append(static)
    z = keras.layers.Concatenate(name="context")(parts)
    z = keras.layers.Dense(spec.head_units, activation="relu", name="head_hidden")(z)
    point = keras.layers.Dense(horizon, name="point")(z)
    outputs = [keras.layers.Reshape((horizon, 1), name="point_col")(point)]
    if n_quantiles:
        offsets = keras.layers.Dense(horizon * n_quantiles, name="quantile_offsets")(z)
        outputs.append(keras.layers.Reshape((horizon, n_quantiles), name="quantile_cols")(offsets))
    out = keras.layers.Concatenate(axis=-1, name="forecast")(outputs) if n_quantiles else outputs[0]
    if spec.seasonal_skip and len(periods) == 1 and not spec.skip_drift:
        out = AddToColumns(name="seasonal_skip")(out, SeasonalRepeat(period, horizon, name="season_repeat")(encoded))
    elif spec.seasonal_skip:
        repeats = [SeasonalRepeat(p, horizon, name=f"season_repeat_{p}")(encoded) for p in periods]
        if spec.skip_drift:
            repeats.append(DriftRepeat(min(periods), horizon, name="drift_repeat")(encoded))
        logits = keras.layers.Dense(horizon * len(repeats), kernel_initializer="zeros", name="blend_logits")(z)
        logits = keras.layers.Reshape((horizon, len(repeats)), name="blend_logit_cols")(logits)
        base = SeasonalBlend(name="season_blend")(repeats, logits)
        out = AddToColumns(name="seasonal_skip")(out, base)
    if level is not None:
        out = Rescale(name="window_denorm")(out, level, scale)
    return keras.Model({"past": past, "future": future, "static": static}, out, name=name)
