"""A team's tracking server: `mlflow server` on PostgreSQL with proxied artifacts, used through
MLFLOW_TRACKING_URI by the real `forecaster` command and the pipelines (tests/postgres_server.py starts
both servers, once for the session).

The tiny config (4 M4 Hourly series, horizon 8, input 24, 8 units, 1 epoch) trains in about 15 s. Two CLI
trainings of two models start at once against the server (module fixture); one of them is the model the
other tests look at.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
from mlflow import MlflowClient

from forecaster.config import load_config
from forecaster.ops import tracking
from tests.synthetic import cli_command

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MODELS = ("pg_alpha", "pg_beta")  # names used by no other test file: the server is shared by the session
SERIES, HORIZON = 4, 8

CONFIG = """\
[model]
name = "{name}"
horizon = {horizon}
quantiles = [0.1, 0.5, 0.9]
combine = "theta"  # not "auto": see tests/synthetic.py's tiny_config

[data]
source = "package:m4_hourly"
freq = "h"
series_limit = {series}

[network]
units = 8
head_units = 16

[training]
input_size = 24
epochs = 1
batch_size = 64
patience = 2
max_windows_per_series = 16
seed = 0

[backtest]
n_windows = 2
step = {horizon}

[promotion]
metric = "mase"
margin = -10.0   # a one-epoch network need not beat seasonal naive: version 1 becomes champion anyway
"""


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pg-configs")
    paths = {}
    for name in MODELS:
        paths[name] = folder / f"{name}.toml"
        paths[name].write_text(CONFIG.format(name=name, series=SERIES, horizon=HORIZON))
    return paths


@pytest.fixture(scope="module")
def trained(postgres_mlflow, configs) -> dict[str, dict]:
    """`forecaster train` of both models, two processes started at once against the server."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": postgres_mlflow.uri}
    logs = configs[MODELS[0]].parent
    procs = {}
    for name in MODELS:
        # Output to files, not pipes: a process must never wait for us to read the other's pipe.
        with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
            procs[name] = subprocess.Popen([*cli_command(), "train", str(configs[name]), "--quiet"], env=env,
                                           stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        for proc in procs.values():
            proc.wait(timeout=600)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    return {name: {"returncode": proc.returncode, "stdout": (logs / f"{name}.out").read_text(),
                   "stderr": (logs / f"{name}.err").read_text()} for name, proc in procs.items()}


@pytest.fixture
def server(postgres_mlflow, monkeypatch):
    """MLFLOW_TRACKING_URI at the server, for this process and the subprocesses it starts."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_mlflow.uri)
    tracking.configure()
    return postgres_mlflow


def _history(path: Path) -> Path:
    from forecaster.datasets import load_m4_hourly

    frame = load_m4_hourly(split="train")
    frame = frame[frame["unique_id"].isin(pd.unique(frame["unique_id"])[:SERIES])]
    frame.to_parquet(path)
    return path


def test_cli_training_registers_the_champion_and_uploads_artifacts_through_the_server(server, trained):
    result = trained["pg_alpha"]
    assert result["returncode"] == 0, result["stderr"][-3000:]
    assert "registered pg_alpha version 1: champion" in result["stdout"]

    client = _client(server.uri)
    assert client.get_registered_model("pg_alpha").aliases == {"champion": "1", "challenger": "1"}
    version = client.get_model_version("pg_alpha", "1")
    assert version.tags["promotion.decision"] == "champion"
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    # Artifacts went through the server (--serve-artifacts): the run and the logged model know only the
    # proxy's URI ...
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"data_report.json", "evaluation"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")} >= {
        "evaluation/backtest_per_series.csv", "evaluation/loss_curves.png"}
    model_id = version.source.removeprefix("models:/")
    assert client.get_logged_model(model_id).artifact_location.startswith("mlflow-artifacts:/")
    # ... and the server wrote them into its artifacts destination.
    files = [p for p in server.artifacts.rglob("*") if p.is_file()]
    assert {p.name for p in files if run.info.run_id in p.parts} >= {"data_report.json", "backtest_per_series.csv"}
    assert {p.name for p in files if model_id in p.parts} >= {"MLmodel", "mlflow_model.py"}

    # The run and the registry live in PostgreSQL itself.
    with psycopg2.connect(server.backend) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone() == ("FINISHED",)
        cursor.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'pg_alpha' ORDER BY alias")
        assert cursor.fetchall() == [("challenger", 1), ("champion", 1)]
    connection.close()


def test_batch_prediction_by_alias_equals_the_embedded_store(server, trained, configs, tmp_path, monkeypatch):
    """The same config and seed trained against the embedded store give the same backtest and, through
    `forecaster predict` by alias against the server, the same forecasts."""
    assert trained["pg_alpha"]["returncode"] == 0, trained["pg_alpha"]["stderr"][-3000:]
    history = _history(tmp_path / "history.parquet")
    out_path = tmp_path / "server.parquet"
    # The CLI's prediction from the server runs while this process trains against the embedded store.
    with open(tmp_path / "cli.out", "w") as out, open(tmp_path / "cli.err", "w") as err:
        cli = subprocess.Popen([*cli_command(), "predict", "--model", "models:/pg_alpha@champion", "--input",
                                str(history), "--output", str(out_path)], env={**os.environ}, stdout=out,
                               stderr=err, stdin=subprocess.DEVNULL)
    try:
        from pipelines.predict import predict
        from pipelines.train import train

        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        monkeypatch.setenv("FORECASTER_MLRUNS", str(tmp_path / "embedded"))
        assert tracking.configure().startswith("sqlite:///")  # the embedded store, same config, same seed
        local = train(load_config(configs["pg_alpha"]), verbose=0)
        predict("models:/pg_alpha@champion", history, tmp_path / "embedded.parquet")
        cli.wait(timeout=600)
    finally:
        cli.kill()
        cli.wait()
    assert cli.returncode == 0, (tmp_path / "cli.err").read_text()[-3000:]
    assert f"series={SERIES}" in (tmp_path / "cli.out").read_text()
    from_server = pd.read_parquet(out_path)
    assert len(from_server) == SERIES * HORIZON
    assert set(from_server["model_name"]) == {"pg_alpha"} and set(from_server["model_version"]) == {"1"}
    assert set(from_server["model"]) == {"lstm"}

    client = _client(server.uri)
    server_run = client.get_run(client.get_model_version("pg_alpha", "1").run_id)
    assert local.version == "1" and local.decision.promoted
    for key, value in local.backtest.summary["lstm"].items():
        assert server_run.data.metrics[f"backtest.lstm.{key}"] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    from_embedded = pd.read_parquet(tmp_path / "embedded.parquet")
    pd.testing.assert_frame_equal(from_server, from_embedded, check_exact=False, rtol=1e-6, atol=1e-6)


def test_a_second_training_records_its_decision_and_keeps_the_aliases_consistent(server, trained, configs):
    """Same model, data and seed, margin 0: an equal backtest does not beat the champion, so version 2
    is `challenger` only, its tags carry the decision and the champion's figure read from the server."""
    from pipelines.train import train

    assert trained["pg_alpha"]["returncode"] == 0, trained["pg_alpha"]["stderr"][-3000:]
    config = load_config(configs["pg_alpha"])
    config = replace(config, promotion=replace(config.promotion, margin=0.0))
    second = train(config, verbose=0)
    assert second.version == "2" and not second.decision.promoted
    client = _client(server.uri)
    first_run = client.get_run(client.get_model_version("pg_alpha", "1").run_id)
    recorded = first_run.data.metrics["backtest.lstm.mase"]
    assert second.decision.champion == recorded  # the same figure, to the last bit, through PostgreSQL
    assert second.decision.challenger == pytest.approx(recorded, rel=1e-12)  # same seed: same model

    tags = client.get_model_version("pg_alpha", "2").tags
    assert tags["promotion.decision"] == "challenger"
    assert tags["promotion.champion_version"] == "1"
    assert tags["promotion.basis"].startswith("recorded out-of-sample backtests")
    assert "does not beat champion v1" in tags["promotion.reason"]
    assert client.get_model_version("pg_alpha", "1").tags["promotion.decision"] == "champion"
    assert client.get_registered_model("pg_alpha").aliases == {"champion": "1", "challenger": "2"}
    run = client.get_run(second.run_id)
    assert run.data.tags["registry.version"] == "2" and run.data.tags["promotion.decision"] == "challenger"


def test_two_trainings_at_once_both_register_their_first_version(server, trained):
    client = _client(server.uri)
    runs = {}
    for name in MODELS:
        assert trained[name]["returncode"] == 0, f"{name}: {trained[name]['stderr'][-3000:]}"
        version = client.get_model_version(name, "1")
        assert version.tags["promotion.decision"] == "champion"
        assert client.get_registered_model(name).aliases["champion"] == "1"
        runs[name] = client.get_run(version.run_id).info
    a, b = (runs[name] for name in MODELS)
    assert a.run_id != b.run_id and a.experiment_id != b.experiment_id
    assert a.start_time < b.end_time and b.start_time < a.end_time, "the two trainings did not overlap"



def test_the_scheduled_job_runs_against_the_server_and_a_rerun_changes_nothing(server, trained, tmp_path):
    """`forecaster run` with the server as its store: the champion trained by `forecaster train` forecasts
    (its data ended 7 hours before the as-of, within a horizon, and a week has not passed), the job's run is
    on the server."""
    assert trained["pg_beta"]["returncode"] == 0, trained["pg_beta"]["stderr"][-3000:]
    config = tmp_path / "pg_beta_job.toml"
    config.write_text(CONFIG.format(name="pg_beta", series=SERIES, horizon=HORIZON)
                      + f'\n[output]\npath = "{tmp_path / "out"}"\n')
    command = [*cli_command(), "run", str(config), "--as-of", "2017-01-01T06:00"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retrain: not due" in done.stdout and "predict: version 1" in done.stdout
    frame = pd.read_parquet(tmp_path / "out" / "as_of=20170101T060000" / "forecasts.parquet")
    assert len(frame) == SERIES * HORIZON and set(frame["model_version"]) == {"1"}

    client = _client(server.uri)
    experiment = client.get_experiment_by_name("pg_beta").experiment_id
    (job_run,) = client.search_runs([experiment], filter_string="tags.`forecaster.job` = 'pg_beta'")
    assert job_run.info.status == "FINISHED"
    assert job_run.data.tags["forecaster.as_of"] == "2017-01-01 06:00:00"
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert again.returncode == 99, again.stderr[-3000:]
    assert len(client.search_runs([experiment], filter_string="tags.`forecaster.job` = 'pg_beta'")) == 1
