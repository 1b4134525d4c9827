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
from tests.test_scheduled_job import _job

pytestmark = pytest.mark.slow
RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes"


def _project(tmp: Path) -> Path:
    """A project folder with the test's venv as .venv and a tiny job config."""
    home = tmp / "home"
    home.mkdir()
    (home / ".venv").symlink_to(Path(sys.prefix))
    return _job(home, "recipe")


def _bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_the_airflow_dag_command_runs_the_job_as_of_the_interval_end(tmp_path, monkeypatch):
    source = (RECIPES / "airflow_dag.py").read_text()
    values = {node.targets[0].id: node.value.value for node in ast.parse(source).body
              if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)}
    command = values["COMMAND"]
    assert "{{ data_interval_end }}" in command and "skip_on_exit_code=99" in source
    config = _project(tmp_path)
    # What Airflow renders for an interval ending at midnight UTC.
    rendered = command.replace("{{ data_interval_end }}", "2024-01-11T00:00:00+00:00")
    env = {"FORECASTER_HOME": str(config.parent), "FORECASTER_CONFIG": config.name,
           "FORECASTER_MLRUNS": str(tmp_path / "mlruns")}
    first = _bash(rendered, env)
    assert first.returncode == EXIT_OK, first.stderr
    assert (config.parent / "out" / "as_of=20240111T000000" / "forecasts.parquet").is_file()
    assert _bash(rendered, env).returncode == EXIT_NOTHING_TO_DO  # a retry or re-run: skipped


def test_the_crontab_line_runs_the_job_as_of_the_current_hour(tmp_path):
    lines = [line for line in (RECIPES / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    assignments = dict(line.split("=", 1) for line in lines if "=" in line.split()[0])
    (entry,) = [line for line in lines if line not in [f"{k}={v}" for k, v in assignments.items()]]
    command = " ".join(entry.split()[5:]).replace("\\%", "%")  # cron's five time fields, and its % escape
    config = _project(tmp_path)
    command = command.replace("models/m4_hourly.toml", config.name)
    env = {"FORECASTER_HOME": str(config.parent), "FORECASTER_MLRUNS": str(tmp_path / "mlruns")}
    done = _bash(command, env)
    assert done.returncode == EXIT_OK, done.stderr
    hour = pd.Timestamp.now(tz="UTC").floor("h").tz_localize(None)
    folders = [p.name for p in (config.parent / "out").glob("as_of=*")]
    assert folders in ([f"as_of={hour:%Y%m%dT%H%M%S}"], [f"as_of={hour - pd.Timedelta('1h'):%Y%m%dT%H%M%S}"])
    log = (config.parent / "forecaster.log").read_text()
    assert "write:" in log and "Traceback" not in log
