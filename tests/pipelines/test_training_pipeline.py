"""The training pipeline against a real MLflow store (SQLite in a temporary folder)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.config import ConfigError, load_config
from forecaster.errors import DuplicateRowsError
from forecaster.ops.registry import aliases
from pipelines.steps import make_forecaster
from pipelines.train import train
from tests.synthetic import hourly_frame, tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "history.csv"
    hourly_frame().to_csv(path, index=False)
    return path


def test_a_run_logs_params_metrics_artifacts_and_registers_a_challenger(store, data_file):
    result = train(tiny_config(data_file, margin=0.99), verbose=0)
    client = MlflowClient(store)
    run = client.get_run(result.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["horizon"] == "12" and params["training.epochs"] == "2" and params["data.freq"] == "h"
    assert params["data.n_series"] == "6" and len(params["data.sha256"]) == 16
    for model in ("lstm", "seasonal_naive"):
        for name in ("mae", "rmse", "smape", "mase", "pinball", "coverage_80"):
            assert np.isfinite(metrics[f"backtest.{model}.{name}"])
    assert len(client.get_metric_history(result.run_id, "loss")) == 2
    assert len(client.get_metric_history(result.run_id, "backtest_fit.val_loss")) == 2
    # The backtest held back 24 of 240 hours: the final fit went on from the backtest model
    # (final_fit = "auto"), so it starts where that one ended.
    first = {k: client.get_metric_history(result.run_id, k)[0].value for k in ("loss", "backtest_fit.loss")}
    assert params["training.final_fit"] == "auto" and params["resolved.final_fit"] == "warm"
    assert first["loss"] < first["backtest_fit.loss"]
    assert tags["version.tensorflow"] and tags["version.mlflow"].startswith("3.17")
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert artifacts == {"evaluation/backtest_per_series.csv", "evaluation/loss_curves.png",
                         "evaluation/forecast_vs_actuals.png"}
    # Registered, challenger, and (margin 99 %) not champion; the decision is on the version.
    assert aliases(client, "tiny") == {"challenger": "1"}
    version = client.get_model_version("tiny", "1")
    assert version.tags["promotion.decision"] == "challenger"
    assert "does not beat seasonal naive" in version.tags["promotion.reason"]
    assert float(version.tags["promotion.challenger_value"]) == pytest.approx(metrics["backtest.lstm.mase"], 1e-4)


def test_promotion_moves_champion_only_when_the_rule_says_so(store, data_file):
    first = train(tiny_config(data_file, margin=-10.0), verbose=0)  # any finite score passes
    assert first.decision.promoted
    client = MlflowClient(store)
    assert aliases(client, "tiny") == {"champion": "1", "challenger": "1"}

    second = train(tiny_config(data_file, margin=0.99), verbose=0)  # asks for a 99 % improvement
    assert not second.decision.promoted
    assert second.decision.champion_version == "1" and second.decision.champion is not None
    assert aliases(client, "tiny") == {"champion": "1", "challenger": "2"}
    assert client.get_model_version("tiny", "2").tags["promotion.champion_version"] == "1"


def test_logged_model_predicts_the_same_in_a_fresh_process(store, data_file, tmp_path):
    result = train(tiny_config(data_file, margin=-10.0), verbose=0)
    history = pd.read_csv(data_file, parse_dates=["ds"])
    history.to_parquet(tmp_path / "in.parquet")
    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    in_process = model.predict(history, params={"horizon": 6, "quantiles": [0.1, 0.9]})
    assert list(in_process.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9", "model", "model_name",
                                        "model_version"]
    assert len(in_process) == 6 * 6
    script = textwrap.dedent(f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({store!r})
        model = mlflow.pyfunc.load_model("models:/tiny/{result.version}")
        out = model.predict(pd.read_parquet({str(tmp_path / 'in.parquet')!r}),
                            params={{"horizon": 6, "quantiles": [0.1, 0.9]}})
        out.to_parquet({str(tmp_path / 'out.parquet')!r})
    """)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(fresh, in_process, check_dtype=False)


def test_fit_refuses_bad_frames_with_typed_errors(data_file):
    frame = hourly_frame(n_series=2, length=80)
    frame = pd.concat([frame, frame.iloc[[5]]])
    with pytest.raises(DuplicateRowsError, match="S0"):
        make_forecaster(tiny_config(data_file)).fit(frame)


def test_config_files_are_checked(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[model]\nname = "m"\nhorizon = 4\n[training]\nepochz = 3\n')
    with pytest.raises(ConfigError, match="epochz"):
        load_config(path)
    path.write_text('[model]\nname = "m"\nhorizon = 0\n')
    with pytest.raises(ConfigError, match="horizon"):
        load_config(path)
    config = load_config("models/m4_hourly.toml")
    assert config.horizon == 48 and config.data.source == "package:m4_hourly"
