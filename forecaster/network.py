"""The global forecasting network: our LSTM as encoder, a head that emits the whole horizon at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from forecaster.layers import LSTM


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture hyper-parameters (plain values, logged as MLflow params)."""

    units: int = 64
    num_layers: int = 1
    head_units: int = 128
    dropout: float = 0.0
    layer_norm: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def build_network(
    spec: NetworkSpec,
    input_size: int,
    horizon: int,
    n_past: int,
    n_future: int,
    n_static: int,
    n_quantiles: int,
    seed: int = 0,
) -> keras.Model:
    """Inputs ``past`` (L, n_past), ``future`` (H, n_future), ``static`` (n_static,);
    output (H, 1 + n_quantiles): the point forecast, then each quantile, in the scaled space.

    The encoder reads the past window with stacked `forecaster.layers.LSTM`; the head sees its final
    state, the known-future features of every horizon step (calendar, user covariates) and the static
    covariates, and emits all horizon steps at once (no recursion, so no error feedback). Quantile
    columns are learnt by the pinball loss; the forecaster sorts them at prediction so they never cross.
    """
    past = keras.Input((input_size, n_past), name="past")
    future = keras.Input((horizon, n_future), name="future")
    static = keras.Input((n_static,), name="static")
    h = past
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
    return keras.Model({"past": past, "future": future, "static": static}, out, name="lstm_forecaster")
