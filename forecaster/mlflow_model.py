"""The MLflow pyfunc model (logged as models-from-code): a long frame in, the forecast frame out.

``context.artifacts["forecaster"]`` is a folder written by `LSTMForecaster.save` (a Keras file loaded
in safe mode plus JSON); params ``horizon`` and ``quantiles`` are read per call.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd


class ForecasterPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the saved forecaster once per process; `predict` is `LSTMForecaster.predict`."""

    def load_context(self, context: Any) -> None:
        from forecaster.forecaster import LSTMForecaster

        self.forecaster = LSTMForecaster.load(context.artifacts["forecaster"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast ``model_input``; a frame or params that fail our checks raise MlflowException with
        our message and INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from forecaster.errors import ForecasterError

        params = params or {}
        horizon = params.get("horizon")
        quantiles = params.get("quantiles")
        try:
            return self.forecaster.predict(
                model_input,
                horizon=None if horizon is None else int(horizon),
                quantiles=None if quantiles is None else [float(q) for q in quantiles],
            )
        except ForecasterError as exc:
            raise MlflowException(f"{type(exc).__name__}: {exc}", error_code=INVALID_PARAMETER_VALUE) from exc


mlflow.models.set_model(ForecasterPyfunc())
