"""Issue #29, model side: a model folder runs none of its own code, values the model cannot carry are
refused (never a NaN forecast with exit 0), zero and negative values keep the seasonality, and the
statistical members read a bounded tail. Real trained models, real MLflow stores, real processes."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.errors import ModelError, ValueRangeError
from forecaster.models import baselines as B
from forecaster.models.combination import MEMBERS, member_forecasts
from tests.synthetic import cli_command, hourly_frame, tiny_registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    with tiny_registry(root) as (uri, data):
        yield uri, root, data


@pytest.fixture(scope="module")
def model(registry):
    from pipelines import steps

    return steps.load("models:/tiny/1").forecaster


def _folder(root: Path, name: str) -> Path:
    import mlflow

    from forecaster.ops import tracking

    tracking.configure()
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    return Path(mlflow.artifacts.download_artifacts("models:/tiny/1", dst_path=str(target)))


def _history(data: Path, n_series: int = 2) -> pd.DataFrame:
    frame = pd.read_csv(data)
    return frame[frame["unique_id"].isin([f"S{i}" for i in range(n_series)])]


def _cli(args: list[str], tracking_uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*cli_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- model folders


@pytest.mark.slow  # the module's trained, registered model
def test_a_line_appended_to_the_folders_code_is_refused_before_it_runs(registry, tmp_path):
    uri, root, data = registry
    folder = _folder(root, "appended")
    ran = tmp_path / "the-appended-line-ran"
    with open(folder / "mlflow_model.py", "a") as code:
        code.write(f"\nopen({str(ran)!r}, 'w').write('pwned')\n")
    _history(data).to_csv(tmp_path / "h.csv", index=False)
    done = _cli(["predict", "--model", str(folder), "--input", str(tmp_path / "h.csv"),
                 "--output", str(tmp_path / "f.csv")], uri, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("forecaster: model error: ") and "mlflow_model.py" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not ran.exists() and not (tmp_path / "f.csv").exists()


class _Sentinel:
    """Unpickling this creates a file: a pickle that is loaded leaves it behind."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def _edit_mlmodel(folder: Path, change) -> None:
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    change(mlmodel["flavors"]["python_function"], mlmodel)
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))


@pytest.mark.slow  # the module's trained, registered model
@pytest.mark.parametrize(("case", "reason"), [
    ("sklearn_loader", r"its loader_module is 'mlflow.sklearn', ours is 'mlflow.pyfunc.loaders.code_model'"),
    ("code_folder", r"it names a pickled python_model or a code folder of its own"),
    ("pickle", r"it names a pickled python_model or a code folder of its own"),
    ("absolute_artifact", r"its artifact path '/.*' is not a relative path inside the folder"),
    ("parent_artifact", r"its artifact path '\.\./.*' is not a relative path inside the folder"),
    ("symlink", r"it holds symbolic links"),
    ("extra_flavor", r"its flavors are \['python_function', 'sklearn'\]"),
])
def test_a_folder_that_is_not_ours_is_refused_before_mlflow_touches_it(registry, tmp_path, case, reason):
    from pipelines import steps

    _, root, _ = registry
    folder = _folder(root, f"edited-{case}")
    ran = tmp_path / "ran"
    outside = _folder(root, f"outside-{case}") / "artifacts" / "forecaster"  # a forecaster outside the folder
    if case == "sklearn_loader":
        (folder / "model.pkl").write_bytes(pickle.dumps(_Sentinel(str(ran))))
        _edit_mlmodel(folder, lambda f, m: f.update(loader_module="mlflow.sklearn", data="model.pkl"))
    elif case == "code_folder":
        (folder / "code").mkdir()
        (folder / "code" / "mlflow_model.py").write_text(f"open({str(ran)!r}, 'w')\n")
        _edit_mlmodel(folder, lambda f, m: f.update(code="code"))
    elif case == "pickle":
        (folder / "python_model.pkl").write_bytes(pickle.dumps(_Sentinel(str(ran))))
        _edit_mlmodel(folder, lambda f, m: f.update(python_model="python_model.pkl"))
    elif case == "absolute_artifact":
        _edit_mlmodel(folder, lambda f, m: f["artifacts"]["forecaster"].update(path=str(outside)))
    elif case == "parent_artifact":
        relative = os.path.relpath(outside, folder)
        _edit_mlmodel(folder, lambda f, m: f["artifacts"]["forecaster"].update(path=relative))
    elif case == "symlink":
        shutil.rmtree(folder / "artifacts" / "forecaster")
        (folder / "artifacts" / "forecaster").symlink_to(outside)
    elif case == "extra_flavor":
        _edit_mlmodel(folder, lambda f, m: m["flavors"].update(sklearn={"pickled_model": "model.pkl"}))
    with pytest.raises(ModelError, match=reason):
        steps.load(str(folder))
    assert not ran.exists()


@pytest.mark.slow  # the module's trained, registered model
def test_a_changed_or_added_file_and_a_folder_without_a_record_are_refused(registry, tmp_path, monkeypatch):
    from pipelines import steps

    _, root, _ = registry
    folder = _folder(root, "changed")
    assert steps.load(str(folder)).version == "local"  # the intact folder loads
    (folder / "conda.yaml").write_text((folder / "conda.yaml").read_text() + "# changed\n")
    with pytest.raises(ModelError, match=r"files \['conda.yaml'\] differ from the SHA-256 recorded in run"):
        steps.load(str(folder))
    folder = _folder(root, "added")
    (folder / "artifacts" / "extra.py").write_text("print('x')\n")
    with pytest.raises(ModelError, match=r"files \['artifacts/extra.py'\] differ"):
        steps.load(str(folder))
    # The same intact folder, but the store that logged it is not the one configured: nothing vouches for it.
    folder = _folder(root, "elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ModelError, match=r"no SHA-256 record of its files: its MLmodel names run '\w+'"):
        steps.load(str(folder))


# --------------------------------------------------------------------------- values the model cannot carry


@pytest.mark.slow  # the module's trained, registered model
def test_a_huge_value_is_a_data_error_naming_series_and_time_exit_3(registry, tmp_path, capsys):
    from pipelines.cli import EXIT_DATA, main

    _, _, data = registry
    history = _history(data)
    last = history.index[history["unique_id"] == "S1"][-5]
    history.loc[last, "y"] = 1e30
    history.to_csv(tmp_path / "h.csv", index=False)
    code = main(["predict", "--model", "models:/tiny/1", "--input", str(tmp_path / "h.csv"),
                 "--output", str(tmp_path / "f.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_DATA, err
    assert len(err) == 1 and err[0].startswith("forecaster: data error: 1 target value(s) beyond +-1e+15")
    assert "series: S1" in err[0] and str(pd.Timestamp(history.loc[last, "ds"]).isoformat()) in err[0]
    assert not (tmp_path / "f.csv").exists()


VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 1e15, -1e15, 1e16, 1e30, -1e30, 1e300, -1e300,
                     np.finfo(np.float64).max, np.finfo(np.float32).max]),
    st.floats(min_value=-1e20, max_value=1e20, allow_nan=False, allow_infinity=False),
)


@pytest.mark.slow  # the module's trained, registered model
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(st.integers(0, 239), VALUES), min_size=1, max_size=6),
       shift=st.sampled_from([0.0, -1000.0, -1e6]), negate=st.booleans())
def test_fuzzed_values_give_finite_forecasts_or_our_value_error(model, values, shift, negate):
    frame = hourly_frame(n_series=2, length=240)
    y = frame["y"].to_numpy().copy()
    y = -(y + shift) if negate else y + shift
    for position, value in values:
        y[240 + position] = value  # all in series S1
    frame["y"] = y
    try:
        out = model.predict(frame)
    except ValueRangeError as err:
        assert np.abs(y).max() > 1e15 and err.series and set(err.series) <= {"S1"}
        return
    numbers = out.drop(columns=["unique_id", "ds", "model"]).to_numpy(dtype="float64")
    assert np.isfinite(numbers).all() and len(out) == 2 * 12
    assert list(pd.unique(out["unique_id"])) == ["S0", "S1"]


# --------------------------------------------------------------------------- zero and negative values


def _seasonal(length: int = 240, m: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return 20.0 * np.sin(2 * np.pi * t / m) + 0.02 * t + rng.normal(0, 1.0, length)


#: Members whose forecast is not moved by exactly the constant added to a series: complex exponential
#: smoothing's level feeds its potential, so its dynamics depend on the level itself (centring the
#: series before the fit made it alone 20-56 % worse on the season-1 sets' validation windows,
#: docs/accuracy.md).
NOT_SHIFT_INVARIANT = {"ces"}


@pytest.mark.parametrize("method", sorted({m for ms in MEMBERS.values() for m in ms}))
def test_additive_members_commute_with_negation_and_shifts(method):
    y = _seasonal()  # values on both sides of zero: additive seasonal adjustment
    base = member_forecasts([y], 24, 24, {method})[method][0]
    np.testing.assert_allclose(member_forecasts([-y], 24, 24, {method})[method][0], -base, rtol=1e-7, atol=1e-7)
    assert np.ptp(base) > 20.0  # the seasonal swing is kept (its amplitude is 40)
    if method in NOT_SHIFT_INVARIANT:
        return
    for c in (-500.0, 7.5, 15.0):  # still not all positive: the same decomposition
        shifted = member_forecasts([y + c], 24, 24, {method})[method][0]
        np.testing.assert_allclose(shifted, base + c, rtol=1e-7, atol=1e-6)


@pytest.mark.slow  # the module's trained, registered model
def test_one_zero_keeps_the_seasonality_of_every_member_and_the_combined_forecast(model):
    positive = 100.0 + _seasonal(264)
    history, actual = positive[:240], positive[240:]
    with_zero = history.copy()
    with_zero[100] = 0.0
    clean = member_forecasts([history], 24, 24)
    for name, forecast in member_forecasts([with_zero], 24, 24).items():
        # it was the swing lost: MAE ~ 13 against the actuals; each member's own accuracy aside (the
        # recent robust trend extrapolates 7 noisy differences, MAE ~ 6 with or without the zero), the
        # zero moves no member by more than a fraction of the swing, whose amplitude is 40
        assert np.abs(forecast[0] - clean[name][0]).mean() < 4.0 and np.ptp(forecast[0]) > 30.0, name
        # (complex exponential smoothing, opt-in and weak on seasonal data: MAE 4.0 without the zero, 5.8
        # with it, which moves it by 1.8)
        assert np.abs(forecast[0] - actual).mean() < 4.0 or name in ("rtrend8", "ces"), name
    def combined(y: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame({"unique_id": "Z", "ds": pd.date_range("2024-01-01", periods=240, freq="h"), "y": y})
        return model.predict(frame)["forecast"].to_numpy()

    # The combination moves with one zero by what the zero moves the network alone, not by the swing
    # (its 3 members without seasonality moved it by ~9 on average: the swing's mean is 12.7).
    assert np.abs(combined(with_zero) - combined(history)).mean() < 3.0


def test_members_read_a_bounded_tail_whatever_the_history():
    long = 100.0 + _seasonal(200_000, seed=3)
    tail = long[-B.tail_length(24):]
    whole = member_forecasts([long], 12, 24)
    for name, forecast in member_forecasts([tail], 12, 24).items():
        np.testing.assert_array_equal(whole[name], forecast)


def test_the_batched_seasonal_naive_intervals_equal_the_series_one_at_a_time():
    rng = np.random.default_rng(5)
    histories = [rng.normal(50, 10, n) for n in (1, 2, 3, 5, 24, 25, 40)]
    batch = B.seasonal_naive_intervals_batch(histories, 6, 24, [0.1, 0.5, 0.9])
    for k, history in enumerate(histories):
        lag = 24 if history.size > 24 else 1
        errors = history[lag:] - history[:-lag]
        if errors.size < B.MIN_OWN_ERRORS:
            errors = np.concatenate([errors, -errors])
        spread = np.quantile(errors, [0.1, 0.5, 0.9]) if errors.size else np.zeros(3)
        point = B.seasonal_naive(history, 6, 24)
        expected = point[:, None] + np.sqrt(np.ceil(np.arange(1, 7) / lag))[:, None] * spread[None, :]
        np.testing.assert_allclose(batch[k], expected)
