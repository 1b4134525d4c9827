"""The Spark prediction engine against the local one: same model, same history, same numbers.

A tiny model is trained once into a temporary MLflow store; one local[2] SparkSession serves the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from forecaster.errors import ConfigError, DuplicateRowsError
from pipelines.predict import predict
from pipelines.spark_predict import _session, predict_spark
from pipelines.steps import forecast as forecast_frame
from pipelines.steps import load
from tests.synthetic import hourly_frame, streaming_history, tiny_registry

pytestmark = [pytest.mark.spark, pytest.mark.slow]

KEYS = ["unique_id", "ds"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny registered model (input_size 48, horizon 12) in a store of its own, loaded once: the same
    ``tiny`` as the serving and prediction files', trained once per test process (`stores.trained_once`)."""
    with tiny_registry(tmp_path_factory.mktemp("spark-store")):
        yield load("models:/tiny@champion")


@pytest.fixture(scope="module")
def spark():
    session = _session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def history():
    """Five trained series, one never seen in training (longer than input_size) and one too short."""
    seen = hourly_frame(n_series=5, length=240)
    new = hourly_frame(n_series=1, length=100, seed=7, start="2024-01-03").assign(unique_id="NEW")
    short = hourly_frame(n_series=1, length=20, seed=9, start="2024-01-05").assign(unique_id="SHORT")
    return pd.concat([seen, new, short], ignore_index=True)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
    for name in ("unique_id", "model", "model_name", "model_version"):
        frame[name] = frame[name].astype(str)
    frame["ds"] = pd.to_datetime(frame["ds"]).astype("datetime64[ns]")
    return frame


def assert_same_forecasts(spark_out: pd.DataFrame, local_out: pd.DataFrame) -> None:
    assert list(spark_out.columns) == list(local_out.columns)
    a, b = _sorted(spark_out), _sorted(local_out)
    assert len(a) == len(b)
    assert (a["unique_id"] == b["unique_id"]).all()
    assert (a["ds"] == b["ds"]).all()
    for name in ("model", "model_name", "model_version"):
        assert (a[name] == b[name]).all(), name
    numeric = [c for c in b.columns if c == "forecast" or c.startswith("q")]
    # float32 network: batched with other series (Spark's buckets), a value can move by a few ulps.
    np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-5, atol=1e-6)


def test_parquet_in_parquet_out_matches_the_local_engine(model, spark, history, tmp_path):
    source, target = tmp_path / "history.parquet", tmp_path / "forecast.parquet"
    history.to_parquet(source, index=False)
    summary = predict(model.uri, source, target, engine="spark")
    assert summary["engine"] == "spark" and summary["model"] == model.uri
    assert summary["rows"] == 7 * 12 and summary["series"] == 7 and summary["fallback_series"] == 1

    assert target.is_dir() and list(target.glob("part-*.parquet"))  # a Parquet dataset directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    out = pd.read_parquet(target)
    assert out["ds"].dtype.kind == "M" and out["forecast"].dtype == "float64"
    local = forecast_frame(model, history)
    assert_same_forecasts(out, local)
    marks = out.groupby("unique_id")["model"].unique().map(list).to_dict()
    assert marks["SHORT"] == ["seasonal_naive"] and marks["NEW"] == ["lstm"] and marks["S0"] == ["lstm"]
    assert set(out["model_name"]) == {"tiny"} and set(out["model_version"]) == {model.version}


def test_csv_in_csv_out_with_horizon_and_quantiles(model, spark, history, tmp_path):
    source, target = tmp_path / "history.csv", tmp_path / "forecast.csv"
    history.to_csv(source, index=False)
    summary = predict_spark(model, source, target, horizon=5, quantiles=[0.9, 0.1], buckets=3)
    assert summary == {"rows": 7 * 5, "series": 7, "fallback_series": 1, "buckets": 3}
    assert target.is_file()
    out = pd.read_csv(target, dtype={"model_version": str})
    assert list(out.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9", "model", "model_name",
                                 "model_version"]
    assert out["ds"].str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$").all()  # ISO 8601, like the local engine
    local = forecast_frame(model, pd.read_csv(source), horizon=5, quantiles=[0.9, 0.1])
    assert_same_forecasts(out, local)


def test_a_failing_run_leaves_the_previous_output_intact(model, spark, history, tmp_path):
    target = tmp_path / "forecast.parquet"
    good = tmp_path / "good.parquet"
    history.to_parquet(good, index=False)
    predict_spark(model, good, target)
    before = sorted((p.name, p.read_bytes()) for p in target.iterdir())

    bad = tmp_path / "bad.parquet"
    pd.concat([history, history.iloc[[3]]], ignore_index=True).to_parquet(bad, index=False)  # a duplicate row
    with pytest.raises(DuplicateRowsError, match="S0"):
        predict_spark(model, bad, target)
    with pytest.raises(ConfigError, match="horizon"):
        predict_spark(model, good, target, horizon=13)
    after = sorted((p.name, p.read_bytes()) for p in target.iterdir())
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "forecast.parquet", "good.parquet"]

    # A successful run replaces it (the previous dataset moved aside, then removed).
    predict_spark(model, good, target, horizon=3)
    assert len(pd.read_parquet(target)) == 7 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "forecast.parquet", "good.parquet"]


def test_spark_output_equals_the_streaming_engines_on_a_sample(spark, tmp_path):
    """The product's default combination (``tiny_stream``, the streaming tests' model), a shuffled file:
    the Spark engine's rows equal the local streaming engine's. Here, not in the streaming tests' file,
    so that it runs in this module's Spark session: a JVM's start less in the suite."""
    root = tmp_path / "store"
    root.mkdir()
    source = tmp_path / "history.parquet"
    streaming_history(n_new=20).sample(frac=1.0, random_state=4).to_parquet(source, index=False)
    local = tmp_path / "local.parquet"
    spark_out = tmp_path / "spark.parquet"
    with tiny_registry(root, name="tiny_stream", combine="auto"):
        predict("models:/tiny_stream@champion", source, local, chunk_series=5)
        predict("models:/tiny_stream@champion", source, spark_out, engine="spark")  # the module's session
    keys = ["unique_id", "ds"]
    want = pd.read_parquet(local)
    got = pd.read_parquet(spark_out).sort_values(keys, kind="stable").reset_index(drop=True)
    got["ds"] = got["ds"].astype(want["ds"].dtype)
    assert list(got.columns) == list(want.columns) and len(got) == len(want) == 27 * 12
    for name in ("unique_id", "model", "model_name", "model_version"):
        assert (got[name].astype(str) == want[name].astype(str)).all(), name
    assert (got["ds"] == want["ds"]).all()
    for name in ("forecast", "q0.1", "q0.5", "q0.9"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9)


# What Spark and the JVM printed on stderr before pipelines/spark_quiet.py: none of it is ours.


def _cli_predict(source: Path, target: Path) -> subprocess.CompletedProcess:
    """`forecaster predict --engine spark` in a process of its own (a JVM of its own), on the module's model."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "predict", "--model", "models:/tiny@champion",
         "--input", str(source), "--output", str(target), "--engine", "spark"],
        capture_output=True, text=True, timeout=600, env={**os.environ})


def test_a_spark_failure_prints_our_one_line_only_not_the_jvm_stack(model, history, tmp_path):
    """Bad data with the Spark engine, a real process: our one-line error is all of stderr, exit 3 (no JVM
    start-up notice either: the session starts the same way on success, see tests/pipelines/test_spark_quiet.py)."""
    bad = tmp_path / "bad.parquet"
    pd.concat([history, history.iloc[[3]]], ignore_index=True).to_parquet(bad, index=False)
    result = _cli_predict(bad, tmp_path / "out.parquet")
    assert result.returncode == 3, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines[:10]  # no JVM start-up notice, no JVM stack, no Python traceback
    assert lines[0].startswith("forecaster: data error: ") and "S0" in lines[0], lines
