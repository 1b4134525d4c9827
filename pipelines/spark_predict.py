"""Batch prediction on Spark: the same forecasts as the local engine, computed by Spark workers.

How it works (``predict_spark``):

1. The driver downloads the resolved model version's artifacts once (``mlflow.artifacts``) and ships
   the folder to every worker with ``SparkContext.addFile(dir, recursive=True)``.
2. The input (CSV or Parquet, a file or a Spark dataset directory) is read by Spark. Parquet keeps
   its types; CSV is read as text and each column is converted in the worker the way ``pandas.read_csv``
   would (a number where every value parses as one, else text), so the forecaster's own validation sees
   what the local engine sees.
3. Rows are grouped by a *bucket* of the series id (``pmod(xxhash64(id), buckets)``), not by the id:
   one ``applyInPandas`` call then forecasts every series of its bucket in one batch through the
   compiled network, instead of paying pandas, validation and a network call per series. All rows of
   a series land in one bucket, and every series is forecast from its own rows only (scaling of series
   never seen in training included), so bucketing does not change any number.
4. Each Python worker loads the model once (module-level cache keyed by the local model path) and
   runs ``LSTMForecaster.predict`` on its bucket, adding ``model_name`` and ``model_version``.
5. The result is written to a temporary path beside the target and renamed into place.

Cluster use: pass ``master="spark://host:7077"`` (or ``yarn``, ``k8s://...``), or set
``FORECASTER_SPARK_MASTER``. Every worker needs the same Python environment as the driver (this
project installed with its pinned dependencies: ``pip install 'forecaster[spark]'``), reachable as
``PYSPARK_PYTHON``, and the input and output paths must be on a file system that the driver and all
workers see at the same path (the final rename is done by the driver on its local view of it).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.contract import (
    DATETIME,
    DOUBLE,
    LSTM,
    MODEL_COLUMN,
    MODEL_NAME_COLUMN,
    MODEL_VERSION_COLUMN,
    output_schema,
)
from forecaster.data.io import CSV_SUFFIXES, PARQUET_SUFFIXES
from forecaster.errors import ConfigError, DataError, ForecasterError, MissingColumnError
from forecaster.forecaster import requested_quantiles
from forecaster.ops.integrity import saved_forecaster
from forecaster.params import requested_horizon
from pipelines.steps import LoadedModel, fetch_verified

DEFAULT_MASTER = "local[2]"
MASTER_ENV = "FORECASTER_SPARK_MASTER"
BUCKETS_ENV = "FORECASTER_SPARK_BUCKETS"
#: Default bucketing: at least this many buckets per Spark core (evens out uneven buckets) and at most
#: this many input rows per bucket (a bucket is one pandas frame in one Python worker's memory).
BUCKETS_PER_CORE = 2
ROWS_PER_BUCKET = 250_000

#: Forecasters loaded in this Python process, by local model path (Spark reuses its Python workers).
_MODELS: dict[str, Any] = {}


@dataclass(frozen=True)
class _Job:
    """What a worker needs to forecast a bucket; small and picklable (shipped with the task)."""

    model_dir: str  # name under SparkFiles' root
    artifact_path: str  # the saved forecaster's folder, relative to the model folder
    horizon: int | None
    quantiles: tuple[float, ...] | None
    csv_input: bool
    time_ns: bool  # Parquet time column in nanoseconds: Spark reads it as a long (see _read)
    time_zone: str | None  # the Parquet time column's zone, restored in the worker
    id_column: str
    time_column: str
    output_schema: tuple[tuple[str, str], ...]
    model_name: str
    model_version: str


# --------------------------------------------------------------------------- worker side


def _worker_forecaster(job: _Job) -> Any:
    from pyspark import SparkFiles

    path = os.path.join(SparkFiles.get(job.model_dir), job.artifact_path)
    if path not in _MODELS:
        from forecaster.forecaster import LSTMForecaster

        _MODELS[path] = LSTMForecaster.load(path)
    return _MODELS[path]


def _like_read_csv(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Text columns (Spark read the CSV as text) converted as `forecaster.data.io.read_frame` would: the
    ids stay text as written (`001` is not `1`), others numeric when every value parses as a number, else
    left as text for the forecaster's validation to parse."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        if name == id_column:
            out[name] = column
            continue
        try:
            out[name] = pd.to_numeric(column)
        except (TypeError, ValueError):
            out[name] = column
    return pd.DataFrame(out)


def _forecast_bucket(pdf: pd.DataFrame, job: _Job) -> pd.DataFrame:
    """``applyInPandas`` body: every series of one bucket forecast in one call."""
    forecaster = _worker_forecaster(job)
    history = pdf.drop(columns="_bucket")
    if job.csv_input:
        history = _like_read_csv(history, job.id_column)
    elif job.time_ns:
        history[job.time_column] = pd.to_datetime(history[job.time_column], unit="ns", utc=job.time_zone is not None)
    elif job.time_zone is not None:  # Spark hands zoned timestamps over as UTC wall clock (session zone)
        history[job.time_column] = history[job.time_column].dt.tz_localize("UTC")
    if job.time_zone is not None:
        history[job.time_column] = history[job.time_column].dt.tz_convert(job.time_zone)
    out = forecaster.predict(history, horizon=job.horizon, quantiles=job.quantiles)
    times = out[job.time_column]
    if getattr(times.dt, "tz", None) is not None:  # Spark timestamps carry no zone: UTC wall clock
        out[job.time_column] = times.dt.tz_convert("UTC").dt.tz_localize(None)
    out[MODEL_NAME_COLUMN] = job.model_name
    out[MODEL_VERSION_COLUMN] = job.model_version
    # pandas 3 string columns fail Arrow's conversion in PySpark: hand over plain object columns.
    for name in (job.id_column, MODEL_COLUMN, MODEL_NAME_COLUMN, MODEL_VERSION_COLUMN):
        out[name] = out[name].astype(object)
    return out[[name for name, _ in job.output_schema]]


# --------------------------------------------------------------------------- driver side


LOG_LEVEL_ENV = "FORECASTER_SPARK_LOG_LEVEL"


def _session(master: str | None) -> Any:
    """The active SparkSession, or a new one on ``master`` / ``$FORECASTER_SPARK_MASTER`` / ``local[2]``."""
    from pyspark.sql import SparkSession

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    master = master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER
    from pipelines.spark_quiet import driver_java_options, jvm_stderr_filtered, quiet_py4j

    # A failing task logs the JVM's stack trace at ERROR before our own message reaches the user;
    # Spark's log stays quiet unless asked for ($FORECASTER_SPARK_LOG_LEVEL, e.g. WARN), from the JVM's
    # first line on (our log4j2 configuration), and its start-up notices are not ours to print.
    level = os.environ.get(LOG_LEVEL_ENV, "OFF")
    builder = (SparkSession.builder.master(master).appName("forecaster-predict")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.adaptive.enabled", "false")  # one task per bucket, as planned
               .config("spark.python.worker.reuse", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.log.level", level))
    if java_options := driver_java_options(level):
        # The administrators' slot: a user's own spark.driver.extraJavaOptions still apply, after these.
        builder = builder.config("spark.driver.defaultJavaOptions", java_options)
    quiet_py4j()
    with jvm_stderr_filtered():
        return builder.getOrCreate()


def _kind(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ConfigError(f"cannot {what} {str(path)!r}: unsupported file type {suffix!r} "
                      f"(use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})")


def _checked_request(forecaster: Any, horizon: int | None,
                     quantiles: list[float] | None) -> tuple[int, tuple[float, ...]]:
    """Horizon and quantiles checked on the driver by the checks `LSTMForecaster.predict` makes (their
    one statement: `params.requested_horizon`, `requested_quantiles`), so that a bad request fails before
    Spark starts any work."""
    return requested_horizon(forecaster.horizon, horizon), requested_quantiles(forecaster.quantiles_, quantiles)


def _artifact_path(model_dir: Path) -> str:
    """The saved forecaster's folder inside a checked model folder, relative to it (`saved_forecaster`)."""
    return str(saved_forecaster(model_dir).relative_to(model_dir.resolve()))


def _parquet_time(path: Path, time_column: str) -> tuple[bool, str | None]:
    """(nanosecond unit?, zone) of the time column of a Parquet file or dataset, from its metadata."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = ds.dataset(str(path), format="parquet").schema
    if time_column not in schema.names:
        return False, None
    kind = schema.field(time_column).type
    if not pa.types.is_timestamp(kind):
        return False, None
    return kind.unit == "ns", kind.tz


def _read(spark: Any, path: Path, kind: str) -> Any:
    if not path.exists():
        raise DataError(f"cannot read {str(path)!r}: no such file")
    if kind == "csv":
        # All columns as text; converted per bucket like pandas.read_csv (see _like_read_csv).
        return spark.read.option("header", "true").option("inferSchema", "false").csv(str(path))
    # pandas writes nanosecond timestamps, which Spark refuses unless read as longs (converted back
    # per bucket, with the zone, from the file's own metadata).
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    return spark.read.parquet(str(path))


def _output_schema(job: _Job) -> Any:
    """`forecaster.contract.output_schema` as a Spark schema (times as UTC wall clock, no zone)."""
    from pyspark.sql import types as T

    kinds = {DATETIME: T.TimestampNTZType(), DOUBLE: T.DoubleType()}
    return T.StructType([T.StructField(name, kinds.get(kind, T.StringType())) for name, kind in job.output_schema])


def _worker_error(exc: Exception) -> ForecasterError | None:
    """Our error raised in a Python worker (Spark hands it back as text), rebuilt with its class and
    message; None when the failure is not one of ours."""
    from forecaster import errors

    for match in reversed(list(re.finditer(r"forecaster\.errors\.(\w+): ([^\n]*)", str(exc)))):
        cls = getattr(errors, match[1], None)
        if isinstance(cls, type) and issubclass(cls, ForecasterError):
            return cls(f"{match[2]} [raised in a Spark worker]")
    return None


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing target is moved aside first and removed after.

    A directory cannot be renamed over a non-empty one, so there is a moment between the two renames
    when ``target`` does not exist; readers never see a partial output. If the second rename fails the
    previous output is put back.
    """
    if tmp.is_file() and not target.is_dir():
        os.replace(tmp, target)  # one file over one file (or nothing): atomic
        return
    if not target.exists() and not target.is_symlink():
        os.rename(tmp, target)
        return
    aside = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def _write(result: Any, staging: Path, kind: str) -> Path:
    """Write ``result`` under ``staging`` (a temporary path beside the target); returns what to rename
    into place: ``staging`` itself (a Parquet dataset directory), or for CSV the single part file."""
    if kind == "parquet":
        result.write.parquet(str(staging))
        return staging
    # One CSV file: repartition(1), not coalesce(1), which would pull the forecasting itself into one task.
    (result.repartition(1).write.option("header", "true")
     .option("timestampNTZFormat", "yyyy-MM-dd'T'HH:mm:ss").csv(str(staging)))
    parts = sorted(staging.glob("part-*.csv"))
    if len(parts) != 1:
        raise DataError(f"spark wrote {len(parts)} CSV part files, expected one, in {str(staging)!r}")
    return parts[0]


def predict_spark(model: LoadedModel, input_path: str | os.PathLike, output_path: str | os.PathLike,
                  horizon: int | None = None, quantiles: list[float] | None = None, master: str | None = None,
                  buckets: int | None = None) -> dict[str, Any]:
    """Forecast every series of ``input_path`` into ``output_path`` with Spark; returns a summary.

    ``output_path`` ending in ``.parquet``/``.pq`` becomes a Parquet *dataset directory* (part files);
    ending in ``.csv`` it becomes one CSV file. Either way it is written beside the target first and
    renamed into place, so a failed run leaves the previous output as it was. ``buckets`` (default
    ``$FORECASTER_SPARK_BUCKETS``, else at least twice the cores Spark has and at most ``ROWS_PER_BUCKET``
    input rows per bucket) is the number of batches the series are hashed into. Summary: rows, series,
    fallback_series (series forecast by seasonal naive), buckets.
    """
    from pyspark.sql import functions as F

    source, target = Path(input_path), Path(output_path)
    in_kind, out_kind = _kind(source, "read"), _kind(target, "write")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: folder {str(target.parent)!r} does not exist")
    forecaster = model.forecaster
    columns = forecaster.columns_
    horizon, kept = _checked_request(forecaster, horizon, quantiles)
    schema = tuple(output_schema(columns, kept))

    spark = _session(master)
    sc = spark.sparkContext
    buckets = int(buckets or os.environ.get(BUCKETS_ENV) or 0)
    if buckets < 0:
        raise ConfigError(f"buckets must be positive, got {buckets}")

    with tempfile.TemporaryDirectory(prefix="forecaster-spark-") as tmp:
        # A unique folder name per run: SparkFiles refuses a second, different file under the same name.
        local_model = Path(tmp) / f"model-{model.name}-{model.version}-{uuid.uuid4().hex[:8]}"
        fetch_verified(model.uri, local_model)
        sc.addFile(str(local_model), recursive=True)
        time_ns, time_zone = False, None
        if in_kind == "parquet" and source.exists():
            time_ns, time_zone = _parquet_time(source, columns.time)
        job = _Job(model_dir=local_model.name, artifact_path=_artifact_path(local_model),
                   horizon=horizon, quantiles=kept, csv_input=in_kind == "csv", time_ns=time_ns,
                   time_zone=time_zone, id_column=columns.id,
                   time_column=columns.time, output_schema=schema, model_name=model.name,
                   model_version=str(model.version))

        frame = _read(spark, source, in_kind)
        wanted = [columns.id, columns.time, columns.target, *columns.covariates()]
        missing = [name for name in wanted if name not in frame.columns]
        if missing:
            raise MissingColumnError(f"missing column(s) {missing}; input has {frame.columns}",
                                     column=", ".join(missing))
        frame = frame.select(*wanted)
        if not buckets:  # counting Parquet rows reads only file footers; CSV needs one pass
            buckets = max(BUCKETS_PER_CORE * sc.defaultParallelism, math.ceil(frame.count() / ROWS_PER_BUCKET))
        n_buckets = buckets
        bucket = F.pmod(F.xxhash64(F.col(columns.id).cast("string")), F.lit(n_buckets))
        result = (frame.withColumn("_bucket", bucket).repartition(n_buckets, "_bucket").groupBy("_bucket")
                  .applyInPandas(lambda pdf: _forecast_bucket(pdf, job), schema=_output_schema(job)))
        # Spark writes into a hidden folder beside the target (readers of the folder ignore it).
        hidden = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.spark"
        try:
            hidden.mkdir()
            staged = _write(result, hidden / ("dataset" if out_kind == "parquet" else "csv"), out_kind)
            summary = _summary(spark, staged, out_kind, columns.id)
            _move_into_place(staged, target)
        except ForecasterError:
            raise
        except Exception as exc:
            ours = _worker_error(exc)
            if ours is None:
                raise
            raise ours from exc
        finally:
            _remove(hidden)
    summary["buckets"] = n_buckets
    return summary


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _summary(spark: Any, staged: Path, kind: str, id_column: str) -> dict[str, Any]:
    """Rows, series and fallback series of the staged output (read back: cheap, and no recomputation)."""
    from pyspark.sql import functions as F

    if kind == "parquet":
        written = spark.read.parquet(str(staged))
    else:
        written = spark.read.option("header", "true").csv(str(staged))
    row = written.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct(id_column).alias("series"),
                      F.countDistinct(F.when(F.col(MODEL_COLUMN) != LSTM, F.col(id_column))).alias("fallback"),
                      ).collect()[0]
    return {"rows": int(row["rows"]), "series": int(row["series"]), "fallback_series": int(row["fallback"])}

