"""Batch prediction: a registry model by alias or version, a history file in, a forecast file out.

The model URI is resolved to one version first (``models:/name@champion`` -> ``models:/name/7``) so a
promotion during the run cannot mix two models; the output names that version in every row, and is
written atomically (temporary file, then rename): a reader never sees half a file, and a failed run
leaves the previous file as it was.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from forecaster import tracking
from forecaster.data.io import check_destination, check_source, read_frame, write_frame_atomic
from forecaster.errors import ConfigError, ModelError
from forecaster.forecaster import MODEL_NAME_COLUMN, MODEL_VERSION_COLUMN
from forecaster.integrity import MODEL_HASHES_TAG, changed_files

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
URI_FORMS = ("models:/<name>@<alias>", "models:/<name>/<version>", "models:/<name>/latest",
             "models:/<name>/<stage>", "runs:/<run_id>/<path>", "a local model folder")


@dataclass
class LoadedModel:
    """A model resolved to one registry version (or one run, or one folder), loaded once.

    ``name`` and ``version`` go on every forecast row: the registered name and version number, or for
    a run the run's model path and ``run:<run_id>``, or for a folder its path and ``local``.
    """

    name: str
    version: str
    uri: str
    pyfunc: Any

    @property
    def forecaster(self) -> Any:
        """The `LSTMForecaster` inside the pyfunc (our own checks replace MLflow's schema enforcement)."""
        return self.pyfunc.unwrap_python_model().forecaster


def _registered_version(client: MlflowClient, name: str, ref: str) -> str:
    """The version number that ``models:/<name>/<ref>`` names: a number, ``latest`` or a stage."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"cannot read registered model {name!r}: {exc.message}") from None
    if not versions:
        raise ConfigError(f"no registered model named {name!r} (or it has no versions)")
    numbers = sorted(int(v.version) for v in versions)
    if ref.isdigit():
        if int(ref) not in numbers:
            raise ConfigError(f"model {name!r} has no version {ref}; its versions: {numbers}")
        return ref
    if ref.lower() == "latest":
        return str(numbers[-1])
    staged = [int(v.version) for v in versions if (v.current_stage or "").lower() == ref.lower()]
    if not staged:
        raise ConfigError(f"model {name!r} has no version in stage {ref!r} (and {ref!r} is not a version number)")
    return str(max(staged))


def resolve(model_uri: str) -> tuple[str, str, str]:
    """(name, version, the URI to load) of any model URI that `mlflow.pyfunc.load_model` takes here."""
    registry_match = _REGISTRY_URI.match(model_uri)
    if registry_match:
        name, client = registry_match["name"], MlflowClient()
        if registry_match["alias"]:
            try:
                version = str(client.get_model_version_by_alias(name, registry_match["alias"]).version)
            except mlflow.exceptions.MlflowException as exc:
                raise ConfigError(f"no version of model {name!r} holds alias {registry_match['alias']!r}: "
                                  f"{exc.message}") from None
        else:
            version = _registered_version(client, name, registry_match["ref"])
        return name, version, f"models:/{name}/{version}"
    run_match = _RUN_URI.match(model_uri)
    if run_match:
        try:
            MlflowClient().get_run(run_match["run"])
        except mlflow.exceptions.MlflowException:
            raise ConfigError(f"no run {run_match['run']!r} in the tracking store ({model_uri})") from None
        return run_match["path"], f"run:{run_match['run']}", model_uri
    local = Path(model_uri.removeprefix("file://"))
    if "://" not in model_uri.removeprefix("file://") and local.is_dir():
        if not (local / "MLmodel").is_file():
            raise ConfigError(f"{local} is a folder but not an MLflow model (no MLmodel file in it)")
        return str(local), "local", str(local.resolve())
    raise ConfigError(f"cannot resolve model {model_uri!r}; give one of: {', '.join(URI_FORMS)}")


def _run_of(uri: str) -> str | None:
    """The run that logged the model ``uri`` (a resolved ``models:/name/N`` or ``runs:/``), else None."""
    if uri.startswith("runs:/"):
        return uri.split("/")[1]
    match = _REGISTRY_URI.match(uri)
    if match and match["ref"]:
        return MlflowClient().get_model_version(match["name"], match["ref"]).run_id
    return None


def fetch_verified(uri: str, into: Path) -> str:
    """Download the model at ``uri`` into ``into`` and check every file against the SHA-256 recorded in
    its run when it was logged; returns the local folder to load. ModelError if a file differs, is
    missing or was added. Models logged before hashes were recorded load as they are."""
    run_id = _run_of(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
        recorded = None if run_id is None else MlflowClient().get_run(run_id).data.tags.get(MODEL_HASHES_TAG)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot fetch {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    if recorded is not None:
        changed = changed_files(json.loads(recorded), local)
        if changed:
            raise ModelError(f"{uri}: files {changed[:5]} differ from the SHA-256 recorded in run {run_id} when "
                             f"the model was logged (changed, removed or added): refusing to load it")
    return str(local)


def load(model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` against the configured registry, check its files, and load that version once."""
    tracking.configure()
    name, version, uri = resolve(model_uri)
    try:
        # The checked copy is what loads; the model reads all of it into memory, so it goes afterwards.
        with tempfile.TemporaryDirectory(prefix="forecaster-model-") as tmp:
            pyfunc = mlflow.pyfunc.load_model(uri if version == "local" else fetch_verified(uri, Path(tmp)))
    except ModelError:
        raise
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot load {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    if not hasattr(pyfunc.unwrap_python_model(), "forecaster"):
        raise ModelError(f"{uri} is an MLflow model but not one of ours (no forecaster inside)")
    return LoadedModel(name, version, uri, pyfunc)


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
    check_destination(output_path)
    if engine == "local":  # the Spark engine also reads a folder of Parquet parts, and checks it itself
        check_source(input_path)
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
