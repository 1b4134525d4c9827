"""The robust-trend members (`forecaster.models.baselines.robust_trend_batch`, ``"rtrend"`` and
``"rtrend8"``) on series of known structure, their fallbacks, and the default combination they join on
data without a season (`forecaster.defaults.default_combination`)."""

import numpy as np
import pandas as pd
import pytest

from forecaster.data.frequency import seasonal_period
from forecaster.defaults import NON_SEASONAL_COMBINATION, default_combination
from forecaster.forecaster import LSTMForecaster
from forecaster.models.baselines import RECENT_VALUES, robust_trend_batch
from forecaster.models.combination import AUTO, MEMBERS, choose, member_forecasts, weights_of
from forecaster.models.keras_network import NetworkSpec
from forecaster.models.statistical import METHODS

STEPS = np.arange(1, 7, dtype=np.float64)


def test_a_straight_line_is_extrapolated_exactly_by_both():
    x = 3.0 + 0.5 * np.arange(25)
    for last in (None, RECENT_VALUES):
        np.testing.assert_allclose(robust_trend_batch([x], 6, 1, last=last)[0], x[-1] + 0.5 * STEPS, rtol=1e-12)


def test_one_jump_does_not_set_the_trend():
    x = 100.0 + 2.0 * np.arange(30)
    x[15:] += 60.0  # a level shift: the line from the first to the last value would steepen by 2 a step
    np.testing.assert_allclose(robust_trend_batch([x], 6, 1)[0], x[-1] + 2.0 * STEPS, rtol=1e-12)
    spike = 100.0 + 2.0 * np.arange(30)
    spike[-3] = 1e6  # an outlier near the end: two differences of eight, the median unmoved
    np.testing.assert_allclose(robust_trend_batch([spike], 6, 1, last=RECENT_VALUES)[0],
                               spike[-1] + 2.0 * STEPS, rtol=1e-12)


def test_the_recent_trend_follows_a_turn_the_whole_series_does_not():
    x = np.concatenate([np.arange(40.0), 39.0 - 3.0 * np.arange(1, 11)])  # up by 1 for 40 steps, then down by 3
    whole, recent = member_forecasts([x], 6, 1, {"rtrend", "rtrend8"}).values()
    np.testing.assert_allclose(whole[0], x[-1] + 1.0 * STEPS)
    np.testing.assert_allclose(recent[0], x[-1] - 3.0 * STEPS)


def test_the_season_is_taken_out_and_put_back():
    t = np.arange(48)
    pattern = np.array([8.0, -3.0, 5.0, -10.0])
    x = -10.0 + 0.4 * t + pattern[t % 4]  # below and above zero: the additive decomposition, exact here
    future = np.arange(48, 56)
    forecast = robust_trend_batch([x], 8, 4)[0]
    np.testing.assert_allclose(forecast, -10.0 + 0.4 * future + pattern[future % 4], atol=1e-6)
    positive = robust_trend_batch([100.0 + x], 8, 4)[0]  # positive: multiplicative indices, near the season
    assert np.corrcoef(positive - 0.4 * future, pattern[future % 4])[0, 1] > 0.95


def test_short_constant_and_mixed_series_never_give_nan():
    histories = [np.array([5.0]), np.array([5.0, 7.0]), np.full(12, 3.0), np.array([-1.0, 4.0, 2.0]),
                 np.arange(200.0)]
    for name in ("rtrend", "rtrend8"):
        out = METHODS[name](histories, 6, 1)
        assert out.shape == (5, 6) and np.isfinite(out).all(), name
        np.testing.assert_allclose(out[0], 5.0)  # one value: naive
        np.testing.assert_allclose(out[1], 7.0 + 2.0 * STEPS)  # two values: their difference
        np.testing.assert_allclose(out[2], 3.0)  # constant: flat
    assert robust_trend_batch([], 6, 1).shape == (0, 6)
    with pytest.raises(ValueError, match="horizon"):
        robust_trend_batch([np.ones(5)], 0, 1)


def test_deterministic_and_each_series_alone_as_in_a_batch():
    rng = np.random.default_rng(3)
    histories = [rng.normal(size=int(n)).cumsum() + 40.0 for n in rng.integers(1, 60, size=50)]
    for last in (None, RECENT_VALUES):
        batch = robust_trend_batch(histories, 6, 1, last=last)
        np.testing.assert_array_equal(batch, robust_trend_batch(histories, 6, 1, last=last))
        alone = np.concatenate([robust_trend_batch([h], 6, 1, last=last) for h in histories])
        np.testing.assert_allclose(batch, alone, rtol=1e-12)


def test_the_default_combination_by_season():
    assert MEMBERS[NON_SEASONAL_COMBINATION] == ("otm", "dotm", "aets", "rtrend", "rtrend8")
    assert default_combination(1) == NON_SEASONAL_COMBINATION
    assert default_combination(4) == default_combination(12) == default_combination(24) == AUTO
    # quarters of business days are seasonal too (pandas infers BQS-JAN for them)
    assert default_combination(seasonal_period("BQS-JAN")) == default_combination(seasonal_period("QS")) == AUTO
    scores = {"none": 1.0, AUTO: 0.9, NON_SEASONAL_COMBINATION: 1.19}
    assert choose(scores, NON_SEASONAL_COMBINATION) == NON_SEASONAL_COMBINATION, "the benefit of the doubt"
    assert choose({**scores, NON_SEASONAL_COMBINATION: 1.21}, NON_SEASONAL_COMBINATION) == "none"
    names = ("lstm", "otm", "dotm", "aets", "rtrend", "rtrend8")
    assert weights_of(NON_SEASONAL_COMBINATION) == {name: pytest.approx(1 / 6) for name in names}


def _yearly(n_series: int = 5, length: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for k in range(n_series):
        y = 100.0 + (k + 1) * np.arange(length) + rng.normal(0, 2.0, length)
        parts.append(pd.DataFrame({"unique_id": f"Y{k}", "ds": pd.date_range("1980-01-01", periods=length, freq="YS"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True)


def test_a_yearly_fit_scores_and_applies_the_non_seasonal_default():
    frame = _yearly()
    model = LSTMForecaster(horizon=4, input_size=8, freq="YS", network=NetworkSpec(units=4, head_units=8),
                           epochs=1, batch_size=32, verbose=0, combine="auto").fit(frame)
    assert set(model.combine_scores_) == set(MEMBERS)
    assert np.isfinite(list(model.combine_scores_.values())).all()
    assert model.combine_ == choose(model.combine_scores_, NON_SEASONAL_COMBINATION)
    assert model.combine_ in (NON_SEASONAL_COMBINATION, "none")
    out = model.predict(frame)
    assert np.isfinite(out.drop(columns=["unique_id", "ds", "model"]).to_numpy("float64")).all()
    model.combine_ = NON_SEASONAL_COMBINATION  # the combination is the six members' mean
    combined = model.predict(frame, calibrated=False)["forecast"].to_numpy().reshape(5, 4)
    model.combine_ = "none"
    network = model.predict(frame, calibrated=False)["forecast"].to_numpy().reshape(5, 4)
    histories = [part["y"].to_numpy("float64") for _, part in frame.groupby("unique_id", sort=False)]
    members = member_forecasts(histories, 4, 1, set(MEMBERS[NON_SEASONAL_COMBINATION]))
    np.testing.assert_allclose(combined, np.mean([network, *members.values()], axis=0), rtol=1e-5, atol=1e-4)
