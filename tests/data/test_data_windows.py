"""Feature arrays, streamed training windows and inference windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.data.windows import (
    CovariateStats,
    build_feature_arrays,
    future_features,
    last_windows,
    make_window_dataset,
    window_index,
)
from forecaster.errors import CovariateError, ShortHistoryError

COLS = Columns(static=("s",), known_future=("k",), past_only=("p",))
L, H = 3, 2


def tiny_frame() -> pd.DataFrame:
    """Series a: 8 daily steps with y = 0..7; series b: 3 steps with y = 100..102."""
    parts = []
    for sid, n, base, static in (("a", 8, 0.0, 1.0), ("b", 3, 100.0, 3.0)):
        y = base + np.arange(n)
        parts.append(pd.DataFrame({
            "unique_id": sid, "ds": pd.date_range("2024-01-01", periods=n, freq="D"), "y": y,
            "s": static, "k": y * 2.0, "p": -y,
        }))
    return pd.concat(parts, ignore_index=True)


def tiny_arrays(**kwargs):
    vframe = validate_frame(tiny_frame(), COLS)
    scaler = SeriesScaler("none").fit(vframe.frame, COLS)
    return build_feature_arrays(vframe, scaler, H, **kwargs)


def collect(dataset):
    """All batches of a dataset concatenated into numpy arrays."""
    parts = list(dataset.as_numpy_iterator())
    inputs = {key: np.concatenate([p[0][key] for p in parts]) for key in parts[0][0]}
    return inputs, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def naive_windows(arrays, cutoff=None):
    """Reference: every window by plain slicing of the per-series arrays."""
    past, future, static, target, weight = [], [], [], [], []
    for sid in arrays.ids:
        rows, fut = arrays.past[sid], arrays.future_feats[sid]
        n = len(rows) if cutoff is None else cutoff[sid] + 1
        first = L - 1 if n >= L + H else 0
        for end in range(first, n - H):
            padded = np.concatenate([np.zeros((L, rows.shape[1]), np.float32), rows])
            past.append(padded[end + 1 : end + 1 + L])
            future.append(fut[end + 1 : end + 1 + H])
            static.append(arrays.static[sid])
            target.append(arrays.target[sid][end + 1 : end + 1 + H])
            weight.append(arrays.weight[sid][end + 1 : end + 1 + H])
    return np.stack(past), np.stack(future), np.stack(static), np.stack(target), np.stack(weight)


def test_feature_layout_and_standardisation():
    arrays = tiny_arrays(until=pd.Timestamp("2024-01-04"))
    calendar = ["dow_sin", "dow_cos", "doy_sin", "doy_cos"]
    assert arrays.past_names == ["y_scaled", "observed", *calendar, "p", "k"]
    assert arrays.future_names == [*calendar, "k"]
    assert arrays.static_names == ["s"]
    assert arrays.past["a"].shape == (8, 8) and arrays.future_feats["b"].shape == (3, 5)
    assert arrays.past["a"].dtype == np.float32
    np.testing.assert_array_equal(arrays.target["b"], [100.0, 101.0, 102.0])
    # k over training rows (time <= Jan 4): a -> 0, 2, 4, 6 and b -> 200, 202, 204
    train_k = np.array([0, 2, 4, 6, 200, 202, 204.0])
    expected = (np.arange(8) * 2.0 - train_k.mean()) / train_k.std()
    np.testing.assert_allclose(arrays.past["a"][:, -1], expected, rtol=1e-6)
    np.testing.assert_allclose(arrays.future_feats["a"][:, -1], expected, rtol=1e-6)
    np.testing.assert_allclose([arrays.static["a"][0], arrays.static["b"][0]], [-1.0, 1.0])
    data = arrays.stats.to_dict()
    assert CovariateStats.from_dict(json.loads(json.dumps(data))) == arrays.stats


def test_windows_equal_naive_slicing():
    arrays = tiny_arrays()
    inputs, target, weight = collect(make_window_dataset(arrays, L, H, batch_size=3, shuffle=False))
    past, future, static, ref_target, ref_weight = naive_windows(arrays)
    assert len(target) == 5  # a: ends 2..5, b: one left-padded window
    np.testing.assert_array_equal(inputs["past"], past)
    np.testing.assert_array_equal(inputs["future"], future)
    np.testing.assert_array_equal(inputs["static"], static)
    np.testing.assert_array_equal(target, ref_target)
    np.testing.assert_array_equal(weight, ref_weight)
    padded = inputs["past"][-1]
    assert padded[:2].tolist() == [[0.0] * 8] * 2 and padded[2, 0] == 100.0 and padded[2, 1] == 1.0


def test_shapes():
    arrays = tiny_arrays()
    inputs, target, weight = next(iter(make_window_dataset(arrays, L, H, batch_size=4, seed=1)))
    assert inputs["past"].shape == (4, L, 8) and inputs["future"].shape == (4, H, 5)
    assert inputs["static"].shape == (4, 1) and target.shape == (4, H) and weight.shape == (4, H)


def many_series_arrays():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "unique_id": np.repeat([f"s{i:02d}" for i in range(20)], 40),
        "ds": np.tile(pd.date_range("2024-01-01", periods=40, freq="h"), 20),
        "y": rng.normal(size=800),
    })
    vframe = validate_frame(frame, Columns())
    return build_feature_arrays(vframe, SeriesScaler("standard").fit(vframe.frame, Columns()), 4)


def test_same_seed_same_batches_and_other_seed_differs():
    arrays = many_series_arrays()
    first = [b[1] for b in make_window_dataset(arrays, 8, 4, batch_size=32, seed=7).as_numpy_iterator()]
    again = [b[1] for b in make_window_dataset(arrays, 8, 4, batch_size=32, seed=7).as_numpy_iterator()]
    other = [b[1] for b in make_window_dataset(arrays, 8, 4, batch_size=32, seed=8).as_numpy_iterator()]
    assert len(first) == len(again) and all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    assert sum(len(b) for b in first) == 20 * (40 - 8 - 4 + 1)


def test_cutoff_respected():
    arrays = tiny_arrays()
    cutoff = {"a": 5, "b": pd.Timestamp("2024-01-03")}
    table = window_index(arrays, L, H, cutoff=cutoff)
    assert table[:, 1].tolist() == [2, 3, 0]  # a: last target step 5 -> ends 2, 3
    assert ((table[:, 1] + H) <= np.array([5, 5, 2])).all()
    _, target, _ = collect(make_window_dataset(arrays, L, H, batch_size=8, cutoff=cutoff))
    a_targets = target[target < 100]
    assert a_targets.max() == 5.0
    past, *_ = naive_windows(arrays, cutoff={"a": 5, "b": 2})
    assert len(past) == len(target)


def test_start_after_selects_later_windows():
    arrays = tiny_arrays()
    table = window_index(arrays, L, H, start_after={"a": 4, "b": 1})
    assert table[:, 1].tolist() == [4, 5]


def test_windows_without_observed_targets_skipped():
    frame = tiny_frame()
    frame = frame[~frame["ds"].isin(pd.to_datetime(["2024-01-05", "2024-01-06"])) | (frame["unique_id"] == "b")]
    vframe = validate_frame(frame, COLS, missing_policy="mask")
    arrays = build_feature_arrays(vframe, SeriesScaler("standard").fit(vframe.frame, COLS), H)
    ends = window_index(arrays, L, H)[:, 1].tolist()
    assert ends == [2, 4, 5, 0]  # end 3 would predict only the two masked days
    assert arrays.target["a"][4] == 0.0 and arrays.weight["a"][4] == 0.0


def test_max_windows_per_series_and_stride():
    arrays = many_series_arrays()
    table = window_index(arrays, 8, 4, max_windows_per_series=5, seed=3)
    assert np.bincount(table[:, 2]).tolist() == [5] * 20
    assert np.array_equal(table, window_index(arrays, 8, 4, max_windows_per_series=5, seed=3))
    strided = window_index(arrays, 8, 4, stride=10)
    assert strided[strided[:, 2] == 0, 1].tolist() == [15, 25, 35]


def test_no_window_fits():
    with pytest.raises(ShortHistoryError, match="input_size"):
        make_window_dataset(tiny_arrays(), L, H, batch_size=2, cutoff={"a": 1, "b": 1})


def test_last_windows_with_future_covariates():
    frame = tiny_frame()
    extra = pd.DataFrame({
        "unique_id": ["a", "a", "b", "b"],
        "ds": pd.to_datetime(["2024-01-09", "2024-01-10", "2024-01-04", "2024-01-05"]),
        "y": np.nan, "s": [1.0, 1.0, 3.0, 3.0], "k": [50.0, 51.0, 60.0, 61.0], "p": 0.0,
    })
    train = tiny_arrays()
    vframe = validate_frame(pd.concat([frame, extra]), COLS, horizon=H, for_prediction=True)
    arrays = build_feature_arrays(vframe, SeriesScaler("none").fit(vframe.frame, COLS), H, stats=train.stats)
    feats = future_features(vframe.future, vframe.freq, COLS, train.stats)
    inputs, ids = last_windows(arrays, 4, H, feats)
    assert ids == ["a", "b"]
    assert inputs["past"].shape == (2, 4, 8) and inputs["future"].shape == (2, H, 5)
    np.testing.assert_array_equal(inputs["past"][0], arrays.past["a"][-4:])
    assert inputs["past"][1, 0].tolist() == [0.0] * 8 and inputs["past"][1, 1, 0] == 100.0
    k_mean, k_std = train.stats.mean[-1], train.stats.std[-1]
    np.testing.assert_allclose(inputs["future"][1, :, -1], (np.array([60.0, 61.0]) - k_mean) / k_std, rtol=1e-6)
    with pytest.raises(CovariateError):
        last_windows(arrays, 4, H)


def test_last_windows_calendar_only():
    frame = tiny_frame().drop(columns=["s", "k", "p"])
    vframe = validate_frame(frame, Columns())
    arrays = build_feature_arrays(vframe, SeriesScaler("none").fit(vframe.frame, Columns()), H)
    inputs, _ = last_windows(arrays, 5, H)
    assert inputs["future"].shape == (2, H, 4) and inputs["static"].shape == (2, 0)
    expected = arrays.future_feats["a"][1:3]  # Jan 9-10 fall on the weekdays of Jan 2-3
    np.testing.assert_allclose(inputs["future"][0, :, :2], expected[:, :2], atol=1e-6)
