"""Where runs and models are tracked: the embedded store under mlruns/, or MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import mlflow


def default_store_dir() -> Path:
    """The embedded store's folder: ``FORECASTER_MLRUNS`` if set, else ``mlruns/`` in the working directory.

    Never the package's own folder: installed from a wheel, that is site-packages.
    """
    return Path(os.environ.get("FORECASTER_MLRUNS", "mlruns")).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server works unchanged), else the embedded SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def configure() -> str:
    """Point MLflow's tracking and registry at `tracking_uri()`; returns the URI.

    Set explicitly because MLflow's own default depends on the working directory (a ./mlflow.db, or
    a file store it refuses since 3.13 when ./mlruns/<n>/meta.yaml exists).
    """
    uri = tracking_uri()
    # MLflow's download bars would fill a scheduler's log on every training and prediction.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    database = _sqlite_file(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``; with a SQLite store, its artifacts go to ``artifacts/`` beside the
    database file (a server's own artifact root otherwise)."""
    configure()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    database = _sqlite_file(tracking_uri())
    artifact_location = None if database is None else (database.resolve().parent / "artifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_location)


def ui_command() -> str:
    """How to open the MLflow UI on this store: a server's own address, else the `mlflow ui` command."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri} (the tracking server's UI)"
    return f"{_mlflow_command()} ui --backend-store-uri {uri}"


def _mlflow_command() -> str:
    """The ``mlflow`` command as it can be typed here: this interpreter's own (a virtual environment's
    ``bin/mlflow`` is not on PATH until it is activated), relative to the working directory when inside it."""
    beside = Path(sys.executable).parent / "mlflow"
    if not beside.is_file() or shutil.which("mlflow") == str(beside):
        return "mlflow"
    try:
        return str(Path(os.path.abspath(beside)).relative_to(Path.cwd()))
    except ValueError:
        return str(beside)
