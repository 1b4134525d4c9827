"""Complex exponential smoothing (`forecaster.models.baselines.ces_batch`, member ``"ces"``): a series the
model generates is continued exactly, the admissible constants are those of a stable discount matrix,
the forecast scales with the series, ugly histories get the naive answer or a finite one, and the opt-in
combination ``"otm+dotm+aets+rtrend+rtrend8+ces"`` forecasts the mean of the network and its six members."""

import numpy as np
import pytest

from forecaster.forecaster import LSTMForecaster
from forecaster.models import baselines
from forecaster.models.baselines import CES_MIN_LENGTH, _ces_admissible, ces_batch
from forecaster.models.combination import CANDIDATES, MEMBERS, member_forecasts
from forecaster.models.keras_network import NetworkSpec
from tests.synthetic import ugly_yearly_frame

WITH_CES = "otm+dotm+aets+rtrend+rtrend8+ces"


def _generated(a0: float, a1: float, level: float, length: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """A series CES (a0 + i a1) makes without errors from the level ``level`` and the potential level / 1.1,
    and its next ``horizon`` values, by the model's equations written out one step at a time."""
    values = []
    potential = level / 1.1
    for _ in range(length + horizon):
        values.append(level)
        level, potential = level - (1.0 - a1) * potential, level + (1.0 - a0) * potential
    return np.array(values[:length]), np.array(values[length:])


@pytest.mark.parametrize(("a0", "a1"), [(1.3, 0.95), (1.6, 1.1), (1.9, 0.95)])
def test_a_series_the_model_makes_is_continued_exactly(monkeypatch, a0, a1):
    # grid points (0.1 + 0.15 k, -1 + 0.15 j): the coarse search finds them with no error at all
    assert np.isclose(baselines._CES_A0, a0).any() and np.isclose(baselines._CES_A1, a1).any()
    assert _ces_admissible(np.array(a0), np.array(a1))
    monkeypatch.setattr(baselines, "_CES_FIRST", 1)  # the initial level: the first value, as generated
    history, future = _generated(a0, a1, 40.0, 25, 6)
    assert np.ptp(future) > 0.1, "a moving series, not a flat one"
    np.testing.assert_allclose(ces_batch([history], 6, 1)[0], future, rtol=1e-9)


def test_admissible_is_the_discount_matrix_inside_the_unit_circle():
    rng = np.random.default_rng(0)
    a0, a1 = rng.uniform(-0.5, 3.5, 2000), rng.uniform(-2.0, 3.0, 2000)
    ours = _ces_admissible(a0, a1)
    radius = np.array([np.abs(np.linalg.eigvals([[1 - x + y, y - 1], [1 - x - y, 1 - x]])).max()
                       for x, y in zip(a0, a1)])
    clear = np.abs(radius - 1.0) > 1e-9
    np.testing.assert_array_equal(ours[clear], radius[clear] < 1.0)
    assert ours.any() and not ours.all()
    assert not _ces_admissible(np.array(0.0), np.array(0.0))  # eigenvalues 1 +- i


def test_the_forecast_scales_with_the_series_and_turns_with_its_sign():
    rng = np.random.default_rng(1)
    x = 50.0 + rng.normal(0, 3, 30).cumsum()
    base = ces_batch([x], 6, 1)
    np.testing.assert_allclose(ces_batch([1e6 * x], 6, 1), 1e6 * base, rtol=1e-9)
    np.testing.assert_allclose(ces_batch([-2.0 * x], 6, 1), -2.0 * base, rtol=1e-9)


def test_ugly_histories_get_naive_or_finite_forecasts():
    histories = [np.array([1.0, 2.0, 3.0]), np.full(12, 5.0), np.zeros(12), np.array([-1.0, -3, -2, -5, -4, -7, -6]),
                 np.r_[np.linspace(1.0, 8.0, 8), 1e9, np.linspace(9.0, 14.0, 6)], np.array([7.0])]
    out = ces_batch(histories, 4, 1)
    assert out.shape == (6, 4) and np.isfinite(out).all()
    assert len(histories[0]) < CES_MIN_LENGTH
    np.testing.assert_array_equal(out[0], 3.0)  # too short to fit: naive
    np.testing.assert_array_equal(out[1], 5.0)  # constant: the constant
    np.testing.assert_array_equal(out[2], 0.0)
    np.testing.assert_array_equal(out[5], 7.0)
    assert ces_batch([], 4, 1).shape == (0, 4)
    with pytest.raises(ValueError, match="horizon"):
        ces_batch([np.ones(8)], 0, 1)


def test_a_trajectory_that_runs_away_on_a_long_horizon_is_forecast_naively(monkeypatch):
    """Admissible constants can compound over a long horizon on a short history: a 20-value random walk
    forecast 168 steps runs to millions of times its range unguarded. Beyond `CES_REACH` ranges from the
    history's span the series gets its last value; a trend it extrapolates a few steps is untouched."""
    walk = np.cumsum(np.random.default_rng(9).normal(size=20))
    trend = np.linspace(10.0, 29.0, 20) + np.random.default_rng(1).normal(scale=0.5, size=20)
    guarded = ces_batch([walk, trend], 168, 1)
    short = ces_batch([trend], 6, 1)
    reach = baselines.CES_REACH
    monkeypatch.setattr(baselines, "CES_REACH", np.inf)
    loose = ces_batch([walk, trend], 168, 1)
    assert np.abs(loose[0] - walk.mean()).max() > 1e6 * np.ptp(walk)  # the runaway the guard exists for
    np.testing.assert_array_equal(guarded[0], walk[-1])
    lows, highs = np.c_[[walk.min(), trend.min()]], np.c_[[walk.max(), trend.max()]]
    assert ((guarded >= lows - reach * (highs - lows)) & (guarded <= highs + reach * (highs - lows))).all()
    np.testing.assert_array_equal(short, ces_batch([trend], 6, 1))
    assert not np.allclose(short[0], trend[-1])  # the trend is extrapolated, not replaced by naive


def test_deterministic_and_each_series_alone_as_in_a_batch():
    rng = np.random.default_rng(3)
    histories = [rng.normal(size=int(n)).cumsum() + 40.0 for n in rng.integers(1, 80, size=40)]
    batch = ces_batch(histories, 6, 1)
    np.testing.assert_array_equal(batch, ces_batch(histories, 6, 1))
    np.testing.assert_array_equal(batch, np.concatenate([ces_batch([h], 6, 1) for h in histories]))


def test_only_the_last_values_are_read():
    rng = np.random.default_rng(4)
    x = rng.normal(size=900).cumsum()
    np.testing.assert_array_equal(ces_batch([x], 6, 1), ces_batch([x[-baselines.CES_VALUES:]], 6, 1))


def test_the_season_is_taken_out_and_put_back():
    t = np.arange(48)
    pattern = np.array([8.0, -3.0, 5.0, -10.0])
    x = -10.0 + 0.4 * t + pattern[t % 4] + np.random.default_rng(5).normal(0, 0.2, 48)
    forecast = ces_batch([x], 8, 4)[0]
    future = np.arange(48, 56)
    assert np.corrcoef(forecast, pattern[future % 4])[0, 1] > 0.9


def test_the_opt_in_combination_is_the_mean_of_the_network_and_six_members():
    assert MEMBERS[WITH_CES] == ("otm", "dotm", "aets", "rtrend", "rtrend8", "ces")
    assert "ces" not in CANDIDATES, "opt-in: not in a learned combination's pool nor the backtest's members"
    frame = ugly_yearly_frame()
    model = LSTMForecaster(horizon=3, input_size=6, freq="YS", network=NetworkSpec(units=4, head_units=8),
                           epochs=1, batch_size=32, verbose=0, seed=0, combine=WITH_CES).fit(frame)
    assert model.combine_ == WITH_CES
    out = model.predict(frame)
    assert np.isfinite(out.drop(columns=["unique_id", "ds", "model"]).to_numpy("float64")).all()
    networked = [sid for sid, g in out.groupby("unique_id", sort=False) if (g["model"] == "lstm").all()]
    assert len(networked) >= 6
    combined = model.predict(frame, calibrated=False).set_index("unique_id").loc[networked]
    model.combine_ = "none"
    network = model.predict(frame, calibrated=False).set_index("unique_id").loc[networked]
    validated = model._validate(frame, model.columns_, model.freq_).frame
    groups = [(sid, g) for sid, g in validated.groupby("unique_id", sort=False) if sid in networked]
    order, histories = [sid for sid, _ in groups], [g["y"].to_numpy("float64") for _, g in groups]
    members = member_forecasts(histories, 3, 1, set(MEMBERS[WITH_CES]))
    expected = np.mean([network.loc[order, "forecast"].to_numpy().reshape(-1, 3), *members.values()], axis=0)
    got = combined.loc[order, "forecast"].to_numpy().reshape(-1, 3)
    never_negative = np.array([(g["y"] >= 0).all() for sid, g in frame.groupby("unique_id", sort=False)
                               if sid in networked])
    expected = np.where(never_negative[:, None], np.maximum(expected, 0.0), expected)  # nonnegative = "auto"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
