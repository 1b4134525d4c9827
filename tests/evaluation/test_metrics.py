"""Metrics and baselines against hand-computed values (the M4 end-to-end check is in test_datasets)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster import contract as C
from forecaster.evaluation import metrics as M
from forecaster.models import baselines as B

# Two series, horizon 3. Series 0: |errors| 1, 0, 2. Series 1: |errors| 0, 1, 0 (first term 0/0 in sMAPE).
Y = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
P = np.array([[2.0, 2.0, 1.0], [0.0, 1.0, 4.0]])
# m=2 scales: series 0 |2-1|, |4-3| -> 1; series 1 season diffs are 0, so lag-1 |2| -> 2.
INSAMPLE = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([2.0, 4.0, 2.0, 4.0, 2.0])]


# --------------------------------------------------------------------------- point metrics


def test_mae_rmse_per_series_and_mean():
    np.testing.assert_allclose(M.mae(Y, P, per_series=True), [1.0, 1.0 / 3.0])
    assert M.mae(Y, P) == pytest.approx(2.0 / 3.0)
    np.testing.assert_allclose(M.rmse(Y, P, per_series=True), [math.sqrt(5 / 3), math.sqrt(1 / 3)])
    assert M.rmse(Y, P) == pytest.approx((math.sqrt(5 / 3) + math.sqrt(1 / 3)) / 2)


def test_smape_hand_values_and_zero_over_zero():
    # series 0: 200*1/3, 0, 200*2/4 -> 500/9; series 1: 0 (both zero), 200*1/1, 0 -> 200/3
    np.testing.assert_allclose(M.smape(Y, P, per_series=True), [500 / 9, 200 / 3])
    assert M.smape(Y, P) == pytest.approx((500 / 9 + 200 / 3) / 2)
    assert M.smape([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_mase_scale_with_fallback_to_lag_one():
    np.testing.assert_allclose(M.mase_scale(INSAMPLE, 2), [1.0, 2.0])
    np.testing.assert_allclose(M.mase(Y, P, INSAMPLE, 2, per_series=True), [1.0, (1 / 3) / 2])
    assert M.mase(Y, P, INSAMPLE, 2) == pytest.approx((1.0 + 1 / 6) / 2)


def test_mase_insample_padded_matrix_equals_list():
    padded = np.array([[1.0, 3.0, 2.0, 4.0, np.nan], [2.0, 4.0, 2.0, 4.0, 2.0]])
    np.testing.assert_allclose(M.mase(Y, P, padded, 2, per_series=True), [1.0, 1 / 6])


def test_mase_constant_history_is_nan_and_left_out_of_mean():
    insample = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([5.0, 5.0, 5.0])]
    per = M.mase(Y, P, insample, 2, per_series=True)
    assert per[0] == pytest.approx(1.0)
    assert np.isnan(per[1])
    assert M.mase(Y, P, insample, 2) == pytest.approx(1.0)


def test_mase_history_shorter_than_season_uses_lag_one():
    # m=24 but only 3 points: lag-1 diffs 2, 4 -> scale 3
    np.testing.assert_allclose(M.mase_scale([np.array([1.0, 3.0, 7.0])], 24), [3.0])


def test_nan_targets_are_ignored():
    y = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]])
    p = np.array([[2.0, 100.0, 1.0], [1.0, 1.0, 1.0]])
    per = M.mae(y, p, per_series=True)
    assert per[0] == pytest.approx(1.5)
    assert np.isnan(per[1])
    assert M.mae(y, p) == pytest.approx(1.5)
    assert M.smape(y, p) == pytest.approx((200 / 3 + 100) / 2)


def test_nan_forecast_on_observed_target_propagates():
    assert np.isnan(M.mae([[1.0, 2.0]], [[1.0, np.nan]], per_series=True)[0])


def test_one_dimensional_input_is_one_series():
    assert M.mae([1.0, 2.0, 3.0], [2.0, 2.0, 1.0]) == pytest.approx(1.0)
    assert M.mase([1.0, 2.0, 3.0], [2.0, 2.0, 1.0], np.array([1.0, 3.0, 2.0, 4.0]), 2) == pytest.approx(1.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        M.mae(Y, P[:, :2])
    with pytest.raises(ValueError):
        M.mase(Y, P, INSAMPLE[:1], 2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=8, max_size=8),
)
def test_smape_bounded_and_symmetric(y, p):
    p = p[: len(y)]
    value = M.smape(y, p)
    assert 0.0 <= value <= 200.0 + 1e-9
    assert value == pytest.approx(M.smape(p, y))


# --------------------------------------------------------------------------- quantiles and intervals

QS = [0.1, 0.5, 0.9]
YQ = np.array([1.0, 5.0])
QP = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
# y=1: 0.1*1, 0, 0.1*1 ; y=5: 0.1*3, 0.5*2, 0.9*1 -> total 2.4 over 6 terms


def test_pinball_hand_values():
    assert M.pinball(YQ, QP, QS) == pytest.approx(0.4)
    np.testing.assert_allclose(M.pinball_per_quantile(YQ, QP, QS), [0.2, 0.5, 0.5])


def test_pinball_ignores_nan_targets_and_checks_shapes():
    y = np.array([[1.0, np.nan, 5.0]])
    qp = np.array([[[0.0, 1.0, 2.0], [9.0, 9.0, 9.0], [2.0, 3.0, 4.0]]])
    assert M.pinball(y, qp, QS) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        M.pinball(YQ, QP[:, :2], QS)
    with pytest.raises(ValueError):
        M.pinball(YQ, QP, [0.1, 0.5, 1.0])


def test_coverage_inclusive_bounds_and_nan():
    y = np.array([[1.0, 5.0, 3.0, np.nan]])
    lo = np.array([[0.0, 0.0, 3.0, 0.0]])
    hi = np.array([[2.0, 4.0, 4.0, 0.0]])
    assert M.coverage(y, lo, hi) == pytest.approx(2 / 3)


def test_msis_hand_value():
    # width 2 (inside); 4 + 40*(5-4) = 44; 0.5 + 40*(3.5-3) = 20.5 -> mean 66.5/3; scale (2+4)/2 = 3
    y = [1.0, 5.0, 3.0]
    value = M.msis(y, [0.0, 0.0, 3.5], [2.0, 4.0, 4.0], np.array([0.0, 0.0, 2.0, 4.0]), 2, alpha=0.05)
    assert value == pytest.approx(66.5 / 9)
    # alpha 0.1 halves the penalty: 2 + (4 + 20) + (0.5 + 10) = 36.5
    value = M.msis(y, [0.0, 0.0, 3.5], [2.0, 4.0, 4.0], np.array([0.0, 0.0, 2.0, 4.0]), 2, alpha=0.1)
    assert value == pytest.approx(36.5 / 9)


def test_owa():
    assert M.owa(10.0, 2.0, 20.0, 4.0) == pytest.approx(0.5)
    assert M.owa(13.912, 1.193, 18.383, 2.395) == pytest.approx(0.627, abs=5e-4)  # published snaive OWA


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("q", "name"), [(0.1, "q0.1"), (0.5, "q0.5"), (0.9, "q0.9"), (0.025, "q0.025"), (0.975, "q0.975")]
)
def test_quantile_name_examples(q, name):
    assert C.quantile_name(q) == name
    assert C.parse_quantile_name(name) == q


def test_quantile_name_accepts_numpy_floats():
    assert C.quantile_name(np.float64(0.1)) == "q0.1"
    assert C.quantile_name(np.float32(0.5)) == "q0.5"


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_quantile_name_rejects_out_of_range(q):
    with pytest.raises(ValueError):
        C.quantile_name(q)


@pytest.mark.parametrize("name", ["0.1", "q", "qabc", "q0.10", "q 0.1", "q1.0", "qnan", "p0.1"])
def test_parse_quantile_name_rejects(name):
    with pytest.raises(ValueError):
        C.parse_quantile_name(name)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True))
def test_quantile_name_round_trip(q):
    assert C.parse_quantile_name(C.quantile_name(q)) == q


# --------------------------------------------------------------------------- per-series table


def test_per_series_metrics_point_columns():
    df = M.per_series_metrics(Y, P, INSAMPLE, 2, index=["a", "b"])
    assert list(df.columns) == ["mae", "rmse", "smape", "mase"]
    assert list(df.index) == ["a", "b"]
    np.testing.assert_allclose(df["mae"], [1.0, 1 / 3])
    np.testing.assert_allclose(df["mase"], [1.0, 1 / 6])
    summary = M.summarize(df)
    assert summary["smape"] == pytest.approx(M.smape(Y, P))
    assert summary["mase"] == pytest.approx(M.mase(Y, P, INSAMPLE, 2))
    assert summary["rmse"] == pytest.approx(M.rmse(Y, P))


def test_per_series_metrics_quantile_columns():
    quantiles = [0.025, 0.1, 0.5, 0.9, 0.975]
    # series 0 targets 1, 2, 3; series 1 targets 0, 0, 4. Offsets from the target per quantile:
    offsets = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    qp = Y[..., None] + offsets
    qp[0, 0, 1] = 1.5  # q0.1 above the target at (0, 0): misses the 80 % interval once
    qp[1, 2, 4] = 3.0  # q0.975 below the target at (1, 2): misses the 95 % interval once
    df = M.per_series_metrics(Y, P, INSAMPLE, 2, quantile_preds=qp, quantiles=quantiles)
    assert list(df.columns) == ["mae", "rmse", "smape", "mase", "pinball", "coverage_80", "coverage_95"]
    np.testing.assert_allclose(df["coverage_80"], [2 / 3, 1.0])
    np.testing.assert_allclose(df["coverage_95"], [1.0, 2 / 3])
    # pinball per series: regular terms 0.025*2, 0.1*1, 0, 0.1*1, 0.025*2 = 0.3 per point (15 terms)
    # series 0 point 0: q0.1 at 1.5 > y=1 -> 0.9*0.5 = 0.45 instead of 0.1 -> total 0.9 + 0.35
    # series 1 point 2: q0.975 at 3 < y=4 -> 0.975*1 instead of 0.05 -> total 0.9 + 0.925
    np.testing.assert_allclose(df["pinball"], [(0.9 + 0.35) / 15, (0.9 + 0.925) / 15])
    assert M.summarize(df)["pinball"] == pytest.approx(M.pinball(Y, qp, quantiles))


def test_per_series_metrics_pair_naming_and_validation():
    qp = np.repeat(Y[..., None], 4, axis=-1)
    df = M.per_series_metrics(Y, P, INSAMPLE, 2, quantile_preds=qp, quantiles=[0.05, 0.25, 0.75, 0.95])
    assert [c for c in df.columns if c.startswith("coverage")] == ["coverage_50", "coverage_90"]
    with pytest.raises(ValueError):
        M.per_series_metrics(Y, P, INSAMPLE, 2, quantile_preds=qp)


def test_summarize_skips_nan_rows():
    out = M.summarize(pd.DataFrame({"mae": [1.0, 3.0, np.nan], "mase": [np.nan, np.nan, np.nan]}))
    assert out["mae"] == 2.0
    assert np.isnan(out["mase"])


# --------------------------------------------------------------------------- baselines


def test_seasonal_naive_repeats_last_season():
    np.testing.assert_array_equal(B.seasonal_naive(np.arange(1.0, 6.0), 5, 2), [4, 5, 4, 5, 4])


def test_seasonal_naive_short_history_falls_back_to_naive():
    np.testing.assert_array_equal(B.seasonal_naive(np.array([1.0, 2.0]), 3, 3), [2, 2, 2])


def test_seasonal_naive_empty_raises():
    with pytest.raises(ValueError):
        B.seasonal_naive(np.array([]), 3, 2)
    with pytest.raises(ValueError):
        B.seasonal_naive_batch([np.array([1.0]), np.array([])], 3, 2)


def test_seasonal_naive_batch_mixed_lengths():
    histories = [np.arange(1.0, 6.0), np.array([7.0]), np.array([10.0, 11.0, 12.0])]
    out = B.seasonal_naive_batch(histories, 4, 3)
    np.testing.assert_array_equal(out, [[3, 4, 5, 3], [7, 7, 7, 7], [10, 11, 12, 10]])


def test_acf_hand_values():
    # deviations -1.5, -0.5, 0.5, 1.5; sum of squares 5
    np.testing.assert_allclose(B.acf(np.array([1.0, 2.0, 3.0, 4.0]), 2), [1.25 / 5, -1.5 / 5])


SEASON = np.array([0.8, 1.2, 1.0, 1.0])
SEASONAL = 100.0 * np.tile(SEASON, 12)  # 48 points, period 4, purely multiplicative


def test_seasonality_test_on_synthetic_series():
    # deviations -20, 20, 0, 0 repeated: r1 = -0.5, r2 = 0, r3 = -11/24, r4 = 11/12;
    # limit = 1.645 * sqrt((1 + 2*(0.25 + 0 + 121/576)) / 48) ~ 0.329
    np.testing.assert_allclose(B.acf(SEASONAL, 4), [-0.5, 0.0, -11 / 24, 11 / 12], atol=1e-12)
    assert B.seasonality_test(SEASONAL, 4)
    assert not B.seasonality_test(SEASONAL[:11], 4)  # fewer than 3 seasons
    noise = np.random.default_rng(0).normal(10.0, 1.0, 200)
    assert not B.seasonality_test(noise, 24)


def test_seasonal_indices_recover_the_pattern():
    np.testing.assert_allclose(B.seasonal_indices(SEASONAL, 4), SEASON)
    # odd period: plain moving average
    np.testing.assert_allclose(B.seasonal_indices(np.tile([1.0, 2.0, 3.0], 10), 3), [0.5, 1.0, 1.5])


@pytest.mark.parametrize("m", [1, 3, 4, 24])
@pytest.mark.parametrize("additive", [False, True])
def test_seasonal_indices_of_many_rows_are_each_rows_own_bit_for_bit(m, additive):
    """The rows' moving averages come from one convolution over the rows laid end to end: no window may
    reach into the next row, and each row's indices must be the very bits of that row alone."""
    rng = np.random.default_rng(m)
    for length in (1, m, 2 * m + 1, 72):
        rows = rng.lognormal(2.0, 1.0, (50, length)) * rng.uniform(0.1, 1e4, (50, 1))
        rows[::5] *= -1.0  # the rows differ a lot in level: a straddling window would show
        with np.errstate(all="ignore"):
            together = B.seasonal_indices_rows(rows, m, additive=additive)
            alone = np.array([B.seasonal_indices_rows(row[None, :], m, additive=additive)[0] for row in rows])
        assert together.shape == (50, m)
        np.testing.assert_array_equal(together.view(np.int64), alone.view(np.int64))
    np.testing.assert_array_equal(B.seasonal_indices_rows(np.tile(SEASONAL, (3, 1)), 4),
                                  np.tile(B.seasonal_indices(SEASONAL, 4), (3, 1)))


def test_autocorrelations_and_the_seasonality_test_of_many_rows_are_each_rows_own():
    rng = np.random.default_rng(7)
    t = np.arange(96)
    rows = 10.0 * np.sin(2 * np.pi * t / 24)[None, :] * rng.uniform(0, 2, (40, 1)) + rng.standard_normal((40, 96))
    rows[3] = 5.0  # constant: autocorrelations 0
    got = B.acf_rows(rows, 30)
    np.testing.assert_array_equal(got, np.array([B.acf_rows(row[None, :], 30)[0] for row in rows]))
    assert not got[3].any() and got[:, 0].any()
    tested = B.seasonality_test_rows(rows, 24)
    assert tested.tolist() == [bool(B.seasonality_test_rows(row[None, :], 24)[0]) for row in rows]
    assert 0 < tested.sum() < 40  # both answers occur
    assert not B.seasonality_test_rows(rows[:, :71], 24).any()  # under three seasons: not seasonal


def test_the_seasonal_adjustment_of_a_batch_is_each_series_own():
    """The members' seasonal adjustment runs on all series of one length at once: a batch of mixed
    lengths, seasonal or not, positive or not, gives each series the very bits it gets alone."""
    rng = np.random.default_rng(11)
    histories = []
    for k in range(30):
        n = int(rng.choice([3, 10, 50, 96, 96, 130]))
        x = 50.0 + 10.0 * np.sin(2 * np.pi * np.arange(n) / 24) * (k % 3) + rng.standard_normal(n)
        histories.append(x - 60.0 if k % 4 == 0 else x)
    adjusted, lengths, season = B._adjusted(histories, 30, 24)
    assert (season.index != 1).any(axis=1).sum() > 3 and (season.offset != 0).any(axis=1).sum() > 3
    for k, history in enumerate(histories):
        alone, _, own = B._adjusted([history], 30, 24)
        np.testing.assert_array_equal(adjusted[k, : lengths[k]].view(np.int64), alone[0].view(np.int64))
        np.testing.assert_array_equal(season.index[k], own.index[0])
        np.testing.assert_array_equal(season.offset[k], own.offset[0])


def test_naive2_reseasonalises_the_naive_level():
    # last value 100 sits at position 47 % 4 = 3 (index 1.0) -> level 100; future positions 0, 1, 2, ...
    np.testing.assert_allclose(B.naive2(SEASONAL, 6, 4), [80, 120, 100, 100, 80, 120])
    # last value raised to 150: it enters only the trend at t=45, (50 + 80 + 120 + 100 + 75) / 4 = 106.25,
    # so raw index 1 becomes (10 * 1.2 + 120 / 106.25) / 11 and the others stay 0.8, 1, 1; the
    # normalisation cancels in level * index, leaving 150 * raw index of each future position.
    x = SEASONAL.copy()
    x[-1] = 150.0
    raw_1 = (10 * 1.2 + 120 / 106.25) / 11
    np.testing.assert_allclose(B.naive2(x, 3, 4), [150 * 0.8, 150 * raw_1, 150.0])


def test_naive2_without_seasonality_is_naive():
    np.testing.assert_array_equal(B.naive2(SEASONAL[:8], 3, 4), [100.0, 100.0, 100.0])
    negative = SEASONAL - 90.0  # non-positive values: no multiplicative decomposition
    np.testing.assert_array_equal(B.naive2(negative, 2, 4), [10.0, 10.0])


def test_seasonal_naive_intervals_hand_values():
    history = np.array([10.0, 20.0, 11.0, 22.0, 14.0, 20.0, 16.0])
    # lag-2 errors 1, 2, 3, -2, 2 -> sorted -2, 1, 2, 2, 3: q0.25 = 1, q0.5 = 2, q0.75 = 2 (their own: 5 errors)
    assert B.MIN_OWN_ERRORS == 5
    out = B.seasonal_naive_intervals(history, 4, 2, [0.25, 0.5, 0.75])
    point = np.array([20.0, 16.0, 20.0, 16.0])
    scale = np.sqrt([1.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(out, point[:, None] + scale[:, None] * np.array([1.0, 2.0, 2.0]))


def test_seasonal_naive_intervals_short_and_degenerate_histories():
    # 3 points, m = 5: naive with lag-1 errors 2, -1, too few for their own quantiles: pooled with their
    # negatives (-2, -1, 1, 2), so q0.5 is the point and q0.25 / q0.75 = -1.25 / 1.25, growing like sqrt(step)
    out = B.seasonal_naive_intervals(np.array([1.0, 3.0, 2.0]), 3, 5, [0.25, 0.5, 0.75])
    steps = np.sqrt([1.0, 2.0, 3.0])
    np.testing.assert_allclose(out, 2.0 + steps[:, None] * np.array([-1.25, 0.0, 1.25]))
    np.testing.assert_array_equal(B.seasonal_naive_intervals(np.array([4.0]), 2, 3, [0.1, 0.9]), 4.0)


def test_seasonal_naive_intervals_of_a_short_history_contain_the_point_and_have_width():
    # One error (4 -> 2) gave q0.1 = q0.5 = q0.9 = 0 beside a forecast of 2; a falling history of 3 values
    # an interval wholly below its point; one season-ahead error (5 values, m = 4) a zero width.
    for history, m in (([4.0, 2.0], 1), ([6.0, 4.0, 2.0], 1), ([1.0, 5.0, 2.0, 7.0, 3.0], 4)):
        history = np.asarray(history)
        out = B.seasonal_naive_intervals(history, 8, m, [0.1, 0.5, 0.9])
        point = B.seasonal_naive(history, 8, m)
        assert np.all(out[:, 0] < point) and np.all(point < out[:, 2]), (history, out)
        np.testing.assert_allclose(out[:, 1], point)
        np.testing.assert_allclose(out[:, 2] - point, point - out[:, 0])
    batch = B.seasonal_naive_intervals_batch([np.array([4.0, 2.0]), np.arange(30.0)], 3, 1, [0.1, 0.9])
    np.testing.assert_allclose(batch[0], B.seasonal_naive_intervals(np.array([4.0, 2.0]), 3, 1, [0.1, 0.9]))
    # 29 errors of +1: their own quantiles, the bias kept (the interval above the point, as before)
    np.testing.assert_allclose(batch[1, 0], [30.0, 30.0])


def test_theta_continues_half_the_slope_of_a_straight_line():
    # SES's best alpha on a line is 1 (the level is the last value), so y(h) = last + slope / 2 * h.
    line = 5.0 + 2.0 * np.arange(30)
    np.testing.assert_allclose(B.theta_batch([line], 3, 1)[0], [64.0, 65.0, 66.0])
    np.testing.assert_allclose(B.theta_batch([np.full(20, 7.0)], 4, 1)[0], 7.0)
    np.testing.assert_allclose(B.theta_batch([np.array([3.0])], 2, 4)[0], [3.0, 3.0])


def test_theta_reseasonalises_a_seasonal_series():
    # purely multiplicative: the adjusted series is flat at 100, so the forecast is 100 x the indices
    np.testing.assert_allclose(B.theta_batch([SEASONAL], 6, 4)[0], [80, 120, 100, 100, 80, 120])
    # A value <= 0: additive indices (the seasonal swing was dropped as noise before): the same swing.
    np.testing.assert_allclose(B.theta_batch([SEASONAL - 90.0], 4, 4)[0], [-10, 30, 10, 10])


def test_theta_of_many_series_of_different_lengths_equals_one_at_a_time():
    rng = np.random.default_rng(3)
    histories = [50.0 + np.cumsum(rng.normal(0.3, 1.0, n)) for n in (5, 40, 17, 96)]
    histories.append(100.0 * np.tile(SEASON, 10) + rng.normal(0, 2.0, 40))
    together = B.theta_batch(histories, 5, 4)
    for k, history in enumerate(histories):
        np.testing.assert_allclose(together[k], B.theta_batch([history], 5, 4)[0], rtol=1e-12)
    with pytest.raises(ValueError, match="empty"):
        B.theta_batch([np.array([])], 2, 1)


def _theta_model_by_search(x: np.ndarray, horizon: int, dynamic: bool) -> np.ndarray:
    """The optimised Theta model fitted the slow way, independently of the closed forms: every alpha of
    the grid and w on a grid of 0.001, the one-step errors by direct recursion, the trend line by
    np.polyfit (through all values, or through the values before each step), l_0 by least squares."""
    t = np.arange(1, x.size + 1, dtype=np.float64)

    def line(upto: int) -> tuple[float, float]:
        if upto == 0:
            return x[0], 0.0
        if upto == 1:
            return x[0], 0.0
        slope, intercept = np.polyfit(t[:upto], x[:upto], 1)
        return intercept, slope

    best = (np.inf, None)
    ws = np.linspace(0.0, 0.99, 991)[:, None]
    for a in np.linspace(0.02, 0.99, 50):
        q = 1.0 - a
        # one-step forecasts with l_0 = 0 for every w of the grid (rows), and l_0's weight in each
        level, levels, trend, weight = 0.0, [], [], []
        for k in range(x.size):
            intercept, slope = line(k if dynamic else x.size)
            levels.append(level)
            trend.append(q**k * intercept + (1 - q ** (k + 1)) / a * slope)
            weight.append(q**k)
            level = a * x[k] + q * level
        base, weight = np.array(levels)[None, :] + ws * np.array(trend)[None, :], np.array(weight)
        l0 = (x - base) @ weight / (weight @ weight)
        sse = np.sum((x - base - l0[:, None] * weight) ** 2, axis=1)
        i = int(np.argmin(sse))
        if sse[i] < best[0] - 1e-12:
            intercept, slope = line(x.size)
            final = level + q**x.size * l0[i]
            steps = np.arange(1, horizon + 1)
            forecast = final + ws[i, 0] * (q**x.size * intercept + slope * (steps + q * (1 - q**x.size) / a))
            best = (sse[i], forecast)
    return best[1]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_optimised_theta_equals_a_direct_search_over_its_constants(dynamic):
    rng = np.random.default_rng(5)
    for x in (30.0 + np.cumsum(rng.normal(0.5, 1.0, 14)), 80.0 - 0.8 * np.arange(12) + rng.normal(0, 2.0, 12)):
        fitted = B.optimised_theta_batch([x], 4, 1, dynamic=dynamic)[0]
        np.testing.assert_allclose(fitted, _theta_model_by_search(x, 4, dynamic), rtol=2e-3)


def test_optimised_theta_continues_lines_constants_and_single_values():
    line = 5.0 + 2.0 * np.arange(30)  # the fitted theta is as large as allowed: nearly the whole slope
    for dynamic in (False, True):
        np.testing.assert_allclose(B.optimised_theta_batch([line], 3, 1, dynamic=dynamic)[0], [65.0, 67.0, 69.0],
                                   atol=0.2)
        np.testing.assert_allclose(B.optimised_theta_batch([np.full(20, 7.0)], 4, 1, dynamic=dynamic)[0], 7.0)
        np.testing.assert_allclose(B.optimised_theta_batch([np.array([3.0])], 2, 4, dynamic=dynamic)[0], 3.0)
        np.testing.assert_allclose(B.optimised_theta_batch([SEASONAL], 6, 4, dynamic=dynamic)[0],
                                   [80, 120, 100, 100, 80, 120])


def test_optimised_theta_moves_with_a_shift_of_the_series_and_forecasts_very_short_ones_naively():
    # l_0 absorbs a constant, so a series a million or a billion above another is forecast as far above
    rng = np.random.default_rng(8)
    histories = [100.0 + np.cumsum(rng.normal(0.0, 10.0, n)) for n in (20, 40, 15)]
    for dynamic in (False, True):
        plain = B.optimised_theta_batch(histories, 5, 1, dynamic=dynamic)
        for shift in (1e6, 1e9):
            moved = B.optimised_theta_batch([x + shift for x in histories], 5, 1, dynamic=dynamic)
            np.testing.assert_allclose(moved - shift, plain, atol=1e-6)
        # two or three values fit a line and the two free constants exactly: naive, not that line
        np.testing.assert_allclose(B.optimised_theta_batch([np.array([10.0, 2.0])], 3, 1, dynamic=dynamic), 2.0)
        np.testing.assert_allclose(B.optimised_theta_batch([np.array([10.0, 2.0, 5.0])], 3, 1, dynamic=dynamic), 5.0)


def test_optimised_theta_of_many_series_equals_one_at_a_time():
    rng = np.random.default_rng(4)
    histories = [50.0 + np.cumsum(rng.normal(0.3, 1.0, n)) for n in (2, 40, 17, 96)]
    histories.append(100.0 * np.tile(SEASON, 10) + rng.normal(0, 2.0, 40))
    for dynamic in (False, True):
        together = B.optimised_theta_batch(histories, 5, 4, dynamic=dynamic)
        for k, history in enumerate(histories):
            one = B.optimised_theta_batch([history], 5, 4, dynamic=dynamic)[0]
            np.testing.assert_allclose(together[k], one, rtol=1e-10)
    assert B.optimised_theta_batch([], 3, 1).shape == (0, 3)


def test_ets_continues_a_straight_line_and_a_constant():
    # the linear-trend form fits a line without error (its AICc wins), so it continues it exactly
    line = 5.0 + 2.0 * np.arange(30)
    np.testing.assert_allclose(B.ets_batch([line], 3, 1)[0], [65.0, 67.0, 69.0])
    np.testing.assert_allclose(B.ets_batch([np.full(20, 7.0)], 4, 1)[0], 7.0)
    np.testing.assert_allclose(B.ets_batch([np.array([3.0])], 2, 4)[0], [3.0, 3.0])
    rng = np.random.default_rng(0)
    noise = 50.0 + rng.normal(0.0, 1.0, 60)  # no trend: a level form, a flat forecast near the mean
    forecast = B.ets_batch([noise], 4, 1)[0]
    assert np.ptp(forecast) < 1e-9 and abs(forecast[0] - 50.0) < 0.5


def test_ets_damps_a_trend_that_levels_off():
    # a trend that has nearly died out: a line through the history would go on climbing by its slope
    path = 100.0 + 10.0 * np.cumsum(0.88 ** np.arange(1, 47))
    forecast = B.ets_batch([path[:40]], 6, 1)[0]
    np.testing.assert_allclose(forecast, path[40:], rtol=2e-3)
    slope = np.polyfit(np.arange(40), path[:40], 1)[0]
    assert forecast[-1] - forecast[0] < 0.1 * slope * 5


def test_ets_reseasonalises_and_treats_many_series_as_one_at_a_time():
    np.testing.assert_allclose(B.ets_batch([SEASONAL], 6, 4)[0], [80, 120, 100, 100, 80, 120])
    rng = np.random.default_rng(3)
    histories = [50.0 + np.cumsum(rng.normal(0.3, 1.0, n)) for n in (2, 5, 40, 17, 96)]
    histories.append(100.0 * np.tile(SEASON, 10) + rng.normal(0, 2.0, 40))
    together = B.ets_batch(histories, 5, 4)
    for k, history in enumerate(histories):
        np.testing.assert_allclose(together[k], B.ets_batch([history], 5, 4)[0], rtol=1e-12)
    assert np.isfinite(together).all()
    with pytest.raises(ValueError, match="empty"):
        B.ets_batch([np.array([])], 2, 1)


def test_combinations_run_the_methods_in_parts_with_the_same_result(monkeypatch):
    from forecaster.models import combination

    rng = np.random.default_rng(6)
    histories = [50.0 + np.cumsum(rng.normal(0.2, 1.0, n)) for n in (3, 30, 12, 60, 25, 8, 41)]
    network = np.zeros((len(histories), 5, 3))
    whole = combination.combine(network, histories, "otm+dotm+ets", 4)
    monkeypatch.setattr(combination, "CHUNK", 3)
    np.testing.assert_allclose(combination.combine(network, histories, "otm+dotm+ets", 4), whole, rtol=1e-12)
    assert combination.combine(network[:0], [], "otm+dotm+ets", 4).shape == (0, 5, 3)


def test_a_series_scale_is_the_same_to_the_bit_whatever_pads_its_history():
    # predict computes each batch's MASE scales on histories padded to the batch's longest: a streamed
    # chunk and the whole frame pad differently, and their calibrated intervals must agree exactly.
    rng = np.random.default_rng(3)
    histories = [rng.normal(100.0, 30.0, size=n) for n in (37, 161, 200, 333)]
    longer = rng.normal(size=5000)
    for m in (1, 24):
        alone = np.array([M.mase_scale([h], m)[0] for h in histories])
        padded = M.mase_scale([*histories, longer], m)[: len(histories)]
        np.testing.assert_array_equal(alone, padded)
        np.testing.assert_allclose(alone, [np.mean(np.abs(h[m:] - h[:-m])) for h in histories], rtol=1e-12)


def test_the_scales_of_histories_of_any_lengths_cost_their_values_not_a_padded_table():
    # A list of histories was padded to the longest: one series of 100,000 values among 500 short ones
    # made tables of 500 x 100,000 (one of 1,000,000 among 10,000: 80 GB per table). tracemalloc counts the
    # bytes numpy asks for, which the arrays' shapes decide, whatever the machine.
    import tracemalloc

    rng = np.random.default_rng(5)
    histories = [rng.normal(size=10) for _ in range(500)] + [rng.normal(size=100_000)]
    given = sum(h.nbytes for h in histories)
    tracemalloc.start()
    try:
        scale = M.mase_scale(histories, 24)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * given, f"{peak / given:.0f} x the histories' bytes"
    assert np.isfinite(scale).all() and scale.shape == (len(histories),)
    # the same bits as the padded table the 2-D form still takes (a season, lag 1, NaNs, constant rows)
    histories[3][2:5] = np.nan
    histories[7][:] = 4.0
    for m in (1, 12, 24):
        np.testing.assert_array_equal(M.mase_scale(histories, m), M.mase_scale(M._insample_matrix(histories, None), m))
