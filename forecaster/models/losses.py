"""The training loss of the forecaster: a point loss plus the pinball loss of every quantile."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from forecaster.params import param

_POINT_LOSS = param("training", "point_loss")


@keras.saving.register_keras_serializable(package="forecaster")
class PointAndQuantileLoss(keras.losses.Loss):
    """Loss over predictions of shape (batch, horizon, 1 + n_quantiles).

    Column 0 is the point forecast, scored by ``point_loss`` ("mae" or "mse"); the other columns are
    the quantiles in ``quantiles`` order, each scored by the pinball loss
    max(q (y - p), (q - 1) (y - p)). The total is the point loss plus the mean pinball loss, averaged
    over the horizon with the per-step sample weight (0 for unobserved targets).
    """

    def __init__(self, quantiles: tuple[float, ...] = (), point_loss: str = _POINT_LOSS.default,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        point_loss = _POINT_LOSS.check(point_loss, where="")  # the table's check (a config checked it already)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.point_loss = point_loss

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        err = y_true - y_pred[..., 0]
        loss = ops.abs(err) if self.point_loss == "mae" else ops.square(err)
        if self.quantiles:
            q = ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
            diff = ops.expand_dims(y_true, -1) - y_pred[..., 1:]
            loss = loss + ops.mean(ops.maximum(q * diff, (q - 1.0) * diff), axis=-1)
        return loss  # (batch, horizon): Keras applies the (batch, horizon) sample weight and reduces

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantiles": list(self.quantiles), "point_loss": self.point_loss}
