"""Where runs and models are tracked: the embedded store under mlruns/, or MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

STORE_DIR = Path(__file__).resolve().parent.parent / "mlruns"


def default_store_dir() -> Path:
    """The embedded store's folder: ``FORECASTER_MLRUNS`` if set, else ``mlruns/`` in the project."""
    return Path(os.environ.get("FORECASTER_MLRUNS", STORE_DIR)).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server works unchanged), else the embedded SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def configure() -> str:
    """Point MLflow's tracking and registry at `tracking_uri()`; returns the URI.

    Set explicitly because MLflow's own default depends on the working directory (a ./mlflow.db, or
    a file store it refuses since 3.13 when ./mlruns/<n>/meta.yaml exists).
    """
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        default_store_dir().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created with its artifacts under the embedded store if local."""
    configure()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if tracking_uri().startswith("sqlite:///"):
        artifact_location = (default_store_dir() / "artifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_location)


def ui_command() -> str:
    """The command that opens the MLflow UI on this store."""
    uri = tracking_uri()
    return f"mlflow ui --backend-store-uri {uri}"
