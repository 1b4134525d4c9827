"""The seasonal state-space exponential smoothing member (`forecaster.models.ets`) on series of known
structure: what it recovers, which forms it may choose, its fallbacks, and that it is deterministic."""

import numpy as np
import pytest

from forecaster.models.baselines import tail_length
from forecaster.models.combination import AUTO, MEMBERS, member_forecasts
from forecaster.models.ets import FORMS, MOST_VALUES, aets_batch, aets_fit, values_read
from forecaster.models.statistical import METHODS, Statistical

PATTERN = np.array([8.0, -3.0, 5.0, -10.0])


def _additive(n: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return 50.0 + 0.4 * t + PATTERN[t % 4] + noise * np.random.default_rng(seed).standard_normal(n)


def _multiplicative(n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    factors = np.array([1.5, 0.7, 1.2, 0.6])
    return (100.0 + 3.0 * t) * factors[t % 4] * (1 + 0.01 * np.random.default_rng(seed).standard_normal(n))


def test_an_exact_additive_season_and_trend_are_forecast_exactly():
    x = _additive(40)
    forecast, forms = aets_fit([x], 8, 4)
    t = np.arange(40, 48)
    np.testing.assert_allclose(forecast[0], 50.0 + 0.4 * t + PATTERN[t % 4], atol=1e-6)
    assert forms[0][2] == "A" and forms[0][1] == "A", forms


def test_a_noisy_seasonal_series_is_forecast_with_its_season():
    x = _additive(60, noise=0.5)
    forecast = aets_batch([x], 8, 4)[0]
    t = np.arange(60, 68)
    truth = 50.0 + 0.4 * t + PATTERN[t % 4]
    assert np.abs(forecast - truth).max() < 2.0, forecast - truth
    # the season's shape, not a flat line: the forecast moves as the pattern does
    assert np.corrcoef(forecast - 0.4 * t, PATTERN[t % 4])[0, 1] > 0.95


def test_a_multiplicative_season_on_a_positive_series_takes_a_multiplicative_form():
    x = _multiplicative(64)
    forecast, forms = aets_fit([x], 8, 4)
    assert forms[0][2] == "M", forms
    t = np.arange(64, 72)
    truth = (100.0 + 3.0 * t) * np.array([1.5, 0.7, 1.2, 0.6])[t % 4]
    assert np.abs(forecast[0] / truth - 1).max() < 0.05


@pytest.mark.parametrize("low", [0.0, -5.0])
def test_multiplicative_errors_and_seasons_only_on_positive_series(low):
    x = _multiplicative(64)
    x[10] = low  # one zero or negative value rules out every multiplicative form
    forecast, forms = aets_fit([x], 8, 4)
    assert "M" not in forms[0], forms
    assert np.isfinite(forecast).all()


def test_series_with_negatives_shift_with_their_forecasts():
    """Without positive values only the additive forms are fitted, about each series' mean: moving a
    series moves its forecast by as much."""
    x = _additive(48, noise=1.0) - 200.0
    np.testing.assert_allclose(aets_batch([x - 1000.0], 6, 4), aets_batch([x], 6, 4) - 1000.0, atol=1e-6)


@pytest.mark.parametrize("values", [[7.0], [3.0, 3.0], [1.0, 2.0, 4.0], [5.0] * 30, [0.0] * 30, [-2.0] * 9])
def test_short_and_constant_series_have_a_finite_documented_forecast(values):
    forecast, forms = aets_fit([np.array(values)], 5, 4)
    assert np.isfinite(forecast).all()
    if len(values) == 1:
        assert forms == [None] and forecast[0].tolist() == [7.0] * 5, "one value: naive"
    if len(set(values)) == 1:
        np.testing.assert_allclose(forecast[0], values[0], atol=1e-9)
    if 1 < len(values) < 2 * 4:
        assert forms[0][2] == "N", "too short for a seasonal form"


def test_no_nan_on_awkward_series_and_the_batch_equals_one_at_a_time():
    rng = np.random.default_rng(3)
    histories = [rng.standard_normal(n) * scale + offset
                 for n, scale, offset in [(5, 1, 0), (13, 100, 1e6), (40, 1e-6, 0), (27, 3, -50), (80, 10, 20)]]
    histories.append(np.r_[np.zeros(20), 1e4, np.zeros(20)])  # a spike among zeros
    histories.append(np.abs(rng.standard_normal(50)) + 1e-9)  # positive, near zero
    forecast = aets_batch(histories, 12, 12)
    assert np.isfinite(forecast).all()
    one_at_a_time = np.concatenate([aets_batch([h], 12, 12) for h in histories])
    np.testing.assert_array_equal(forecast, one_at_a_time)
    np.testing.assert_array_equal(forecast, aets_batch(histories, 12, 12))  # deterministic: the same again


def test_only_the_last_values_read_are_read_and_never_more_than_the_other_members():
    assert values_read(4) == MOST_VALUES <= tail_length(4) and values_read(100) == 10 * 100
    assert values_read(1000) == tail_length(1000)
    x = _multiplicative(MOST_VALUES + 40, seed=5)
    np.testing.assert_array_equal(aets_batch([x], 4, 4), aets_batch([x[-MOST_VALUES:]], 4, 4))


def test_forms_are_autoets_defaults_without_infinite_variance_ones():
    assert len(FORMS) == 15 and FORMS[0] == ("A", "N", "N")
    assert ("A", "N", "M") not in FORMS and ("M", "Ad", "M") in FORMS
    assert not any(trend == "M" for _, trend, _ in FORMS)


def test_it_is_a_statistical_member_and_the_default_combination_uses_it():
    assert METHODS["aets"] is aets_batch and Statistical("aets").name == "aets"
    assert MEMBERS["otm+dotm+aets"] == ("otm", "dotm", "aets") and AUTO == "otm+dotm+aets"
    histories = [_additive(30), _multiplicative(50)]
    np.testing.assert_array_equal(member_forecasts(histories, 4, 4, {"aets"})["aets"], aets_batch(histories, 4, 4))
    with pytest.raises(ValueError, match="horizon"):
        aets_batch(histories, 0, 4)
    assert aets_batch([], 3, 4).shape == (0, 3)


def test_rows_smoothed_in_blocks_give_the_forecasts_of_one_pass(monkeypatch):
    """`_smooth` runs at most `_BLOCK_ROWS` rows a pass: blocks of 3 rows (the rows' lengths differing
    across blocks) give the very bits and forms of one pass over all rows."""
    import forecaster.models.ets as ets

    rng = np.random.default_rng(5)
    histories = [_additive(int(n), noise=2.0, seed=k) * (1 if k % 3 else -1)
                 for k, n in enumerate(rng.integers(6, 60, 14))] + [_multiplicative(48, seed=9)]
    whole, forms = aets_fit(histories, 9, 4)
    monkeypatch.setattr(ets, "_BLOCK_ROWS", 3)
    blocked, blocked_forms = aets_fit(histories, 9, 4)
    np.testing.assert_array_equal(blocked.view(np.int64), whole.view(np.int64))
    assert blocked_forms == forms and len({f for f in forms if f}) > 2
