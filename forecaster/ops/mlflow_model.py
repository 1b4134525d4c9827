"""The MLflow pyfunc model (logged as models-from-code): a long frame in, the forecast frame out.

``context.artifacts["forecaster"]`` is a folder written by `LSTMForecaster.save` (a Keras file loaded
in safe mode plus JSON); params ``horizon`` and ``quantiles`` are read per call.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException


class ForecasterPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the saved forecaster once per process; `predict` is `LSTMForecaster.predict`."""

    def load_context(self, context: Any) -> None:
        from forecaster.forecaster import LSTMForecaster
        from forecaster.ops.serving import guard_request_parsing

        self.forecaster = LSTMForecaster.load(context.artifacts["forecaster"])
        # In `mlflow models serve`: a request body MLflow cannot read gets 400 and our short message, and
        # a CSV body's ids are read as written.
        guard_request_parsing(self.forecaster.columns_.id)
        config = context.model_config or {}
        self.model_name = config.get("model_name", "")
        self.model_version = _registered_version(self.model_name, config.get("run_id", ""))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast ``model_input``, with the model's name and version on every row, as in batch output.

        A frame or params that fail our checks raise `RequestError` (INVALID_PARAMETER_VALUE), which
        `mlflow models serve` answers with HTTP 400 and our message alone."""
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from forecaster.errors import ForecasterError

        params = params or {}
        horizon = params.get("horizon")
        quantiles = params.get("quantiles")
        from forecaster.contract import MODEL_NAME_COLUMN, MODEL_VERSION_COLUMN
        from forecaster.ops.serving import as_frame, check_frame_size

        try:
            model_input = as_frame(model_input)
            check_frame_size(model_input, self.forecaster.columns_.id)
            out = self.forecaster.predict(
                model_input,
                horizon=None if horizon is None else int(horizon),
                quantiles=None if quantiles is None else [float(q) for q in quantiles],
            )
        except ForecasterError as exc:
            raise RequestError(f"{type(exc).__name__}: {exc}", error_code=INVALID_PARAMETER_VALUE) from exc
        out[MODEL_NAME_COLUMN] = self.model_name
        out[MODEL_VERSION_COLUMN] = self.model_version
        return out


def _registered_version(name: str, run_id: str) -> str:
    """The registry version made from run ``run_id``, else ``run:<run_id>`` (no registry reachable, or
    the model was loaded from its run); empty for models logged before these were recorded."""
    if not run_id:
        return ""
    try:
        from mlflow import MlflowClient

        versions = MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception:  # no tracking server reachable from where the model is served
        versions = []
    return str(max(int(v.version) for v in versions)) if versions else f"run:{run_id}"


class RequestError(MlflowException):
    """A request that fails our checks: MLflow's server answers it with HTTP 400 and this message alone.

    The scoring server rewrites an error's message to "Failed to predict data '<the whole request>'.
    Error: ...", echoing the client's data back; this keeps our message only.
    """

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        prefix = getattr(self, "_message", None)
        if prefix is not None and value.endswith(prefix) and value.startswith("Failed to predict data"):
            return
        self._message = value


mlflow.models.set_model(ForecasterPyfunc())
