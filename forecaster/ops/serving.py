"""`mlflow models serve`: a request body that cannot be read answers 400 with a short message of ours.

MLflow's scoring server (``mlflow.pyfunc.scoring_server``, MLflow 3.17) turns the body of a POST to
``/invocations`` into a frame before our model sees it. When that failed, the answer (HTTP 400) carried:

- ``application/vnd.apache.parquet`` and ``text/csv``: the server's Python stack trace, in the
  ``stack_trace`` field of the JSON answer (``parse_parquet_input`` and ``parse_csv_input`` report the
  failure through ``_handle_serving_error``, which always attaches it);
- ``application/json``: the whole request body, echoed back after ``Input:`` (``_decode_json_input``);
- ``text/csv`` that is not UTF-8: the whole body again, inside the ``repr`` of the ``UnicodeDecodeError``
  (``invocations``).

No option of ``mlflow models serve``, environment variable or flavor setting changes this, and the body
is parsed before any model code runs. What does run in the server process first is the model's
``load_context`` (our `ForecasterPyfunc`), once, while the server module is already imported: it calls
`guard_request_parsing`, which wraps those four functions of the server module. The server looks them up
by name for every request, so the wrapped ones are used: a body that parses is handled by MLflow exactly
as before; when reading the body failed, the answer is HTTP 400 with ``DataError: the request body is
not <what it should be> (<the reader's error, first line>)`` and nothing else: no stack trace, no echo
of the body. MLflow's own refusals that carry neither (a JSON list, no ``dataframe_split`` key, ...) and
every error of the model itself pass through unchanged. MLflow's refusals of a request that did parse
(its check of ``params``: ``{"horizon": "abc"}``) keep MLflow's message but lose the echo of the whole
request frame that ``invocations`` puts before it. Outside the scoring server nothing is wrapped.

MLflow's files are not changed; a later MLflow that renames these functions leaves them unwrapped (and
`tests/ops/test_serving.py` fails), it does not break serving.

A request's cost is bounded (`Limits`, each settable by an environment variable of the server): a body
over ``max_bytes`` is answered 413 before it is read whole (`_bound_body_reads`: Starlette's
``Request.body`` stops at the limit, or at a declared ``Content-Length`` over it), JSON nested deeper
than ``max_depth`` 400 before it is parsed (Python's parser raised RecursionError at depth ~1,000: a
500), and a frame of more rows or series, or of longer ids (each forecast row repeats its id), than allowed
400 before any forecast (`check_frame_size`, called by the model's ``predict``). The statistical members
read a bounded tail of each series (`forecaster.models.baselines.tail_length`), so within the limits a
request's work is bounded too: MLflow's timeout (504) does not stop the worker thread, but that thread
cannot run for longer than the largest request allowed takes.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SCORING_SERVER = "mlflow.pyfunc.scoring_server"
_LONGEST_REASON = 200


def _reading_failure(exc: BaseException) -> BaseException | None:
    """What failed inside a parser of the server, if it was not MLflow's own refusal."""
    failure = exc.__cause__ or exc.__context__
    return None if failure is None or isinstance(failure, _mlflow_exception()) else failure


def _utf8_failure(exc: BaseException) -> BaseException | None:
    """``invocations`` decoding a CSV body: the one failure it raises from a `UnicodeDecodeError`."""
    return exc.__cause__ if isinstance(exc.__cause__, UnicodeDecodeError) else None


# name in the server module -> (what the body is not, which of MLflow's errors from it are replaced)
_GUARDED: dict[str, tuple[str, Callable[[BaseException], BaseException | None]]] = {
    "parse_parquet_input": ("a readable Parquet file", _reading_failure),
    "parse_csv_input": ("a readable CSV table", _reading_failure),
    "_decode_json_input": ("a readable JSON object", _reading_failure),
    "invocations": ("UTF-8 text", _utf8_failure),
}


def _mlflow_exception() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


_ECHO = "Failed to predict data '"


def _without_echo(message: Any) -> str | None:
    """MLflow's error after ``Failed to predict data '<the whole request frame>'. Error:`` (its refusal of
    the request's params, for one), without the echo of the client's data; None for other messages."""
    if isinstance(message, str) and message.startswith(_ECHO) and "\nError: " in message:
        return message.split("\nError: ", 1)[1].strip()
    return None


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _LONGEST_REASON:
        first = first[:_LONGEST_REASON] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _guarded(function: Callable[..., Any], what: str,
             failure_of: Callable[[BaseException], BaseException | None]) -> Callable[..., Any]:
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    mlflow_exception = _mlflow_exception()

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except mlflow_exception as exc:
            failure = failure_of(exc)
            echoed = _without_echo(exc.message)
            if failure is None and echoed is not None:  # MLflow's own check of the request, e.g. params
                raise mlflow_exception(echoed, error_code=BAD_REQUEST) from None
            if failure is None:
                raise
            raise mlflow_exception(f"DataError: the request body is not {what} ({_reason(failure)})",
                                   error_code=BAD_REQUEST) from None

    guarded.forecaster_guard = True
    return guarded


@dataclass(frozen=True)
class Limits:
    """The most one request to `mlflow models serve` may hold; each from an environment variable of the
    server (``FORECASTER_SERVE_MAX_BYTES`` ...), else the default here."""

    max_bytes: int = 32 * 2**20
    max_depth: int = 16  # a frame needs 4: {"dataframe_split": {"data": [[...]]}}
    # At these, one request took 9-11 s of `predict` with the test's tiny model on a shared 2-core machine
    # (2,000 series of 100 points; 200 of 1,000, the members' tail); 1,000 of 1,000 took 40 s
    # (`bench/bench_request_cost.py`). MLflow's request timeout is 60 s.
    max_rows: int = 200_000
    max_series: int = 2_000
    # An id comes back on every forecast row: its length is multiplied by the horizon in the answer (a 31 MB
    # request of 1,300 series with 8,000-character ids: a 128 MB answer, 15.7 s, the server 1.2 -> 2.0 GB).
    # At 256, the ids of the largest request allowed add at most ~25 MB to an answer at horizon 48.
    max_id_chars: int = 256

    @classmethod
    def from_environment(cls) -> Limits:
        """The limits, each overridden by ``FORECASTER_SERVE_<NAME>`` when set to a positive integer."""
        from forecaster.errors import ConfigError

        values = {}
        for name in cls.__dataclass_fields__:
            key = f"FORECASTER_SERVE_{name.upper()}"
            text = os.environ.get(key)
            if text is None:
                continue
            if not _DECIMAL.fullmatch(text.strip()) or int(text) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {text!r}")
            values[name] = int(text)
        return cls(**values)


#: An integer as ASCII digits: ``str.isdigit`` also takes "²" and other digits ``int`` refuses.
_DECIMAL = re.compile(r"[0-9]+")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(body: bytes) -> int:
    """How deeply a JSON text nests arrays and objects, counted without parsing it (brackets inside
    strings are not counted): linear in its length, no recursion."""
    brackets = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    step = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(brackets, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def as_frame(model_input: Any) -> Any:
    """The request as a pandas frame: MLflow hands the model the ``inputs`` and ``instances`` forms of a
    request (and a dict or list given to the pyfunc in Python) as they were parsed, a dict of columns or a
    list of records, since the model has no input schema to convert them by. DataError when they make no
    table (columns of unequal lengths, scalars, anything else)."""
    import pandas as pd

    from forecaster.errors import DataError

    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict | list):
        try:
            return pd.DataFrame(model_input)
        except (ValueError, TypeError) as exc:
            raise DataError(f"the request's input is not one table of columns: {_reason(exc)}") from None
    raise DataError(f"the request's input is not a table of columns but {type(model_input).__name__}: send "
                    "dataframe_split, dataframe_records, or inputs as a dict of columns")


def check_frame_size(frame: Any, id_column: str, limits: Limits | None = None) -> None:
    """RequestTooLargeError when a request's frame has more rows or series, or longer ids, than `Limits`
    allows; validation's ColumnTypeError for ids it refuses (lists, booleans, blanks), which are counted as
    it reads them."""
    from forecaster.errors import RequestTooLargeError

    limits = limits or Limits.from_environment()
    if len(frame) > limits.max_rows:
        raise RequestTooLargeError(_too_many_rows(len(frame), limits))
    if int((frame.columns == id_column).sum()) != 1:
        return  # no id column, or two: validation refuses it before any forecast
    from forecaster.data.validation import parse_ids

    # As validation reads them (text; a typed error for lists, dicts, booleans or blanks, which MLflow's
    # inputs and instances forms hand over as parsed): counting raw values failed on the unhashable ones.
    ids = parse_ids(frame[id_column], id_column)
    series = ids.nunique()
    if series > limits.max_series:
        raise RequestTooLargeError(f"the request has {series} series, over the limit of {limits.max_series} "
                                   "(FORECASTER_SERVE_MAX_SERIES): split it, or use forecaster predict",
                                   column=id_column)
    lengths = ids.str.len()
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > limits.max_id_chars:
        too_long = int((lengths > limits.max_id_chars).sum())
        first = str(ids[lengths > limits.max_id_chars].iloc[0])
        raise RequestTooLargeError(f"{too_long} row(s) have an id longer than the limit of {limits.max_id_chars} "
                                   f"characters (FORECASTER_SERVE_MAX_ID_CHARS), the longest {longest}: each "
                                   "forecast row repeats its id; shorten the ids, or use forecaster predict",
                                   column=id_column, series=[f"{first[:40]}..."])


def _too_many_rows(rows: int, limits: Limits) -> str:
    return (f"the request has {rows} rows, over the limit of {limits.max_rows} (FORECASTER_SERVE_MAX_ROWS): send "
            "fewer rows, or use forecaster predict")


def _parquet_within_limits(parse: Callable[..., Any], limits: Limits) -> Callable[..., Any]:
    """The server's Parquet reader, refusing (400, our line) a body whose own metadata says it holds more
    rows than ``limits.max_rows``, or more than ``limits.max_bytes`` of data once decompressed, before
    reading any of it: a compressed body is no measure of its frame (360 KB of Parquet held 30 million
    rows, and took the server from 1.1 to 3 GB before the frame's own check). A body that is not
    Parquet is left to the reader, which says so."""
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    mlflow_exception = _mlflow_exception()

    @functools.wraps(parse)
    def parse_within_limits(parquet_input: Any, *args: Any, **kwargs: Any) -> Any:
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(parquet_input).metadata
            rows = meta.num_rows
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        except Exception:  # not Parquet, or unreadable: the reader's own answer
            rows = size = None
        finally:
            if hasattr(parquet_input, "seek"):
                parquet_input.seek(0)
        if rows is not None and rows > limits.max_rows:
            raise mlflow_exception(f"RequestTooLargeError: {_too_many_rows(rows, limits)}", error_code=BAD_REQUEST)
        if size is not None and size > limits.max_bytes:
            raise mlflow_exception(f"RequestTooLargeError: the request body holds {size} bytes of data once "
                                   f"decompressed, over the limit of {limits.max_bytes} (FORECASTER_SERVE_MAX_BYTES)",
                                   error_code=BAD_REQUEST)
        return parse(parquet_input, *args, **kwargs)

    parse_within_limits.forecaster_limit = True
    return parse_within_limits


def _limited(invocations: Callable[..., Any], server: Any, limits: Limits) -> Callable[..., Any]:
    """``invocations`` refusing a body over ``limits.max_bytes`` (413) or JSON nested deeper than
    ``limits.max_depth`` (400) before MLflow parses it, with our one line."""
    @functools.wraps(invocations)
    def limited(data: Any, content_type: Any, *args: Any, **kwargs: Any) -> Any:
        size = len(data) if isinstance(data, (bytes, str)) else 0
        message = None
        if size > limits.max_bytes:
            status, message = 413, (f"RequestTooLargeError: the request body is {size} bytes, over the limit "
                                    f"of {limits.max_bytes} (FORECASTER_SERVE_MAX_BYTES)")
        elif "json" in str(content_type or "").lower() and isinstance(data, (bytes, str)):
            depth = json_depth(data.encode() if isinstance(data, str) else data)
            if depth > limits.max_depth:
                status, message = 400, (f"DataError: the request body nests JSON {depth} deep, over the limit of "
                                        f"{limits.max_depth}: a frame needs 4")
        if message is not None:
            body = json.dumps({"error_code": "BAD_REQUEST", "message": message})
            return server.InvocationsResponse(response=body, status=status, mimetype="application/json")
        return invocations(data, content_type, *args, **kwargs)

    limited.forecaster_limit = True
    return limited


def _too_large(size: int | None, limits: Limits) -> Exception:
    """The MLflow error the scoring server answers with 413 and our one line."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    class BodyTooLarge(MlflowException):
        def get_http_status_code(self) -> int:
            return 413

        def serialize_as_json(self) -> str:  # the two keys `_limited` answers with, not MLflow's four
            return json.dumps({"error_code": "BAD_REQUEST", "message": self.message})

    said = (f"over the limit of {limits.max_bytes} bytes" if size is None   # sent in chunks: read up to the limit
            else f"{size} bytes, over the limit of {limits.max_bytes}")
    return BodyTooLarge(f"RequestTooLargeError: the request body is {said} (FORECASTER_SERVE_MAX_BYTES)",
                        error_code=BAD_REQUEST)


def _bound_body_reads(limits: Limits) -> None:
    """Starlette's ``Request.body`` (what the server's ``/invocations`` awaits) reading at most
    ``limits.max_bytes``: a declared ``Content-Length`` over it is refused unread, a body sent in chunks
    (no length) when its total passes it, so an oversized body is never held in memory whole (a 1.5 GB
    chunked body took the server from 1.1 to 4.2 GB before its 413)."""
    from starlette.requests import Request

    if getattr(Request.body, "forecaster_limit", False):
        return

    async def body(self: Request) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "").strip()
            if _DECIMAL.fullmatch(declared) and int(declared) > limits.max_bytes:
                raise _too_large(int(declared), limits)
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _too_large(None, limits)
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    body.forecaster_limit = True
    Request.body = body


def _csv_ids_as_text(parse: Callable[..., Any], id_column: str) -> Callable[..., Any]:
    """The server's CSV reader with the model's id column read as written, as `forecaster predict` reads a
    CSV file (`forecaster.data.io.csv_id_options`): `001` stays `001` and `NA` is an id. (MLflow's reader
    typed the columns by the model's signature, which pandas refuses for its datetime column.)"""
    import csv
    import io

    import pandas as pd

    from forecaster.data.io import csv_id_options

    @functools.wraps(parse)
    def parse_csv_input(csv_input: Any, schema: Any = None) -> Any:
        text = csv_input if isinstance(csv_input, str) else csv_input.read()
        names = next(csv.reader(io.StringIO(text)), [])
        options = csv_id_options([str(name) for name in names], id_column)
        if not options:
            return parse(io.StringIO(text), schema)
        if schema is not None:  # the signature's types, datetimes parsed as dates (pandas has no such dtype)
            types = [(n, t, getattr(pd.api.types.pandas_dtype(t), "kind", "O"))
                     for n, t in zip(schema.input_names(), schema.pandas_types()) if n in names]
            options["parse_dates"] = [n for n, _, kind in types if kind == "M"]
            options["dtype"] = {**{n: t for n, t, kind in types if kind != "M"}, **options["dtype"]}
        try:
            return pd.read_csv(io.StringIO(text), **options)
        except Exception as exc:
            from mlflow.protos.databricks_pb2 import BAD_REQUEST

            raise _mlflow_exception()("the request body is not a readable CSV table",
                                      error_code=BAD_REQUEST) from exc

    parse_csv_input.forecaster_ids = True
    return parse_csv_input


def guard_request_parsing(id_column: str | None = None) -> bool:
    """Wrap the scoring server's body readers and bound its requests (see the module); with ``id_column``,
    a CSV body's ids are read as written. False outside the scoring server."""
    server = sys.modules.get(SCORING_SERVER)
    if server is None:
        return False
    function = getattr(server, "parse_csv_input", None)
    if id_column and callable(function) and not getattr(function, "forecaster_ids", False) and not getattr(
            function, "forecaster_guard", False):
        server.parse_csv_input = _csv_ids_as_text(function, id_column)
    for name, (what, failure_of) in _GUARDED.items():
        function = getattr(server, name, None)
        if callable(function) and not getattr(function, "forecaster_guard", False):
            setattr(server, name, _guarded(function, what, failure_of))
    function = getattr(server, "invocations", None)
    if (callable(function) and not getattr(function, "forecaster_limit", False)
            and hasattr(server, "InvocationsResponse")):
        server.invocations = _limited(function, server, Limits.from_environment())
    function = getattr(server, "parse_parquet_input", None)
    if callable(function) and not getattr(function, "forecaster_limit", False):
        server.parse_parquet_input = _parquet_within_limits(function, Limits.from_environment())
    _bound_body_reads(Limits.from_environment())
    return True
