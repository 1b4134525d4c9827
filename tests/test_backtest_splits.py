"""Rolling-origin backtest windows and the early-stopping validation cutoff."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.splits import backtest_windows, rolling_origin_cutoffs, time_ordered_validation_cutoff


def test_rolling_origin_cutoffs_count_back_from_the_end():
    assert rolling_origin_cutoffs({"a": 200}, horizon=48, n_windows=3, step=24) == [96, 72, 48]
    assert rolling_origin_cutoffs(pd.Series({"a": 10}), horizon=2, n_windows=1, step=5) == [2]


def test_rolling_origin_cutoffs_rejects_impossible_plans():
    with pytest.raises(ValueError):
        rolling_origin_cutoffs({"a": 96, "b": 50}, horizon=48, n_windows=3, step=24)  # 96 <= 96
    with pytest.raises(ValueError):
        rolling_origin_cutoffs({"a": 100}, horizon=0, n_windows=3, step=24)
    with pytest.raises(ValueError):
        rolling_origin_cutoffs({"a": 100}, horizon=4, n_windows=3, step=0)


def test_backtest_windows_hand_values_and_skip_report():
    # cutoffs from the end: 20, 15, 10
    plan = backtest_windows({"a": 100, "b": 35}, horizon=10, n_windows=3, step=5, min_train=20)
    assert plan.windows == [
        {"a": (80, 90)},
        {"a": (85, 95), "b": (20, 30)},
        {"a": (90, 100), "b": (25, 35)},
    ]
    assert plan.skipped.to_dict("records") == [{"window": 0, "unique_id": "b", "length": 35, "required": 40}]


def test_backtest_windows_nothing_skipped_gives_empty_report():
    windows, skipped = backtest_windows(pd.Series({"x": 50, "y": 60}), horizon=5, n_windows=2, step=5)
    assert windows == [{"x": (40, 45), "y": (50, 55)}, {"x": (45, 50), "y": (55, 60)}]
    assert skipped.empty
    assert list(skipped.columns) == ["window", "unique_id", "length", "required"]


def test_backtest_windows_m4_hourly_shape():
    # M4 Hourly lengths 700 and 960, horizon 48: 3 daily-spaced windows, last one ends at the end
    plan = backtest_windows({"H1": 700, "H2": 960}, horizon=48, n_windows=3, step=24, min_train=24 * 7)
    assert plan.windows[0] == {"H1": (604, 652), "H2": (864, 912)}
    assert plan.windows[-1] == {"H1": (652, 700), "H2": (912, 960)}


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 120), min_size=1),
    horizon=st.integers(1, 12),
    n_windows=st.integers(1, 5),
    step=st.integers(1, 12),
    min_train=st.integers(1, 30),
)
def test_backtest_windows_invariants(lengths, horizon, n_windows, step, min_train):
    plan = backtest_windows(lengths, horizon, n_windows, step, min_train)
    assert len(plan.windows) == n_windows
    for k, window in enumerate(plan.windows):
        skipped_k = set(plan.skipped.loc[plan.skipped["window"] == k, "unique_id"])
        assert set(window) | skipped_k == set(lengths)
        assert not set(window) & skipped_k
        for sid, (train_end, test_end) in window.items():
            assert test_end - train_end == horizon
            assert train_end >= min_train
            assert test_end == lengths[sid] - (n_windows - 1 - k) * step
        for sid in skipped_k:
            assert lengths[sid] - horizon - (n_windows - 1 - k) * step < min_train
    # a series in window k stays in every later window (later windows need less history)
    for earlier, later in zip(plan.windows, plan.windows[1:], strict=False):
        assert set(earlier) <= set(later)


def test_validation_cutoff_holds_out_horizon_plus_windows_minus_one():
    result = time_ordered_validation_cutoff({"a": 100, "b": 12, "c": 13}, horizon=10, val_windows=3)
    # 10 + 3 - 1 = 12 points held out: origins 88, 89, 90; the last forecasts 90..99
    assert result.cutoffs == {"a": 88, "c": 1}
    assert result.too_short == ["b"]


def test_validation_cutoff_min_train_and_single_window():
    result = time_ordered_validation_cutoff({"a": 100, "b": 30}, horizon=10, val_windows=1, min_train=25)
    assert result.cutoffs == {"a": 90}
    assert result.too_short == ["b"]
    with pytest.raises(ValueError):
        time_ordered_validation_cutoff({"a": 100}, horizon=10, val_windows=0)
