"""Issue 29, part A, item 6: series ids are text, read and returned exactly as written, through every
way a history reaches a model (CSV, Parquet, the pyfunc's frame, the `forecaster predict` command).
A real trained model in a real MLflow store (one, shared by the module)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.data.io import read_frame, write_frame_atomic
from pipelines import steps
from tests.synthetic import hourly_frame, tiny_registry

pytestmark = pytest.mark.slow  # a trained, registered model (the module's fixture) and the CLI


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    with tiny_registry(root) as (uri, _):
        # The pyfunc: what `mlflow models serve` and the Spark engine's workers load.
        yield uri, root, steps.load("models:/tiny@champion"), mlflow.pyfunc.load_model("models:/tiny@champion")


def _history(ids: list[str]) -> pd.DataFrame:
    """One full-length series (the network forecasts it, not the fallback) per id."""
    base = hourly_frame(n_series=len(ids), length=72)
    return base.assign(unique_id=base["unique_id"].map(dict(zip([f"S{i}" for i in range(len(ids))], ids))))


_PADDED = st.builds(lambda n, width: str(n).zfill(width), st.integers(0, 999), st.integers(1, 5))
_WORDS = st.sampled_from(["NA", "N/A", "null", "NULL", "nan", "NaN", "None", "#N/A", "-1.#IND", "1e3", "1.0",
                          "+1", "-0", "0x1F", "True", "false", " 7", "7 ", "Köln", "東京", "São Paulo", "a,b",
                          'say "hi"'])
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(
    lambda s: s.strip() != "" or s == " ")
IDS = st.lists(st.one_of(_PADDED, _WORDS, _TEXT), min_size=1, max_size=4, unique=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=IDS)
def test_ids_come_back_exactly_as_given_through_csv_parquet_and_the_pyfunc(model, ids):
    _, _, loaded, pyfunc = model
    history = _history(ids)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("history.csv", "history.parquet"):
            source, target = Path(tmp) / name, Path(tmp) / f"forecasts{Path(name).suffix}"
            write_frame_atomic(history, source)
            out = steps.forecast(loaded, read_frame(source), horizon=3)  # what `forecaster predict` does
            write_frame_atomic(out, target)
            back = read_frame(target)
            assert sorted(pd.unique(back["unique_id"])) == sorted(ids), name  # output: sorted by id
            assert len(back) == 3 * len(ids) and back["forecast"].notna().all()
    # The pyfunc (what `mlflow models serve` and Spark call) with the frame a JSON request decodes to.
    served = pyfunc.predict(history[["unique_id", "ds", "y"]], params={"horizon": 3})
    assert sorted(pd.unique(served["unique_id"])) == sorted(ids)


def test_zero_padded_and_na_ids_are_separate_series_through_the_cli(model, tmp_path, monkeypatch, capsys):
    """The `forecaster predict` command's entry point with argv as typed, in this process: the file is read
    and written by the command's own code (test_predict_pipeline.py runs the real process)."""
    from pipelines.cli import EXIT_OK, main

    uri, _, _, _ = model
    ids = ["001", "01", "1", "NA"]
    source = tmp_path / "hist.csv"
    _history(ids).to_csv(source, index=False)
    assert "\n001," in source.read_text() and "\nNA," in source.read_text()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code = main(["predict", "--model", "models:/tiny@champion", "--input", str(source), "--output",
                 str(tmp_path / "f.csv"), "--horizon", "2"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "series=4" in out
    lines = (tmp_path / "f.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in lines) == ["001", "001", "01", "01", "1", "1", "NA", "NA"]
