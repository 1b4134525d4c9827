"""Batch prediction from the registry: local engine, CLI, fallbacks, atomic output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.predict import predict
from tests.synthetic import hourly_frame, tiny_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    with tiny_registry(root) as (uri, _):
        yield uri, root


def _history_with_new_and_short_series(tmp):
    frame = hourly_frame()
    new = hourly_frame(n_series=1, seed=9).assign(unique_id="NEW")  # never seen in training
    short = hourly_frame(n_series=1, length=20, seed=3).assign(unique_id="SHORT")  # < min_history 24
    path = tmp / "scoring.parquet"
    pd.concat([frame, new, short]).to_parquet(path)
    return path


def test_local_engine_forecasts_every_series_and_marks_the_fallback(registry):
    _, tmp = registry
    path = _history_with_new_and_short_series(tmp)
    out_path = tmp / "forecasts.parquet"
    summary = predict("models:/tiny@champion", path, out_path, horizon=6, quantiles=[0.1, 0.9])
    out = pd.read_parquet(out_path)
    assert summary["series"] == 8 and summary["fallback_series"] == 1 and summary["model"] == "models:/tiny/1"
    assert list(out.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9", "model", "model_name",
                                 "model_version"]
    assert len(out) == 8 * 6
    assert set(out.loc[out.unique_id == "SHORT", "model"]) == {"seasonal_naive"}
    assert set(out.loc[out.unique_id != "SHORT", "model"]) == {"lstm"}
    assert set(out["model_name"]) == {"tiny"} and set(out["model_version"]) == {"1"}
    short = pd.read_parquet(path).query("unique_id == 'SHORT'")
    # Shorter than a season (min_history is one season here), the fallback repeats the last value.
    np.testing.assert_allclose(out.loc[out.unique_id == "SHORT", "forecast"], short["y"].iloc[-1])
    first_time = out.loc[out.unique_id == "NEW", "ds"].iloc[0]
    assert first_time == pd.read_parquet(path).query("unique_id == 'NEW'")["ds"].max() + pd.Timedelta("1h")


def test_cli_writes_csv_and_a_failed_run_leaves_the_previous_file(registry):
    uri, tmp = registry
    path = _history_with_new_and_short_series(tmp)
    out_path = tmp / "out" / "forecasts.csv"
    out_path.parent.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "pipelines.cli", "predict", "--model", "models:/tiny@champion",
           "--input", str(path), "--output", str(out_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "series=8" in ok.stdout
    before = out_path.read_bytes()
    assert len(pd.read_csv(out_path)) == 8 * 12

    bad = tmp / "bad.csv"
    frame = hourly_frame(n_series=2)
    frame.loc[3, "ds"] = frame.loc[2, "ds"]  # a duplicate (id, ds)
    frame.to_csv(bad, index=False)
    failed = subprocess.run([*cmd[:-4], "--input", str(bad), "--output", str(out_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert failed.returncode == 3 and "S0" in failed.stderr
    assert out_path.read_bytes() == before
    assert sorted(p.name for p in out_path.parent.iterdir()) == ["forecasts.csv"]  # no temporary left over


def test_unknown_alias_is_a_clear_error(registry):
    _, tmp = registry
    from forecaster.errors import ConfigError

    with pytest.raises(ConfigError, match="alias 'nope'"):
        predict("models:/tiny@nope", tmp / "scoring.parquet", tmp / "x.parquet")
    with pytest.raises(ConfigError, match="no run 'abc'"):
        predict("runs:/abc/model", tmp / "scoring.parquet", tmp / "x.parquet")
    with pytest.raises(ConfigError, match="models:/<name>@<alias>"):
        predict("s4://bucket/model", tmp / "scoring.parquet", tmp / "x.parquet")


def _history(tmp):
    path = tmp / "history-small.parquet"
    hourly_frame(n_series=2).to_parquet(path)
    return path


def _downloaded(tmp, name):
    import mlflow

    return Path(mlflow.artifacts.download_artifacts("models:/tiny/1", dst_path=str(tmp / name)))


@pytest.mark.parametrize(("uri", "name", "version"), [
    ("models:/tiny/latest", "tiny", "1"),
    ("models:/tiny/1", "tiny", "1"),
])
def test_every_registry_form_resolves_to_one_version_on_every_row(registry, uri, name, version):
    _, tmp = registry
    out_path = tmp / "forms.parquet"
    summary = predict(uri, _history(tmp), out_path, horizon=3)
    out = pd.read_parquet(out_path)
    assert summary["model"] == "models:/tiny/1"
    assert set(out["model_name"]) == {name} and set(out["model_version"]) == {version}


def test_a_run_uri_and_a_local_folder_are_accepted_and_recorded(registry):
    from mlflow import MlflowClient

    _, tmp = registry
    run_id = MlflowClient().get_model_version("tiny", "1").run_id
    out_path = tmp / "by-run.parquet"
    predict(f"runs:/{run_id}/model", _history(tmp), out_path, horizon=3)
    out = pd.read_parquet(out_path)
    assert set(out["model_name"]) == {"model"} and set(out["model_version"]) == {f"run:{run_id}"}
    folder = _downloaded(tmp, "local-model")
    predict(str(folder), _history(tmp), out_path, horizon=3)
    by_folder = pd.read_parquet(out_path)
    assert set(by_folder["model_version"]) == {"local"}
    pd.testing.assert_frame_equal(by_folder.drop(columns=["model_name", "model_version"]),
                                  out.drop(columns=["model_name", "model_version"]))


def test_a_version_that_does_not_exist_is_a_config_error_with_the_versions(registry, capsys):
    from forecaster.errors import ConfigError
    from pipelines.cli import EXIT_CONFIG, main

    _, tmp = registry
    with pytest.raises(ConfigError, match=r"model 'tiny' has no version 99; its versions: \[1\]"):
        predict("models:/tiny/99", _history(tmp), tmp / "x.parquet")
    code = main(["predict", "--model", "models:/tiny/99", "--input", str(_history(tmp)),
                 "--output", str(tmp / "x.parquet")])
    assert code == EXIT_CONFIG and "has no version 99" in capsys.readouterr().err
    assert not (tmp / "x.parquet").exists()


def test_the_output_is_checked_before_any_work(registry, capsys):
    """A bad destination is reported even with a model that does not exist: it is checked first."""
    from pipelines.cli import EXIT_CONFIG, main

    _, tmp = registry
    (tmp / "folder.parquet").mkdir(exist_ok=True)
    (tmp / "a-file").write_text("x")
    for output, reason in [(tmp / "no-such-folder" / "f.parquet", "does not exist"),
                           # said "folder '.../a-file/sub' does not exist" before (the probe of 2026-12-07)
                           (tmp / "a-file" / "sub" / "f.csv", f"{str(tmp / 'a-file')!r} is a file, not a folder"),
                           (tmp / "folder.parquet", "it is a folder"), (tmp / "f.json", "unsupported file type")]:
        code = main(["predict", "--model", "models:/no-such-model@champion", "--input", str(_history(tmp)),
                     "--output", str(output)])
        err = capsys.readouterr().err
        assert code == EXIT_CONFIG and reason in err and str(output) in err and ".tmp" not in err


def test_broken_model_files_are_model_errors_naming_the_file(registry, capsys):
    import json

    import keras

    from forecaster.errors import ModelError
    from forecaster.forecaster import MANIFEST, LSTMForecaster
    from pipelines.cli import EXIT_CONFIG, main

    _, tmp = registry
    saved = _downloaded(tmp, "broken") / "artifacts" / "forecaster"
    assert LSTMForecaster.load(saved).horizon == 12 and (saved / MANIFEST).is_file()
    good = {name: (saved / name).read_bytes() for name in ("network.keras", "scaler.json")}

    (saved / "network.keras").write_bytes(good["network.keras"][:1000])  # truncated
    with pytest.raises(ModelError, match=r"\['network.keras'\] differ from the SHA-256 recorded"):
        LSTMForecaster.load(saved)
    code = main(["predict", "--model", str(saved.parent.parent), "--input", str(_history(tmp)),
                 "--output", str(tmp / "y.parquet")])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG and "model error" in err and "network.keras" in err and "Traceback" not in err

    (saved / MANIFEST).unlink()  # an older save, or a manifest removed: each file is still checked on load
    with pytest.raises(ModelError, match=r"network.keras: cannot load the network"):
        LSTMForecaster.load(saved)
    (saved / "network.keras").write_bytes(good["network.keras"])

    (saved / "scaler.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"scaler.json: not a scaler \(JSONDecodeError"):
        LSTMForecaster.load(saved)
    scaler = json.loads(good["scaler.json"])
    first = next(iter(scaler["series"]))
    scaler["series"][first][1] = 0.0
    (saved / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(ModelError, match=rf"scale must be finite and > 0.*{first}"):
        LSTMForecaster.load(saved)
    (saved / "scaler.json").write_bytes(good["scaler.json"])

    lam = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    lam.save(saved / "network.keras")
    with pytest.raises(ModelError, match=r"network.keras: cannot load the network \(ValueError: .*Lambda"):
        LSTMForecaster.load(saved)


def test_a_file_changed_in_the_artifact_store_is_refused_before_it_runs(registry, capsys):
    """Whoever can write the artifact store cannot change what loads: every file of the logged model is
    checked against the SHA-256 its run recorded in the tracking store (code files included)."""
    from forecaster.errors import ModelError
    from pipelines.cli import EXIT_CONFIG, main

    _, tmp = registry
    code = [p for p in (tmp / "artifacts").rglob("*.py")]
    assert code, "the logged model's code file"
    original = code[0].read_bytes()
    code[0].write_bytes(original + b"\nraise SystemExit('this must never run')\n")
    try:
        with pytest.raises(ModelError, match=r"differ from the SHA-256 recorded in run"):
            predict("models:/tiny@champion", _history(tmp), tmp / "tampered.parquet")
        assert main(["predict", "--model", "models:/tiny/1", "--input", str(_history(tmp)),
                     "--output", str(tmp / "tampered.parquet")]) == EXIT_CONFIG
        assert code[0].name in capsys.readouterr().err
    finally:
        code[0].write_bytes(original)
    assert not (tmp / "tampered.parquet").exists()
    predict("models:/tiny@champion", _history(tmp), tmp / "tampered.parquet")  # restored: loads again


@pytest.mark.parametrize("after_seconds", [4.0])
def test_a_killed_prediction_leaves_the_previous_output_and_the_next_run_completes(registry, after_seconds):
    """A real `forecaster predict` SIGKILLed mid-run (loading or forecasting, whichever it is in)."""
    import signal

    uri, tmp = registry
    out_dir = tmp / f"killed-{after_seconds}"
    out_dir.mkdir()
    target = out_dir / "forecasts.parquet"
    predict("models:/tiny@champion", _history(tmp), target)
    before = target.read_bytes()
    cmd = [sys.executable, "-m", "pipelines.cli", "predict", "--model", "models:/tiny@champion",
           "--input", str(_history(tmp)), "--output", str(target), "--horizon", "5"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        victim.wait(timeout=after_seconds)
    except subprocess.TimeoutExpired:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    if victim.returncode == -signal.SIGKILL:
        assert target.read_bytes() == before  # untouched, or replaced whole: never half written
    from pipelines.cli import EXIT_OK, main

    # The next run, the same command through its entry point in this process (another process than the
    # killed one: what it left must not stop this one).
    assert main(cmd[3:]) == EXIT_OK
    assert len(pd.read_parquet(target)) == 2 * 5
    assert sorted(p.name for p in out_dir.iterdir()) == ["forecasts.parquet"]  # no temporary left over
