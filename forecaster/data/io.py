"""Reading input frames and writing output frames safely."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from forecaster.errors import ConfigError, DataError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def read_frame(source: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Load a frame from a DataFrame (copied, so callers' data is never mutated), CSV or Parquet file."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    kind = _kind(path)
    if kind is None:
        raise DataError(
            f"cannot read {str(path)!r}: unsupported file type {path.suffix!r} "
            f"(use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})"
        )
    if not path.exists():
        raise DataError(f"cannot read {str(path)!r}: no such file")
    if not path.is_file():
        raise DataError(f"cannot read {str(path)!r}: not a file")
    try:
        if kind == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path, engine="pyarrow")
    except pd.errors.EmptyDataError:
        raise DataError(f"cannot read {str(path)!r}: the file is empty") from None
    except PermissionError:
        raise DataError(f"cannot read {str(path)!r}: permission denied") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {str(path)!r}: not a UTF-8 CSV file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"cannot read {str(path)!r}: not a readable {kind} file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _iso_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ISO 8601 text ("2024-01-01T00:00:00+01:00"), NaT as empty."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            text = column.astype(str).str.replace(" ", "T", n=1)
            out[name] = text.where(column.notna(), None)
    return out


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a temporary file next to ``path``, fsync it, then rename it over ``path``.

    The rename (``os.replace``) is atomic on POSIX, so readers see the old file or the new one, never a
    half-written one.  On any failure the temporary file is removed and ``path`` is left untouched.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def write_frame_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` as CSV (timestamps in ISO 8601) or Parquet, chosen by suffix, atomically."""
    target = Path(path)
    kind = _kind(target)
    if kind is None:
        raise ConfigError(f"cannot write {str(target)!r}: unsupported file type {target.suffix!r}")
    if kind == "csv":
        _write_atomic(target, lambda handle: _iso_text(frame).to_csv(handle, index=False))
    else:
        _write_atomic(target, lambda handle: frame.to_parquet(handle, engine="pyarrow", index=False))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (used for JSON parameter files)."""
    _write_atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort (not every platform can open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
