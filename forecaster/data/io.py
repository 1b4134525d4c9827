"""Reading input frames and writing output frames safely."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
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


def _read_csv(path: Path, id_column: str) -> pd.DataFrame:
    """A CSV whose ``id_column`` is read as written: text, so `001`, `01` and `1` are three series and
    `NA` (a country) is an id; only an empty id is missing. Other columns keep pandas' missing markers.
    A header naming a column twice is refused (pandas would rename the second `y` to `y.1`)."""
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(n) for n in header.iloc[0]] if len(header) else []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ColumnTypeError(f"cannot read {str(path)!r}: the header names column(s) {repeated} more than once; "
                              f"rename or drop the extra one (which one to use would be a guess)",
                              column=repeated[0])
    if id_column not in names:
        return pd.read_csv(path)
    missing = {n: ([""] if n == id_column else sorted(STR_NA_VALUES)) for n in names}
    return pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=missing)


def read_frame(source: pd.DataFrame | str | os.PathLike, id_column: str = Columns.id) -> pd.DataFrame:
    """Load a frame from a DataFrame (copied, so callers' data is never mutated), CSV or Parquet file.

    Series ids are text as written (`_read_csv`); a Parquet file keeps the types it was written with.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path, kind = check_source(source)
    try:
        if kind == "csv":
            return _read_csv(path, id_column)
        return pd.read_parquet(path, engine="pyarrow")
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
