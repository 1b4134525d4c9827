"""Time splits as per-series cutoff timestamps: validation, backtest origins and the as-of cut."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.data import splits
from forecaster.data.schema import Columns
from forecaster.errors import ConfigError, MissingColumnError

COLUMNS = Columns()


def _frame(lengths: dict[str, int], end: str = "2026-01-10 00:00") -> pd.DataFrame:
    """Hourly series that all end at ``end`` (as validated frames are: sorted by series, then time)."""
    parts = [pd.DataFrame({"unique_id": sid, "ds": pd.date_range(end=end, periods=n, freq="h"),
                           "y": range(n)}) for sid, n in lengths.items()]
    return pd.concat(parts, ignore_index=True)


def test_origin_offset_counts_back_from_the_end():
    assert [splits.origin_offset(48, 3, 24, k) for k in range(3)] == [96, 72, 48]


def test_holdout_cutoffs_name_the_last_row_seen_and_leave_out_series_too_short():
    frame = _frame({"a": 30, "b": 10})
    cut = splits.holdout_cutoffs(frame, COLUMNS, 12)
    assert list(cut.index) == ["a"]  # b has 10 rows: holding out 12 leaves nothing
    assert cut["a"] == pd.Timestamp("2026-01-10 00:00") - pd.Timedelta(hours=12)
    assert splits.rows_until(frame, COLUMNS, cut).to_dict() == {"a": 18}
    lengths = {"a": 30, "b": 10, "c": 12, "d": 13}
    with_cutoff = splits.has_cutoff(list(lengths.values()), 12)
    assert [sid for sid, ok in zip(lengths, with_cutoff) if ok] == list(splits.holdout_cutoffs(
        _frame(lengths), COLUMNS, 12).index) == ["a", "d"], "the data report's rule is the backtest's"


def test_history_and_following_split_each_series_at_its_own_cutoff():
    frame = _frame({"a": 30, "b": 20}, end="2026-01-10 00:00")
    cut = splits.holdout_cutoffs(frame, COLUMNS, 5)
    seen, ahead = splits.history(frame, COLUMNS, cut), splits.following(frame, COLUMNS, cut, 3)
    assert seen.groupby("unique_id").size().to_dict() == {"a": 25, "b": 15}
    assert ahead.groupby("unique_id").size().to_dict() == {"a": 3, "b": 3}
    assert (ahead.groupby("unique_id")["ds"].min() == cut + pd.Timedelta("1h")).all()


def test_backtest_cutoffs_one_row_per_window_and_series_newest_forecasts_the_end():
    frame = _frame({"a": 100, "b": 60})
    table = splits.backtest_cutoffs(frame, COLUMNS, horizon=10, n_windows=3, step=5)
    assert list(table.columns) == ["window", "unique_id", "cutoff"]
    assert len(table) == 6
    end = pd.Timestamp("2026-01-10 00:00")
    newest = table[table["window"] == 2].set_index("unique_id")["cutoff"]
    assert (newest == end - pd.Timedelta(hours=10)).all()
    oldest = splits.before_first_origin(frame, COLUMNS, 10, 3, 5)
    assert oldest.groupby("unique_id").size().to_dict() == {"a": 80, "b": 40}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=4),
       st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=4),
       st.integers(min_value=1, max_value=6))
def test_backtest_windows_never_leak_and_are_step_apart(lengths, horizon, n_windows, step):
    frame = _frame({f"s{i}": n for i, n in enumerate(lengths)})
    table = splits.backtest_cutoffs(frame, COLUMNS, horizon, n_windows, step)
    for (k, sid), cutoff in table.set_index(["window", "unique_id"])["cutoff"].items():
        n = lengths[int(sid[1:])]
        assert n > splits.origin_offset(horizon, n_windows, step, k)  # it has at least one row to see
        seen = splits.history(frame[frame["unique_id"] == sid], COLUMNS, pd.Series({sid: cutoff}))
        assert len(seen) == n - splits.origin_offset(horizon, n_windows, step, k)
        assert seen["ds"].max() == cutoff
    spacing = table.sort_values(["unique_id", "window"]).groupby("unique_id")["cutoff"].diff().dropna()
    assert (spacing == pd.Timedelta(hours=step)).all()  # origins step apart, oldest first


def test_as_of_cut_keeps_rows_at_or_before_it():
    frame = _frame({"a": 48})
    kept = splits.as_of_cut(frame, COLUMNS, "2026-01-09 12:00")
    assert kept["ds"].max() == pd.Timestamp("2026-01-09 12:00")
    assert len(kept) == 48 - 12


def test_as_of_with_an_offset_against_naive_data_is_read_as_utc_and_the_reverse():
    frame = _frame({"a": 48})
    assert splits.as_of_cut(frame, COLUMNS, "2026-01-09T14:00:00+02:00")["ds"].max() == pd.Timestamp(
        "2026-01-09 12:00")
    aware = frame.assign(ds=frame["ds"].dt.tz_localize("Europe/Paris"))
    assert splits.as_of_cut(aware, COLUMNS, "2026-01-09 12:00")["ds"].max() == pd.Timestamp(
        "2026-01-09 12:00", tz="Europe/Paris")


@pytest.mark.parametrize("bad", ["yesterday-ish", "2026-13-45", ""])
def test_as_of_that_is_not_a_timestamp_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="as-of"):
        splits.as_of_cut(_frame({"a": 5}), COLUMNS, bad)


def test_the_as_of_cut_reads_raw_times_as_validation_does_and_refuses_an_as_of_before_the_data():
    """The one as-of cut (`splits.as_of_split`) takes the raw frame the pipelines read: times as text
    stay text in the rows kept, the cut is a timestamp; no time column or no row known is a typed error."""
    frame = _frame({"a": 48})
    raw = frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d %H:%M"))
    kept, stamp = splits.as_of_split(raw, COLUMNS, "2026-01-09 12:00")
    assert stamp == pd.Timestamp("2026-01-09 12:00") and len(kept) == 48 - 12
    assert kept["ds"].iloc[-1] == "2026-01-09 12:00"
    with pytest.raises(ConfigError, match="as-of 2020-01-01 is before any data"):
        splits.as_of_split(raw, COLUMNS, "2020-01-01")
    with pytest.raises(MissingColumnError, match="'ds'"):
        splits.as_of_split(raw.drop(columns="ds"), COLUMNS, "2026-01-09 12:00")


def test_actuals_are_the_following_rows_with_what_is_no_observation_left_out():
    """What a forecast is scored against (the backtest, the cross-validation, the fit's holdout): a masked
    reading (0.0 in the validated target, ``observed`` 0) is NaN, not an actual of 0; every other row and
    value as `following` gives it."""
    from forecaster.data.validation import validate_frame

    raw = _frame({"a": 10, "001": 10})
    raw["y"] = raw["y"].astype(float) + 100.0
    raw.loc[(raw["unique_id"] == "a") & (raw["ds"] == raw["ds"].max()), "y"] = float("nan")
    frame = validate_frame(raw, COLUMNS, freq="h", missing_policy="mask").frame
    cutoffs = splits.holdout_cutoffs(frame, COLUMNS, 3)
    following = splits.following(frame, COLUMNS, cutoffs, 3)
    actual = splits.actuals(frame, COLUMNS, cutoffs, 3)
    masked = (following["unique_id"] == "a").to_numpy() & (following["ds"] == raw["ds"].max()).to_numpy()
    assert following.loc[masked, "y"].tolist() == [0.0]  # what the "mask" policy stores
    assert actual.loc[masked, "y"].isna().all()
    pd.testing.assert_frame_equal(actual.loc[~masked], following.loc[~masked])
    assert sorted(actual["unique_id"].unique()) == ["001", "a"]
