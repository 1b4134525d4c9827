"""The scheduled job (`forecaster run`): idempotent, locked, kill-safe, resumable, monitored.

Real processes, real SIGKILL, a real MLflow store in a temporary folder, real files.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.contract import AS_OF_COLUMN, output_schema
from forecaster.data.schema import Columns
from pipelines.cli import EXIT_DATA, EXIT_LOCKED, EXIT_NOTHING_TO_DO, EXIT_OK, main
from tests.synthetic import hourly_frame

pytestmark = pytest.mark.slow

START = pd.Timestamp("2024-01-01 00:00")  # hourly_frame's first hour; 300 hours end 2024-01-13 11:00
A = "2024-01-11T00:00"


def _job(tmp: Path, name: str, retrain_every: str = "1D", data: pd.DataFrame | None = None,
         warm_start: bool = False) -> Path:
    """A tiny job config (3 series, horizon 6) writing to tmp/out, its data in tmp/history.csv."""
    (hourly_frame(n_series=3, length=300) if data is None else data).to_csv(tmp / "history.csv", index=False)
    config = tmp / f"{name}.toml"
    config.write_text(textwrap.dedent(f"""
        [model]
        name = "{name}"
        horizon = 6
        combine = "theta"  # not "auto": see tests/synthetic.py's tiny_config
        [data]
        source = "history.csv"
        freq = "h"
        [network]
        units = 4
        head_units = 8
        [training]
        input_size = 24
        epochs = 1
        batch_size = 64
        max_windows_per_series = 10
        [backtest]
        n_windows = 2
        [promotion]
        margin = -10.0   # the tiny model always beats the bar: these tests are about the job, not accuracy
        [schedule]
        retrain_every = "{retrain_every}"
        warm_start = {str(warm_start).lower()}
        warm_epochs = 1
        [monitor]
        degradation = 1000.0  # retrains come from the cadence here (degradation: tests/evaluation/test_monitoring.py)
        [output]
        path = "out"
    """))
    return config


def _cli(*args: str, env_store: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORECASTER_MLRUNS": env_store}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _tree(root: Path) -> dict[str, str]:
    """Every visible file under root with its SHA-256 (hidden staging folders and the lock excluded)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not any(part.startswith(".") for part in
                                                                       p.relative_to(root).parts)}


def _store_state(name: str) -> tuple[int, list[str], dict[str, str]]:
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], run_view_type=3) if experiment else []
    versions = sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))
    aliases = dict(client.get_registered_model(name).aliases) if versions else {}
    return len(runs), [str(v) for v in versions], {k: str(v) for k, v in aliases.items()}


@pytest.fixture
def store(job_store):
    return job_store


def test_a_run_writes_one_whole_folder_and_a_rerun_changes_nothing(tmp_path, store, capsys):
    config = _job(tmp_path, "daily")
    done = _cli("run", str(config), "--as-of", A, env_store=store)
    assert done.returncode == EXIT_OK, done.stderr
    label = "20240111T000000"
    for stage in ("prepare", "monitor", "retrain", "backtest", "final fit", "log", "register", "promote", "predict",
                  "write"):
        assert f"[{label}] {stage}:" in done.stdout, (stage, done.stdout)
    folder = tmp_path / "out" / f"as_of={label}"
    frame = pd.read_parquet(folder / "forecasts.parquet")
    expected = [name for name, _ in output_schema(Columns(), (0.1, 0.5, 0.9), as_of=True)]
    assert list(frame.columns) == expected
    assert len(frame) == 3 * 6 and (frame[AS_OF_COLUMN] == pd.Timestamp(A)).all()
    assert set(frame["model_name"]) == {"daily"} and set(frame["model_version"]) == {"1"}
    assert frame["ds"].min() == pd.Timestamp(A) + pd.Timedelta("1h")  # nothing after the as-of was used

    (run,) = MlflowClient().search_runs([mlflow.get_experiment_by_name("daily").experiment_id])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["forecaster.job"] == "daily" and tags["forecaster.as_of"] == str(pd.Timestamp(A))
    assert len(tags["forecaster.config_sha256"]) == 16 and len(tags["forecaster.data_sha256"]) == 16

    before, files = _store_state("daily"), _tree(tmp_path / "out")
    assert main(["run", str(config), "--as-of", A]) == EXIT_NOTHING_TO_DO
    assert "nothing to do" in capsys.readouterr().out
    assert _store_state("daily") == before and _tree(tmp_path / "out") == files

    assert main(["run", str(config), "--as-of", A, "--force"]) == EXIT_OK
    runs, _, _ = _store_state("daily")
    assert runs == before[0] + 1
    assert "retrain: not due" in capsys.readouterr().out  # the champion was trained at this very as-of

    # `forecaster report` scores the written forecasts against the actuals now in the data source, in a
    # process of its own as a user runs it, and imports no TensorFlow (its seconds are not a report's).
    code = "import sys\nfrom pipelines.cli import main\nprint('exit', main(sys.argv[1:]), 'tensorflow' in sys.modules)"
    env = {**os.environ, "FORECASTER_MLRUNS": store}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", code, "report", str(config)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert "job daily: 1 as-of time(s) scored, 0 partial (actuals still arriving)" in printed
    assert printed[-1] == "exit 0 False"
    assert (tmp_path / "out" / "_report" / "accuracy.png").stat().st_size > 0


def test_a_series_whose_data_ended_before_the_as_of_is_left_out_and_named_not_forecast_into_the_past(
        tmp_path, store, capsys):
    """S2 stopped 100 hours before the as-of: forecast from its own last time, its six rows lay days before
    the as-of in a folder "as of" it (exit 0, nothing said). Series that stopped are left out and named."""
    data = hourly_frame(n_series=3, length=300)
    data = data[(data["unique_id"] != "S2") | (data["ds"] < pd.Timestamp(A) - pd.Timedelta("100h"))]
    config = _job(tmp_path, "ended", data=data)
    assert main(["run", str(config), "--as-of", A]) == EXIT_OK
    out = capsys.readouterr().out
    assert "predict: 1 series left out, their data ended more than the horizon before the as-of" in out
    assert out.split("series left out, their data ended", 1)[1].splitlines()[0].endswith(": S2")
    folder = tmp_path / "out" / "as_of=20240111T000000"
    frame = pd.read_parquet(folder / "forecasts.parquet")
    assert set(frame["unique_id"]) == {"S0", "S1"} and (frame["ds"] > pd.Timestamp(A)).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["ended_series"] == {"count": 1, "series": ["S2"]} and manifest["series"] == 2


def test_backfill_runs_in_order_monitors_and_resumes_after_a_failure(tmp_path, store, capsys):
    data = hourly_frame(n_series=3, length=300).astype({"y": object})
    bad = data.index[(data["unique_id"] == "S1") & (data["ds"] == pd.Timestamp("2024-01-11 15:00"))]
    data.loc[bad, "y"] = "n/a (sensor reset)"  # arrives between the 2nd and the 3rd as-of
    config = _job(tmp_path, "backfill", retrain_every="1D", data=data, warm_start=True)
    args = ["run", str(config), "--from", "2024-01-11T00:00", "--to", "2024-01-12T12:00", "--every", "12h"]
    assert main(args) == EXIT_DATA
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("as_of=*")) == ["as_of=20240111T000000", "as_of=20240111T120000"]

    hourly_frame(n_series=3, length=300).to_csv(tmp_path / "history.csv", index=False)  # the data is fixed
    assert main(args) == EXIT_OK
    assert sorted(p.name for p in out.glob("as_of=*")) == [
        "as_of=20240111T000000", "as_of=20240111T120000", "as_of=20240112T000000", "as_of=20240112T120000"]
    assert not list(out.glob(".as_of=*"))

    client = MlflowClient()
    runs = client.search_runs([mlflow.get_experiment_by_name("backfill").experiment_id],
                              order_by=["attributes.start_time ASC"])
    by_as_of = {r.data.tags["forecaster.as_of"]: r for r in runs if r.info.status == "FINISHED"}
    retrain = {k[:16]: r.data.tags["forecaster.retrain"] for k, r in by_as_of.items()}
    assert retrain["2024-01-11 00:00"].startswith("no champion")
    assert retrain["2024-01-11 12:00"].startswith("within the cadence")
    assert retrain["2024-01-12 00:00"].startswith("cadence")  # a day after the last training
    # Each run named for its job and as-of, of kind "run", described: a retraining one as a training is.
    assert {r.info.run_name for r in by_as_of.values()} == {
        "run backfill 2024-01-11T00:00", "run backfill 2024-01-11T12:00", "run backfill 2024-01-12T00:00",
        "run backfill 2024-01-12T12:00"}
    assert {r.data.tags["forecaster.kind"] for r in by_as_of.values()} == {"run"}
    assert "retrain not due" in by_as_of[str(pd.Timestamp("2024-01-11 12:00"))].data.tags["mlflow.note.content"]
    assert "Backtest on 2 window(s)" in by_as_of[str(pd.Timestamp("2024-01-12 00:00"))].data.tags[
        "mlflow.note.content"]
    # The second as-of scored the first one's forecasts against the actuals that had arrived.
    second = by_as_of[str(pd.Timestamp("2024-01-11 12:00"))]
    assert 0 < second.data.metrics["monitor.mase"] < 50
    assert "monitor.coverage_80" in second.data.metrics
    assert [a.path for a in client.list_artifacts(second.info.run_id, "monitoring")] == [
        "monitoring/accuracy_over_time.png", "monitoring/by_as_of.csv", "monitoring/by_step.csv"]
    printed = capsys.readouterr().out
    assert "[20240112T000000] retrain: warm start from version 1" in printed
    assert "epoch(s) on all the data (warm start from the champion)" in printed
    assert main(args) == EXIT_NOTHING_TO_DO  # everything is done now

    # An as-of before the champion's training data: it must not forecast with what it saw later.
    assert main(["run", str(config), "--as-of", "2024-01-10T12:00"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "after the as-of" in printed and "from the champion" not in printed
    assert "epoch(s) on all the data (warm start from the backtest model)" in printed


def test_a_second_run_exits_with_the_lock_code_and_a_killed_holder_blocks_nothing(tmp_path, store):
    config = _job(tmp_path, "locked")
    (tmp_path / "out").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom forecaster.ops import locks\n"
         "with locks.hold(sys.argv[1], 0, 'test'):\n    print('held', flush=True)\n    time.sleep(120)\n",
         str(tmp_path / "out" / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(config), "--as-of", A]) == EXIT_LOCKED
        assert main(["run", str(config), "--as-of", A, "--wait", "1"]) == EXIT_LOCKED
        assert not list((tmp_path / "out").glob("as_of=*"))
        assert mlflow.get_experiment_by_name("locked") is None  # refused before touching the store
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["run", str(config), "--as-of", A]) == EXIT_OK  # the dead holder's lock went with it


def _run_until(config: Path, as_of: str, stage: str, store: str) -> subprocess.Popen:
    """Start a run and SIGKILL it as soon as it reports ``stage``."""
    env = {**os.environ, "FORECASTER_MLRUNS": store, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config), "--as-of", as_of],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if f"] {stage}:" in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before reaching {stage!r}"
    return proc


def test_killed_at_each_stage_loses_nothing_and_the_next_run_completes(tmp_path, store):
    config = _job(tmp_path, "killed", retrain_every="1D")
    assert main(["run", str(config), "--as-of", A]) == EXIT_OK
    out = tmp_path / "out"
    first = _tree(out)
    client = MlflowClient()

    def check(moved: bool = False) -> None:
        assert {k: v for k, v in _tree(out).items() if k in first} == first  # earlier forecasts untouched
        _, _, aliases = _store_state("killed")  # the store reads
        if not moved:
            assert aliases["champion"] == "1"
        else:  # killed after promoting: the new champion has the figures that put it there
            assert client.get_model_version("killed", aliases["champion"]).tags["promotion.decision"] == "champion"

    # 6 hours later the champion is not due for retraining: the run forecasts only.
    for stage in ("prepare", "monitor", "predict"):
        _run_until(config, "2024-01-11T06:00", stage, store)
        check()
        assert not (out / "as_of=20240111T060000").exists()
    _run_until(config, "2024-01-11T06:00", "write", store)  # killed after its folder was renamed in
    assert (out / "as_of=20240111T060000" / "manifest.json").is_file()

    # A day later it retrains: killed during the backtest fit, the final fit, before and after promotion.
    for stage in ("retrain", "backtest", "register", "promote"):
        _run_until(config, "2024-01-12T00:00", stage, store)
        check(moved=stage == "promote")
        assert not (out / "as_of=20240112T000000").exists()
    assert main(["run", str(config), "--as-of", "2024-01-12T00:00"]) == EXIT_OK
    assert not list(out.glob(".as_of=*"))  # what killed writers left was cleared

    experiment = mlflow.get_experiment_by_name("killed").experiment_id
    statuses = [r.info.status for r in client.search_runs([experiment])]
    assert "RUNNING" not in statuses
    assert statuses.count("FAILED") == 7  # every killed run (one died before starting its run), marked later
    undecided = [v for v in client.search_model_versions("name = 'killed'") if "promotion.decision" not in v.tags]
    assert not undecided  # versions whose training died before deciding are tagged so
