"""Reading input frames and writing output frames safely."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def check_source(source: str | os.PathLike) -> tuple[Path, str]:
    """Refuse, before any work, an input path that cannot be read as a frame: DataError naming it."""
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
    return path, kind


@contextlib.contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    """Turn what pandas or pyarrow raise on an unreadable file into a DataError naming ``path``."""
    try:
        yield
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


def read_frame(source: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Load a frame from a DataFrame (copied, so callers' data is never mutated), CSV or Parquet file."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path, kind = check_source(source)
    with _reading(path, kind):
        if kind == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path, engine="pyarrow")
    raise AssertionError("unreachable")  # pragma: no cover  (_reading re-raises)


def column_names(source: str | os.PathLike) -> list[str]:
    """The column names of a CSV (its header) or Parquet file, without reading its rows."""
    path, kind = check_source(source)
    with _reading(path, kind):
        if kind == "csv":
            return [str(name) for name in pd.read_csv(path, nrows=0).columns]
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    raise AssertionError("unreachable")  # pragma: no cover


def iter_frame(source: str | os.PathLike, rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet file as consecutive frames of at most ``rows`` rows, in file order.

    Only ``rows`` rows (and the file's buffers) are held at a time. Parquet frames get the types
    ``read_frame`` gives (the file's pandas metadata applies, index columns included); CSV chunks are
    typed chunk by chunk, as ``pandas.read_csv`` types a whole file (a column of integers in one chunk
    may be float in another; validation converts both alike). ``columns``: read only these.
    """
    path, kind = check_source(source)
    if kind == "csv":
        with _reading(path, kind):
            reader = pd.read_csv(path, chunksize=rows, usecols=columns)
        with reader:
            while True:
                with _reading(path, kind):
                    chunk = next(reader, None)
                if chunk is None:
                    return
                yield chunk
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _reading(path, kind):
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns], metadata=schema.metadata)
        batches = parquet.iter_batches(batch_size=rows, columns=columns)
    with parquet:
        while True:
            with _reading(path, kind):
                batch = next(batches, None)
                if batch is None:
                    return
                frame = pa.Table.from_batches([batch], schema=schema).to_pandas()
            yield frame


def _iso_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ISO 8601 text ("2024-01-01T00:00:00+01:00"), NaT as empty."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            text = column.astype(str).str.replace(" ", "T", n=1)
            out[name] = text.where(column.notna(), None)
    return out


def check_destination(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output path that cannot be written: ConfigError naming it and why."""
    target = Path(path)
    if _kind(target) is None:
        raise ConfigError(f"cannot write {str(target)!r}: unsupported file type {target.suffix!r} "
                          f"(use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {str(target)!r}: folder {str(folder)!r} is not writable")
    if target.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: it is a folder")
    if target.exists() and not os.access(target, os.W_OK) and not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot write {str(target)!r}: not writable")
    return target


def _tmp_prefix(path: Path, pid: int) -> str:
    return f".{path.name}.{pid}."


def _clear_stale_tmp(path: Path) -> None:
    """Remove temporary files that a killed writer of ``path`` left: those of processes no longer alive."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid_text = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            if stale.is_dir():  # the spill folder of a streaming prediction
                shutil.rmtree(stale, ignore_errors=True)
                continue
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        except PermissionError:
            continue  # alive, someone else's


def _file_mode(path: Path) -> int:
    """The mode the written file gets: an existing file keeps its own, a new one follows the umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a temporary file next to ``path``, fsync it, then rename it over ``path``.

    The rename (``os.replace``) is atomic on POSIX, so readers see the old file or the new one, never a
    half-written one.  On any failure the temporary file is removed and ``path`` is left untouched; a
    temporary file that a killed writer left (its process gone) is removed by the next write. The file
    gets the mode an ordinary write would give it (umask for a new file, the old mode for a replaced one).
    """
    _clear_stale_tmp(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(path, os.getpid()), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), _file_mode(path))
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def write_frame_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` as CSV (timestamps in ISO 8601) or Parquet, chosen by suffix, atomically."""
    target = check_destination(path)
    if _kind(target) == "csv":
        _write_atomic(target, lambda handle: _iso_text(frame).to_csv(handle, index=False))
    else:
        _write_atomic(target, lambda handle: frame.to_parquet(handle, engine="pyarrow", index=False))


def write_frames_atomic(frames: Iterable[pd.DataFrame], path: str | os.PathLike) -> None:
    """Write consecutive ``frames`` (same columns) as one CSV or Parquet file, atomically, one at a time.

    The file equals ``write_frame_atomic(pd.concat(frames), path)`` read back, but only one frame is
    in memory at a time (Parquet: a row group per frame, every frame cast to the first one's types).
    Nothing is written, and ``path`` is left as it was, when the iterator raises; it must yield at
    least one frame (an empty one gives a file with just the columns).
    """
    target = check_destination(path)

    def write_csv(handle: BinaryIO) -> None:
        for k, frame in enumerate(frames):
            _iso_text(frame).to_csv(handle, index=False, header=k == 0)

    def write_parquet(handle: BinaryIO) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(handle, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError("write_frames_atomic needs at least one frame")

    _write_atomic(target, write_csv if _kind(target) == "csv" else write_parquet)


def spill_folder(path: str | os.PathLike) -> Path:
    """A new hidden folder beside ``path`` for a writer's scratch files, named so that the next write of
    ``path`` removes it if its process died (like a temporary file); the caller removes it when done."""
    target = Path(path)
    _clear_stale_tmp(target)
    return Path(tempfile.mkdtemp(prefix=_tmp_prefix(target, os.getpid()), suffix=".tmp", dir=target.parent))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (used for JSON parameter files)."""
    _write_atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def fsync_dir(directory: Path) -> None:
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
