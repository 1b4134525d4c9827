"""The probe of the prediction surfaces (2026-12-07, docs/reliability.md): what the MLflow pyfunc takes is
what `forecaster predict` takes, and it is checked by the model's own validation alone.

A real trained model in a real MLflow store (one, shared by the module), loaded with
`mlflow.pyfunc.load_model` as a user or `mlflow models serve` loads it."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from pipelines import steps
from tests.synthetic import tiny_registry

pytestmark = pytest.mark.slow  # a trained, registered model (the module's fixture)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfaces")
    with tiny_registry(root) as (_, data):
        history = pd.read_csv(data, parse_dates=["ds"])
        yield steps.load("models:/tiny@champion"), mlflow.pyfunc.load_model("models:/tiny@champion"), history


def _forecasts(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["unique_id", "forecast"]].reset_index(drop=True)


def test_the_pyfunc_takes_integer_targets_and_times_with_a_utc_offset_as_forecaster_predict_does(model):
    """Before: MLflow's signature (``y: double``, ``ds: datetime``) refused both before the model ran, with
    "Failed to enforce schema of data '<the whole frame>'"; `forecaster predict` takes both."""
    loaded, pyfunc, history = model
    counts = history.assign(y=history["y"].round().astype("int64"))
    expected = steps.forecast(loaded, counts, horizon=3)
    got = pyfunc.predict(counts, params={"horizon": 3})
    pd.testing.assert_frame_equal(_forecasts(got), _forecasts(expected))

    naive = pyfunc.predict(history, params={"horizon": 3})
    for times in (history["ds"].dt.tz_localize("UTC"),                         # a zone-aware column
                  history["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")):     # text with an offset, as JSON sends it
        got = pyfunc.predict(history.assign(ds=times), params={"horizon": 3})
        pd.testing.assert_frame_equal(_forecasts(got), _forecasts(naive))
        assert (got["ds"].values == naive["ds"].values).all()  # one time line in UTC, as batch prediction


@pytest.mark.parametrize(("change", "error", "names"), [
    (lambda h: h.assign(y=h["y"] > 300), "ColumnTypeError: target must be numeric, not bool", "column: 'y'"),
    (lambda h: h.drop(columns="ds"), "MissingColumnError: missing column(s) ['ds']", "column: 'ds'"),
    (lambda h: h.assign(ds=h["ds"].astype("int64")), "ColumnTypeError: time column must be datetime64",
     "column: 'ds'"),
])
def test_a_wrong_frame_gets_the_models_typed_error_not_mlflows_echo_of_the_frame(model, change, error, names):
    """Before: MLflow's schema check answered these (a boolean target was refused in Python but turned into
    1.0/0.0 and forecast from JSON), its message the repr of the client's frame."""
    _, pyfunc, history = model
    with pytest.raises(MlflowException) as caught:  # the model's RequestError (made per load) is one
        pyfunc.predict(change(history))
    message = str(caught.value)
    assert message.startswith(error) and names in message
    assert "Failed to enforce schema" not in message and "S0 2024-01-01" not in message


@pytest.mark.parametrize("ids", [[["S0"]], [{"id": "S0"}]])
def test_ids_given_as_lists_or_dicts_get_the_typed_error_not_a_type_error(model, ids):
    """MLflow hands the inputs and instances forms over as parsed JSON (no input schema converts them), so an
    id may be a list or an object: the size check counted the ids with ``nunique`` and raised ``TypeError:
    unhashable type`` (HTTP 400 with MLflow's stack trace and the echo of the request), not our one line."""
    _, pyfunc, history = model
    rows = history.tail(30).to_dict(orient="records")
    for row in rows:
        row["unique_id"] = ids[0]
    with pytest.raises(MlflowException) as caught:
        pyfunc.predict(rows)
    message = str(caught.value)
    assert message.startswith("ColumnTypeError: id column must hold only strings or only integers"), message
    assert "column: 'unique_id'" in message


@pytest.mark.parametrize("twice", ["unique_id", "y"])
def test_a_frame_naming_a_column_twice_gets_the_typed_error(model, twice):
    """A ``dataframe_split`` body may list a column twice, and nothing converts it now: the size check and
    validation raised "The truth value of a Series is ambiguous" (a ValueError: MLflow's stack trace)."""
    _, pyfunc, history = model
    frame = pd.concat([history, history[[twice]]], axis=1)
    with pytest.raises(MlflowException) as caught:
        pyfunc.predict(frame)
    assert str(caught.value).startswith(f"ColumnTypeError: column(s) ['{twice}'] appear more than once"), caught.value


def test_a_version_whose_files_were_removed_is_one_line_naming_it_exit_2(tmp_path):
    """Before: MLflow's "INFO ... No artifacts found to download" line, then "cannot read its MLmodel
    (FileNotFoundError: ... '/tmp/forecaster-model-<pid>-.../model/MLmodel')", a temporary path already
    removed, as if the model's files were not ours."""
    import os
    import shutil
    import subprocess

    from tests.synthetic import cli_command

    with tiny_registry(tmp_path) as (uri, data):
        for logged in list(tmp_path.rglob("MLmodel")):
            shutil.rmtree(logged.parent)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        out = tmp_path / "f.csv"
        proc = subprocess.run([*cli_command(), "predict", "--model", "models:/tiny@champion", "--input", str(data),
                               "--output", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "forecaster: model error: cannot fetch models:/tiny/1: its artifact store holds none of its files (removed "
        "or moved since it was logged): register a version again from a run that has its model"]
    assert not out.exists() and not list(tmp_path.glob(".f.csv*"))
