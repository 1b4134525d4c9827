"""Issue 29, part A: files, names, as-of times and flags refused before any work (real files, the real
`forecaster` process, real MLflow stores in temporary folders). docs/reliability.md names each test."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.config import check_model_name, model_config_from_dict
from forecaster.data.io import check_destination, read_frame, write_frame_atomic
from forecaster.data.splits import parse_as_of
from forecaster.errors import ColumnTypeError, ConfigError
from forecaster.params import check_value
from pipelines.cli import EXIT_CONFIG, EXIT_DATA
from tests.synthetic import hourly_frame


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `forecaster` command in ``cwd``, with its embedded store there (cwd/mlruns)."""
    env = {**os.environ, "FORECASTER_MLRUNS": str(cwd / "mlruns"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# --------------------------------------------------------------------------- the output is the input


@pytest.mark.parametrize("spelling", ["w/hist.csv", "w/../w/./hist.csv", "link.csv", "hard.csv"])
def test_an_output_that_is_the_input_exits_2_before_any_work_and_keeps_the_history(tmp_path, spelling):
    (tmp_path / "w").mkdir()
    history = tmp_path / "w" / "hist.csv"
    hourly_frame(n_series=2, length=30).to_csv(history, index=False)
    (tmp_path / "link.csv").symlink_to(history)
    os.link(history, tmp_path / "hard.csv")
    before = _digest(history)
    done = _cli("predict", "--model", "models:/nothing@champion", "--input", "w/hist.csv", "--output", spelling,
                cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG
    line = _one_line(done)
    assert line.startswith("forecaster: configuration error: cannot write") and "it is the input" in line, line
    assert _digest(history) == before
    assert not (tmp_path / "mlruns").exists()  # refused before the model was even looked up


def test_the_scheduled_jobs_sink_holding_its_source_exits_2_before_any_work(tmp_path):
    hourly_frame(n_series=2, length=60).to_csv(tmp_path / "history.csv", index=False)
    for output, name in ((".", "here"), ("history.csv", "same")):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[model]\nname = "{name}"\nhorizon = 6\n[data]\nsource = "history.csv"\n'
                          f'[output]\npath = "{output}"\n')
        before = _digest(tmp_path / "history.csv")
        for args in (("--as-of", "2024-01-02T00:00"), ("--from", "2024-01-02", "--to", "2024-01-03",
                                                       "--every", "1D")):
            done = _cli("run", str(config), *args, cwd=tmp_path)
            assert done.returncode == EXIT_CONFIG, done.stderr
            assert "holds the data source" in _one_line(done)
        assert _digest(tmp_path / "history.csv") == before
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".lock").exists()


# --------------------------------------------------------------------------- other outputs


def test_an_output_name_too_long_for_its_temporary_file_exits_2_before_any_work(tmp_path):
    hourly_frame(n_series=1, length=30).to_csv(tmp_path / "hist.csv", index=False)
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "f" * (limit - 10) + ".csv"  # a legal name, too long once ".<name>.<pid>.XXXXXXXX.tmp" is made
    done = _cli("predict", "--model", "models:/nothing@champion", "--input", "hist.csv", "--output", name,
                cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG
    assert "temporary file written beside it adds" in _one_line(done)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hist.csv"]


def test_an_output_on_a_symbolic_link_is_written_through_and_the_link_kept(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "forecasts.csv"
    target.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    frame = hourly_frame(n_series=1, length=3)
    assert check_destination(link) == target
    write_frame_atomic(frame, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(read_frame(target)) == 3 and len(read_frame(link)) == 3
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["forecasts.csv"]  # no temporary left


def test_a_report_plot_of_an_unknown_type_exits_2_before_any_scoring(tmp_path):
    config = tmp_path / "job.toml"
    config.write_text('[model]\nname = "job"\nhorizon = 6\n[data]\nsource = "missing.csv"\n')
    done = _cli("report", str(config), "--plot", "x.txt", cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG
    assert "unsupported file type '.txt' (use .png, .svg, .pdf)" in _one_line(done)


# --------------------------------------------------------------------------- ids are text


def test_csv_ids_are_read_as_written(tmp_path):
    rows = [("001", 1.0), ("01", 2.0), ("1", 3.0), ("NA", 4.0), ("null", 5.0), ("x", float("nan"))]
    text = "unique_id,ds,y\n" + "".join(f"{i},2024-01-01,{'NA' if np.isnan(y) else y}\n" for i, y in rows)
    (tmp_path / "f.csv").write_text(text)
    frame = read_frame(tmp_path / "f.csv")
    assert list(frame["unique_id"]) == [i for i, _ in rows]
    assert frame["y"].isna().tolist() == [False] * 5 + [True]  # 'NA' is still missing as a value
    (tmp_path / "store.csv").write_text("store,ds,y\n007,2024-01-01,1\n")
    assert read_frame(tmp_path / "store.csv", "store")["store"].tolist() == ["007"]


def test_an_empty_id_is_still_missing_and_named(tmp_path):
    from forecaster.data.schema import Columns
    from forecaster.data.validation import validate_frame

    (tmp_path / "f.csv").write_text("unique_id,ds,y\n,2024-01-01,1\n")
    with pytest.raises(ColumnTypeError, match="id column has missing values at rows 0"):
        validate_frame(read_frame(tmp_path / "f.csv"), Columns())


def test_spark_csv_buckets_keep_ids_as_text():
    from pipelines.spark_predict import _like_read_csv

    frame = pd.DataFrame({"unique_id": ["001", "NA", "1"], "ds": ["2024-01-01"] * 3, "y": ["1", "2.5", "3"]})
    out = _like_read_csv(frame, "unique_id")
    assert out["unique_id"].tolist() == ["001", "NA", "1"] and out["y"].tolist() == [1.0, 2.5, 3.0]


def test_two_columns_of_one_name_are_refused_naming_it(tmp_path):
    (tmp_path / "two.csv").write_text("unique_id,ds,y,y\nS0,2024-01-01,1,2\n")
    with pytest.raises(ColumnTypeError, match=r"names column\(s\) \['y'\] more than once"):
        read_frame(tmp_path / "two.csv")


@pytest.mark.slow
def test_two_columns_of_one_name_exit_3_before_a_run(tmp_path):
    (tmp_path / "two.csv").write_text("unique_id,ds,y,y\nS0,2024-01-01,1,2\n")
    done = _cli("train", "--data", "two.csv", "--horizon", "6", cwd=tmp_path)
    assert done.returncode == EXIT_DATA
    assert "column: 'y'" in _one_line(done)
    assert not (tmp_path / "mlruns").exists()


# --------------------------------------------------------------------------- model names


BAD_NAMES = ["sales@eu", "sales/eu", "sales:eu", "it's", "a\\b", "", "   ", ".", "..", ".hidden", " pad",
             "tab\tname"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_no_registry_uri_can_use_are_refused_naming_the_key(name):
    with pytest.raises(ConfigError, match=r"\[model\] name .* cannot be a registered model's name"):
        model_config_from_dict({"model": {"name": name, "horizon": 6}})


def test_every_name_we_accept_mlflow_accepts_and_every_name_mlflow_refuses_we_refuse():
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    good = ["sales", "sales-eu", "sales_eu.v2", "m4 hourly", "Umsatz-Köln", "7"]
    for name in good:
        assert check_model_name(name) == name
        _validate_model_name(name)
    for name in BAD_NAMES:
        try:
            _validate_model_name(name)
        except MlflowException:
            with pytest.raises(ConfigError):
                check_model_name(name)


def test_a_bad_name_exits_2_before_any_training(tmp_path):
    hourly_frame(n_series=2, length=60).to_csv(tmp_path / "h.csv", index=False)
    for name in ("sales@eu", "sales/eu"):
        done = _cli("train", "--data", "h.csv", "--horizon", "6", "--name", name, cwd=tmp_path)
        assert done.returncode == EXIT_CONFIG
        assert f"[model] name {name!r} cannot be a registered model's name" in _one_line(done)
    (tmp_path / "sales@eu.csv").write_bytes((tmp_path / "h.csv").read_bytes())  # the default name: the stem
    done = _cli("train", "--data", "sales@eu.csv", "--horizon", "6", cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG and "'sales_eu'" in _one_line(done)
    assert not (tmp_path / "mlruns").exists()


# --------------------------------------------------------------------------- as-of times


@pytest.mark.parametrize("text, says", [("now", "not a written time"), ("today", "not a written time"),
                                        ("2024-01-11T00:00:00.700", "fraction of a second")])
def test_relative_and_sub_second_as_ofs_are_refused(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_as_of(text)


def _job(tmp: Path) -> Path:
    hourly_frame(n_series=2, length=100).to_csv(tmp / "history.csv", index=False)  # 2024-01-01 00:00 to 01-05 03:00
    config = tmp / "job.toml"
    config.write_text(textwrap.dedent("""
        [model]
        name = "job"
        horizon = 6
        [data]
        source = "history.csv"
        freq = "h"
        [output]
        path = "out"
    """))
    return config


@pytest.mark.parametrize("args, says", [
    (("--as-of", "now"), "not a written time"),
    (("--as-of", "2024-01-03T00:00:00.700"), "fraction of a second"),
    (("--from", "2024-01-02T00:00", "--to", "2024-01-03T00:00+01:00", "--every", "1D"),
     "give both with a UTC offset or neither"),
    pytest.param(("--as-of", "2023-06-01T00:00"),
                 "is before any data: the first time in the source is 2024-01-01 00:00:00", marks=pytest.mark.slow),
    pytest.param(("--as-of", "2030-01-01T00:00"), "more than the horizon (6 steps of h) after the data's last time",
                 marks=pytest.mark.slow),
])
def test_as_ofs_the_job_cannot_honour_exit_2_and_write_no_forecasts(tmp_path, args, says):
    config = _job(tmp_path)
    done = _cli("run", str(config), *args, cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert says in _one_line(done)
    assert not (tmp_path / "mlruns").exists()
    assert not list((tmp_path / "out").glob("as_of=*")) if (tmp_path / "out").exists() else True


# --------------------------------------------------------------------------- numpy values in the Python API


def test_numpy_scalars_and_arrays_are_taken_where_numbers_are_checked():
    assert check_value("", "horizon", np.int64(12), int) == 12
    assert type(check_value("", "epochs", np.int32(3), int)) is int
    assert check_value("", "dropout", np.float64(0.25), float) == 0.25
    assert check_value("", "quantiles", np.array([0.1, 0.9]), tuple[float, ...]) == (0.1, 0.9)
    for wrong in (np.bool_(True), True, np.float64(12.5)):
        with pytest.raises(ConfigError, match="horizon must be an integer"):
            check_value("", "horizon", wrong, int)


# --------------------------------------------------------------------------- daylight saving time


def test_a_naive_local_spring_gap_and_autumn_repeat_say_daylight_saving_and_not_fill():
    from forecaster.data.schema import Columns
    from forecaster.data.validation import validate_frame
    from forecaster.errors import DuplicateRowsError, GapError

    spring = pd.date_range("2024-03-30", periods=60, freq="h")
    gap = pd.DataFrame({"unique_id": "S", "ds": spring[spring != pd.Timestamp("2024-03-31 02:00")], "y": 1.0})
    with pytest.raises(GapError, match="clocks spring forward for daylight saving time") as caught:
        validate_frame(gap, Columns(), freq="h")
    assert "missing_policy='fill'" not in str(caught.value) and "tz_localize" in str(caught.value)
    autumn = pd.date_range("2024-10-26", periods=60, freq="h")
    repeat = pd.DataFrame({"unique_id": "S", "ds": [*autumn, pd.Timestamp("2024-10-27 02:00")], "y": 1.0})
    with pytest.raises(DuplicateRowsError, match="clocks fall back for daylight saving time"):
        validate_frame(repeat, Columns(), freq="h")
    other = pd.DataFrame({"unique_id": "S", "ds": autumn[autumn != pd.Timestamp("2024-10-26 13:00")], "y": 1.0})
    with pytest.raises(GapError, match=r"missing inside series \(use missing_policy='fill' or 'mask'\)") as caught:
        validate_frame(other, Columns(), freq="h")  # an ordinary gap keeps its advice
    assert "daylight" not in str(caught.value)


def test_daily_data_stamped_at_local_midnight_with_its_offsets_is_daily(tmp_path):
    from forecaster.data.schema import Columns
    from forecaster.data.validation import validate_frame

    days = pd.date_range("2024-03-20", periods=30, freq="D", tz="Europe/Berlin")  # crosses 2024-03-31
    frame = pd.DataFrame({"unique_id": "S", "ds": [d.isoformat() for d in days], "y": np.arange(30.0)})
    frame.to_csv(tmp_path / "daily.csv", index=False)
    checked = validate_frame(read_frame(tmp_path / "daily.csv"), Columns())
    assert checked.freq == "D"
    assert list(checked.frame["ds"]) == list(pd.date_range("2024-03-20", periods=30, freq="D"))  # the dates
    hours = pd.date_range("2024-03-30", periods=48, freq="h", tz="Europe/Berlin")  # not midnights: UTC, as before
    hourly = pd.DataFrame({"unique_id": "S", "ds": [h.isoformat() for h in hours], "y": 1.0})
    assert str(validate_frame(hourly, Columns()).frame["ds"].dt.tz) == "UTC"
