"""Everyday mistakes with input files: each a typed error with the documented exit code, no traceback."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from forecaster.data.io import read_frame
from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import ColumnTypeError, DataError
from pipelines.cli import EXIT_DATA, main
from tests.synthetic import hourly_frame


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path}")
    return path


def _train_exit(data, store, capsys) -> tuple[int, str]:
    code = main(["train", "--data", str(data), "--horizon", "6", "--quiet"])
    return code, capsys.readouterr().err


def test_an_empty_file_is_a_data_error(tmp_path, store, capsys):
    data = tmp_path / "empty.csv"
    data.write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        read_frame(data)
    code, err = _train_exit(data, store, capsys)
    assert code == EXIT_DATA and "empty.csv" in err and "the file is empty" in err
    assert "Traceback" not in err and not store.exists()


def test_random_bytes_named_csv_are_a_data_error(tmp_path, store, capsys):
    data = tmp_path / "noise.csv"
    data.write_bytes(os.urandom(4096))
    code, err = _train_exit(data, store, capsys)
    assert code == EXIT_DATA and "noise.csv" in err and "not a UTF-8 CSV file" in err
    assert "Traceback" not in err and not store.exists()


def test_random_bytes_named_parquet_are_a_data_error(tmp_path):
    data = tmp_path / "noise.parquet"
    data.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_frame(data)


def test_a_folder_named_like_a_file_is_a_data_error(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="not a file"):
        read_frame(tmp_path / "dir.csv")


def _as_text(frame: pd.DataFrame, stamps: list[str]) -> pd.DataFrame:
    out = frame.copy()
    out["ds"] = stamps
    return out


def test_one_series_with_utc_offsets_and_others_without_names_the_rows(tmp_path, store, capsys):
    frame = hourly_frame(n_series=2, length=40)
    stamps = frame["ds"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    first = frame["unique_id"] == "S0"
    stamps = [s + "+01:00" if f else s for s, f in zip(stamps, first)]
    with pytest.raises(ColumnTypeError, match=r"mixes values with a UTC offset \(rows 0, 1, 2"):
        validate_frame(_as_text(frame, stamps), Columns(), min_length=8)
    data = tmp_path / "mixed.csv"
    _as_text(frame, stamps).to_csv(data, index=False)
    code, err = _train_exit(data, store, capsys)
    assert code == EXIT_DATA and "'ds'" in err and "give every timestamp an offset, or none" in err


def test_two_utc_offsets_are_one_time_line_in_utc():
    """Daylight saving time: +01:00 in winter, +02:00 in summer; the hours are regular in UTC."""
    frame = hourly_frame(n_series=1, length=40)
    utc = pd.date_range("2024-03-30 20:00", periods=40, freq="h", tz="UTC")
    local = utc.tz_convert("Europe/Paris")
    stamps = [t.isoformat() for t in local]
    assert {s[-6:] for s in stamps} == {"+01:00", "+02:00"}
    checked = validate_frame(_as_text(frame, stamps), Columns(), min_length=8)
    assert str(checked.frame["ds"].dt.tz) == "UTC"
    assert list(checked.frame["ds"]) == list(utc)
    assert checked.freq == "h"


def _with_umask(mask: int):
    import contextlib

    @contextlib.contextmanager
    def scope():
        old = os.umask(mask)
        try:
            yield
        finally:
            os.umask(old)

    return scope()


def test_written_files_honour_the_umask_and_keep_an_existing_mode(tmp_path):
    from forecaster.data.io import write_frame_atomic, write_text_atomic

    frame = hourly_frame(n_series=1, length=5)
    with _with_umask(0o022):
        write_frame_atomic(frame, tmp_path / "new.parquet")
        write_text_atomic("{}", tmp_path / "scaler.json")
    assert (tmp_path / "new.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "scaler.json").stat().st_mode & 0o777 == 0o644
    with _with_umask(0o077):
        write_frame_atomic(frame, tmp_path / "private.csv")
    assert (tmp_path / "private.csv").stat().st_mode & 0o777 == 0o600
    existing = tmp_path / "shared.csv"
    existing.write_text("old")
    existing.chmod(0o640)
    with _with_umask(0o022):
        write_frame_atomic(frame, existing)
    assert existing.stat().st_mode & 0o777 == 0o640 and "ds" in existing.read_text()


def test_a_killed_writers_temporary_file_is_cleared_by_the_next_write(tmp_path):
    """A real writer process is SIGKILLed mid-write; the next write removes what it left, and only that."""
    import signal
    import subprocess
    import sys

    from forecaster.data.io import write_frame_atomic

    target = tmp_path / "forecasts.parquet"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, tempfile\n"
        "from pathlib import Path\n"
        "from forecaster.data import io\n"
        "target = Path(sys.argv[1])\n"
        "def slow(handle):\n"
        "    handle.write(b'partial')\n"
        "    handle.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        "io._write_atomic(target, slow)\n"), str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    left = list(tmp_path.glob(".forecasts.parquet.*.tmp"))
    assert len(left) == 1 and f".{writer.pid}." in left[0].name and not target.exists()
    alive = tmp_path / f".forecasts.parquet.{os.getppid()}.x.tmp"  # a live process's: not ours to remove
    alive.write_bytes(b"")
    write_frame_atomic(hourly_frame(n_series=1, length=5), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive.name])
