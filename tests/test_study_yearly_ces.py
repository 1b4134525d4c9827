"""bench/study_yearly_ces.py's own arithmetic: the ARIMA(0,1,1) with drift it judges as a member (not a
product member) and each backtest row's history; and the bootstrap interval of a relative difference
(bench/bench_dev_suite.py's, which the study and the suite's gap to the best baseline use)."""

import numpy as np
import pandas as pd

from bench.bench_dev_suite import relative_interval
from bench.study_yearly_ces import arima011_drift, window_histories


def test_arima_continues_a_line_and_a_random_walk_with_drift_exactly():
    line = 5.0 + 2.5 * np.arange(12)  # every difference the drift: no error, any MA coefficient
    np.testing.assert_allclose(arima011_drift([line], 4)[0], line[-1] + 2.5 * np.arange(1, 5), rtol=1e-12)
    # differences mu + e_t + theta e_(t-1) with theta on the grid: the fit finds (mu, theta) and e_n
    rng = np.random.default_rng(0)
    e = rng.normal(0, 1, 400)
    e[-1] = 3.0  # the last error's share of the next step, theta e_n = 1.5, is what an MA term adds
    mu, theta = 0.7, 0.5
    d = mu + e[1:] + theta * e[:-1]
    y = np.r_[0.0, np.cumsum(d)]
    forecast = arima011_drift([y], 3)[0]
    expected_first = y[-1] + mu + theta * e[-1]
    assert abs(forecast[0] - expected_first) < 0.3  # estimated, not given: close to the true step
    np.testing.assert_allclose(np.diff(forecast), forecast[1] - forecast[0])  # then the drift alone


def test_arima_short_series_are_naive_and_mixed_lengths_keep_their_order():
    histories = [np.array([3.0, 4.0]), 1.0 + np.arange(10.0), np.array([7.0])]
    out = arima011_drift(histories, 2)
    np.testing.assert_array_equal(out[0], 4.0)
    np.testing.assert_allclose(out[1], [11.0, 12.0])
    np.testing.assert_array_equal(out[2], 7.0)


def test_window_histories_cut_each_row_at_its_cutoff():
    ds = pd.date_range("2000-01-01", periods=6, freq="YS")
    fit = pd.DataFrame({"unique_id": ["a"] * 6, "ds": ds, "y": np.arange(6.0)})
    members = pd.DataFrame({"unique_id": ["a"] * 4, "cutoff": [ds[2], ds[2], ds[3], ds[3]]})
    cut = window_histories(fit, members, 2)
    assert [c.tolist() for c in cut] == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0]]


def test_relative_interval_is_zero_for_the_same_forecast_and_brackets_a_real_difference():
    rng = np.random.default_rng(1)
    actual = rng.normal(10, 1, (200, 3))
    base = actual + rng.normal(0, 1, (200, 3))
    scale = np.ones(200)
    assert relative_interval(actual, base, base, scale) == [0.0, 0.0, 0.0]
    better = actual + 0.5 * (base - actual)  # every error halved: -50 %
    point, low, high = relative_interval(actual, better, base, scale)
    assert abs(point + 0.5) < 1e-12
    assert low <= point <= high and high < 0
