"""Batch prediction: a registry model by alias or version, a history file in, a forecast file out.

The model URI is resolved to one version first (``models:/name@champion`` -> ``models:/name/7``) so a
promotion during the run cannot mix two models; the output names that version in every row, and is
written atomically (temporary file, then rename): a reader never sees half a file, and a failed run
leaves the previous file as it was.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from forecaster import tracking
from forecaster.data.io import read_frame, write_frame_atomic
from forecaster.errors import ConfigError

MODEL_NAME_COLUMN, MODEL_VERSION_COLUMN = "model_name", "model_version"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass
class LoadedModel:
    """A registry model resolved to one version, loaded once."""

    name: str
    version: str
    uri: str
    pyfunc: Any

    @property
    def forecaster(self) -> Any:
        """The `LSTMForecaster` inside the pyfunc (our own checks replace MLflow's schema enforcement)."""
        return self.pyfunc.unwrap_python_model().forecaster


def resolve(model_uri: str) -> tuple[str, str]:
    """(name, version) of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    match = _URI.match(model_uri)
    if not match:
        raise ConfigError(f"model URI must be models:/<name>@<alias> or models:/<name>/<version>, got {model_uri!r}")
    name = match["name"]
    if match["version"]:
        return name, match["version"]
    client = MlflowClient()
    try:
        return name, str(client.get_model_version_by_alias(name, match["alias"]).version)
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"no version of model {name!r} holds alias {match['alias']!r}: {exc.message}") from exc


def load(model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` against the configured registry and load that version once."""
    tracking.configure()
    name, version = resolve(model_uri)
    uri = f"models:/{name}/{version}"
    return LoadedModel(name, version, uri, mlflow.pyfunc.load_model(uri))


def forecast_frame(model: LoadedModel, history: pd.DataFrame, horizon: int | None = None,
                   quantiles: list[float] | None = None) -> pd.DataFrame:
    """The forecast frame for ``history``, with the model name and version on every row."""
    out = model.forecaster.predict(history, horizon=horizon, quantiles=quantiles)
    out[MODEL_NAME_COLUMN] = model.name
    out[MODEL_VERSION_COLUMN] = model.version
    return out


def predict(model_uri: str, input_path: str | Path, output_path: str | Path, horizon: int | None = None,
            quantiles: list[float] | None = None, engine: str = "local") -> dict[str, Any]:
    """Forecast every series of ``input_path`` into ``output_path`` (CSV or Parquet); returns a summary."""
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be 'local' or 'spark', got {engine!r}")
    started = time.perf_counter()
    model = load(model_uri)
    if engine == "spark":
        from pipelines.spark_predict import predict_spark

        summary = predict_spark(model, input_path, output_path, horizon=horizon, quantiles=quantiles)
    else:
        out = forecast_frame(model, read_frame(input_path), horizon=horizon, quantiles=quantiles)
        write_frame_atomic(out, output_path)
        summary = {"rows": len(out), "series": int(out[model.forecaster.columns_.id].nunique()),
                   "fallback_series": int(out.loc[out["model"] != "lstm", model.forecaster.columns_.id].nunique())}
    summary.update({"model": model.uri, "output": str(output_path), "engine": engine,
                    "seconds": round(time.perf_counter() - started, 3)})
    return summary
