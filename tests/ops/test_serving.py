"""`mlflow models serve` answering /invocations with our model: a real server process on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from bench.serve_process import start_server, stop_server
from tests.synthetic import tiny_registry

pytestmark = [pytest.mark.server, pytest.mark.slow]


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
    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch, tiny_registry(root) as (uri, data):
        # What an earlier test's `tracking.configure` leaves behind (MLflow's set_registry_uri writes the
        # variable): a store without the model. The server must look the model up where it is told.
        patch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{root / 'an-earlier-store.db'}")
        proc, base = start_server("models:/tiny@champion", uri, root / "server.log")
        yield base, data
        stop_server(proc)


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
