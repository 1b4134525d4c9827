"""Shared test set-up: quiet TensorFlow logs, a deterministic seed per test."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The embedded store of any test that does not name its own goes to a temporary folder, never to the
# project's mlruns/ (subprocesses inherit this too).
# The folder goes when the process that made it ends: tests leave nothing behind in /tmp either.
os.environ["FORECASTER_MLRUNS"] = tempfile.mkdtemp(prefix="forecaster-test-mlruns-")

import forecaster  # noqa: F401, I001  (first: it quiets TensorFlow's start-up lines, in xdist workers too)
import keras
import pytest

from tests import stores

atexit.register(shutil.rmtree, os.environ["FORECASTER_MLRUNS"], ignore_errors=True)
# Made here, at the import in pytest's own process, so that xdist's workers (started later) inherit its
# name: what the session trains once for all its processes lies there (`stores.trained_once`).
stores.shared_folder()

PROJECT_STORE = Path(__file__).resolve().parent.parent / "mlruns"


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    if not folder.exists():
        return []
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture(scope="session", autouse=True)
def _project_store_untouched():
    """The suite leaves the project's own MLflow store exactly as it found it."""
    before = _listing(PROJECT_STORE)
    yield
    assert _listing(PROJECT_STORE) == before, "a test wrote into the project's mlruns/"


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """MLflow's process-wide tracking and registry URIs as they were before the test: a command run in
    the test process (`pipelines.cli.main`) sets both to its store, and a later test's
    `MlflowClient(uri)` would read that store's registry instead of its own."""
    def uris() -> tuple:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        return tracking_utils, registry_utils

    # The JAX layer run never imports MLflow: nothing to keep there (None is MLflow's "not set").
    before = (uris()[0]._tracking_uri, uris()[1]._registry_uri) if "mlflow" in sys.modules else (None, None)
    yield
    if "mlflow" in sys.modules:
        tracking_utils, registry_utils = uris()
        tracking_utils._tracking_uri, registry_utils._registry_uri = before


@pytest.fixture
def job_store(tmp_path, monkeypatch):
    """An embedded store in the test's folder (``FORECASTER_MLRUNS``, inherited by the processes it
    starts), the working directory there too, as a scheduled job's host has them; yields its path."""
    path = tmp_path / "mlruns"
    stores.seed(path / "mlflow.db")  # fresh, as the job's processes would make it, without the migrations
    monkeypatch.setenv("FORECASTER_MLRUNS", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    from forecaster.ops import tracking

    tracking.configure()
    return str(path)


@pytest.fixture(scope="session")
def postgres_mlflow():
    """A real `mlflow server` on a throwaway PostgreSQL cluster (tests/postgres_server.py), for the tests
    marked ``postgres``: ``.uri`` is its http URI. Missing PostgreSQL skips them, but fails them in CI
    (scripts/test.sh installs it there)."""
    from tests.postgres_server import PostgresMissingError, find_bin_dir, postgres_mlflow_server

    try:
        find_bin_dir()
    except PostgresMissingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with postgres_mlflow_server() as server:
        yield server


def pytest_collection_modifyitems(config, items):
    """Test files with end-to-end (``slow``) tests run first: ``scripts/test.sh`` hands whole files to two
    workers in this order, and a file of several minutes handed out last keeps one worker busy alone at
    the end (the job tests' file, alphabetically late, did). The order within a file is kept."""
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: files and tests keep their order otherwise
    # A fresh SQLite store in this process starts as a copy of one MLflow's migrations built once here
    # (tests/stores.py): seconds saved on each of the suite's many fresh stores. Not in the layer's run
    # under JAX (scripts/test.sh): it never opens a store, and MLflow's import would be its 1.6 s more.
    if keras.backend.backend() == "tensorflow":
        stores.install()
