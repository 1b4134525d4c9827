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
from pandas._libs.parsers import STR_NA_VALUES

from forecaster.data.schema import Columns
from forecaster.errors import ColumnTypeError, ConfigError, DataError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
#: What a temporary file's name adds to the output's (`_write_atomic`): "." + "." + pid (up to 7 digits)
#: + "." + mkstemp's 8 characters + ".tmp".
_TMP_NAME_EXTRA = 1 + 1 + 7 + 1 + 8 + 4


#: Temporary files and folders this process is writing now (`temporary`): what a signal's handler
#: removes before the process ends (`remove_temporaries`), since it ends without unwinding.
_TEMPORARIES: set[str] = set()


@contextlib.contextmanager
def temporary(path: str | os.PathLike) -> Iterator[Path]:
    """Record ``path`` as this process's temporary file or folder while the block runs."""
    name = os.fspath(path)
    _TEMPORARIES.add(name)
    try:
        yield Path(name)
    finally:
        _TEMPORARIES.discard(name)


def remove_temporaries() -> list[str]:
    """Remove every temporary file and folder recorded by `temporary` now; returns their paths."""
    import shutil

    removed = sorted(_TEMPORARIES)
    for name in removed:
        if os.path.isdir(name) and not os.path.islink(name):
            shutil.rmtree(name, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    _TEMPORARIES.clear()
    return removed


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


def _csv_options(path: Path, id_column: str) -> dict:
    """How a CSV is read: its ``id_column`` as written, text, so `001`, `01` and `1` are three series and
    `NA` (a country) is an id, only an empty id missing; other columns keep pandas' missing markers. A
    header naming a column twice is refused (pandas would rename the second `y` to `y.1`)."""
    with _reading(path, "csv"):
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(n) for n in header.iloc[0]] if len(header) else []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ColumnTypeError(f"cannot read {str(path)!r}: the header names column(s) {repeated} more than once; "
                              f"rename or drop the extra one (which one to use would be a guess)",
                              column=repeated[0])
    return csv_id_options(names, id_column)


def csv_id_options(names: list[str], id_column: str) -> dict:
    """``pandas.read_csv`` options for a CSV of columns ``names``: ``id_column`` as written (text; only an
    empty id missing), the other columns with pandas' missing markers; none without that column. The one
    rule for files (`read_frame`, `iter_frame`) and served CSV bodies (`forecaster.ops.serving`)."""
    if id_column not in names:
        return {}
    missing = {n: ([""] if n == id_column else sorted(STR_NA_VALUES)) for n in names}
    return {"dtype": {id_column: str}, "keep_default_na": False, "na_values": missing}


@contextlib.contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    """Turn what pandas or pyarrow raise on an unreadable file into a DataError naming ``path``."""
    try:
        yield
    except DataError:
        raise
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


def read_frame(source: pd.DataFrame | str | os.PathLike, id_column: str = Columns.id) -> pd.DataFrame:
    """Load a frame from a DataFrame (copied, so callers' data is never mutated), CSV or Parquet file.

    Series ids are text as written (`_csv_options`); a Parquet file keeps the types it was written with.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path, kind = check_source(source)
    options = _csv_options(path, id_column) if kind == "csv" else {}
    with _reading(path, kind):
        if kind == "csv":
            return pd.read_csv(path, **options)
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


def iter_frame(source: str | os.PathLike, rows: int, columns: list[str] | None = None,
               id_column: str = Columns.id) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet file as consecutive frames of at most ``rows`` rows, in file order.

    Only ``rows`` rows (and the file's buffers) are held at a time. Parquet frames get the types
    ``read_frame`` gives (the file's pandas metadata applies, index columns included); CSV chunks are
    typed chunk by chunk, as ``pandas.read_csv`` types a whole file (a column of integers in one chunk
    may be float in another; validation converts both alike), the ids as text as ``read_frame`` reads
    them. ``columns``: read only these.
    """
    path, kind = check_source(source)
    if kind == "csv":
        options = _csv_options(path, id_column)
        if columns is not None and "na_values" in options:
            options["na_values"] = {k: v for k, v in options["na_values"].items() if k in columns}
        with _reading(path, kind):
            reader = pd.read_csv(path, chunksize=rows, usecols=columns, **options)
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
        # pre_buffer=False: with it on (pyarrow's default) the reader keeps every row group's bytes it has
        # read until it is closed, ~0.6 KB a series here: a million series' run grew by 0.6 GB.
        parquet = pq.ParquetFile(path, pre_buffer=False)
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


def check_destination(path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Refuse, before any work, an output path that cannot be written: ConfigError naming it and why.

    A symbolic link is written through (its target replaced, the link kept, as a shell's ``>`` does), so
    the checks apply to the target; an output that is ``source`` (after ``..``, ``.`` and links are
    resolved, or the same file under another name) is refused: it would overwrite the history.
    Returns the path that will be written.
    """
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    if source is not None and _same_file(given, Path(source)):
        raise ConfigError(f"cannot write {str(given)!r}: it is the input {str(source)!r} "
                          f"(the forecasts would replace the history); write to another file")
    if _kind(target) is None:
        raise ConfigError(f"cannot write {str(target)!r}: unsupported file type {target.suffix!r} "
                          f"(use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})")
    folder = target.parent
    if not folder.is_dir():
        above = next((p for p in folder.parents if p.exists()), None) if not folder.exists() else folder
        if above is not None and not above.is_dir():  # "does not exist" would send the user looking for it
            raise ConfigError(f"cannot write {str(target)!r}: {str(above)!r} is a file, not a folder")
        raise ConfigError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {str(target)!r}: folder {str(folder)!r} is not writable")
    if target.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: it is a folder")
    if target.exists() and not os.access(target, os.W_OK) and not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot write {str(target)!r}: not writable")
    limit = os.pathconf(folder, "PC_NAME_MAX")
    if len(target.name.encode()) + _TMP_NAME_EXTRA > limit:
        raise ConfigError(f"cannot write {str(target)!r}: its name is {len(target.name.encode())} bytes; the "
                          f"temporary file written beside it adds {_TMP_NAME_EXTRA}, and this file system allows "
                          f"{limit} a name: use a name of at most {limit - _TMP_NAME_EXTRA} bytes")
    return target


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once resolved, or one existing file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_distinct(output: str | os.PathLike, source: str | os.PathLike) -> None:
    """ConfigError if the folder ``output`` is ``source`` or holds it (a job writing there could replace
    its own data): the scheduled job's sink and source."""
    out, src = Path(os.path.realpath(output)), Path(os.path.realpath(source))
    if src == out or out in src.parents:
        raise ConfigError(f"the output folder {str(output)!r} holds the data source {str(source)!r}: a run would "
                          f"write where it reads; set [output] path to a folder outside the data")


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
        with temporary(tmp_name), os.fdopen(fd, "wb") as handle:
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
    target = check_destination(path)  # a symbolic link's target, written through
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
