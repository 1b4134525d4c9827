"""Promotion is fair (the champion is never scored on data it trained on) and safe (one at a time per
model; a training that died leaves no RUNNING run and no undecided version)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.errors import LockHeldError
from forecaster.ops import registry, tracking
from pipelines.train import train
from tests.synthetic import hourly_frame, tiny_config, tiny_registry

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.configure()  # this process's MlflowClient() too, not the store an earlier test set
    return uri


def test_the_champion_is_never_scored_on_data_it_trained_on(tmp_path, store):
    """New data: both scored on the window the champion never saw. Then the same config again on the
    same data: no such window, so the two out-of-sample backtests meet, and they agree within noise
    (before, the champion was re-scored on windows its final fit had seen: 0.931 against 0.944)."""
    full = hourly_frame(length=264)
    old = full[full["ds"] <= full["ds"].max() - pd.Timedelta(hours=12)]  # the champion ends 12 h before
    old_path, new_path = tmp_path / "old.csv", tmp_path / "new.csv"
    old.to_csv(old_path, index=False)
    full.to_csv(new_path, index=False)
    first = train(tiny_config(old_path, margin=-10.0), verbose=0)
    second = train(tiny_config(new_path, margin=-10.0), verbose=0)
    d = second.decision
    assert d.basis == "1 backtest window(s) after the champion's training data"
    last_window = second.backtest.per_series.query("model == 'lstm' and window == 1")["mase"].mean()
    assert d.challenger_on_basis == pytest.approx(last_window)
    assert d.champion != pytest.approx(first.backtest.summary["lstm"]["mase"])  # scored afresh, not recorded
    assert d.promoted and registry.champion_version(MlflowClient(), "tiny") == second.version

    third = train(tiny_config(new_path, margin=0.0), verbose=0)
    d = third.decision
    assert d.basis.startswith("recorded out-of-sample backtests")
    assert d.champion == pytest.approx(second.backtest.summary["lstm"]["mase"], rel=1e-6)
    assert abs(d.challenger - d.champion) <= 0.02 * d.champion, "identical configs differ beyond seed noise"
    tags = MlflowClient().get_model_version("tiny", third.version).tags
    assert tags["promotion.basis"] == d.basis and tags["promotion.champion_version"] == second.version


_HOLDER = (
    "import sys, time\n"
    "from forecaster.ops import registry\n"
    "with registry.promotion_lock(sys.argv[1], 'tiny'):\n"
    "    print('holding', flush=True)\n"
    "    time.sleep(120)\n"
)


def test_promotion_waits_for_another_training_and_a_dead_holder_frees_the_lock(store):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, store], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with (pytest.raises(LockHeldError, match="promotion: another live process holds the lock"),
              registry.promotion_lock(store, "tiny", timeout=1.0)):
            pass
        with registry.promotion_lock(store, "other-model", timeout=1.0):
            pass  # one lock per model
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with registry.promotion_lock(store, "tiny", timeout=5.0):
            pass  # the kernel released a killed holder's lock
    finally:
        holder.kill()


_TRAINER = (
    "import sys\n"
    "from pipelines.train import train\n"
    "from tests.synthetic import tiny_config\n"
    "train(tiny_config(sys.argv[1], epochs=50), verbose=0)\n"
)


def test_a_killed_training_is_marked_failed_by_the_next_one(tmp_path, store):
    # The champion before the killed training: the session's tiny model, its store copied here (trained
    # once for the suite, `tests/synthetic.tiny_registry`), its data in tmp_path/history.csv.
    with tiny_registry(tmp_path) as (_, data):
        client = MlflowClient()
        champion = registry.champion_version(client, "tiny")
    assert champion == "1"
    log = tmp_path / "trainer.log"
    with open(log, "w") as err:
        trainer = subprocess.Popen([sys.executable, "-c", _TRAINER, str(data)], env={**os.environ}, stderr=err)
    running = []
    deadline = time.monotonic() + 300
    experiment_id = client.get_experiment_by_name("tiny").experiment_id
    while not running and time.monotonic() < deadline and trainer.poll() is None:
        time.sleep(0.5)
        running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    assert running, f"the training never reached its MLflow run: {log.read_text()[-3000:]}"
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    run_id = running[0].info.run_id
    assert client.get_run(run_id).info.status == "RUNNING"  # what a SIGKILL leaves
    assert registry.aliases(client, "tiny") == {"champion": champion, "challenger": champion}
    assert [str(v.version) for v in client.search_model_versions("name = 'tiny'")] == [champion]
    result = train(tiny_config(data, margin=-10.0), verbose=0)
    dead = client.get_run(run_id)
    assert dead.info.status == "FAILED" and "died" in dead.data.tags["forecaster.abandoned"]
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert registry.champion_version(client, "tiny") == result.version


def test_a_version_registered_by_a_dead_training_is_tagged_undecided(tmp_path, store):
    """The state a SIGKILL between registration and decision leaves (too short a moment to hit with a
    real signal), built with the real client; the cleanup closes the run and tags the version."""
    import socket

    from pipelines.steps import mark_abandoned_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=60)  # a pid that no longer runs
    client = MlflowClient()
    experiment_id = client.create_experiment("dead", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment_id, tags={"forecaster.host": socket.gethostname(),
                                                 "forecaster.pid": str(gone.pid)})
    client.create_registered_model("dead")
    version = client.create_model_version("dead", str(tmp_path), run_id=run.info.run_id).version
    alive = client.create_run(experiment_id, tags={"forecaster.host": socket.gethostname(),
                                                   "forecaster.pid": str(os.getpid())})
    assert mark_abandoned_runs(client, experiment_id) == [run.info.run_id]
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # a live process's run is left alone
    tags = client.get_model_version("dead", version).tags
    assert tags["promotion.decision"] == "none: its training died before deciding"
    assert registry.aliases(client, "dead") == {}
