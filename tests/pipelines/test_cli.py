"""The `forecaster` command as a scheduler calls it: exit codes and messages, in a real process where the
process is the point (help, usage), through its entry point in this one otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.cli import EXIT_DATA, EXIT_OK, main
from tests.synthetic import hourly_frame

pytestmark = pytest.mark.slow


def _run(args, tmp_path, **env):
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **env}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=600, env=full_env)


def test_help_says_what_each_command_does(tmp_path):
    top = _run(["--help"], tmp_path)
    assert top.returncode == 0 and "train" in top.stdout
    sub = _run(["train", "--help"], tmp_path)
    assert sub.returncode == 0 and "--horizon" in sub.stdout and "champion" in sub.stdout


def test_train_from_a_data_file_without_a_config(tmp_path, monkeypatch, capsys):
    """In this process (the command's own entry point, argv as typed): the real processes that train are
    tests/models/test_short_series.py's, the first hour's main job and the signal tests of test_reliability_job.py."""
    data = tmp_path / "shop.parquet"
    hourly_frame(n_series=3, length=200).to_parquet(data)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(["train", "--data", str(data), "--horizon", "12", "--epochs", "1", "--quiet"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err[-3000:]
    assert "registered shop version 1" in out
    assert "mlflow ui --backend-store-uri" in out


def test_bad_data_exits_3_and_names_the_fault(tmp_path, monkeypatch, capsys):
    """In this process: the real process that exits 3 is test_predict_pipeline.py's failed prediction."""
    frame = hourly_frame(n_series=2, length=200)
    frame.loc[7, "y"] = float("nan")
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["train", "--data", str(data), "--horizon", "12", "--quiet"]) == EXIT_DATA
    err = capsys.readouterr().err
    assert "S0" in err and "2024-01-01T07:00" in err


def test_bad_usage_exits_2(tmp_path):
    result = _run(["train", "--data", "x.csv"], tmp_path)
    assert result.returncode == 2 and "--horizon" in result.stderr
    missing = _run(["train", str(tmp_path / "nope.toml")], tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
