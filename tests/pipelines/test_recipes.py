"""The cron line and the Airflow DAG in docs/recipes/ work as written: their commands, read out of the
files, run the job (only the project folder and the config are pointed at a temporary copy)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import EXIT_NOTHING_TO_DO, EXIT_OK
from tests import stores
from tests.pipelines.test_scheduled_job import _job
from tests.synthetic import hourly_frame

pytestmark = pytest.mark.slow
RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"


def _bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def _cron_command() -> str:
    lines = [line for line in (RECIPES / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    (entry,) = [line for line in lines if "=" not in line.split()[0]]  # the rest set variables
    return " ".join(entry.split()[5:]).replace("\\%", "%")  # cron's five time fields, and its % escape


def _dag_command() -> str:
    source = (RECIPES / "airflow_dag.py").read_text()
    assert "skip_on_exit_code=99" in source
    values = {node.targets[0].id: node.value.value for node in ast.parse(source).body
              if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)}
    assert "{{ data_interval_end }}" in values["COMMAND"]
    return values["COMMAND"]


def test_the_crontab_line_and_the_airflow_dag_run_the_job(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".venv").symlink_to(Path(sys.prefix))  # the project's .venv, as the recipes expect
    # Data up to the current hour, as a scheduled job's source is (an as-of more than a horizon after the
    # data's end is refused: docs/jobs.md).
    hour = pd.Timestamp.now(tz="UTC").floor("h").tz_localize(None)
    # A week's cadence: the cron run, a day or two after the first, forecasts with the first one's champion
    # (retraining is the job's, tested in test_scheduled_job.py; here a training costs a process seconds).
    config = _job(home, "recipe", retrain_every="7D",
                  data=hourly_frame(n_series=3, length=300, start=str(hour - pd.Timedelta("299h"))))
    env = {"FORECASTER_HOME": str(home), "FORECASTER_MLRUNS": str(tmp_path / "mlruns")}
    stores.seed(tmp_path / "mlruns" / "mlflow.db")  # an empty store, without replaying MLflow's migrations

    # Airflow, as of yesterday's interval end (rendered as Airflow renders data_interval_end): the first
    # run trains on the data up to then and forecasts.
    midnight = hour.floor("D") - pd.Timedelta("1D")
    rendered = _dag_command().replace("{{ data_interval_end }}", f"{midnight:%Y-%m-%dT%H:%M:%S}+00:00")
    dag_env = {**env, "FORECASTER_CONFIG": config.name}
    first = _bash(rendered, dag_env)
    assert first.returncode == EXIT_OK, first.stderr
    assert "retrain: no champion" in first.stdout and "write:" in first.stdout
    assert (home / "out" / f"as_of={midnight:%Y%m%dT%H%M%S}" / "forecasts.parquet").is_file()
    assert _bash(rendered, dag_env).returncode == EXIT_NOTHING_TO_DO  # a retry or re-run: skipped

    # cron, as of the current hour (the next one, if the clock has turned since the data was made).
    done = _bash(_cron_command().replace("models/m4_hourly.toml", config.name), env)
    assert done.returncode == EXIT_OK, done.stderr
    folders = sorted(p.name for p in (home / "out").glob("as_of=*"))
    assert folders[0] == f"as_of={midnight:%Y%m%dT%H%M%S}" and folders[1] in (
        f"as_of={hour:%Y%m%dT%H%M%S}", f"as_of={hour + pd.Timedelta('1h'):%Y%m%dT%H%M%S}"), folders
    log = (home / "forecaster.log").read_text()
    assert "write:" in log and "Traceback" not in log
