"""Gross outliers on the data's path (`forecaster.data.outliers`, applied by `validate_frame`): what is
treated, what must survive (seasonal peaks, level shifts, growth, intermittent sales, zeros and negatives),
how it is counted, and the parameter that turns it off."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecaster.data.outliers import DEFAULT_THRESHOLD, find_outliers
from forecaster.data.schema import OBSERVED, Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import ConfigError, DataError, OutlierError
from forecaster.params import param

COLS = Columns()


def frame_of(series: dict[str, np.ndarray], freq: str = "h") -> pd.DataFrame:
    """A long frame of the given series, each starting at the same time."""
    parts = [pd.DataFrame({"unique_id": sid, "ds": pd.date_range("2024-01-01", periods=len(y), freq=freq),
                           "y": np.asarray(y, dtype="float64")}) for sid, y in series.items()]
    return pd.concat(parts, ignore_index=True)


def daily_cycle(n: int = 400, level: float = 377.0, seed: int = 0) -> np.ndarray:
    """An hourly series around ``level`` with a daily cycle and noise (as M4 Hourly's)."""
    t = np.arange(n)
    return level + 0.3 * level * np.sin(2 * np.pi * t / 24) + np.random.default_rng(seed).normal(0, 10, n)


def treated(y: np.ndarray, **options) -> pd.DataFrame:
    """The validated frame of one series ``y`` under the treatment (or ``options``)."""
    options = {"outliers": "interpolate", **options}
    return validate_frame(frame_of({"s": y}), COLS, **options).frame


def test_one_huge_reading_is_interpolated_marked_and_counted(caplog):
    y = daily_cycle()
    y[200] = 1e12
    with caplog.at_level(logging.INFO, logger="forecaster.data"):
        out = validate_frame(frame_of({"s": y, "clean": daily_cycle(seed=1)}), COLS, outliers="interpolate")
    s = out.frame[out.frame.unique_id == "s"]
    assert s.y.iloc[200] == pytest.approx((y[199] + y[201]) / 2)  # between its neighbours
    assert s[OBSERVED].iloc[200] == 0.0 and (s[OBSERVED].drop(s.index[200]) == 1.0).all()
    assert out.report["outlier_readings"] == 1 and out.report["outlier_series"] == {"s": 1}
    assert out.report["targets_masked"] == 0 and out.report["per_series"] == {}  # not counted as missing
    assert "1 reading(s) more than 20 IQRs" in caplog.text and "s (1)" in caplog.text
    clean = out.frame[out.frame.unique_id == "clean"]
    assert (clean[OBSERVED] == 1.0).all()


def test_keep_leaves_every_reading_as_given():
    y = daily_cycle()
    y[200] = 1e12
    out = validate_frame(frame_of({"s": y}), COLS)  # validate_frame's own default: keep
    assert out.frame.y.iloc[200] == 1e12 and out.report["outlier_readings"] == 0


@pytest.mark.parametrize("where, value", [(-1, 1e12), (200, -1e12), (0, 5e9)], ids=["last", "negative", "first"])
def test_spikes_at_the_edges_and_negative_ones(where, value):
    """A spike at the last reading (the forecast's starting point) takes the previous reading's value."""
    y = daily_cycle()
    y[where] = value
    out = treated(y)
    k = where % len(y)
    assert out[OBSERVED].iloc[k] == 0.0 and out[OBSERVED].sum() == len(y) - 1
    if k == len(y) - 1:
        assert out.y.iloc[k] == y[k - 1]
    assert out.y.abs().max() < 1000


def test_a_run_of_spikes_is_treated_whole():
    y = daily_cycle()
    y[100:106] = 3e11
    out = treated(y)
    assert list(np.flatnonzero(out[OBSERVED].to_numpy() == 0)) == list(range(100, 106))
    low, high = sorted((y[99], y[106]))
    assert out.y.iloc[100:106].between(low, high).all()  # the line between the readings either side


def test_short_monthly_series_with_a_spike():
    y = 100 + 20 * np.sin(2 * np.pi * np.arange(36) / 12)
    y[20] = 1e10
    out = validate_frame(frame_of({"m": y}, "MS"), COLS, outliers="interpolate")
    assert out.report["outlier_readings"] == 1 and out.frame.y.max() < 200


def test_mask_policy_masks_the_outlier_as_a_missing_value():
    y = daily_cycle()
    y[50] = 1e12
    out = treated(y, missing_policy="mask")
    assert out.y.iloc[50] == 0.0 and out[OBSERVED].iloc[50] == 0.0


def test_fill_policy_with_gaps_and_outliers_counts_each_once():
    frame = frame_of({"s": daily_cycle()})
    frame.loc[10, "y"] = np.nan
    frame.loc[20, "y"] = 1e12
    out = validate_frame(frame, COLS, missing_policy="fill", outliers="interpolate")
    assert out.report["targets_filled"] == 1 and out.report["outlier_readings"] == 1
    assert np.isfinite(out.frame.y).all() and out.frame.y.max() < 1000


@pytest.mark.parametrize("name", ["daily peak", "weekly peak", "level shift", "growth", "intermittent",
                                  "zeros and negatives"])
def test_real_features_of_a_series_survive(name):
    """Nothing is treated on series whose extremes are the series: seasonal peaks (the peak hour's own
    readings are its range), a level shift, a series growing 130-fold, intermittent sales, values
    around zero."""
    t = np.arange(24 * 7 * 4)
    rng = np.random.default_rng(3)
    y = {
        "daily peak": np.where(t % 24 == 18, 1000.0, 10.0) + rng.normal(0, 1, len(t)),
        "weekly peak": np.where(t % 168 == 100, 5000.0, 50.0),
        "level shift": np.where(t < 400, 100.0, 1500.0) + rng.normal(0, 5, len(t)),
        "growth": 1.0075 ** t,
        "intermittent": np.where(rng.random(len(t)) < 0.05, rng.integers(1, 40, len(t)), 0).astype(float),
        "zeros and negatives": rng.normal(0, 1, len(t)) * np.where(t % 24 < 12, 0.0, 5.0),
    }[name]
    out = treated(y)
    assert (out[OBSERVED] == 1.0).all()
    np.testing.assert_array_equal(out.y.to_numpy(), y)


@pytest.mark.parametrize("freq, cycle, cycles", [
    ("MS", [100.0] * 10 + [3000.0, 200.0], 3),   # a Black-Friday-like November, three years of months
    ("MS", [100.0] * 10 + [3000.0, 200.0], 2),
    ("D", [10.0] * 6 + [900.0], 4),              # a Sunday peak, four weeks of days
    ("h", [10.0] * 18 + [1000.0, 1000.0] + [10.0] * 4, 4),  # an evening peak, four days of hours
], ids=["yearly peak 3y", "yearly peak 2y", "weekly peak 4w", "daily peak 4d"])
def test_a_peak_recurring_each_cycle_of_a_short_series_survives(freq, cycle, cycles):
    """A seasonal position with fewer than five readings cannot be judged by its own range; a peak that is
    out of the series' range in every cycle there recurs, and is the series (it was interpolated away:
    the forecast lost its November)."""
    y = np.tile(cycle, cycles) + np.random.default_rng(5).normal(0, 1, len(cycle) * cycles)
    out = validate_frame(frame_of({"s": y}, freq), COLS, outliers="interpolate")
    assert out.report["outlier_readings"] == 0 and (out.frame[OBSERVED] == 1.0).all()
    np.testing.assert_array_equal(out.frame.y.to_numpy(), y)
    y[len(cycle) + 3] = 1e9  # a glitch in the same short series is still treated
    out = validate_frame(frame_of({"s": y}, freq), COLS, outliers="interpolate")
    assert out.report["outlier_readings"] == 1 and out.frame.y.max() < 5000


@pytest.mark.parametrize("freq, start", [("D", "2021-01-01"), ("W-MON", "2019-01-07")], ids=["daily", "weekly"])
def test_a_yearly_event_in_daily_or_weekly_data_survives(freq, start):
    """Black Friday, 30 times the level, three to six years: daily data's seasonal position is the weekday
    and weekly data's week of the year drifts, so neither position holds it; it recurs a year apart
    (within a week) and stays. A glitch in the same series is still treated."""
    ds = pd.date_range(start, "2024-12-31", freq=freq)
    black_friday = {pd.Timestamp(year, 11, 1) + pd.offsets.Week(weekday=3) * 4 + pd.Timedelta(days=1)
                    for year in range(2019, 2025)}
    event = np.array([any(0 <= (day - stamp).days < (7 if freq != "D" else 1) for day in black_friday)
                      for stamp in ds])
    y = np.where(event, 3000.0, 100.0) + np.random.default_rng(7).normal(0, 2, len(ds))
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    out = validate_frame(frame, COLS, outliers="interpolate")
    assert event.sum() >= 4 and out.report["outlier_readings"] == 0
    np.testing.assert_array_equal(out.frame.y.to_numpy(), y)
    frame.loc[40, "y"] = 3000.0  # the same size, once, far from November: no year before or after has it
    out = validate_frame(frame, COLS, outliers="interpolate")
    assert out.report["outlier_readings"] == 1 and out.frame[OBSERVED].iloc[40] == 0.0


def test_a_run_of_out_of_range_readings_ending_a_series_is_our_error_naming_them():
    """Three or more out-of-range readings ending a series: a new level or a broken sensor, which cannot
    be told apart there: OutlierError naming the series and times, and saying how to go on; "keep"
    forecasts from them as given. One or two are a spike at the forecast's start and are treated."""
    rng = np.random.default_rng(5)
    base = 20.0 + rng.normal(0, 1, 400)
    shifted, spiked = base.copy(), base.copy()
    shifted[-3:] = 400.0
    spiked[-2:] = 400.0
    frame = frame_of({"shift": shifted, "spike": spiked})
    with pytest.raises(OutlierError, match='outliers = "keep"') as caught:
        validate_frame(frame, COLS, outliers="interpolate")
    assert caught.value.series == ["shift"] and len(caught.value.timestamps) == 3
    assert isinstance(caught.value, DataError) and "2024-01-17T13:00" in str(caught.value)
    kept = validate_frame(frame, COLS, outliers="keep").frame.set_index("unique_id")
    np.testing.assert_array_equal(kept.loc["shift", "y"].to_numpy(), shifted)
    out = validate_frame(frame_of({"spike": spiked}), COLS, outliers="interpolate")
    assert out.report["outlier_series"] == {"spike": 2} and out.frame.y.iloc[-1] == spiked[-3]


def test_a_burst_of_high_readings_is_an_event_not_a_spike():
    """A few hours far above the series' range, rising and falling together (M4 Hourly's H130), stay:
    each is near a neighbour within the burst; the same peak alone among ordinary readings is treated."""
    y = daily_cycle(seed=6)
    spread = np.quantile(y, 0.75) - np.quantile(y, 0.25)
    top = y.max() + 25 * spread
    burst = y.copy()
    burst[200:205] = top * np.array([0.45, 1.0, 0.98, 0.65, 0.4])
    assert treated(burst)[OBSERVED].all()
    lone = y.copy()
    lone[201] = top
    assert list(np.flatnonzero(treated(lone)[OBSERVED].to_numpy() == 0)) == [201]


def test_intermittent_series_with_a_glitch_is_treated():
    rng = np.random.default_rng(4)
    y = np.where(rng.random(500) < 0.1, rng.integers(1, 20, 500), 0).astype(float)
    y[300] = 1e9
    out = treated(y)
    assert list(np.flatnonzero(out[OBSERVED].to_numpy() == 0)) == [300]


def test_flat_series_with_one_glitch_and_the_ambiguous_single_sale():
    """A flat series at 377 with one reading of 1e12 is treated (measured against its level); a series
    flat at 0 with one other reading is not: one sale cannot be told from one glitch (documented)."""
    flat = np.full(300, 377.0)
    flat[150] = 1e12
    assert treated(flat)[OBSERVED].iloc[150] == 0.0
    single = np.zeros(300)
    single[150] = 7.0
    out = treated(single)
    assert (out[OBSERVED] == 1.0).all() and out.y.iloc[150] == 7.0


def test_many_extreme_readings_have_no_level_to_be_judged_against():
    """Half the readings at 1e12: the series' quartiles span both levels and nothing is treated (the
    rule is for readings that are few; such a series is its data)."""
    y = np.where(np.arange(200) % 2 == 0, 377.0, 1e12)
    out = treated(y)
    assert (out[OBSERVED] == 1.0).all()


def test_threshold_is_the_parameter_and_checked():
    y = daily_cycle()
    y[10] = y.max() + 8 * (np.quantile(y, 0.75) - np.quantile(y, 0.25))  # 8 IQRs above the range
    assert treated(y)[OBSERVED].all()
    assert treated(y, outlier_threshold=5.0)[OBSERVED].iloc[10] == 0.0
    with pytest.raises(ConfigError, match="outlier_threshold"):
        treated(y, outlier_threshold=0.0)
    with pytest.raises(ConfigError, match="outliers must be one of"):
        treated(y, outliers="drop")


def test_the_parameters_are_defined_once_with_their_defaults():
    assert param("data", "outliers").default == "interpolate"
    assert param("data", "outlier_threshold").default == DEFAULT_THRESHOLD
    with pytest.raises(ConfigError, match=r"\[data\] outliers must be one of"):
        param("data", "outliers").check("drop")


def test_find_outliers_ignores_rows_not_valid():
    values = np.r_[daily_cycle(100), 1e12]
    valid = np.ones(101, dtype=bool)
    valid[-1] = False
    codes = np.zeros(101, dtype=np.int64)
    assert not find_outliers(values, valid, codes).treat.any()
    assert find_outliers(values, np.ones(101, dtype=bool), codes).treat[-1]


@pytest.mark.parametrize("values", [
    [377.0] * 20 + [1e12, 1e12],  # two glitches ending a flat series
    [377.0] * 10 + [1e12] + [377.0] * 10 + [1e12] + [377.0] * 5,  # two apart
])
def test_two_glitches_in_a_flat_series_are_treated_not_taken_as_its_spread(values):
    # A flat series' spread is the typical deviation of the readings that differ from its level; where only
    # the glitches differ, that was 1e12 and nothing was treated (exit 0 with a history ending at 1e12).
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=len(values), freq="D"),
                       "y": values})
    out = validate_frame(df, Columns(), outliers="interpolate")
    assert out.frame["y"].max() == 377.0
    assert (out.frame[OBSERVED] == 0.0).sum() == 2 and out.report["outlier_readings"] == 2


def test_a_small_promotion_in_a_flat_series_stays():
    values = [100.0] * 20 + [300.0, 300.0] + [100.0] * 10
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=len(values), freq="D"),
                       "y": values})
    frame = validate_frame(df, Columns(), outliers="interpolate").frame
    assert frame["y"].tolist() == values


def test_the_quartiles_of_one_very_long_series_among_short_ones_cost_its_values_not_a_padded_block():
    # Series were sorted in blocks of 1,024 padded to the block's longest: one series of 1,000,000 values
    # among 300 of 300 made a 301 x 1,000,000 block (5.3 GB at validation, 13 s). tracemalloc counts the
    # bytes numpy asks for, which the arrays' shapes decide, whatever the machine.
    import tracemalloc

    from forecaster.data.outliers import _group_quantiles

    rng = np.random.default_rng(2)
    sizes = [300] * 300 + [200_000] + [1, 2, 3]
    values = np.concatenate([rng.normal(size=n) for n in sizes])
    keys = np.repeat(np.arange(len(sizes)), sizes)
    tracemalloc.start()
    try:
        low, high = _group_quantiles(values, keys, (0.25, 0.75))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * values.nbytes, f"{peak / values.nbytes:.0f} x the values' bytes"
    starts = np.cumsum(sizes) - sizes
    for k, (start, n) in enumerate(zip(starts, sizes, strict=True)):
        if k % 50 == 0 or n != 300:
            expected = np.quantile(values[start : start + n], [0.25, 0.75])
            np.testing.assert_allclose([low[start], high[start]], expected, rtol=1e-12)
            assert (low[start : start + n] == low[start]).all()
