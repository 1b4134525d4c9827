"""`mlflow models serve` answering /invocations with our model: a real server process on 127.0.0.1.

Issue #29, server side, too: it refuses a request over its documented size at once with our one line,
answers strict JSON (never a bare NaN), and keeps answering small requests while another client sends
oversized and long-history ones. One server for the module, started with small limits (the requests
of the first tests are well within them): each server start pays MLflow's, TensorFlow's and the
model's loading."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.serve_process import start_server, stop_server
from forecaster.ops.serving import Limits, json_depth
from tests.synthetic import tiny_registry

pytestmark = [pytest.mark.server, pytest.mark.slow]

# Small limits, so that the test's requests stay small: the server reads them from its environment.
LIMITS = {"FORECASTER_SERVE_MAX_BYTES": "400000", "FORECASTER_SERVE_MAX_ROWS": "6000",
          "FORECASTER_SERVE_MAX_SERIES": "20"}
TIMEOUT = 60  # the client's timeout, MLflow's default request timeout too


def _strict_json(text: str):
    """JSON as the standard has it: a bare NaN or Infinity token fails."""
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


#: What `_post_bytes` records when the server answered and closed before the client had sent the whole body
#: (it stops reading at the byte limit): the client's send fails and the 413 may never be read.
CLOSED = "closed before the body was read"


def _post_bytes(url: str, payload: bytes) -> tuple[int | str, str]:
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except urllib.error.URLError as err:
        if isinstance(err.reason, BrokenPipeError | ConnectionResetError):
            return CLOSED, str(err.reason)
        raise


def _body(frame: pd.DataFrame, **params) -> bytes:
    split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    return json.dumps({"dataframe_split": split, **({"params": params} if params else {})}).encode()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server's base URL and the training data's path."""
    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in LIMITS.items():
            patch.setenv(key, value)
        with tiny_registry(root) as (uri, data):
            # What an earlier test's `tracking.configure` leaves behind (MLflow's set_registry_uri writes the
            # variable): a store without the model. The server must look the model up where it is told.
            patch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{root / 'an-earlier-store.db'}")
            proc, base = start_server("models:/tiny@champion", uri, root / "server.log")
            try:
                yield base, data
            finally:
                stop_server(proc)


@pytest.fixture
def limited(server):
    """The same server's invocations URL and the training data."""
    base, data = server
    return f"{base}/invocations", pd.read_csv(data)


def _history(data: Path, n_series: int = 6) -> pd.DataFrame:
    frame = pd.read_csv(data)
    return frame[frame["unique_id"].isin([f"S{i}" for i in range(n_series)])]


def test_dataframe_split_with_params_returns_the_forecast_frame(server):
    base, data = server
    history = _history(data)
    status, body = _post(f"{base}/invocations", {
        "dataframe_split": history.to_dict(orient="split", index=False),
        "params": {"horizon": 4, "quantiles": [0.1, 0.9]},
    })
    assert status == 200, body
    out = pd.DataFrame(body["predictions"])
    # One schema with the batch output: which registered version made each row.
    assert list(out.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9", "model", "model_name",
                                 "model_version"]
    assert set(out["model_name"]) == {"tiny"} and set(out["model_version"]) == {"1"}
    assert len(out) == 6 * 4 and set(out["model"]) == {"lstm"}
    assert (out["q0.1"] <= out["q0.9"]).all()


def test_dataframe_records_give_the_same_numbers(server):
    base, data = server
    history = _history(data, 2)
    _, split = _post(f"{base}/invocations", {"dataframe_split": history.to_dict(orient="split", index=False)})
    status, records = _post(f"{base}/invocations", {"dataframe_records": history.to_dict(orient="records")})
    assert status == 200
    assert pd.DataFrame(records["predictions"]).equals(pd.DataFrame(split["predictions"]))
    assert len(records["predictions"]) == 2 * 12  # default horizon: the trained one


def test_a_bad_frame_gets_400_with_our_message_not_a_stack_trace(server):
    base, data = server
    history = _history(data, 2)
    duplicated = pd.concat([history, history.iloc[[3]]])
    status, body = _post(f"{base}/invocations", {"dataframe_split": duplicated.to_dict(orient="split", index=False)})
    assert status == 400
    assert body["message"].startswith("DuplicateRowsError") and "S0" in body["message"]
    assert "Failed to predict data" not in body["message"]  # the client's frame is not echoed back
    assert "Traceback" not in json.dumps(body)


def test_a_horizon_beyond_training_gets_400(server):
    base, data = server
    status, body = _post(f"{base}/invocations", {
        "dataframe_split": _history(data, 1).to_dict(orient="split", index=False), "params": {"horizon": 99}})
    assert status == 400 and "trained horizon 12" in body["message"]


def test_params_of_the_wrong_type_get_400_without_the_request_echoed_back(server):
    base, data = server
    history = _history(data, 1)
    status, body = _post(f"{base}/invocations", {
        "dataframe_split": history.to_dict(orient="split", index=False), "params": {"horizon": "abc"}})
    assert status == 400
    assert body["message"].startswith("Invalid parameters found") and "horizon" in body["message"]
    assert "Failed to predict data" not in body["message"] and "S0" not in body["message"]
    assert "stack_trace" not in body


def _post_raw(url: str, payload: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


GARBAGE = bytes(range(256)) * 8


@pytest.mark.parametrize(("content_type", "payload", "first_words"), [
    # MLflow reads the body before our model runs; where reading failed, its answer held the server's
    # stack trace (Parquet, CSV) or the whole body (JSON): now our one line (forecaster/ops/serving.py).
    ("application/vnd.apache.parquet", GARBAGE,
     "DataError: the request body is not a readable Parquet file (ArrowInvalid: Could not open Parquet input"),
    ("application/json", GARBAGE,
     "DataError: the request body is not a readable JSON object (JSONDecodeError: Expecting value: line 1"),
    ("text/csv", b'unique_id,ds,y\n"S0,2024-01-01T00:00:00,1.0\n',
     "DataError: the request body is not a readable CSV table (ParserError: Error tokenizing data."),
    ("text/csv", GARBAGE,  # MLflow's answer held the whole body, in the repr of a UnicodeDecodeError
     "DataError: the request body is not UTF-8 text (UnicodeDecodeError: 'utf-8' codec can't decode byte 0x80"),
    # MLflow's own refusal of a well-formed body holds neither a trace nor the body: it stays.
    ("application/json", b"[1, 2]", "Invalid input. The input must be a JSON dictionary with exactly one of"),
], ids=["parquet", "json", "csv", "csv-not-utf8", "json-list"])
def test_an_unreadable_body_gets_400_with_one_short_message_and_the_server_keeps_serving(
        server, content_type, payload, first_words):
    base, data = server
    status, text = _post_raw(f"{base}/invocations", payload, content_type)
    assert status == 400, text
    body = json.loads(text)
    assert body["message"].startswith(first_words), body
    assert set(body) <= {"error_code", "message", "sqlstate", "error_class"}, body  # no "stack_trace"
    assert "Traceback" not in text and "\\x00" not in text and len(text) < 600, text  # the body not echoed
    ok, _ = _post(f"{base}/invocations", {"dataframe_split": _history(data, 1).to_dict(orient="split", index=False)})
    assert ok == 200


def test_a_csv_body_keeps_its_ids_as_written(server):
    """Ids are text in a served CSV body too (`001` stays `001`, `NA` is an id), as in `forecaster predict`;
    MLflow's own CSV reader typed the columns by the signature, which pandas refuses for a datetime."""
    base, data = server
    history = _history(data, 2)
    history = history.assign(unique_id=history["unique_id"].map({"S0": "001", "S1": "NA"}))
    status, text = _post_raw(f"{base}/invocations", history.to_csv(index=False).encode(), "text/csv")
    assert status == 200, text
    out = pd.DataFrame(json.loads(text)["predictions"])
    assert sorted(set(out["unique_id"])) == ["001", "NA"] and len(out) == 2 * 12


def test_a_request_is_checked_by_the_models_validation_not_a_lossy_signature(server):
    """The probe of 2026-12-07: times with a UTC offset (accepted by `forecaster predict`) got 400 and
    MLflow's "Failed to enforce schema of data '<the client's frame>'"; JSON true/false in the target were
    turned into 1.0/0.0 and forecast with 200. Now the first are one time line in UTC, the second our
    typed error naming the column."""
    base, data = server
    history = _history(data, 2)
    _, naive = _post(f"{base}/invocations", {"dataframe_split": history.to_dict(orient="split", index=False)})
    offset = history.assign(ds=pd.to_datetime(history["ds"]).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    status, body = _post(f"{base}/invocations", {"dataframe_split": offset.to_dict(orient="split", index=False)})
    assert status == 200, body
    got, expected = pd.DataFrame(body["predictions"]), pd.DataFrame(naive["predictions"])
    assert (got["ds"] == expected["ds"] + "+00:00").all()  # the request's offset kept, as batch output keeps it
    assert got.drop(columns="ds").equals(expected.drop(columns="ds"))

    # MLflow's other request forms reach a model without an input schema as parsed (a dict of columns, a list
    # of records): the same forecasts, and columns of unequal lengths our line, not a stack trace.
    for body in ({"inputs": history.to_dict(orient="list")}, {"instances": history.to_dict(orient="records")}):
        status, answer = _post(f"{base}/invocations", body)
        assert status == 200, answer
        assert pd.DataFrame(answer["predictions"]).equals(pd.DataFrame(naive["predictions"]))
    status, answer = _post(f"{base}/invocations", {"inputs": {"unique_id": ["S0", "S0"], "ds": ["2024-01-01"],
                                                              "y": [1.0, 2.0]}})
    assert status == 400 and "stack_trace" not in answer, answer
    assert answer["message"].startswith("DataError: the request's input is not one table of columns: ValueError")

    flags = history.assign(y=history["y"] > 300)
    status, body = _post(f"{base}/invocations", {"dataframe_split": flags.to_dict(orient="split", index=False)})
    assert status == 400
    assert body["message"] == "ColumnTypeError: target must be numeric, not bool (column: 'y')"


# --------------------------------------------------------------------------- limits


def _long_series(length: int) -> pd.DataFrame:
    t = np.arange(length)
    return pd.DataFrame({"unique_id": "LONG", "ds": pd.date_range("2020-01-01", periods=length, freq="h").astype(str),
                         "y": 200.0 + 30.0 * np.sin(2 * np.pi * t / 24) + 0.01 * t})


def test_json_depth_is_counted_without_parsing_and_ignores_brackets_in_strings():
    assert json_depth(b'{"dataframe_split": {"data": [["[[[", 1]]}}') == 4
    assert json_depth(b"[" * 1000 + b"]" * 1000) == 1000
    assert json_depth(b'{"id": "a\\"[[[["}') == 1
    assert Limits().max_depth >= 4


def test_a_body_over_the_byte_limit_gets_413_with_our_line(limited):
    url, _ = limited
    payload = b'{"dataframe_split": {"columns": ["unique_id"], "data": [["' + b"x" * 500_000 + b'"]]}}'
    # Sent in part and the answer read: a server that refuses a body at the limit closes the connection,
    # and a client still sending the rest may never see the 413 (`_post_bytes`' CLOSED).
    status, text = _unfinished(url, {"Content-Length": str(len(payload))}, payload[:65536])
    assert status == 413, text
    body = _strict_json(text)
    assert body["message"] == (f"RequestTooLargeError: the request body is {len(payload)} bytes, over the limit "
                               "of 400000 (FORECASTER_SERVE_MAX_BYTES)")
    assert set(body) == {"error_code", "message"}


def test_json_nested_1000_deep_gets_400_with_our_line_not_500(limited):
    url, _ = limited
    status, text = _post_bytes(url, b'{"dataframe_split": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert status == 400, text
    assert _strict_json(text)["message"] == ("DataError: the request body nests JSON 1001 deep, over the limit "
                                             "of 16: a frame needs 4")


def test_too_many_rows_or_series_get_400_before_any_forecast(limited):
    url, data = limited
    status, text = _post_bytes(url, _body(_long_series(6001)))
    assert status == 400, text
    assert _strict_json(text)["message"].startswith("RequestTooLargeError: the request has 6001 rows, over the "
                                                    "limit of 6000 (FORECASTER_SERVE_MAX_ROWS)")
    many = pd.concat([data[data["unique_id"] == "S0"].tail(60).assign(unique_id=f"N{i}") for i in range(21)])
    status, text = _post_bytes(url, _body(many))
    assert status == 400, text
    assert _strict_json(text)["message"].startswith("RequestTooLargeError: the request has 21 series, over the "
                                                    "limit of 20 (FORECASTER_SERVE_MAX_SERIES)")


def test_an_id_longer_than_the_limit_gets_400_before_any_forecast(limited):
    """The probe of 2026-12-07: each forecast row repeats its id, so an answer grew with id length times the
    horizon (a 31 MB request of 8,000-character ids: a 128 MB answer, 15.7 s, the server 1.2 -> 2.0 GB).
    An id of the limit's length is still forecast."""
    url, data = limited
    series = data[data["unique_id"] == "S0"].tail(60)
    status, text = _post_bytes(url, _body(series.assign(unique_id="x" * 257)))
    assert status == 400, text
    message = _strict_json(text)["message"]
    assert message.startswith("RequestTooLargeError: 60 row(s) have an id longer than the limit of 256 characters "
                              "(FORECASTER_SERVE_MAX_ID_CHARS), the longest 257")
    assert "x" * 41 not in message and len(text) < 600  # the id named by its start, not echoed whole
    status, text = _post_bytes(url, _body(series.assign(unique_id="x" * 256)))
    assert status == 200, text
    assert set(pd.DataFrame(_strict_json(text)["predictions"])["unique_id"]) == {"x" * 256}


def test_a_huge_value_gets_400_naming_the_series_and_the_answer_stays_json(limited):
    url, data = limited
    frame = data[data["unique_id"].isin(["S0", "S1"])].copy()
    frame.loc[frame.index[frame["unique_id"] == "S1"][-3], "y"] = 1e30
    status, text = _post_bytes(url, _body(frame))
    assert status == 400, text
    message = _strict_json(text)["message"]
    assert message.startswith("ValueRangeError: 1 target value(s) beyond +-1e+15") and "series: S1" in message
    status, text = _post_bytes(url, _body(frame[frame["unique_id"] == "S0"]))
    assert status == 200
    predictions = pd.DataFrame(_strict_json(text)["predictions"])
    assert np.isfinite(predictions[["forecast", "q0.1", "q0.9"]].to_numpy(dtype=float)).all()


def test_small_requests_keep_answering_while_another_client_sends_big_ones(limited):
    url, data = limited
    small = _body(data[data["unique_id"] == "S0"].tail(72))
    big = [_body(_long_series(5900)),  # the longest history allowed: its cost is bounded by the members' tail
           b'{"dataframe_split": {"columns": ["unique_id"], "data": [["' + b"x" * 600_000 + b'"]]}}',
           _body(_long_series(8000))]
    heavy: list[tuple[int, float]] = []
    light: list[tuple[int, float]] = []

    def send(payload: bytes, into: list) -> None:
        started = time.perf_counter()
        status, _ = _post_bytes(url, payload)
        into.append((status, time.perf_counter() - started))

    def heavy_client() -> None:
        for _ in range(3):
            for payload in big:
                send(payload, heavy)

    thread = threading.Thread(target=heavy_client)
    thread.start()
    while thread.is_alive() or len(light) < 10:
        send(small, light)
        if len(light) >= 40:
            break
    thread.join(timeout=10 * TIMEOUT)
    print(f"\nsmall requests: {len(light)}, latencies (s): " + ", ".join(f"{s:.3f}" for _, s in light))
    print("big requests (status, s): " + ", ".join(f"{c} {s:.3f}" for c, s in heavy))
    assert not thread.is_alive() and len(heavy) == 9
    assert [c for c, _ in light] == [200] * len(light)  # every small request answered within the timeout
    # Long but allowed: answered; over the byte limit: refused unread (413, or the connection closed while
    # the client was still sending: which one the client sees is a race of the two sockets); too many rows:
    # 400.
    statuses = [c for c, _ in heavy]
    assert statuses[0::3] == [200] * 3 and statuses[2::3] == [400] * 3
    assert set(statuses[1::3]) <= {413, CLOSED}, statuses


def test_the_limits_come_from_the_environment_and_a_bad_one_is_refused(monkeypatch):
    from forecaster.errors import ConfigError

    for key in LIMITS:  # the module's server fixture set them
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FORECASTER_SERVE_MAX_ROWS", "10")
    assert Limits.from_environment().max_rows == 10 and Limits.from_environment().max_series == Limits().max_series
    for bad in ("ten", "²", "0"):  # "²" passes str.isdigit, and int() refused it with a ValueError
        monkeypatch.setenv("FORECASTER_SERVE_MAX_ROWS", bad)
        with pytest.raises(ConfigError, match=rf"FORECASTER_SERVE_MAX_ROWS must be a positive integer, got '{bad}'"):
            Limits.from_environment()


def _unfinished(url: str, head: dict[str, str], sent: bytes) -> tuple[int, str]:
    """Send a request's headers and the first ``sent`` bytes of its body, never the rest, and read the
    answer: only a server that stops reading at the limit can give one (else the client's timeout)."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=TIMEOUT)
    try:
        connection.putrequest("POST", where.path)
        for key, value in {"Content-Type": "application/json", **head}.items():
            connection.putheader(key, value)
        connection.endheaders()
        connection.send(sent)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_body_too_large_is_refused_before_the_server_has_read_it(limited):
    # A body is read whole before MLflow's invocations sees it: a 1.5 GB one sent in chunks took the
    # server from 1.1 to 4.2 GB before its 413. Both bodies here are never finished: the answer proves
    # the server stopped reading at the limit.
    url, data = limited
    chunk = b" " * 100_000
    status, text = _unfinished(url, {"Transfer-Encoding": "chunked"}, (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 5)
    assert status == 413, text
    assert _strict_json(text) == {"error_code": "BAD_REQUEST", "message": "RequestTooLargeError: the request body is "
                                  "over the limit of 400000 bytes (FORECASTER_SERVE_MAX_BYTES)"}
    status, text = _unfinished(url, {"Content-Length": str(10 * 2**30)}, b'{"dataframe_split": ')
    assert status == 413, text
    assert _strict_json(text)["message"] == (f"RequestTooLargeError: the request body is {10 * 2**30} bytes, over "
                                             "the limit of 400000 (FORECASTER_SERVE_MAX_BYTES)")
    status, _ = _post_bytes(url, _body(data[data["unique_id"] == "S0"].tail(60)))  # and it goes on answering
    assert status == 200


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    out = io.BytesIO()
    frame.to_parquet(out, index=False, compression="zstd")
    return out.getvalue()


def test_a_parquet_body_is_measured_by_what_it_holds_not_by_its_compressed_size(limited):
    # 360 KB of Parquet held 30 million rows: read, they took the server from 1.1 to 3 GB before the
    # frame's own row check could refuse them. Its metadata says so before anything is read.
    url, _ = limited
    rows = 10_000_000
    many = pd.DataFrame({"unique_id": pd.Series(["S0"] * rows, dtype="category"), "y": np.ones(rows)})
    payload = _parquet(many)
    assert len(payload) < 400_000  # within the byte limit: only what it holds is over
    request = urllib.request.Request(url, data=payload, method="POST",
                                     headers={"Content-Type": "application/vnd.apache.parquet"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    assert refused.value.code == 400
    assert _strict_json(refused.value.read().decode())["message"] == (
        f"RequestTooLargeError: the request has {rows} rows, over the limit of 6000 (FORECASTER_SERVE_MAX_ROWS): "
        "send fewer rows, or use forecaster predict")
    wide = _parquet(pd.DataFrame({"unique_id": ["S0"], "ds": ["2024-01-01"], "y": ["x" * 1_000_000]}))
    request = urllib.request.Request(url, data=wide, method="POST",
                                     headers={"Content-Type": "application/vnd.apache.parquet"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    assert refused.value.code == 400
    assert re.fullmatch(r"RequestTooLargeError: the request body holds \d+ bytes of data once decompressed, over "
                        r"the limit of 400000 \(FORECASTER_SERVE_MAX_BYTES\)",
                        _strict_json(refused.value.read().decode())["message"])
