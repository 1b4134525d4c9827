"""Per-series scaling: equality with scikit-learn, cutoffs, unseen series and JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.errors import ConfigError, DataError

COLS = Columns()
SKLEARN = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}


def make_frame(n_series=4, length=30, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i}" for i in range(n_series)], length),
            "ds": np.tile(pd.date_range("2024-01-01", periods=length, freq="D"), n_series),
            "y": rng.gamma(2.0, 3.0, n_series * length) * np.repeat(np.arange(1, n_series + 1), length),
            "observed": 1.0,
        }
    )
    frame.loc[frame["unique_id"] == "s3", "y"] = 7.0  # constant series
    return frame


@pytest.mark.parametrize("method", ["standard", "robust", "minmax"])
def test_matches_sklearn_per_series(method):
    frame = make_frame()
    frame.loc[[1, 2], "observed"] = 0.0
    frame.loc[[1, 2], "y"] = 1e6  # unobserved rows must not influence the fit
    until = pd.Timestamp("2024-01-20")
    scaler = SeriesScaler(method).fit(frame, COLS, until=until)
    for sid, group in frame.groupby("unique_id"):
        train = group[(group["ds"] <= until) & (group["observed"] == 1.0)][["y"]].to_numpy()
        reference = SKLEARN[method]().fit(train)
        values = group[["y"]].to_numpy()
        expected = reference.transform(values)[:, 0]
        got = scaler.transform(values[:, 0], [sid] * len(values))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(scaler.inverse_transform(got, [sid] * len(got)), values[:, 0], rtol=1e-10)
    assert scaler.scale_["s3"] == 1.0


def test_per_series_cutoff_dict():
    frame = make_frame()
    until = {f"s{i}": pd.Timestamp("2024-01-05") + pd.Timedelta(days=5 * i) for i in range(4)}
    scaler = SeriesScaler("standard").fit(frame, COLS, until=until)
    for sid, limit in until.items():
        part = frame[(frame["unique_id"] == sid) & (frame["ds"] <= limit)]["y"]
        assert scaler.center_[sid] == pytest.approx(part.mean())
        if sid != "s3":
            assert scaler.scale_[sid] == pytest.approx(part.std(ddof=0))
    with pytest.raises(ConfigError, match="s3"):
        SeriesScaler().fit(frame, COLS, until={k: v for k, v in until.items() if k != "s3"})


def test_mean_abs_and_none():
    frame = pd.DataFrame({"unique_id": ["a"] * 4, "ds": pd.date_range("2024", periods=4), "y": [-2.0, 2, 4, 0]})
    scaler = SeriesScaler("mean_abs").fit(frame, COLS)
    assert (scaler.center_["a"], scaler.scale_["a"]) == (0.0, 2.0)
    assert scaler.transform(np.array([4.0]), ["a"]).tolist() == [2.0]
    identity = SeriesScaler("none").fit(frame, COLS)
    assert identity.transform(np.array([3.5]), ["a"]).tolist() == [3.5]


def test_two_dimensional_values_broadcast_per_row():
    frame = make_frame()
    scaler = SeriesScaler("standard").fit(frame, COLS)
    values = np.arange(6.0).reshape(2, 3)
    out = scaler.transform(values, ["s0", "s1"])
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1], (values[1] - scaler.center_["s1"]) / scaler.scale_["s1"])
    np.testing.assert_allclose(scaler.inverse_transform(out, ["s0", "s1"]), values)


def test_unknown_series_and_fit_missing():
    frame = make_frame()
    scaler = SeriesScaler("standard").fit(frame[frame["unique_id"] != "s2"], COLS)
    with pytest.raises(DataError) as info:
        scaler.transform(np.ones(2), ["s0", "s2"])
    assert info.value.series == ["s2"] and "fit_missing" in str(info.value)
    before = scaler.center_["s0"]
    shifted = frame.assign(y=frame["y"] + 100.0)
    assert scaler.fit_missing(shifted, COLS) == ["s2"]
    assert scaler.center_["s0"] == before
    assert scaler.center_["s2"] == pytest.approx(shifted.loc[shifted["unique_id"] == "s2", "y"].mean())


def test_series_without_fit_rows_gets_identity():
    frame = make_frame()
    frame.loc[frame["unique_id"] == "s1", "observed"] = 0.0
    scaler = SeriesScaler("robust").fit(frame, COLS)
    assert (scaler.center_["s1"], scaler.scale_["s1"]) == (0.0, 1.0)


def test_json_round_trip(tmp_path):
    scaler = SeriesScaler("robust").fit(make_frame(), COLS)
    data = scaler.to_dict()
    assert json.loads(json.dumps(data)) == data
    path = tmp_path / "scaler.json"
    scaler.save_json(path)
    loaded = SeriesScaler.load_json(path)
    assert loaded.method == "robust" and loaded.to_dict() == data
    values = np.linspace(0, 50, 8)
    ids = ["s0", "s1"] * 4
    np.testing.assert_array_equal(loaded.transform(values, ids), scaler.transform(values, ids))


def test_unknown_method():
    with pytest.raises(ConfigError, match="method"):
        SeriesScaler("zscore")


# --------------------------------------------------------------------------- mase: MASE's own units


def _mase_reference(history: np.ndarray, season: int) -> float:
    """The MASE scale of one history, written out here on purpose (the test's own arithmetic)."""
    for lag in (season, 1):
        pairs = [abs(a - b) for a, b in zip(history[lag:], history[:-lag]) if np.isfinite(a) and np.isfinite(b)]
        if pairs and np.mean(pairs) > 0:
            return float(np.mean(pairs))
    return float("nan")


def test_mase_scale_is_each_series_seasonal_naive_mae_and_round_trips():
    frame = make_frame(length=40)
    frame = frame.sample(frac=1.0, random_state=0)  # rows out of order: the lags are steps of time
    until = pd.Timestamp("2024-02-01")
    scaler = SeriesScaler("mase", season=7).fit(frame, COLS, until=until)
    for sid in ("s0", "s1", "s2"):
        history = frame[(frame["unique_id"] == sid) & (frame["ds"] <= until)].sort_values("ds")["y"].to_numpy()
        assert scaler.center_[sid] == 0.0
        assert scaler.scale_[sid] == pytest.approx(_mase_reference(history, 7), rel=1e-12)
        assert scaler.scale_[sid] != pytest.approx(_mase_reference(history, 1), rel=1e-6)  # the season is used
        values = frame.loc[frame["unique_id"] == sid, "y"].to_numpy()
        ids = [sid] * len(values)
        np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values, ids), ids), values, rtol=1e-12)


def test_mase_scale_skips_masked_readings_instead_of_reading_them():
    frame = make_frame(n_series=1, length=30)
    frame.loc[[5, 12], "observed"] = 0.0
    frame.loc[[5, 12], "y"] = 0.0  # what a masked blank holds: must be neither a value nor a dropped step
    scaler = SeriesScaler("mase", season=7).fit(frame, COLS)
    history = frame["y"].to_numpy().copy()
    history[[5, 12]] = np.nan
    assert scaler.scale_["s0"] == pytest.approx(_mase_reference(history, 7), rel=1e-12)
    closed_up = np.delete(frame["y"].to_numpy(), [5, 12])  # the blanks dropped, their neighbours paired
    assert scaler.scale_["s0"] != pytest.approx(_mase_reference(closed_up, 7), rel=1e-6)


def test_mase_scale_of_short_constant_and_zero_series_is_finite_and_positive():
    rows = {"short": [3.0, 5.0, 4.0, 8.0], "constant": [7.0] * 30, "zeros": [0.0] * 30, "one": [2.5]}
    frame = pd.DataFrame(
        {"unique_id": np.repeat(list(rows), [len(v) for v in rows.values()]),
         "ds": np.concatenate([pd.date_range("2024-01-01", periods=len(v), freq="D") for v in rows.values()]),
         "y": np.concatenate(list(rows.values()))}
    )
    scaler = SeriesScaler("mase", season=7).fit(frame, COLS)
    assert scaler.scale_["short"] == pytest.approx((2 + 1 + 4) / 3)  # not longer than a season: lag 1
    assert scaler.scale_["constant"] == 7.0  # no naive error at all: its level is the floor
    assert scaler.scale_["one"] == 2.5
    assert scaler.scale_["zeros"] == 1.0  # nothing to floor by: the identity, as every method's zero scale
    out = scaler.transform(np.concatenate(list(rows.values())), frame["unique_id"])
    assert np.isfinite(out).all()


def test_mase_season_is_kept_in_json_and_used_for_new_series(tmp_path):
    frame = make_frame(length=40)
    scaler = SeriesScaler("mase", season=7).fit(frame[frame["unique_id"] != "s2"], COLS)
    path = tmp_path / "scaler.json"
    scaler.save_json(path)
    loaded = SeriesScaler.load_json(path)
    assert loaded.method == "mase" and loaded.season == 7 and loaded.to_dict() == scaler.to_dict()
    assert loaded.fit_missing(frame, COLS) == ["s2"]
    history = frame.loc[frame["unique_id"] == "s2", "y"].to_numpy()
    assert loaded.scale_["s2"] == pytest.approx(_mase_reference(history, 7), rel=1e-12)
    old = {"method": "standard", "series": {"a": [1.0, 2.0]}}  # written before scalers had a season
    assert SeriesScaler.from_dict(old).season == 1
    with pytest.raises(ConfigError, match="season"):  # a damaged file: refused (the loader names it)
        SeriesScaler.from_dict({**scaler.to_dict(), "season": 2.5})


@pytest.mark.parametrize("season", [0, -24, 2.5, True])
def test_mase_refuses_a_season_that_is_not_a_positive_integer(season):
    with pytest.raises(ConfigError, match="season"):
        SeriesScaler("mase", season=season)


@pytest.mark.parametrize("first", ["forecaster.evaluation.metrics", "forecaster.data.scaling", "forecaster.contract"])
def test_the_scaler_and_the_metrics_import_in_either_order(first):
    """`mase` reuses metrics' scale; metrics imports the contract, which imports forecaster.data: a fresh
    interpreter that imports any of them first must not meet a half-initialised module."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {first}; import forecaster.data.scaling"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
