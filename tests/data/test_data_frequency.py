"""Frequency inference and normalisation, seasonal periods, future timestamps and calendar features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.calendar import calendar_feature_names, calendar_features
from forecaster.data.frequency import (
    build_grid,
    future_index,
    infer_frequency,
    normalize_frequency,
    seasonal_period,
)
from forecaster.data.schema import Columns
from forecaster.errors import FrequencyError

COLS = Columns()


def frame_of(series: dict[str, pd.DatetimeIndex | list]) -> pd.DataFrame:
    parts = [pd.DataFrame({"unique_id": sid, "ds": pd.DatetimeIndex(times), "y": 0.0}) for sid, times in
             series.items()]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize(
    ("freq", "start", "expected"),
    [
        ("h", "2024-03-01", "h"),
        ("D", "2024-03-01", "D"),
        ("W-MON", "2024-03-04", "W-MON"),
        ("MS", "2024-03-01", "MS"),
        ("15min", "2024-03-01 00:15", "15min"),
        ("B", "2024-03-01", "B"),
        ("QS", "2024-01-01", "QS-JAN"),
        ("YE", "2020-12-31", "YE-DEC"),
    ],
)
def test_infer_common_frequencies(freq, start, expected):
    times = pd.date_range(start, periods=12, freq=freq)
    frame = frame_of({"a": times, "b": times[2:], "c": times[:2]})
    assert infer_frequency(frame.sample(frac=1.0, random_state=0), COLS) == expected


def test_tz_aware_daily_across_dst():
    times = pd.date_range("2024-03-25", periods=10, freq="D", tz="Europe/Paris")
    assert infer_frequency(frame_of({"a": times}), COLS) == "D"


def test_series_with_gaps_follow_consensus():
    times = pd.date_range("2024-01-01", periods=20, freq="MS")
    frame = frame_of({"full": times, "gappy": times.delete([3, 7, 8])})
    assert infer_frequency(frame, COLS) == "MS"


def test_only_gappy_series_still_inferred():
    times = pd.date_range("2024-01-01", periods=20, freq="h")
    assert infer_frequency(frame_of({"g": times.delete([4, 9])}), COLS) == "h"


def test_weekday_only_series_accepted_in_business_daily_data():
    business = pd.date_range("2024-01-01", periods=15, freq="B")
    frame = frame_of({"b1": business, "b2": business, "short": business[:3]})
    assert infer_frequency(frame, COLS) == "B"


def test_disagreeing_series_named():
    hourly = pd.date_range("2024-01-01", periods=10, freq="h")
    daily = pd.date_range("2024-01-01", periods=10, freq="D")
    frame = frame_of({"d1": daily, "d2": daily, "hx": hourly})
    with pytest.raises(FrequencyError) as info:
        infer_frequency(frame, COLS)
    assert info.value.series == ["hx"]
    assert pd.Timestamp("2024-01-01 01:00") in info.value.timestamps


def test_irregular_series_named():
    regular = pd.date_range("2024-01-01", periods=10, freq="D")
    odd = regular.append(pd.DatetimeIndex(["2024-01-11 06:00"]))
    with pytest.raises(FrequencyError) as info:
        infer_frequency(frame_of({"ok": regular, "odd": odd}), COLS)
    assert info.value.series == ["odd"]
    assert info.value.timestamps == [pd.Timestamp("2024-01-11 06:00")]


def test_too_short_to_infer():
    with pytest.raises(FrequencyError, match="pass freq"):
        infer_frequency(frame_of({"a": pd.date_range("2024-01-01", periods=2, freq="D")}), COLS)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("h", "h"), ("2h", "2h"), ("15min", "15min"), ("W", "W-SUN"), ("QS", "QS-JAN"), ("YS", "YS-JAN"),
     ("ME", "ME"), ("B", "B")],
)
def test_normalize_frequency(given, canonical):
    assert normalize_frequency(given) == canonical


@pytest.mark.parametrize(("given", "hint"), [("H", "h"), ("T", "min"), ("15T", "15min"), ("M", "ME")])
def test_deprecated_aliases_rejected_with_suggestion(given, hint):
    with pytest.raises(FrequencyError) as info:
        normalize_frequency(given)
    assert f"did you mean {hint}?" in str(info.value)


def test_invalid_frequency():
    with pytest.raises(FrequencyError, match="'fortnight'"):
        normalize_frequency("fortnight")


@pytest.mark.parametrize(
    ("freq", "period"),
    [("h", 24), ("2h", 12), ("min", 60), ("15min", 96), ("30min", 48), ("7min", 1), ("s", 60), ("D", 7),
     ("B", 5), ("W-MON", 52), ("MS", 12), ("ME", 12), ("QS-JAN", 4), ("QE-DEC", 4), ("YS", 1), ("YE", 1),
     ("BQS-JAN", 4), ("BQE-DEC", 4), ("CBMS", 12), ("CBME", 12), ("nonsense", 1)],
)
def test_seasonal_period(freq, period):
    # business quarters (pandas infers BQS-JAN for quarters starting on their first business day) and
    # custom business months cycle over a year as the calendar ones do: season 1 would also give them
    # the combination for data without a season (`forecaster.defaults.default_combination`)
    assert seasonal_period(freq) == period


def test_future_index():
    got = future_index(pd.Timestamp("2024-01-31"), "ME", 3)
    assert list(got) == list(pd.to_datetime(["2024-02-29", "2024-03-31", "2024-04-30"]))
    paris = future_index(pd.Timestamp("2024-03-30", tz="Europe/Paris"), "D", 2)
    assert [t.hour for t in paris] == [0, 0] and str(paris.tz) == "Europe/Paris"
    assert len(future_index(pd.Timestamp("2024-01-01"), "h", 0)) == 0


def test_build_grid_positions_and_lengths():
    times = pd.DatetimeIndex(["2024-01-01", "2024-03-01", "2024-02-01", "2024-02-15"])
    bounds = np.array([0, 2, 4])
    grid = build_grid(times, bounds, "MS")
    assert grid.lengths.tolist() == [3, 1]
    assert grid.positions.tolist() == [0, 2, 0, -1]
    assert list(grid.times) == list(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-02-01"]))


# ----------------------------------------------------------------------------- calendar


@pytest.mark.parametrize(
    ("freq", "names"),
    [
        ("15min", ["hour_sin", "hour_cos", "minute_sin", "minute_cos", "dow_sin", "dow_cos"]),
        ("h", ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]),
        ("D", ["dow_sin", "dow_cos", "doy_sin", "doy_cos"]),
        ("B", ["dow_sin", "dow_cos", "doy_sin", "doy_cos"]),
        ("W-MON", ["woy_sin", "woy_cos"]),
        ("MS", ["month_sin", "month_cos"]),
        ("QS-JAN", ["quarter_sin", "quarter_cos"]),
        ("YS-JAN", []),
    ],
)
def test_calendar_feature_sets(freq, names):
    times = pd.date_range("2024-01-01", periods=400, freq=freq)
    values, got = calendar_features(times, freq)
    assert got == names == calendar_feature_names(freq)
    assert values.shape == (400, len(names)) and values.dtype == np.float32
    assert np.all(np.abs(values) <= 1.0)
    if names:
        assert np.allclose(values[:, 0::2] ** 2 + values[:, 1::2] ** 2, 1.0, atol=1e-6)


def test_calendar_values():
    values, names = calendar_features(pd.Series(pd.to_datetime(["2024-01-01 06:00", "2024-01-03 18:00"])), "h")
    hour = dict(zip(names, values[0], strict=True))
    assert hour["hour_sin"] == pytest.approx(1.0) and hour["hour_cos"] == pytest.approx(0.0, abs=1e-6)
    evening = dict(zip(names, values[1], strict=True))
    assert evening["hour_sin"] == pytest.approx(-1.0)
    # Wednesday is day 2 of 7
    assert evening["dow_sin"] == pytest.approx(np.sin(2 * np.pi * 2 / 7), abs=1e-6)
    months, _ = calendar_features(pd.date_range("2024-01-01", periods=13, freq="MS"), "MS")
    assert np.allclose(months[0], months[12]) and not np.allclose(months[0], months[6])


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
@pytest.mark.parametrize("freq", ["h", "15min", "D", "W", "MS", "QS"])
def test_calendar_features_of_repeated_times_equal_each_rows_own(tz, freq):
    """Features are computed once per distinct time and spread to the rows (many series share their
    times): every row gets exactly the values of its time computed alone, in row order."""
    times = pd.date_range("2024-03-25", periods=60, freq=freq, tz=tz)
    rows = times[np.random.default_rng(0).integers(0, 60, 500)]
    values, names = calendar_features(pd.Series(rows), freq)
    alone = np.concatenate([calendar_features(pd.DatetimeIndex([t]), freq)[0] for t in rows])
    assert values.shape == (500, len(names)) and values.dtype == np.float32
    assert values.tobytes() == alone.tobytes()


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
@pytest.mark.parametrize("freq", ["h", "15min", "D", "MS"])
def test_future_indexes_equal_future_index_per_series(tz, freq):
    from forecaster.data.frequency import future_indexes

    # 2024-03-31 is a daylight-saving change in Berlin: zoned hours must stay an hour apart.
    last = pd.Series(pd.to_datetime(["2024-03-30 22:00", "2024-01-01 05:00"]).tz_localize(tz), index=["a", "b"])
    got = future_indexes(last, freq, 30)
    assert set(got) == {"a", "b"}
    for sid, t in last.items():
        assert got[sid].equals(future_index(t, freq, 30))
