"""Validation of input frames, the error hierarchy, column specs and frame I/O."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from forecaster.data.io import read_frame, write_frame_atomic
from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import (
    ColumnTypeError,
    ConfigError,
    CovariateError,
    DataError,
    DuplicateRowsError,
    ForecasterError,
    FrequencyError,
    GapError,
    MissingColumnError,
    MissingValueError,
    ShortHistoryError,
)

COLS = Columns()


def make_frame(ids=("a", "b"), periods=6, freq="D", start="2024-01-01", **extra) -> pd.DataFrame:
    """Regular frame: series ids x periods, y = 10 * series number + step."""
    times = pd.date_range(start, periods=periods, freq=freq)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(list(ids), periods),
            "ds": np.tile(times, len(ids)),
            "y": [10.0 * s + k for s in range(len(ids)) for k in range(periods)],
        }
    )
    for name, value in extra.items():
        frame[name] = value
    return frame


def gappy_frame() -> pd.DataFrame:
    """One daily series: day 2 NaN, day 4 absent, day 6 +inf; a past-only covariate p."""
    days = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05", "2024-01-06"])
    return pd.DataFrame(
        {"unique_id": "a", "ds": days, "y": [1.0, np.nan, 3.0, 5.0, np.inf], "p": [10.0, 20, 30, 50, 60]}
    )


# ----------------------------------------------------------------------------- errors


def test_error_hierarchy():
    for cls in (MissingColumnError, ColumnTypeError, DuplicateRowsError, FrequencyError, GapError,
                MissingValueError, ShortHistoryError, CovariateError):
        assert issubclass(cls, DataError)
    assert issubclass(DataError, ForecasterError) and issubclass(DataError, ValueError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, ForecasterError)


def test_data_error_message_truncates_and_to_dict_is_json_safe():
    err = GapError(
        "gaps", column="ds", series=[f"s{i}" for i in range(8)],
        timestamps=[pd.Timestamp("2024-01-01", tz="UTC"), np.datetime64("2024-01-02")],
    )
    text = str(err)
    assert "s0, s1, s2, s3, s4 and 3 more" in text
    assert "'ds'" in text and "2024-01-01T00:00:00+00:00" in text
    body = err.to_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["error"] == "GapError"
    assert body["series"][:2] == ["s0", "s1"] and body["n_series"] == 8
    assert body["timestamps"] == ["2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00"]


def test_data_error_ids_from_numpy_are_plain():
    body = DataError("x", series=[np.int64(3)]).to_dict()
    assert body["series"] == [3] and type(body["series"][0]) is int


# ----------------------------------------------------------------------------- schema and io


def test_columns_round_trip_and_checks():
    cols = Columns(static=["s"], known_future=("k",), past_only=("p",))
    assert cols.static == ("s",)
    assert cols.covariates() == ["s", "k", "p"]
    data = cols.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert Columns.from_dict(data) == cols
    with pytest.raises(ConfigError, match="more than one role"):
        Columns(static=("y",))
    with pytest.raises(ConfigError, match="reserved"):
        Columns(past_only=("observed",))
    with pytest.raises(ConfigError, match="unknown"):
        Columns.from_dict({"ids": "x"})


def test_read_write_csv_and_parquet(tmp_path):
    frame = make_frame(periods=3, freq="h")
    frame["ds"] = frame["ds"].dt.tz_localize("Europe/Paris")
    csv = tmp_path / "f.csv"
    write_frame_atomic(frame, csv)
    assert "2024-01-01T01:00:00+01:00" in csv.read_text()
    back = validate_frame(read_frame(csv), COLS).frame
    assert back["ds"].iloc[1] == frame["ds"].iloc[1]
    pq = tmp_path / "f.parquet"
    write_frame_atomic(frame, pq)
    pd.testing.assert_frame_equal(read_frame(pq), frame)
    copy = read_frame(frame)
    copy.loc[0, "y"] = -1
    assert frame.loc[0, "y"] == 0.0
    with pytest.raises(DataError, match=r"f\.txt"):
        read_frame(tmp_path / "f.txt")


def test_failed_atomic_write_keeps_previous_file(tmp_path):
    target = tmp_path / "out.parquet"
    write_frame_atomic(make_frame(periods=2), target)
    before = target.read_bytes()
    bad = pd.DataFrame({"x": [object(), object()]})
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's error type is not ours to pin
        write_frame_atomic(bad, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


# ----------------------------------------------------------------------------- type checks


def test_missing_columns_listed():
    frame = make_frame().drop(columns=["y"])
    with pytest.raises(MissingColumnError) as info:
        validate_frame(frame, Columns(static=("s",)))
    assert "'y'" in str(info.value) and "'s'" in str(info.value)
    assert info.value.column == "y, s"


def test_id_column_types():
    frame = make_frame()
    frame["unique_id"] = np.where(frame["unique_id"] == "a", 1.5, 2.5)
    with pytest.raises(ColumnTypeError, match="unique_id"):
        validate_frame(frame, COLS)
    frame["unique_id"] = np.where(frame["unique_id"] == 1.5, 7, 8)
    out = validate_frame(frame, COLS).frame
    assert list(pd.unique(out["unique_id"])) == ["7", "8"]
    assert pd.api.types.is_string_dtype(out["unique_id"])


def test_unparseable_time_names_value_and_row():
    frame = make_frame(periods=3)
    frame["ds"] = frame["ds"].dt.strftime("%Y-%m-%d").astype(object)
    frame.loc[4, "ds"] = "not a date"
    with pytest.raises(ColumnTypeError) as info:
        validate_frame(frame, COLS)
    assert "'not a date'" in str(info.value) and "rows 4" in str(info.value)
    assert info.value.column == "ds"


def test_string_times_are_parsed_and_tz_kept():
    frame = make_frame(periods=4, freq="h")
    frame["ds"] = frame["ds"].dt.tz_localize("UTC").astype(str)
    out = validate_frame(frame, COLS)
    assert str(out.frame["ds"].dtype) == "datetime64[ns, UTC]"
    assert out.freq == "h"


def _written(frame: pd.DataFrame, layout: str) -> pd.DataFrame:
    return frame.assign(ds=frame["ds"].dt.strftime(layout))


def test_dates_that_read_both_day_first_and_month_first_are_refused_not_guessed():
    """Ten days written day first (01/01/2024 ... 10/01/2024) read month first as ten months (exit 0 on
    monthly data); twelve months written day first read as twelve days. Only the writer knows."""
    daily = _written(make_frame(periods=10, freq="D"), "%d/%m/%Y")
    with pytest.raises(ColumnTypeError) as info:
        validate_frame(daily, COLS)
    assert info.value.column == "ds" and "'02/01/2024'" in str(info.value)
    assert "day first" in str(info.value) and "month first" in str(info.value) and "YYYY-MM-DD" in str(info.value)
    assert "cannot be parsed" not in str(info.value)
    # pandas guesses no layout for two-digit years, nor any for a time of day with AM/PM
    for layout in ("%d/%m/%Y", "%d/%m/%y", "%d.%m.%y %H:%M", "%d/%m/%y %I:%M %p"):
        monthly = _written(make_frame(periods=12, freq="MS"), layout)
        with pytest.raises(ColumnTypeError, match="day first"):
            validate_frame(monthly, COLS, missing_policy="fill")


def test_a_missing_or_repeated_time_among_day_first_dates_is_named_as_such():
    """Where every given date read the same in both orders, a missing time (NaT in both readings, so
    "differing") was taken for the dates' ambiguity and the message's NaT raised ValueError (exit 1, a
    traceback's line); a repeated time makes neither reading regular, not both."""
    frame = pd.DataFrame({"unique_id": "a", "ds": ["01/01/2024", "02/02/2024", None, "04/04/2024"],
                          "y": np.arange(4.0)})
    with pytest.raises(ColumnTypeError, match="missing values at rows 2") as info:
        validate_frame(frame, COLS)
    assert info.value.column == "ds" and info.value.series == ["a"]
    repeated = _written(make_frame(ids=("a",), periods=10, freq="D"), "%d/%m/%Y")
    with pytest.raises(ColumnTypeError, match="neither reading makes regular series") as info:
        validate_frame(pd.concat([repeated, repeated.iloc[[3]]], ignore_index=True), COLS)
    assert info.value.column == "ds" and "and either reading" not in str(info.value)


@pytest.mark.parametrize("layout", ["%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%d/%m/%y", "%m-%d-%y %H:%M:%S",
                                    "%d/%m/%Y %I:%M %p"])
def test_dates_in_one_order_are_read_in_the_order_that_makes_the_series_regular(layout):
    """Where one reading leaves the series regular and the other does not (a 13th day, or months of two
    years whose day-first reading would be January's first twelve days twice), that one is the data."""
    for freq, periods in (("D", 40), ("MS", 24)):
        frame = make_frame(periods=periods, freq=freq)
        out = validate_frame(_written(frame, layout), COLS)
        assert out.freq == freq, layout
        assert (out.frame["ds"].to_numpy() == frame["ds"].to_numpy()).all(), layout


def test_the_as_of_cut_reads_dates_of_several_series_as_validation_does():
    """`splits.as_of_split` parses the raw times without the ids (`parse_times`): the series' times
    together are one time line there, not a repeat of each other."""
    from forecaster.data import splits

    frame = _written(make_frame(ids=("a", "b", "c"), periods=24, freq="MS"), "%d/%m/%Y")
    kept, cut = splits.as_of_split(frame, COLS, "2025-06-01")
    assert cut == pd.Timestamp("2025-06-01") and len(kept) == 3 * 18


@pytest.mark.parametrize("times", [[f"{y}-01-01" for y in range(2258, 2266)],
                                   pd.date_range("1600-01-01", periods=8, freq="YS", unit="s")])
def test_times_beyond_what_the_model_can_carry_are_a_column_type_error_naming_the_rows(times):
    """Times outside 1677-2262 (what nanosecond times hold) raised pandas' OutOfBoundsDatetime: the
    command's "failed" line and exit 1, not a data error (exit 3) naming them."""
    frame = pd.DataFrame({"unique_id": "a", "ds": times, "y": np.arange(8.0)})
    with pytest.raises(ColumnTypeError) as info:
        validate_frame(frame, COLS)
    assert info.value.column == "ds" and info.value.series == ["a"] and "1677" in str(info.value)
    assert ("rows 5, 6, 7 (" if isinstance(times, list) else "rows 0, 1, 2, 3, 4 and 3 more") in str(info.value)


def test_daily_dates_written_day_first_with_their_offsets_are_local_dates():
    """Local midnights with two offsets are dates (their local dates as written): written day first, the
    local dates were read month first again, and the data could not be trained (FrequencyError)."""
    local = pd.date_range("2024-03-10", periods=40, freq="D", tz="Europe/Berlin")
    frame = pd.DataFrame({"unique_id": "a", "ds": local.strftime("%d/%m/%Y %H:%M%z"), "y": np.arange(40.0)})
    out = validate_frame(frame, COLS)
    assert out.freq == "D" and (out.frame["ds"].to_numpy() == local.tz_localize(None).to_numpy()).all()


def test_year_first_dates_are_read_year_month_day():
    frame = make_frame(periods=12, freq="MS")
    out = validate_frame(_written(frame, "%Y/%m/%d"), COLS)
    assert out.freq == "MS" and (out.frame["ds"].to_numpy() == frame["ds"].to_numpy()).all()


def test_non_numeric_target_names_column_and_value():
    frame = make_frame()
    frame["y"] = frame["y"].astype(object)
    frame.loc[3, "y"] = "oops"
    with pytest.raises(ColumnTypeError) as info:
        validate_frame(frame, COLS)
    assert info.value.column == "y" and "'oops'" in str(info.value)


@pytest.mark.parametrize("column, bad", [("y", "oops"), ("ds", "not a date"), ("ds", None), ("p", "x")])
def test_a_bad_value_names_its_series_not_only_its_row(column, bad):
    """A row's position is the frame's, not the file's, where the frame is one chunk of a large file
    (`forecaster predict`): the error names the series too, so the row can be found."""
    frame = make_frame(ids=("a", "b", "c"), p=1.0)
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[frame.unique_id == "b"][2], column] = bad
    with pytest.raises(ColumnTypeError) as info:
        validate_frame(frame, Columns(past_only=("p",)))
    assert info.value.column == column and info.value.series == ["b"] and "series: b" in str(info.value)


def test_bool_target_refused_but_bool_covariate_accepted():
    frame = make_frame(p=True)
    out = validate_frame(frame, Columns(past_only=("p",)))
    assert (out.frame["p"] == 1.0).all()
    frame["y"] = frame["y"] > 2
    with pytest.raises(ColumnTypeError, match="bool"):
        validate_frame(frame, COLS)


def test_a_bool_among_numbers_in_the_target_is_refused_naming_its_row_and_series():
    # An object column mixing numbers and True (a pyfunc caller's frame) was read as 1.0 and forecast.
    frame = make_frame(ids=("a", "b"))
    frame["y"] = frame["y"].astype(object)
    row = frame.index[frame.unique_id == "b"][1]
    frame.loc[row, "y"] = True
    with pytest.raises(ColumnTypeError, match="not bool") as info:
        validate_frame(frame, COLS)
    assert info.value.column == "y" and info.value.series == ["b"] and "True" in str(info.value)
    frame.loc[row, "y"] = 1.5  # numbers as objects still read
    assert validate_frame(frame, COLS).frame["y"].notna().all()


def test_duplicates_named():
    frame = make_frame()
    frame = pd.concat([frame, frame.iloc[[8]]])
    with pytest.raises(DuplicateRowsError) as info:
        validate_frame(frame, COLS)
    assert info.value.series == ["b"]
    assert info.value.timestamps == [pd.Timestamp("2024-01-03")]
    assert "2024-01-03" in str(info.value)


# ----------------------------------------------------------------------------- sorting and frequency



@pytest.mark.parametrize("order", ["sorted", "times_reversed_in_a_series", "series_swapped", "one_row_late"])
def test_rows_in_any_order_validate_to_the_sorted_frame(order):
    """Sorted rows skip the sort (`_sorted_by`); rows out of order in any one way are sorted: both give
    the same frame, and the report says which happened."""
    rows = make_frame(ids=("a", "b", "c"))  # in (id, time) order already
    rows["y"] = np.arange(len(rows), dtype=float)
    index = {"sorted": list(range(18)),
             "times_reversed_in_a_series": [*range(6), *range(11, 5, -1), *range(12, 18)],
             "series_swapped": [*range(6, 12), *range(6), *range(12, 18)],
             "one_row_late": [*range(5), *range(6, 18), 5]}[order]
    out = validate_frame(rows.iloc[index].reset_index(drop=True), COLS)
    pd.testing.assert_frame_equal(out.frame, validate_frame(rows, COLS).frame, check_exact=True)
    assert out.report["sorted"] is (order != "sorted")


def test_a_duplicate_row_in_sorted_rows_is_refused():
    rows = make_frame(ids=("a", "b"))
    rows = pd.concat([rows.iloc[:8], rows.iloc[[7]], rows.iloc[8:]], ignore_index=True)  # sorted, b's 2nd twice
    with pytest.raises(DuplicateRowsError) as info:
        validate_frame(rows, COLS)
    assert info.value.series == ["b"] and info.value.timestamps == [pd.Timestamp("2024-01-02")]

def test_unsorted_input_is_sorted_and_reported():
    frame = make_frame(ids=("b", "a"))
    shuffled = frame.sample(frac=1.0, random_state=3)
    out = validate_frame(shuffled, COLS)
    assert out.report["sorted"] is True
    assert list(out.frame["unique_id"]) == ["a"] * 6 + ["b"] * 6
    assert out.frame["ds"].is_monotonic_increasing is False
    assert out.frame.groupby("unique_id")["ds"].apply(lambda s: s.is_monotonic_increasing).all()
    # y follows its row: "a" was the second series in make_frame, so its values are 10..15
    assert out.frame["y"].tolist()[:6] == [10.0, 11, 12, 13, 14, 15]
    assert validate_frame(out.frame, COLS).report["sorted"] is False


def test_series_with_different_frequencies_named():
    hourly = make_frame(ids=("h1",), periods=5, freq="h")
    daily = make_frame(ids=("d1", "d2", "d3"), periods=5, freq="D")
    with pytest.raises(FrequencyError) as info:
        validate_frame(pd.concat([hourly, daily]), COLS)
    assert info.value.series == ["h1"]
    assert "'D'" in str(info.value) and "'h'" in str(info.value)


def test_given_freq_off_grid_rows_named():
    frame = make_frame(ids=("a",), periods=4, freq="h")
    frame.loc[2, "ds"] = pd.Timestamp("2024-01-01 02:30")
    with pytest.raises(FrequencyError) as info:
        validate_frame(frame, COLS, freq="h")
    assert info.value.timestamps == [pd.Timestamp("2024-01-01 02:30")]
    with pytest.raises(FrequencyError, match="did you mean h"):
        validate_frame(make_frame(), COLS, freq="H")


# ----------------------------------------------------------------------------- missing policies


def test_gap_error_names_series_and_timestamp():
    frame = make_frame().drop(index=9)
    with pytest.raises(GapError) as info:
        validate_frame(frame, COLS)
    assert info.value.series == ["b"] and info.value.timestamps == [pd.Timestamp("2024-01-04")]
    assert "2024-01-04" in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_missing_or_infinite_target_error(bad):
    frame = make_frame()
    frame.loc[2, "y"] = bad
    with pytest.raises(MissingValueError) as info:
        validate_frame(frame, COLS)
    assert info.value.series == ["a"] and info.value.timestamps == [pd.Timestamp("2024-01-03")]


def test_fill_policy_values_and_counts(caplog):
    with caplog.at_level(logging.INFO, logger="forecaster.data"):
        out = validate_frame(gappy_frame(), Columns(past_only=("p",)), missing_policy="fill")
    frame = out.frame
    assert frame["ds"].tolist() == list(pd.date_range("2024-01-01", periods=6, freq="D"))
    assert frame["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    assert frame["observed"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert frame["p"].tolist() == [10.0, 20, 30, 30, 50, 60]
    report = out.report
    assert (report["rows_in"], report["rows_out"], report["gaps_filled"]) == (5, 6, 1)
    assert (report["targets_filled"], report["targets_masked"]) == (3, 0)
    assert report["per_series"] == {"a": {"gaps_filled": 1, "targets_filled": 3}}
    assert "1 gap row(s) inserted, 3 target(s) filled" in caplog.text


def test_fill_policy_backfills_leading_missing():
    frame = make_frame(ids=("a",), periods=4)
    frame.loc[0, "y"] = np.nan
    out = validate_frame(frame, COLS, missing_policy="fill")
    assert out.frame["y"].tolist() == [1.0, 1.0, 2.0, 3.0]


def test_mask_policy_values_and_counts():
    out = validate_frame(gappy_frame(), Columns(past_only=("p",)), missing_policy="mask")
    assert out.frame["y"].tolist() == [1.0, 0.0, 3.0, 0.0, 5.0, 0.0]
    assert out.frame["observed"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert out.frame["p"].tolist() == [10.0, 20, 30, 30, 50, 60]
    assert (out.report["gaps_filled"], out.report["targets_masked"], out.report["targets_filled"]) == (1, 3, 0)
    assert out.report["per_series"] == {"a": {"gaps_filled": 1, "targets_masked": 3}}


def test_mask_policy_keeps_its_mask_when_a_validated_frame_is_validated_again():
    # The training pipeline hands its validated frame (masked readings 0.0, `observed` 0) to fit and
    # backtest, which validate it again: the masked 0.0 must stay masked, not become a real reading.
    cols = Columns(past_only=("p",))
    once = validate_frame(gappy_frame(), cols, missing_policy="mask").frame
    twice = validate_frame(once, cols, missing_policy="mask")
    assert twice.frame["observed"].tolist() == once["observed"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert twice.frame["y"].tolist() == once["y"].tolist()


def test_error_policy_output_all_observed_and_nothing_logged(caplog):
    with caplog.at_level(logging.INFO, logger="forecaster.data"):
        out = validate_frame(make_frame(), COLS)
    assert (out.frame["observed"] == 1.0).all()
    assert out.report["per_series"] == {} and caplog.text == ""
    assert list(out.frame.columns) == ["unique_id", "ds", "y", "observed"]


def test_fill_cannot_fill_series_without_values():
    frame = make_frame()
    frame.loc[frame["unique_id"] == "b", "y"] = np.nan
    with pytest.raises(MissingValueError) as info:
        validate_frame(frame, COLS, missing_policy="fill")
    assert info.value.series == ["b"]


def test_unknown_policy_is_config_error():
    with pytest.raises(ConfigError, match="missing_policy"):
        validate_frame(make_frame(), COLS, missing_policy="drop")


# ----------------------------------------------------------------------------- covariates and length


def test_static_must_be_constant():
    frame = make_frame(s=1.0)
    frame.loc[7, "s"] = 2.0
    with pytest.raises(CovariateError) as info:
        validate_frame(frame, Columns(static=("s",)))
    assert info.value.column == "s" and info.value.series == ["b"]


def test_covariate_nan_is_error_unless_fill():
    frame = make_frame(p=1.0)
    frame.loc[1, "p"] = np.nan
    frame.loc[3, "p"] = 4.0
    cols = Columns(past_only=("p",))
    with pytest.raises(CovariateError) as info:
        validate_frame(frame, cols, missing_policy="mask")
    assert info.value.column == "p" and info.value.timestamps == [pd.Timestamp("2024-01-02")]
    out = validate_frame(frame, cols, missing_policy="fill")
    assert out.frame["p"].tolist()[:4] == [1.0, 1.0, 1.0, 4.0]


def test_short_history_error_and_prediction_listing():
    frame = pd.concat([make_frame(ids=("a",), periods=6), make_frame(ids=("b",), periods=3)])
    with pytest.raises(ShortHistoryError) as info:
        validate_frame(frame, COLS, min_length=5)
    assert info.value.series == ["b"] and "b (3 of 3 rows observed)" in str(info.value)
    out = validate_frame(frame, COLS, min_length=5, for_prediction=True)
    assert out.short_series == ["b"] and out.report["short_series"] == 1
    assert len(out.frame) == 9


@pytest.mark.parametrize("policy", ["fill", "mask"])
def test_the_length_rule_counts_observed_readings_not_the_rows_of_the_grid(policy):
    """A series of 100 grid rows of which 80 are blanks (40 missing rows, 40 missing values) has 20
    readings: below a minimum of 24 it is short, whatever its policy fills in or masks (it counted as
    100 before, and the network forecast it from blanks)."""
    frame = make_frame(ids=("blank", "full", "some"), periods=100)
    step = frame.groupby("unique_id").cumcount()
    blank, some = frame["unique_id"].eq("blank"), frame["unique_id"].eq("some")
    frame.loc[blank & step.between(10, 49), "y"] = np.nan  # 40 missing values
    frame.loc[some & step.between(10, 79), "y"] = np.nan  # 70 missing values: 30 readings stay
    frame = frame[~(blank & step.between(50, 89))]  # 40 missing rows
    with pytest.raises(ShortHistoryError, match=r"fewer than min_length=24 observed readings: blank \(20 of 100 "
                                                r"rows observed\)"):
        validate_frame(frame, COLS, missing_policy=policy, min_length=24)
    out = validate_frame(frame, COLS, missing_policy=policy, min_length=24, for_prediction=True)
    assert out.short_series == ["blank"] and out.report["short_series"] == 1
    assert out.frame.groupby("unique_id").size().eq(100).all()  # every row kept, filled or masked
    # Without a minimum a fully masked series is still trained on as its policy says (nothing is short).
    frame.loc[frame["unique_id"].eq("some"), "y"] = np.nan
    assert validate_frame(frame, COLS, missing_policy="mask").short_series == []


# ----------------------------------------------------------------------------- prediction


def prediction_frame(future_steps=3) -> pd.DataFrame:
    frame = make_frame(periods=5 + future_steps, k=np.arange(2.0 * (5 + future_steps)))
    frame.loc[frame["ds"] >= pd.Timestamp("2024-01-06"), "y"] = np.nan
    return frame


def test_prediction_splits_future_rows():
    cols = Columns(known_future=("k",))
    out = validate_frame(prediction_frame(), cols, horizon=3, for_prediction=True)
    assert len(out.frame) == 10 and out.frame["ds"].max() == pd.Timestamp("2024-01-05")
    assert out.future is not None and list(out.future.columns) == ["unique_id", "ds", "k"]
    assert out.future["k"].tolist() == [5.0, 6.0, 7.0, 13.0, 14.0, 15.0]
    assert out.report["future_rows"] == 6 and out.report["rows_in"] == 16


def test_prediction_future_must_cover_horizon():
    cols = Columns(known_future=("k",))
    with pytest.raises(CovariateError) as info:
        validate_frame(prediction_frame(future_steps=2), cols, horizon=3, for_prediction=True)
    assert info.value.series == ["a", "b"]
    assert info.value.timestamps == [pd.Timestamp("2024-01-08")] * 2
    frame = prediction_frame()
    frame.loc[6, "k"] = np.nan
    with pytest.raises(CovariateError) as info:
        validate_frame(frame, cols, horizon=3, for_prediction=True)
    assert info.value.column == "k" and info.value.timestamps == [pd.Timestamp("2024-01-07")]


def test_prediction_ignores_rows_beyond_horizon_and_counts_them():
    out = validate_frame(prediction_frame(), Columns(known_future=("k",)), horizon=2, for_prediction=True)
    assert out.report["future_rows_ignored"] == 2
    assert out.future["ds"].max() == pd.Timestamp("2024-01-07")


def test_prediction_without_known_future_treats_trailing_nan_by_policy():
    frame = prediction_frame()
    with pytest.raises(MissingValueError):
        validate_frame(frame, COLS, for_prediction=True)
    out = validate_frame(frame.drop(columns="k"), COLS, for_prediction=True, missing_policy="mask")
    assert out.future is None and out.report["targets_masked"] == 6


def test_prediction_series_without_history_is_short_history_error():
    frame = prediction_frame()
    frame.loc[frame["unique_id"] == "b", "y"] = np.nan
    with pytest.raises(ShortHistoryError) as info:
        validate_frame(frame, Columns(known_future=("k",)), horizon=3, for_prediction=True)
    assert info.value.series == ["b"]


# ----------------------------------------------------------------------------- scale


def test_a_large_frame_validates_whole():
    """Ten thousand series of 200 hours with two holes: every row kept, both holes filled and counted.
    (How long it takes is measured where users wait, in ``bench/``; no timing is asserted here.)"""
    n_series, length = 10_000, 200
    times = pd.date_range("2024-01-01", periods=length, freq="h")
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(n_series), length),
            "ds": np.tile(times, n_series),
            "y": np.random.default_rng(0).random(n_series * length),
        }
    ).drop(index=[5, 7])
    out = validate_frame(frame, COLS, missing_policy="fill")
    assert len(out.frame) == n_series * length and out.report["gaps_filled"] == 2


def test_year_day_month_dates_are_read_so_where_iso_does_not_read_them_or_leaves_gaps_and_said(caplog):
    """``2024-13-01`` for 13 January: year-month-day (ISO 8601) could not read it (ColumnTypeError), and
    hours of 10 to 12 January written so read as hours of October to December (a GapError, or with
    ``fill`` months of invented hours). ISO 8601 wins wherever it reads every value and leaves the series
    regular; otherwise a year-day-month reading that does is taken, and a warning says so."""
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    frame = pd.DataFrame({"unique_id": "a", "ds": [f"{d:%Y-%d-%m}" for d in days], "y": np.arange(20.0)})
    with caplog.at_level(logging.WARNING, logger="forecaster.data"):
        out = validate_frame(frame, COLS)
    assert out.freq == "D" and out.frame["ds"].tolist() == list(days)
    assert "time column 'ds' read year-day-month" in caplog.text
    assert "'2024-13-01' (row 12) is 2024-01-13" in caplog.text
    hours = pd.date_range("2024-01-10", periods=60, freq="h")  # no day past the 12th: every value reads as ISO
    for policy in ("error", "fill"):
        both = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 60), "ds": [f"{t:%Y-%d-%m %H:%M}" for t in hours] * 2,
                             "y": 1.0})
        out = validate_frame(both, COLS, missing_policy=policy)
        assert out.freq == "h" and out.frame["ds"].tolist() == list(hours) * 2 and len(out.frame) == 120


def test_iso_dates_read_as_before_where_year_day_month_would_read_them_too(caplog):
    """ISO 8601 never changes: twelve months (which read year-day-month would be twelve regular days),
    months with a gap filled (irregular either way), daily data past the 12th."""
    months = pd.date_range("2024-01-01", periods=12, freq="MS")
    gappy = months.delete(4)
    days = pd.date_range("2024-01-01", periods=40, freq="D")
    with caplog.at_level(logging.WARNING, logger="forecaster.data"):
        for stamps, policy, freq, length in ((months, "error", "MS", 12), (gappy, "fill", "MS", 12),
                                             (days, "error", "D", 40)):
            frame = pd.DataFrame({"unique_id": "a", "ds": [f"{t:%Y-%m-%d}" for t in stamps], "y": 1.0})
            out = validate_frame(frame, COLS, missing_policy=policy)
            assert out.freq == freq and len(out.frame) == length and out.frame["ds"].iloc[0] == stamps[0]
    assert "year-day-month" not in caplog.text


@pytest.mark.parametrize("suffix", ["", " 09:30", " 09:30+01:00"])
def test_iso_months_on_one_day_past_the_first_are_not_read_as_days_of_one_month(suffix, caplog):
    """``2024-01-05``, ``2024-02-05``, ... (a monthly bill on the 5th) has no pandas frequency, so ISO 8601
    left it "irregular", and the year-day-month reading (1-12 May, regular daily) was taken with a warning
    and forecast as daily data. ISO 8601's reading stands: the frequency error it always got."""
    stamps = [f"2024-{month:02d}-05{suffix}" for month in range(1, 13)]
    frame = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 12), "ds": stamps * 2, "y": 1.0})
    with caplog.at_level(logging.WARNING, logger="forecaster.data"), pytest.raises(FrequencyError):
        validate_frame(frame, COLS, missing_policy="fill")
    assert "year-day-month" not in caplog.text


def test_text_among_numbers_in_the_target_is_not_called_a_bool():
    """The refusal of booleans mixed into an object target named every value that is no number, text too,
    "not bool": 'abc' was refused as a bool, and a user looked for booleans in their file."""
    frame = make_frame(ids=("a", "b"))
    frame["y"] = frame["y"].astype(object)
    rows = frame.index[frame.unique_id == "b"]
    frame.loc[rows[1], "y"] = "abc"
    with pytest.raises(ColumnTypeError, match="column must be numeric") as info:
        validate_frame(frame, COLS)
    assert "bool" not in str(info.value) and "'abc'" in str(info.value) and info.value.series == ["b"]
    frame.loc[rows[2], "y"] = True  # both: the boolean is named as one, without the text
    with pytest.raises(ColumnTypeError, match="not bool") as info:
        validate_frame(frame, COLS)
    assert "True" in str(info.value) and "'abc'" not in str(info.value)


@pytest.mark.parametrize("twice", ["unique_id", "ds", "y"])
def test_a_column_named_twice_is_refused_naming_it(twice):
    """A frame built in Python (or a served ``dataframe_split`` body) may name a column twice: selecting it
    gave a frame, not a column, and validation raised "The truth value of a Series is ambiguous" (exit 1,
    HTTP 400 with MLflow's stack trace)."""
    frame = make_frame()
    frame = pd.concat([frame, frame[[twice]]], axis=1)
    with pytest.raises(ColumnTypeError, match="appear more than once") as info:
        validate_frame(frame, COLS)
    assert info.value.column == twice
