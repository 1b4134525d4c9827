"""Training across workers: `MultiWorkerMirroredStrategy` with two real worker processes on 127.0.0.1.

Each worker is a real process started with its own ``TF_CONFIG`` (two free loopback ports); the chief
is worker 0. Compared with the same training in one process: the layer's weights after a fit, and the
training pipeline's backtest. A SIGKILLed worker makes the other fail within seconds with one line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests import stores
from tests.synthetic import cli_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

HERE = Path(__file__).resolve().parents[1]

CONFIG = """\
[model]
name = "{name}"
horizon = 8
quantiles = [0.1, 0.5, 0.9]
combine = "theta"  # not "auto": see tests/synthetic.py's tiny_config

[data]
source = "package:m4_hourly"
freq = "h"
series_limit = 4

[network]
units = 8
head_units = 16

[training]
input_size = 24
epochs = {epochs}
batch_size = 64
patience = {epochs}
max_windows_per_series = {windows}
seed = 0

[backtest]
n_windows = 2
step = 8

[promotion]
metric = "mase"
margin = -10.0   # a two-epoch network need not beat seasonal naive: version 1 becomes champion anyway
"""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tf_configs(n: int = 2) -> list[str]:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(n)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}) for i in range(n)]


def _start(args: list[str], folder: Path, label: str, env: dict[str, str]) -> subprocess.Popen:
    # Output to files, not pipes: a worker must never wait for us to read the other's pipe.
    with open(folder / f"{label}.out", "w") as out, open(folder / f"{label}.err", "w") as err:
        return subprocess.Popen(args, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _finish(procs: dict[str, subprocess.Popen], folder: Path, timeout: float = 600) -> dict[str, dict]:
    try:
        for proc in procs.values():
            proc.wait(timeout=timeout)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {label: {"returncode": proc.returncode, "stdout": (folder / f"{label}.out").read_text(),
                    "stderr": (folder / f"{label}.err").read_text()} for label, proc in procs.items()}


def _env(store: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "MLFLOW_TRACKING_URI": store, **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """`forecaster train --strategy multi_worker` on two workers, and the same config in one process."""
    folder = tmp_path_factory.mktemp("distributed")
    config = folder / "mw_tiny.toml"
    config.write_text(CONFIG.format(name="mw_tiny", epochs=2, windows=16))
    store = f"sqlite:///{stores.seed(folder / 'store.db')}"
    single_store = f"sqlite:///{stores.seed(folder / 'single.db')}"
    procs = {f"worker{i}": _start([*cli_command(), "train", str(config), "--strategy", "multi_worker", "--quiet"],
                                  folder, f"worker{i}", _env(store, TF_CONFIG=tf_config))
             for i, tf_config in enumerate(_tf_configs())}
    procs["single"] = _start([*cli_command(), "train", str(config), "--quiet"], folder, "single", _env(single_store))
    return {"folder": folder, "store": store, "single_store": single_store, **_finish(procs, folder)}


def _runs(store: str) -> list:
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def test_two_workers_train_one_model_and_only_the_chief_logs_and_registers(trained):
    for label in ("worker0", "worker1", "single"):
        assert trained[label]["returncode"] == 0, trained[label]["stderr"][-2000:]
    assert "registered mw_tiny version 1: champion" in trained["worker0"]["stdout"]
    assert trained["worker1"]["stdout"].strip() == (
        "worker 1 of 2: trained in lockstep with worker 0, which logs the run and registers the model")
    for label in ("worker0", "worker1"):
        err = trained[label]["stderr"]
        assert "Traceback" not in err and "INFO tensorflow" not in err, err[-2000:]
    runs = _runs(trained["store"])
    assert len(runs) == 1, "only the chief opens a run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.strategy"] == "multi_worker"
    client = MlflowClient(tracking_uri=trained["store"], registry_uri=trained["store"])
    assert str(client.get_model_version_by_alias("mw_tiny", "champion").version) == "1"
    assert [str(v.version) for v in client.search_model_versions("name='mw_tiny'")] == ["1"]


def test_multi_worker_backtest_matches_one_process(trained):
    """Same seed, data and global batch: gradients all-reduced over two half batches equal one batch's,
    so the backtest agrees with the one-process training to float rounding (not merely seed noise)."""
    distributed, = _runs(trained["store"])
    single, = _runs(trained["single_store"])
    assert single.data.params["training.strategy"] == "none"
    for name in ("lstm", "seasonal_naive"):
        for metric in ("mase", "smape", "mae"):
            key = f"backtest.{name}.{metric}"
            assert distributed.data.metrics[key] == pytest.approx(single.data.metrics[key], rel=1e-3), key
    curve = [m.value for m in MlflowClient(trained["store"]).get_metric_history(distributed.info.run_id, "loss")]
    one = [m.value for m in MlflowClient(trained["single_store"]).get_metric_history(single.info.run_id, "loss")]
    assert len(curve) == len(one) == 2
    np.testing.assert_allclose(curve, one, rtol=1e-4)


def test_the_layer_fused_loop_and_its_gradient_train_alike_under_the_strategy(tmp_path):
    """Our LSTM (fused loop, hand-written gradient, masked steps) fitted on two workers equals the
    same fit in one process: losses and every weight after two epochs of Adam."""
    script = HERE / "distributed_layer.py"
    env = _env("sqlite:///unused.db", PYTHONPATH=str(HERE.parent))
    procs = {f"worker{i}": _start([sys.executable, str(script), str(tmp_path / f"worker{i}.npz")], tmp_path,
                                  f"worker{i}", {**env, "TF_CONFIG": tf_config})
             for i, tf_config in enumerate(_tf_configs())}
    procs["single"] = _start([sys.executable, str(script), str(tmp_path / "single.npz")], tmp_path, "single", env)
    outcome = _finish(procs, tmp_path)
    for label, result in outcome.items():
        assert result["returncode"] == 0, (label, result["stderr"][-2000:])
    single = np.load(tmp_path / "single.npz")
    for worker in ("worker0", "worker1"):
        got = np.load(tmp_path / f"{worker}.npz")
        assert sorted(got.files) == sorted(single.files)
        for key in single.files:
            np.testing.assert_allclose(got[key], single[key], rtol=1e-5, atol=1e-5, err_msg=f"{worker} {key}")
    assert single["loss"][-1] < single["loss"][0], "the fit must learn something for the comparison to mean much"


# Killed at once: while the chief builds its network (the variables' first broadcast; under load the
# 2 s case landed there too, and the chief printed TensorFlow's UnavailableError, not our line); after 2 s:
# inside the first epochs' all-reduces.
@pytest.mark.parametrize("pause", [0, 2])
def test_a_killed_worker_stops_the_other_with_one_line_and_a_failed_run(tmp_path, pause):
    config = tmp_path / "mw_long.toml"
    config.write_text(CONFIG.format(name="mw_long", epochs=300, windows=400))
    store = f"sqlite:///{stores.seed(tmp_path / 'store.db')}"
    tf_configs = _tf_configs()
    procs = {f"worker{i}": _start([*cli_command(), "train", str(config), "--strategy", "multi_worker", "--quiet"],
                                  tmp_path, f"worker{i}", _env(store, TF_CONFIG=tf_config))
             for i, tf_config in enumerate(tf_configs)}
    deadline = time.monotonic() + 300
    while "backtest fit on the data" not in (tmp_path / "worker0.err").read_text():
        assert procs["worker0"].poll() is None, (tmp_path / "worker0.err").read_text()[-2000:]
        assert time.monotonic() < deadline, "the chief never started training"
        time.sleep(0.5)
    time.sleep(pause)
    os.killpg(procs["worker1"].pid, signal.SIGKILL)
    outcome = _finish(procs, tmp_path, timeout=180)
    chief = outcome["worker0"]
    assert chief["returncode"] == 1
    lines = chief["stderr"].strip().splitlines()
    assert lines[-1].startswith("forecaster: worker lost: multi-worker training stopped: a worker of "
                                "TF_CONFIG's cluster"), lines[-1]
    assert "start every worker again" in lines[-1]
    assert "Traceback" not in chief["stderr"]
    runs = _runs(store)
    assert [r.info.status for r in runs] == ["FAILED"], "the chief's run is closed as failed, not left RUNNING"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert client.search_registered_models() == []


BAD_TF_CONFIGS = [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "task must be"),
    ('{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "only 'worker' tasks"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "an address twice"),
    ('{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}', "'host:port'"),
]


@pytest.mark.parametrize("tf_config, says", BAD_TF_CONFIGS)
def test_every_wrong_tf_config_is_named(monkeypatch, tf_config, says):
    from forecaster.errors import ConfigError
    from forecaster.models import distribute

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        distribute.is_chief("multi_worker")


@pytest.mark.parametrize("tf_config, says", [BAD_TF_CONFIGS[0], BAD_TF_CONFIGS[2]])
def test_a_wrong_tf_config_stops_the_cli_before_any_work(tmp_path, tf_config, says):
    config = tmp_path / "mw_bad.toml"
    config.write_text(CONFIG.format(name="mw_bad", epochs=1, windows=4))
    env = _env(f"sqlite:///{tmp_path / 'store.db'}")
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    done = subprocess.run([*cli_command(), "train", str(config), "--strategy", "multi_worker"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("forecaster: configuration error:") and says in done.stderr, done.stderr
    assert not (tmp_path / "store.db").exists(), "nothing was written to the store"


def test_the_scheduled_job_refuses_multi_worker_training(tmp_path):
    config = tmp_path / "mw_job.toml"
    config.write_text(CONFIG.format(name="mw_job", epochs=1, windows=4).replace(
        "seed = 0", 'seed = 0\nstrategy = "multi_worker"') + f'\n[output]\npath = "{tmp_path / "out"}"\n')
    done = subprocess.run([*cli_command(), "run", str(config), "--as-of", "2017-01-03"],
                          env=_env(f"sqlite:///{tmp_path / 'store.db'}"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "the scheduled job trains in one process" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "store.db").exists()
