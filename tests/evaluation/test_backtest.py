"""The rolling-origin backtest on its own: window positions, and the baseline beside the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schema import Columns
from forecaster.data.splits import before_first_origin
from forecaster.errors import DataError
from forecaster.evaluation.backtest import run_backtest
from forecaster.models.baselines import seasonal_naive
from tests.synthetic import hourly_frame

COLUMNS = Columns()


def _seasonal_naive_frame(history: pd.DataFrame, horizon: int = 12) -> pd.DataFrame:
    rows = []
    for sid, part in history.groupby("unique_id", sort=False):
        start = part["ds"].max() + pd.Timedelta("1h")
        rows.append(pd.DataFrame({"unique_id": sid, "ds": pd.date_range(start, periods=horizon, freq="h"),
                                  "forecast": seasonal_naive(part["y"].to_numpy(), horizon, 24)}))
    return pd.concat(rows, ignore_index=True)


def test_windows_end_at_the_last_observation_and_the_baseline_is_scored_alike():
    frame = hourly_frame(n_series=3, length=100)
    result = run_backtest(_seasonal_naive_frame, frame, COLUMNS, horizon=12, n_windows=3, step=6, season=24,
                          name="candidate")
    f = result.forecasts
    assert sorted(f["window"].unique()) == [0, 1, 2]
    last = f[f["window"] == 2].groupby("unique_id")["ds"].max()
    assert (last == frame.groupby("unique_id")["ds"].max()).all()
    first = f[f["window"] == 0].groupby("unique_id")["ds"].min()
    assert (first == frame.groupby("unique_id")["ds"].min() + pd.Timedelta(hours=100 - 12 - 12)).all()
    # A candidate that is seasonal naive scores exactly like the baseline, window by window.
    a, b = result.summary["candidate"], result.summary["seasonal_naive"]
    assert set(a) == {"mae", "rmse", "smape", "mase"} and all(np.isclose(a[k], b[k]) for k in a)
    assert len(result.per_series) == 2 * 3 * 3
    # Every row names its window's cutoff: the last time the model saw, one step before its first target.
    first_target = f.groupby(["window", "unique_id"])["ds"].min()
    assert (f.groupby(["window", "unique_id"])["cutoff"].first() == first_target - pd.Timedelta("1h")).all()
    scored = result.per_series.set_index(["window", "unique_id"])["cutoff"]
    assert (scored.groupby(level=[0, 1]).first() == first_target - pd.Timedelta("1h")).all()


def test_training_part_stops_before_the_first_origin_and_short_series_are_named():
    frame = hourly_frame(n_series=2, length=100)
    train = before_first_origin(frame, COLUMNS, 12, 3, 6)
    assert (train.groupby("unique_id").size() == 100 - 24).all()
    # A series shorter than the oldest origin is scored on the windows it reaches; one shorter than
    # horizon + 1 cannot be scored and is left out; a frame where none can be is refused.
    mixed = pd.concat([frame, hourly_frame(n_series=1, length=20, seed=1).assign(unique_id="SHORT"),
                       hourly_frame(n_series=1, length=12, seed=2).assign(unique_id="TINY")])
    result = run_backtest(_seasonal_naive_frame, mixed, COLUMNS, horizon=12, n_windows=3, step=6, season=24)
    windows = result.per_series[result.per_series["model"] == "seasonal_naive"].groupby("unique_id")["window"]
    assert windows.apply(sorted).to_dict() == {"S0": [0, 1, 2], "S1": [0, 1, 2], "SHORT": [1, 2]}
    with pytest.raises(DataError, match="no series can be backtested: each needs at least 13 steps"):
        run_backtest(_seasonal_naive_frame, hourly_frame(n_series=2, length=12), COLUMNS, horizon=12,
                     n_windows=3, step=6, season=24)


def test_forecasts_known_for_other_windows_are_refused_not_scored():
    """``known`` forecasts made at other origins (a cross-validation with another ``n_windows`` or
    ``step``) would be scored against the wrong actuals: refused with the window named; those of the
    same windows are used as they are, ``predict`` never asked."""
    frame = hourly_frame(n_series=2, length=100)
    same = run_backtest(_seasonal_naive_frame, frame, COLUMNS, horizon=12, n_windows=3, step=6, season=24)
    known = same.forecasts[["unique_id", "ds", "window", "forecast"]]

    def never(history: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("predict asked for a window known holds")

    again = run_backtest(never, frame, COLUMNS, horizon=12, n_windows=3, step=6, season=24, known=known)
    pd.testing.assert_frame_equal(again.forecasts, same.forecasts)
    with pytest.raises(DataError, match=r"known.*window 0.*S0"):
        run_backtest(never, frame, COLUMNS, horizon=12, n_windows=2, step=6, season=24, known=known)


def _yearly_with_a_gap(gap: int) -> pd.DataFrame:
    """One yearly series at 1000 rising by 5, its reading ``gap`` missing."""
    y = 1000.0 + 5.0 * np.arange(20)
    y[gap] = np.nan
    return pd.DataFrame({"unique_id": "a", "ds": pd.date_range("1990", periods=20, freq="YS"), "y": y})


def _last_value(history: pd.DataFrame) -> pd.DataFrame:
    """Three years of the last value: a model whose forecast the tests can compute by hand."""
    start = history["ds"].max() + pd.DateOffset(years=1)
    return pd.DataFrame({"unique_id": "a", "ds": pd.date_range(start, periods=3, freq="YS"),
                         "forecast": history["y"].iloc[-1]})


def test_the_scale_column_reads_masked_readings_as_predict_does():
    """The ``scale`` the calibration in scale units divides the errors by is the one `predict` multiplies
    the offsets by: masked readings (missing_policy "mask": 0.0 in the target, ``observed`` 0) are
    interpolated, not read as zeros (one gap in a series at 1000 made its scale 30 times too large)."""
    from forecaster.data.validation import validate_frame

    raw = _yearly_with_a_gap(8)
    scales = {policy: run_backtest(_last_value, validate_frame(raw, COLUMNS, freq="YS", missing_policy=policy).frame,
                                   COLUMNS, horizon=3, n_windows=2, step=3, season=1).forecasts["scale"]
              for policy in ("fill", "mask")}
    np.testing.assert_allclose(scales["fill"], 5.0)
    np.testing.assert_allclose(scales["mask"], scales["fill"])


def test_a_masked_actual_is_left_out_of_the_scores_not_read_as_zero():
    """Under missing_policy "mask" a missing reading is 0.0 in the validated target with ``observed`` 0:
    the backtest leaves it out of the scores and of the forecast frame's actuals (NaN), which the
    calibration reads (a series at 1000 was scored against a 0: MAE 11.25 -> 189)."""
    from forecaster.data.validation import validate_frame

    raw = _yearly_with_a_gap(17)
    frame = validate_frame(raw, COLUMNS, freq="YS", missing_policy="mask").frame
    result = run_backtest(_last_value, frame, COLUMNS, horizon=3, n_windows=2, step=3, season=1)
    f = result.forecasts
    masked = f["ds"] == pd.Timestamp("2007-01-01")
    assert masked.sum() == 1 and f.loc[masked, "y"].isna().all() and f.loc[~masked, "y"].notna().all()
    expected = (f["y"] - f["forecast"]).abs().groupby(f["window"]).mean().mean()  # NaN left out
    assert result.summary["lstm"]["mae"] == pytest.approx(expected)
    assert result.summary["lstm"]["mae"] == pytest.approx((10.0 + 12.5) / 2)  # window 1: |1090 - 1080|, |1095 - 1080|


def test_the_mase_reads_a_masked_history_as_predict_does():
    """MASE's scale (and seasonal naive's forecast) from the history `predict` reads: a masked reading
    (0.0 in the target under missing_policy "mask") interpolated, as the "fill" policy has it, not a fall
    to 0 and back that made the scale 30 times too large and the backtest's MASE as much too small."""
    from forecaster.data.validation import validate_frame

    raw = _yearly_with_a_gap(8)
    results = {policy: run_backtest(_last_value, validate_frame(raw, COLUMNS, freq="YS", missing_policy=policy).frame,
                                    COLUMNS, horizon=3, n_windows=2, step=3, season=1)
               for policy in ("fill", "mask")}
    for model in ("lstm", "seasonal_naive"):
        assert results["mask"].summary[model]["mase"] == pytest.approx(results["fill"].summary[model]["mase"])
    assert results["fill"].summary["lstm"]["mase"] == pytest.approx(results["fill"].summary["lstm"]["mae"] / 5.0)
