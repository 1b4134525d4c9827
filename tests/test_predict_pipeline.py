"""Batch prediction from the registry: local engine, CLI, fallbacks, atomic output."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from pipelines.predict import predict
from tests.synthetic import hourly_frame, tiny_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    with tiny_registry(root) as (uri, _):
        yield uri, root


def _history_with_new_and_short_series(tmp):
    frame = hourly_frame()
    new = hourly_frame(n_series=1, seed=9).assign(unique_id="NEW")  # never seen in training
    short = hourly_frame(n_series=1, length=30, seed=3).assign(unique_id="SHORT")  # < input_size 48
    path = tmp / "scoring.parquet"
    pd.concat([frame, new, short]).to_parquet(path)
    return path


def test_local_engine_forecasts_every_series_and_marks_the_fallback(registry):
    _, tmp = registry
    path = _history_with_new_and_short_series(tmp)
    out_path = tmp / "forecasts.parquet"
    summary = predict("models:/tiny@champion", path, out_path, horizon=6, quantiles=[0.1, 0.9])
    out = pd.read_parquet(out_path)
    assert summary["series"] == 8 and summary["fallback_series"] == 1 and summary["model"] == "models:/tiny/1"
    assert list(out.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9", "model", "model_name",
                                 "model_version"]
    assert len(out) == 8 * 6
    assert set(out.loc[out.unique_id == "SHORT", "model"]) == {"seasonal_naive"}
    assert set(out.loc[out.unique_id != "SHORT", "model"]) == {"lstm"}
    assert set(out["model_name"]) == {"tiny"} and set(out["model_version"]) == {"1"}
    short = pd.read_parquet(path).query("unique_id == 'SHORT'")
    # Seasonal naive repeats the last 24 hours: the first forecast hour equals the value 24 hours back.
    assert out.loc[out.unique_id == "SHORT", "forecast"].iloc[0] == pytest.approx(short["y"].iloc[-24])
    first_time = out.loc[out.unique_id == "NEW", "ds"].iloc[0]
    assert first_time == pd.read_parquet(path).query("unique_id == 'NEW'")["ds"].max() + pd.Timedelta("1h")


def test_cli_writes_csv_and_a_failed_run_leaves_the_previous_file(registry):
    uri, tmp = registry
    path = _history_with_new_and_short_series(tmp)
    out_path = tmp / "out" / "forecasts.csv"
    out_path.parent.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "forecaster.cli", "predict", "--model", "models:/tiny@champion",
           "--input", str(path), "--output", str(out_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "series=8" in ok.stdout
    before = out_path.read_bytes()
    assert len(pd.read_csv(out_path)) == 8 * 12

    bad = tmp / "bad.csv"
    frame = hourly_frame(n_series=2)
    frame.loc[3, "ds"] = frame.loc[2, "ds"]  # a duplicate (id, ds)
    frame.to_csv(bad, index=False)
    failed = subprocess.run([*cmd[:-4], "--input", str(bad), "--output", str(out_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert failed.returncode == 3 and "S0" in failed.stderr
    assert out_path.read_bytes() == before
    assert sorted(p.name for p in out_path.parent.iterdir()) == ["forecasts.csv"]  # no temporary left over


def test_unknown_alias_is_a_clear_error(registry):
    _, tmp = registry
    from forecaster.errors import ConfigError

    with pytest.raises(ConfigError, match="alias 'nope'"):
        predict("models:/tiny@nope", tmp / "scoring.parquet", tmp / "x.parquet")
    with pytest.raises(ConfigError, match="models:/<name>@<alias>"):
        predict("runs:/abc/model", tmp / "scoring.parquet", tmp / "x.parquet")
