"""Issue 29, part A: the scheduled job never forecasts with (or compares against) a version that saw data
after the as-of; SIGTERM and SIGINT stop a training with one line, a FAILED run and nothing left behind.
Real trainings, real processes and signals, a real MLflow store in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.config import load_config
from pipelines import run as job
from pipelines import steps
from pipelines.cli import EXIT_INTERRUPTED, EXIT_TERMINATED
from tests import stores
from tests.pipelines.test_scheduled_job import _job
from tests.synthetic import hourly_frame

pytestmark = pytest.mark.slow


def _data_end(client: MlflowClient, name: str, version: str) -> pd.Timestamp:
    return pd.Timestamp(client.get_run(client.get_model_version(name, version).run_id).data.params["data.end"])


def test_a_past_as_of_forecasts_only_with_a_version_trained_at_or_before_it(tmp_path, job_store):
    config = load_config(_job(tmp_path, "asof", retrain_every="1D"))
    client = MlflowClient()
    said: list[str] = []
    job.run(config, "2024-01-13T00:00", say=said.append)  # version 1: trained on data up to 2024-01-13 00:00
    assert client.get_registered_model("asof").aliases == {"champion": 1, "challenger": 1}

    said.clear()
    past = job.run(config, "2024-01-11T00:00", say=said.append)
    text = "\n".join(said)
    assert "retrain: the champion (version 1) was trained on data up to 2024-01-13 00:00:00, after the as-of" in text
    assert past.retrained and past.model_version == "2"
    assert "predict: version 2 (trained now on the data up to the as-of and promoted over seasonal naive; " \
           "today's champion (version 1) was trained on data after the as-of and keeps its alias)" in text
    assert "champion v1" not in text  # never compared with the version that saw the future
    assert client.get_registered_model("asof").aliases == {"champion": 1, "challenger": 1}  # today's, unchanged
    run = client.get_run(past.run_id)
    assert run.data.tags[job.FORECAST_REASON_TAG].startswith("trained now on the data up to the as-of")
    assert client.get_model_version("asof", "2").tags["promotion.champion_version"] == ""

    said.clear()
    outcomes = job.backfill(config, "2024-01-11T12:00", "2024-01-12T00:00", "12h", say=said.append)
    text = "\n".join(said)
    assert [o.model_version for o in outcomes] == ["2", "3"]
    assert "[20240111T120000] predict: version 2 (the champion (version 1) was trained on data up to " in text
    assert "version 2 is the newest version promoted when it was trained" in text
    # The as-of a day after version 2's training retrains, and compares with version 2, not version 1.
    assert client.get_model_version("asof", "3").tags["promotion.champion_version"] == "2"
    assert client.get_registered_model("asof").aliases == {"champion": 1, "challenger": 1}
    for folder in (tmp_path / "out").glob("as_of=*"):
        manifest = json.loads((folder / "forecasts.parquet").with_name("manifest.json").read_text())
        as_of = pd.Timestamp(manifest["as_of"])
        assert _data_end(client, "asof", manifest["model_version"]) <= as_of, folder.name
    runs = client.search_runs([mlflow.get_experiment_by_name("asof").experiment_id])
    assert all(job.FORECAST_REASON_TAG in r.data.tags for r in runs if r.info.status == "FINISHED")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)])
def test_a_signal_during_training_ends_with_one_line_a_failed_run_and_no_temporary_files(tmp_path, job_store, sig,
                                                                                         code):
    config = _job(tmp_path, "stopped")
    text = config.read_text().replace("\nepochs = 1\n", "\nepochs = 200\npatience = 200\n")
    config.write_text(text)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "FORECASTER_MLRUNS": job_store, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "train", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 300
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "backtest fit: epoch 2/" in line:  # a run is open and the network is training
            proc.send_signal(sig)
            break
        assert time.monotonic() < deadline
    stderr = "".join(seen) + proc.stdout.read()  # both streams: the log's lines and ours
    proc.wait(timeout=120)
    assert proc.returncode == code, stderr
    ours = [line for line in stderr.splitlines() if line.startswith("forecaster:")]
    assert ours == [f"forecaster: stopped by {sig.name}: its MLflow run (if one began) is marked KILLED, temporary "
                    f"files are removed, and no output was replaced"], stderr
    assert "Traceback" not in stderr
    (run,) = MlflowClient().search_runs([mlflow.get_experiment_by_name("stopped").experiment_id])
    assert run.info.status == "KILLED"
    assert not list(tmpdir.iterdir())


def test_checked_model_copies_a_killed_process_left_are_cleared_by_the_next_load(tmp_path, job_store, monkeypatch):
    config = load_config(_job(tmp_path, "copies"))
    job.run(config, "2024-01-13T00:00", say=lambda line: None)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmpdir))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmpdir / f"{steps.MODEL_COPY_PREFIX}{dead.pid}-abc"
    (left / "artifacts").mkdir(parents=True)
    alive = tmpdir / f"{steps.MODEL_COPY_PREFIX}{os.getppid()}-def"  # a live process's copy stays
    alive.mkdir()
    steps.load("models:/copies@champion")
    assert sorted(p.name for p in tmpdir.iterdir()) == [alive.name]
    assert Path(str(left)).exists() is False


_FILL_DURING_TRAINING = r"""
set -u
mount -t tmpfs -o size=64m tmpfs "$STORE_DIR" || exit 90
mkdir "$STORE_DIR/mlruns" && cp "$EMPTY_STORE" "$STORE_DIR/mlruns/mlflow.db"
"$PYTHON" -m pipelines.cli train "$CONFIG" --quiet > "$LOGS/out" 2> "$LOGS/err" &
pid=$!
while ! grep -q "backtest:" "$LOGS/err"; do kill -0 $pid 2> /dev/null || break; sleep 0.2; done
free=$(df -k --output=avail "$STORE_DIR" | tail -1)
head -c $(( (free - 100) * 1024 )) /dev/zero > "$STORE_DIR/filler" 2> /dev/null
wait $pid
echo $? > "$LOGS/rc"
"$PYTHON" -c '
# In one process (each would pay the imports): the statuses the failed training left, then, the space
# freed, what the next training would do (mark_abandoned_runs) and the statuses after it.
import os
from forecaster.ops import tracking; tracking.configure()
import mlflow; from mlflow import MlflowClient
from pipelines.steps import mark_abandoned_runs
def statuses(name):
    e = mlflow.get_experiment_by_name("full")
    with open(os.path.join(os.environ["LOGS"], name), "w") as out:
        out.write(" ".join(r.info.status for r in MlflowClient().search_runs([e.experiment_id])))
statuses("statuses")
os.remove(os.path.join(os.environ["STORE_DIR"], "filler"))
mark_abandoned_runs(MlflowClient(), mlflow.get_experiment_by_name("full").experiment_id)
statuses("statuses_after")'
"""


def test_a_disk_filling_up_during_training_is_one_line_and_the_run_is_not_left_running(tmp_path):
    """A real full file system: a 64 MB tmpfs holding the store, filled to its last 100 KB once the
    backtest is done, in a mount namespace of its own (`unshare`: no mount is left on this machine)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine cannot make a mount namespace (unshare -rm) for a small tmpfs")
    config = _job(tmp_path, "full")
    store_dir, logs = tmp_path / "store", tmp_path / "logs"
    store_dir.mkdir()
    logs.mkdir()
    env = {**os.environ, "FORECASTER_MLRUNS": str(store_dir / "mlruns"), "STORE_DIR": str(store_dir),
           "LOGS": str(logs), "CONFIG": str(config), "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3",
           "EMPTY_STORE": str(stores.template())}  # a fresh store on the tmpfs, without MLflow's migrations
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("FORECASTER_DEBUG", None)
    done = subprocess.run(["unshare", "-rm", "sh", "-c", _FILL_DURING_TRAINING], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    stderr = (logs / "err").read_text()
    assert (logs / "rc").read_text().strip() == "1", stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("forecaster: disk full: no space left on the device holding "), stderr
    status = (logs / "statuses").read_text().split()
    # Marked FAILED where the store could take it; else the line says so, and the next training does it.
    assert status == ["FAILED"] or (status == ["RUNNING"] and "is left RUNNING (the store cannot take its end)"
                                    in line), (status, line)
    assert (logs / "statuses_after").read_text().split() == ["FAILED"]


def test_constant_series_are_counted_and_said_and_an_all_constant_frame_is_refused(tmp_path, job_store, caplog):
    from forecaster.errors import DataError
    from pipelines.train import train

    data = hourly_frame(n_series=3, length=300)
    flat = data.assign(y=0.0)
    config = load_config(_job(tmp_path, "flat", data=flat))
    with pytest.raises(DataError, match=r"every series is constant \(3 series\): there is nothing to learn"):
        train(config, verbose=0)
    assert mlflow.get_experiment_by_name("flat") is None  # refused before the store was touched

    data.loc[data["unique_id"] == "S2", "y"] = 0.0  # one all-zero series among others
    config = load_config(_job(tmp_path, "onezero", data=data))
    with caplog.at_level("INFO", logger="forecaster.train"):
        result = train(config, verbose=0)
    said = [r.getMessage() for r in caplog.records if "undefined" in r.getMessage()]
    assert said == ["backtest: mase undefined for 1 series (constant or all-zero history: its scale is 0), left "
                    "out of the mean the promotion compares: S2"]
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert metrics["backtest.undefined_mase_series"] == 1


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)])
def test_a_signal_sent_as_the_command_starts_gets_the_one_line_and_the_code(tmp_path, sig, code):
    """A signal in the command's first second, while Python imports (the handlers were installed after
    numpy, pandas and the parameter table: SIGTERM ended it with 143 and no line, SIGINT with a traceback).
    Sent before the interpreter even starts: blocked in this thread while the child is started (a child
    inherits the mask), it is pending from the child's first instruction, and the command takes it at the
    first moment it can. Wherever that is, the line and the code are the documented ones."""
    from tests.synthetic import cli_command

    data = tmp_path / "history.csv"
    hourly_frame(n_series=2, length=100).to_csv(data, index=False)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "TMPDIR": str(tmpdir)}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    try:
        proc = subprocess.Popen([*cli_command(), "train", "--data", str(data), "--horizon", "6", "--epochs", "1",
                                 "--quiet", "--no-register"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=tmp_path)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == code, (out, err)
    assert err.splitlines() == [f"forecaster: stopped by {sig.name}: its MLflow run (if one began) is marked "
                                f"KILLED, temporary files are removed, and no output was replaced"], err
    assert out == ""
    assert not (tmp_path / "mlflow.db").exists() and not list(tmpdir.iterdir())
