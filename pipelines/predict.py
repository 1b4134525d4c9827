"""The batch prediction job: load -> forecast -> write; a history file in, a forecast file out.

The model URI is resolved to one version first (``models:/name@champion`` -> ``models:/name/7``) so a
promotion during the run cannot mix two models; the output names that version in every row, and is
written atomically (temporary file, then rename): a reader never sees half a file, and a failed run
leaves the previous file as it was.

The local engine streams: it reads the input in chunks of whole series (``chunk_series`` series at a
time), forecasts each chunk and appends its rows to the temporary output file, so its memory is set by
the chunk, not by the input. Every series is forecast from its own rows only, so chunking changes no
number, and chunks go in id order, the order of the whole-frame forecast: the output is the same row for
row. Input sorted by id is read once; unsorted input is first partitioned by ranges of ids into
Parquet files in a hidden folder beside the output (one more read of the id column, one write and
read of the input), removed at the end (docs/prediction.md). The reading of the next chunk and the
writing of the previous chunk's forecasts run in threads beside the forecast of the current one (`ahead`),
so the second core works during the forecast's single-threaded frame work; the order is kept.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from forecaster.contract import fallback_series
from forecaster.data.io import (
    check_destination,
    check_source,
    column_names,
    iter_frame,
    read_frame,
    spill_folder,
    temporary,
    write_frames_atomic,
)
from forecaster.data.validation import parse_ids
from forecaster.errors import ColumnTypeError, ConfigError, summarize
from forecaster.forecaster import OUTLIER_READINGS
from pipelines import steps

DEFAULT_CHUNK_SERIES = 8192
"""Series forecast at a time by the streaming engine: a whole number of the network's batches
(``PREDICT_CHUNK``, 1,024), 1.4 M rows of a week of hours. Memory holds up to four chunks' frames at once
(the next input being read, the input being forecast, its forecasts, and the previous forecasts being
written: `ahead`), not the input: 1.56-1.63 GB peak at 100k series (docs/prediction.md)."""
READ_ROWS = 1 << 19
"""Rows read from the input file at a time (a Parquet record batch or a CSV chunk)."""
T = TypeVar("T")


def predict(model_uri: str, input_path: str | Path, output_path: str | Path, horizon: int | None = None,
            quantiles: list[float] | None = None, engine: str = "local",
            chunk_series: int = DEFAULT_CHUNK_SERIES) -> dict[str, Any]:
    """Forecast every series of ``input_path`` into ``output_path`` (CSV or Parquet); returns a summary.

    ``chunk_series``: how many series the local engine forecasts at a time (its memory grows with it).
    """
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be 'local' or 'spark', got {engine!r}")
    if isinstance(chunk_series, bool) or not isinstance(chunk_series, int) or chunk_series < 1:
        raise ConfigError(f"chunk_series must be a whole number >= 1, got {chunk_series!r}")
    started = time.perf_counter()
    check_destination(output_path, source=input_path)
    if engine == "local":  # the Spark engine also reads a folder of Parquet parts, and checks it itself
        check_source(input_path)
    model = steps.load(model_uri)
    if engine == "spark":
        from pipelines.spark_predict import predict_spark

        summary = predict_spark(model, input_path, output_path, horizon=horizon, quantiles=quantiles)
    else:
        summary = predict_streaming(model, input_path, output_path, horizon=horizon, quantiles=quantiles,
                                    chunk_series=chunk_series)
    summary.update({"model": model.uri, "output": str(output_path), "engine": engine,
                    "seconds": round(time.perf_counter() - started, 3)})
    return summary


def predict_streaming(model: steps.LoadedModel, input_path: str | Path, output_path: str | Path,
                      horizon: int | None = None, quantiles: list[float] | None = None,
                      chunk_series: int = DEFAULT_CHUNK_SERIES) -> dict[str, int]:
    """The local engine: forecast ``input_path`` chunk by chunk into ``output_path``, written atomically.

    Returns the counts of the summary (``rows``, ``series``, ``fallback_series``, ``outlier_readings``:
    readings of the input treated as outliers, `forecaster.data.outliers`).
    """
    id_name, time_name = model.forecaster.columns_.id, model.forecaster.columns_.time
    counts = {"rows": 0, "series": 0, "fallback_series": 0, OUTLIER_READINGS: 0}
    first: list[tuple[bool, list]] = []  # whether the first chunk's times carry a UTC offset, its series

    def forecasts() -> Iterator[pd.DataFrame]:
        # closing(): a failed chunk removes the spill folder now, not when the traceback is freed.
        with contextlib.closing(ahead(history_chunks(input_path, id_name, chunk_series, beside=output_path))) \
                as chunks:
            for chunk in chunks:
                out = steps.forecast(model, chunk, horizon=horizon, quantiles=quantiles)
                if not first:
                    first.append((_has_offset(out, time_name), list(pd.unique(out[id_name]))))
                _same_time_kind(first[0], out, id_name, time_name)
                counts["rows"] += len(out)
                counts["series"] += int(out[id_name].nunique())
                counts["fallback_series"] += fallback_series(out, id_name)
                counts[OUTLIER_READINGS] += int(out.attrs.get(OUTLIER_READINGS, 0))
                yield out

    # Three threads, one stage each: read chunk k+1 | forecast chunk k | write chunk k-1 (this one).
    with contextlib.closing(ahead(forecasts())) as frames:
        write_frames_atomic(frames, output_path)
    return counts


def _has_offset(frame: pd.DataFrame, time_name: str) -> bool:
    """Whether ``frame``'s times carry a time zone (its input's times a UTC offset)."""
    return getattr(frame[time_name].dtype, "tz", None) is not None


def _same_time_kind(first: tuple[bool, list], out: pd.DataFrame, id_name: str, time_name: str) -> None:
    """ColumnTypeError where a chunk's times carry a UTC offset and the first chunk's (``first``: whether
    they do, its series) do not, or the reverse: validation refuses such a mix within one frame, and the
    chunks are one input (the writer would put both kinds in one CSV column, or drop the offset in a
    Parquet one, with exit 0)."""
    aware = _has_offset(out, time_name)
    if aware != first[0]:
        raise ColumnTypeError(
            "time column mixes values with a UTC offset and values without one across the file (series "
            f"{summarize(first[1])} {'with' if first[0] else 'without'} one, these {'with' if aware else 'without'})"
            ": give every timestamp an offset, or none",
            column=time_name, series=list(pd.unique(out[id_name])),
        )


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, in their order, each computed in a background thread while the caller uses the one before.

    One item ahead at most: the thread computes item k+1 only once the caller has taken item k, so memory
    holds the caller's item and one more. The work overlaps where one side leaves the GIL (Parquet's
    reader and writer, TensorFlow's call, numpy's larger operations), so two cores run it, not one. An
    exception of ``items`` is raised here, in the caller's thread, after the items before it. When the
    caller stops early (an error of its own, or closing this generator), the thread is stopped after its
    current item and ``items`` is closed here (its ``finally`` blocks run, e.g. a spill folder's removal).
    """
    done = object()
    handed: queue.Queue = queue.Queue()  # (item, None), (done, None) or (None, exception)
    wanted = threading.Semaphore(1)  # the caller's leave to compute one more item
    stopping = threading.Event()

    def produce() -> None:
        try:
            while True:
                wanted.acquire()
                if stopping.is_set():
                    return
                item = next(items, done)
                handed.put((item, None))
                if item is done:
                    return
        except BaseException as exc:  # handed to the caller, which raises it
            handed.put((None, exc))

    worker = threading.Thread(target=produce, name="forecaster-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handed.get()
            if error is not None:
                raise error
            if item is done:
                return
            wanted.release()  # the next item is computed while the caller works on this one
            yield item
    finally:
        stopping.set()
        wanted.release()
        worker.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def forecast_in_chunks(model: steps.LoadedModel, history: pd.DataFrame, horizon: int | None = None,
                       quantiles: list[float] | None = None,
                       chunk_series: int = DEFAULT_CHUNK_SERIES) -> pd.DataFrame:
    """``steps.forecast(model, history)`` computed ``chunk_series`` series at a time (the same frame).

    For a history already in memory (the scheduled job): validation, features and the network's inputs
    are built for one chunk at a time, so the work's memory is bounded by the chunk, not the input.
    """
    id_name = model.forecaster.columns_.id
    if id_name not in history.columns or len(history) == 0:
        return steps.forecast(model, history, horizon=horizon, quantiles=quantiles)  # validation says why
    codes, _ = pd.factorize(parse_ids(history[id_name], id_name).to_numpy(), sort=True)
    chunk = codes // chunk_series
    rows = np.argsort(chunk, kind="stable")
    ends = np.cumsum(np.bincount(chunk))
    outs = [steps.forecast(model, history.iloc[rows[start:end]], horizon=horizon, quantiles=quantiles)
            for start, end in zip(np.concatenate([[0], ends[:-1]]), ends)]
    time_name = model.forecaster.columns_.time
    first = (_has_offset(outs[0], time_name), list(pd.unique(outs[0][id_name])))
    for out in outs[1:]:
        _same_time_kind(first, out, id_name, time_name)
    return pd.concat(outs, ignore_index=True)


# --------------------------------------------------------------------------- chunks of whole series


def history_chunks(path: str | Path, id_name: str, chunk_series: int, beside: str | Path) -> Iterator[pd.DataFrame]:
    """The file's rows as frames of at most ``chunk_series`` whole series, the chunks in id order.

    A first pass reads the id column alone: ids sorted (non-decreasing, as validation orders them)
    stream straight from the file; otherwise the rows are partitioned by ranges of ids into a hidden
    folder beside ``beside`` (removed at the end, or by the next write of ``beside`` if this process
    dies). A file without the id column, or without rows, is one chunk: validation names the fault.
    """
    if id_name not in column_names(path):
        yield read_frame(path, id_name)
        return
    ordered, ids, n_rows = _scan_ids(path, id_name)
    if n_rows == 0:
        yield read_frame(path, id_name)
    elif ordered:
        del ids  # not needed to stream sorted rows: a million ids are ~70 MB
        yield from _sorted_chunks(iter_frame(path, READ_ROWS, id_column=id_name), id_name, chunk_series)
    else:
        yield from _partitioned_chunks(path, id_name, np.sort(ids), chunk_series, beside)


def _scan_ids(path: str | Path, id_name: str) -> tuple[bool, np.ndarray, int]:
    """(whether the ids never decrease down the file, the distinct ids, the number of rows)."""
    ordered, last, n_rows, distinct = True, None, 0, []
    for frame in iter_frame(path, 4 * READ_ROWS, columns=[id_name], id_column=id_name):
        ids = parse_ids(frame[id_name], id_name)
        if not len(ids):
            continue
        n_rows += len(ids)
        codes, labels = pd.factorize(ids, sort=True)  # pandas' string routines, no Python object per row
        if ordered:
            ordered = bool((np.diff(codes) >= 0).all()) and (last is None or last <= labels[0])
        last = labels[codes[-1]]
        distinct.append(np.asarray(labels, dtype=object))
    ids_all = pd.unique(np.concatenate(distinct)) if distinct else np.empty(0, dtype=object)
    return ordered, np.asarray(ids_all, dtype=object), n_rows


def _sorted_chunks(frames: Iterator[pd.DataFrame], id_name: str, chunk_series: int) -> Iterator[pd.DataFrame]:
    """Cut consecutive frames of rows sorted by id into chunks of ``chunk_series`` whole series."""
    pending: list[pd.DataFrame] = []
    count, last = 0, None  # series begun in ``pending``, the id of its last row
    for frame in frames:
        if not len(frame):
            continue
        codes, labels = pd.factorize(frame[id_name])  # rows are grouped: a new code opens a series
        begins = np.empty(len(codes), dtype=bool)
        begins[0] = last is None or labels[0] != last
        begins[1:] = codes[1:] != codes[:-1]
        starts = np.flatnonzero(begins)
        last = labels[codes[-1]]
        start, k = 0, chunk_series - count  # starts[k] opens the series one past a full chunk
        while k < len(starts):
            cut = int(starts[k])
            pending.append(frame.iloc[start:cut])
            yield pd.concat(pending, ignore_index=True)
            pending, start, count, k = [], cut, -k, k + chunk_series  # pending holds starts[k:] from here
        pending.append(frame.iloc[start:])
        count += len(starts)
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _partitioned_chunks(path: str | Path, id_name: str, sorted_ids: np.ndarray, chunk_series: int,
                        beside: str | Path) -> Iterator[pd.DataFrame]:
    """Chunks of unsorted rows: ranges of ``chunk_series`` ids, spilled to Parquet files, read back in order."""
    edges = sorted_ids[::chunk_series]  # the first id of each chunk
    # Recorded as a temporary: a SIGTERM's handler removes it too, not only the next run.
    with temporary(spill_folder(beside)) as folder:
        try:
            for k, frame in enumerate(iter_frame(path, READ_ROWS, id_column=id_name)):
                chunk = np.searchsorted(edges, parse_ids(frame[id_name], id_name).to_numpy(dtype=object),
                                        side="right") - 1
                rows = np.argsort(chunk, kind="stable")
                present, first = np.unique(chunk[rows], return_index=True)
                for c, start, end in zip(present, first, [*first[1:], len(rows)]):
                    frame.iloc[rows[start:end]].to_parquet(folder / f"{c:08d}-{k:08d}.parquet", index=False)
            for c in range(len(edges)):
                parts = sorted(folder.glob(f"{c:08d}-*.parquet"))
                yield pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
                for part in parts:
                    part.unlink()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
