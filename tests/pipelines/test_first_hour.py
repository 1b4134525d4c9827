"""A newcomer's first hour: imports that print nothing of TensorFlow's, the main job's log in one format
with every epoch line labelled, a last line whose command works as printed, MLflow runs named,
described and with their data, and the plots' choices (series, epoch numbers, gaps)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.config import ConfigError, model_config_from_dict
from forecaster.evaluation.backtest import BacktestResult
from forecaster.quiet import STARTUP_HOOK, install_startup_hook
from pipelines import steps
from pipelines.report import _bands
from pipelines.run import with_breaks
from pipelines.steps.plots import plotted_actuals
from tests.synthetic import hourly_frame

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: unset
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=full)


@pytest.mark.slow  # a process importing TensorFlow
@pytest.mark.parametrize("imports", ["import keras\nfrom forecaster.layers import LSTM",
                                     "from forecaster.layers import LSTM\nimport keras"])
def test_importing_the_layer_first_or_second_prints_nothing_of_tensorflows(imports, tmp_path):
    # The startup hook scripts/setup-venv.sh installs in .venv; where this interpreter's environment has
    # none (a venv made otherwise), the same file is written to a folder read as a site directory.
    installed = Path(sysconfig.get_paths()["purelib"]) / STARTUP_HOOK
    prelude = ""
    if not installed.is_file():
        install_startup_hook(tmp_path)
        prelude = f"import site; site.addsitedir({str(tmp_path)!r})\n"
    code = prelude + imports + "\nlayer = LSTM(4)\nprint(type(layer).__module__)"
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "forecaster.layers.lstm"
    assert done.stderr == ""


def test_the_filter_drops_tensorflows_notices_and_keeps_anything_else(tmp_path):
    code = ("import os\nfrom forecaster.quiet import _filtered_stderr\nwith _filtered_stderr():\n"
            "    os.write(2, b'I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\\n')\n"
            "    os.write(2, b'W0000 00:00:1.0 1 some_op.cc:9] a real warning\\n')\n")
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "W0000 00:00:1.0 1 some_op.cc:9] a real warning\n"


# --------------------------------------------------------------------------- the main job, tiny


TINY = """
[model]
name = "{name}"
horizon = 12
quantiles = [0.1, 0.5, 0.9]
combine = "theta"  # not "auto": see tests/synthetic.py's tiny_config
[data]
source = "{source}"
freq = "h"
[network]
units = 8
head_units = 8
[training]
input_size = 48
epochs = 2
batch_size = 64
max_windows_per_series = 20
[backtest]
n_windows = 2
step = 12
plot_series = {plot}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`forecaster train` on a tiny config as scripts/main.sh runs it (not a terminal: one line per
    epoch), in a store of its own; (the finished process, the folder, the store's URI)."""
    home = tmp_path_factory.mktemp("first-hour")
    hourly_frame().to_csv(home / "history.csv", index=False)
    (home / "tiny.toml").write_text(TINY.format(name="tiny", source="history.csv", plot='["S4"]'))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORECASTER_MLRUNS": str(home / "mlruns")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", "tiny.toml"], capture_output=True,
                          text=True, timeout=600, cwd=home, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, home, f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"


@pytest.mark.slow
def test_the_main_jobs_log_has_one_format_and_labels_every_epoch_with_its_fit(trained):
    done, _, _ = trained
    log = done.stderr.splitlines()
    assert log and all(re.match(r"^(INFO|WARNING|ERROR) [\w.]+: ", line) for line in log), log
    epochs = [line for line in log if re.search(r"epoch \d+/\d+", line)]
    assert [re.search(r": (\w+) fit: epoch (\d+)/2: loss ", line).groups() for line in epochs] == [
        ("backtest", "1"), ("backtest", "2"), ("final", "1"), ("final", "2")]
    # Each fit is explained before its first epoch line.
    for fit, explained in (("backtest fit", "backtest fit on the data before"), ("final fit", "final fit: on all")):
        first_epoch = next(i for i, line in enumerate(log) if f"{fit}: epoch 1/" in line)
        assert any(explained in line for line in log[:first_epoch]), fit
    # MLflow's own registration line, in our format.
    assert any(line.startswith("INFO forecaster.steps: mlflow: Successfully registered model 'tiny'")
               for line in log)
    assert not any(line.startswith("Epoch ") for line in done.stdout.splitlines() + log)


@pytest.mark.slow
def test_the_last_line_prints_a_command_that_works_as_printed(trained):
    done, home, uri = trained
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("look at it: ")
    command = shlex.split(last.removeprefix("look at it: "))
    assert command[1:] == ["ui", "--backend-store-uri", uri]
    ran = subprocess.run([command[0], "ui", "--help"], capture_output=True, text=True, timeout=120, cwd=home,
                         env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0 and "--backend-store-uri" in ran.stdout


@pytest.mark.slow
def test_the_run_is_named_described_tagged_and_has_its_data_as_a_dataset(trained):
    _, _, uri = trained
    client = MlflowClient(uri, registry_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert run.info.run_name == "train tiny"
    assert tags["forecaster.kind"] == "train"
    assert metrics["mase"] == pytest.approx(metrics["backtest.lstm.mase"])
    assert metrics["seasonal_naive_mase"] == pytest.approx(metrics["backtest.seasonal_naive.mase"])
    note = tags["mlflow.note.content"]
    assert f"{metrics['mase']:.4f}" in note and f"{metrics['seasonal_naive_mase']:.4f}" in note
    version = client.get_model_version("tiny", "1")
    assert f"Version 1: **{version.tags['promotion.decision']}**" in note
    assert version.tags["promotion.reason"] in note
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == params["data.sha256"] and dataset.dataset.name == "tiny"
    assert [t.value for t in dataset.tags if t.key == "mlflow.data.context"] == ["training"]
    assert "history.csv" in dataset.dataset.source


@pytest.mark.slow
def test_a_plot_series_not_in_the_data_stops_before_any_work(trained, tmp_path):
    _, home, _ = trained
    (tmp_path / "typo.toml").write_text(TINY.format(name="typo", source=home / "history.csv", plot='["S4", "S44"]'))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORECASTER_MLRUNS": str(tmp_path / "mlruns")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", "typo.toml"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "forecaster: configuration error: [backtest] plot_series names series not in the data: ['S44']")
    assert not (tmp_path / "mlruns").exists()  # no run, no store: nothing left behind


# --------------------------------------------------------------------------- what the plots choose


def test_the_plotted_series_are_the_worst_median_and_best_by_mase_and_the_named_ones(tmp_path):
    frame = hourly_frame(n_series=5, length=120)
    frame.to_csv(tmp_path / "h.csv", index=False)
    config = model_config_from_dict({"model": {"name": "p", "horizon": 12},
                                     "data": {"source": str(tmp_path / "h.csv"), "freq": "h"},
                                     "backtest": {"plot_series": ["S3", "S1"]}})
    prepared = steps.prepare(config)
    mase = {"S0": 1.0, "S1": 0.5, "S2": 2.0, "S3": 0.8, "S4": 1.5}
    rows = [{"unique_id": sid, "model": model, "window": w, "mase": value * (w + 1)}
            for sid, value in mase.items() for model in ("lstm", "seasonal_naive") for w in (0, 1)]
    result = BacktestResult(per_series=pd.DataFrame(rows), summary={}, forecasts=pd.DataFrame())
    assert steps.plotted_series(prepared, result) == {
        "S2": "worst MASE", "S0": "median MASE", "S1": "best MASE", "S3": "named in [backtest] plot_series"}
    typo = model_config_from_dict({"model": {"name": "p", "horizon": 12},
                                   "data": {"source": str(tmp_path / "h.csv"), "freq": "h"},
                                   "backtest": {"plot_series": ["S9"]}})
    with pytest.raises(ConfigError, match=r"plot_series .*\['S9'\]"):
        steps.check_plot_series(steps.prepare(typo))


def test_the_plotted_actual_breaks_at_a_masked_reading_instead_of_drawing_its_zero(tmp_path):
    """Under missing_policy = "mask" validation stores a missing reading as 0.0 (observed 0): the plot of
    forecasts against actuals drew it as a drop to zero in the actual line."""
    frame = hourly_frame(n_series=2, length=120)
    frame.loc[110, "y"] = np.nan
    frame.to_csv(tmp_path / "h.csv", index=False)
    data = {"source": str(tmp_path / "h.csv"), "freq": "h", "missing_policy": "mask"}
    prepared = steps.prepare(model_config_from_dict({"model": {"name": "p", "horizon": 12}, "data": data}))
    series = prepared.frame[prepared.frame["unique_id"] == "S0"]
    assert series["y"].iloc[110] == 0.0  # what validation stores, and what was drawn
    drawn = plotted_actuals(series, pd.DataFrame(), prepared.columns, 12)
    assert len(drawn) == 36 and drawn["ds"].iloc[-1] == series["ds"].iloc[-1]
    assert np.isnan(drawn["y"].iloc[-10]) and drawn["y"].drop(drawn.index[-10]).gt(0).all()


def test_loss_curves_number_the_final_fits_epochs_on_after_the_backtests():
    numbers = steps.epoch_numbers({"backtest fit": {"loss": [3, 2, 1, 1], "val_loss": [3, 2, 2, 2]},
                                   "final fit": {"loss": [1, 0.9, 0.8]}})
    assert numbers["backtest fit"].tolist() == [1, 2, 3, 4]
    assert numbers["final fit"].tolist() == [5, 6, 7]


def test_monitoring_lines_break_across_as_ofs_that_have_no_data():
    as_of = pd.to_datetime(["2016-12-20", "2016-12-21", "2016-12-22", "2016-12-26", "2016-12-27"])
    table = pd.DataFrame({"as_of": as_of, "mase": [1.0, 1.1, 1.2, 0.9, 1.0]})
    broken = with_breaks(table)
    assert len(broken) == 6
    gap = broken[broken["mase"].isna()]
    assert len(gap) == 1 and pd.Timestamp("2016-12-22") < gap["as_of"].iloc[0] < pd.Timestamp("2016-12-26")
    assert with_breaks(table.iloc[:3]).equals(table.iloc[:3])  # evenly spaced: nothing added


def test_the_compact_report_averages_horizon_steps_in_bands():
    by_step = pd.DataFrame({"step": np.arange(1, 11), "mase": np.arange(1.0, 11.0)})
    bands = _bands(by_step, ["mase"])
    assert bands["steps"].tolist() == ["1-3", "4-6", "7-8", "9-10"]
    assert bands["mase"].tolist() == [2.0, 5.0, 7.5, 9.5]
    assert _bands(by_step.iloc[:2], ["mase"])["steps"].tolist() == ["1", "2"]
