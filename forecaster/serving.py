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
`tests/test_serving.py` fails), it does not break serving.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

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


def guard_request_parsing() -> bool:
    """Wrap the scoring server's body readers (see the module); False outside the scoring server."""
    server = sys.modules.get(SCORING_SERVER)
    if server is None:
        return False
    for name, (what, failure_of) in _GUARDED.items():
        function = getattr(server, name, None)
        if callable(function) and not getattr(function, "forecaster_guard", False):
            setattr(server, name, _guarded(function, what, failure_of))
    return True
