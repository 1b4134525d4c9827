"""A training run's backtest on data without a season reuses the cross-validation's forecasts of the same
windows (`LSTMForecaster.window_forecasts`, `run_backtest`'s ``known``): the same figures as forecasting
every window again, bit for bit, with the network and the members run once per window. And a combination
that dropped the network is calibrated from its own backtest errors in scale units
(`LSTMForecaster.calibration_method`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.contract import FORECAST_COLUMN, LSTM, WINDOW_COLUMN
from forecaster.data.schema import Columns
from forecaster.defaults import NON_SEASONAL_COMBINATION
from forecaster.errors import MissingColumnError
from forecaster.evaluation.backtest import run_backtest
from forecaster.evaluation.calibration import SCALE_COLUMN, SCALE_UNITS, WIDTH_UNITS, scaled_in
from forecaster.evaluation.metrics import mase_scale
from forecaster.forecaster import NEVER_NEGATIVE, LSTMForecaster, network_quantile
from forecaster.models.combination import LEARNED, weights_of
from tests.synthetic import tiny_fit, ugly_training_run, ugly_yearly_frame

HORIZON = 3
WINDOWS = 2


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, LSTMForecaster]:
    frame = ugly_yearly_frame()
    return frame, tiny_fit(frame, freq="YS", horizon=HORIZON, input_size=6)


def _backtests(model: LSTMForecaster, frame: pd.DataFrame):
    """The backtest forecasting every window again, and the one reusing the cross-validation's, with the
    series ``predict`` was asked for in the second; both on the validated frame, as a training run's
    backtest (its readings treated as at fit: the spike)."""
    columns = Columns()
    frame = model._validate(frame, model.columns_, model.freq_).frame
    members = model.cross_validation(frame, WINDOWS)
    again = run_backtest(model.predict, frame, columns, HORIZON, WINDOWS, HORIZON, 1, model.quantiles_)
    asked: list[str] = []

    def predict(history: pd.DataFrame) -> pd.DataFrame:
        asked.extend(pd.unique(history["unique_id"]))
        return model.predict(history)

    reused = run_backtest(predict, frame, columns, HORIZON, WINDOWS, HORIZON, 1, model.quantiles_,
                          known=model.window_forecasts(members))
    return members, again, reused, asked


@pytest.mark.parametrize("weights", ["auto", NON_SEASONAL_COMBINATION, "none", "learned_uneven"])
def test_the_reused_forecasts_score_as_forecasting_again_bit_for_bit(fitted, weights):
    frame, model = fitted
    saved = model._fitted
    try:
        if weights == "learned_uneven":  # weights that are not equal: sums that round differently
            model.combine_, model.weights_ = LEARNED, {LSTM: 0.15, "otm": 0.35, "rtrend8": 0.5}
        elif weights != "auto":
            model.combine_, model.weights_ = weights, weights_of(weights)
        members, again, reused, asked = _backtests(model, frame)
    finally:
        model._fitted = saved
    assert set(members[WINDOW_COLUMN]) == {0, 1} and not {"short", "flat"} & set(members["unique_id"])
    # the network and the members forecast once per window: predict only answers the fallback's series (the
    # short one, the constant one)
    assert set(asked) == {"short", "flat"}
    pd.testing.assert_frame_equal(reused.forecasts, again.forecasts, check_exact=True)
    pd.testing.assert_frame_equal(reused.per_series, again.per_series, check_exact=True)
    assert reused.summary == again.summary
    assert again.forecasts[FORECAST_COLUMN].notna().all()


def test_the_cross_validation_frame_carries_the_networks_quantiles_and_the_floor(fitted):
    frame, model = fitted
    members = model.cross_validation(frame, WINDOWS)
    q = [network_quantile(x) for x in model.quantiles_]
    assert q and set(q) <= set(members.columns)
    assert np.isfinite(members[q].to_numpy("float64")).all()  # the head's own (unsorted: predict sorts them)
    never = members.groupby("unique_id")[NEVER_NEGATIVE].first()
    assert not never["down"] and never["001"] and never["zeros"]


def test_window_forecasts_names_a_column_its_frame_lacks(fitted):
    frame, model = fitted
    members = model.cross_validation(frame, 1)
    with pytest.raises(MissingColumnError, match=NEVER_NEGATIVE):
        model.window_forecasts(members.drop(columns=[NEVER_NEGATIVE]))
    with pytest.raises(MissingColumnError, match=network_quantile(model.quantiles_[0])):
        model.window_forecasts(members.drop(columns=[network_quantile(model.quantiles_[0])]))


def _calibrated(model: LSTMForecaster, frame: pd.DataFrame) -> LSTMForecaster:
    frame = model._validate(frame, model.columns_, model.freq_).frame
    members = model.cross_validation(frame, WINDOWS)
    backtest = run_backtest(model.predict, frame, Columns(), HORIZON, WINDOWS, HORIZON, 1, model.quantiles_,
                            known=model.window_forecasts(members))
    assert SCALE_COLUMN in backtest.forecasts.columns
    return model.calibrate(backtest.forecasts)


def test_a_combination_without_the_network_takes_its_intervals_from_its_errors_in_scale_units(fitted, tmp_path):
    frame, model = fitted
    saved = model._fitted
    try:
        model.combine_, model.weights_ = LEARNED, {"otm": 0.5, "rtrend8": 0.5}  # the network dropped
        assert model.calibration_method() == SCALE_UNITS
        calibration = _calibrated(model, frame).calibration_
        assert scaled_in(calibration) and "q0.1-q0.9" in calibration  # the width kept for series without a scale
        out = model.predict(frame).set_index("unique_id")
        raw = model.predict(frame, calibrated=False).set_index("unique_id")
        one = out.loc["001"]
        scale = mase_scale([frame.loc[frame["unique_id"] == "001", "y"].to_numpy()], 1)[0]
        np.testing.assert_allclose(one["q0.1"], one["forecast"] + scale * np.array(calibration["scaled.q0.1"]))
        np.testing.assert_allclose(one["q0.9"], one["forecast"] + scale * np.array(calibration["scaled.q0.9"]))
        # a constant history is the fallback's: its value at every quantile, no correction to widen
        assert (out.loc["flat", ["forecast", "q0.1", "q0.5", "q0.9"]].to_numpy() == 7.0).all()
        fallback = out["model"] != LSTM  # the series too short for the network keep seasonal naive's intervals
        assert fallback.any()
        pd.testing.assert_frame_equal(out[fallback], raw[fallback])
        assert np.isfinite(out[["forecast", "q0.1", "q0.5", "q0.9"]].to_numpy()).all()
        assert (out.loc["zeros", "q0.1"] >= 0).all()  # the floor after the intervals
        again = LSTMForecaster.load(model.save(tmp_path / "m")).predict(frame).set_index("unique_id")
        pd.testing.assert_frame_equal(again, out)
    finally:
        model._fitted = saved


def test_a_combination_with_the_network_keeps_the_width_corrections(fitted):
    frame, model = fitted
    saved = model._fitted
    try:
        model.combine_, model.weights_ = NON_SEASONAL_COMBINATION, weights_of(NON_SEASONAL_COMBINATION)
        assert model.calibration_method() == WIDTH_UNITS
        assert not scaled_in(_calibrated(model, frame).calibration_)
    finally:
        model._fitted = saved


@pytest.mark.slow  # a whole training run: backtest, final fit, an MLflow run
def test_a_yearly_training_run_logs_how_it_calibrated_and_forecasts_finite_intervals(tmp_path, monkeypatch):
    result, run = ugly_training_run(ugly_yearly_frame(), tmp_path, monkeypatch, freq="YS", horizon=HORIZON,
                                    windows=WINDOWS, input_size=6)
    final = result.model
    assert result.backtest.members is not None  # data without a season: the windows were reviewed
    assert "scale" in result.backtest.forecasts.columns
    dropped = LSTM not in final.weights_
    assert run.data.params["calibration.method"] == ("scale_units" if dropped else "width_units")
    assert scaled_in(final.calibration_) == dropped
    out = final.predict(ugly_yearly_frame())
    assert set(out["unique_id"]) >= {"001", "NA", "spike", "flat", "pair"}
    values = out[["forecast", "q0.1", "q0.5", "q0.9"]].to_numpy("float64")
    assert np.isfinite(values).all() and np.all(values[:, 1] <= values[:, 3])
    assert out.loc[out["unique_id"] == "spike", "q0.9"].max() < 1e6  # the spike treated, not in the scale


def test_the_cross_validation_leaves_a_masked_actual_out_not_as_its_zero():
    # Under missing_policy "mask" a masked reading's target is 0.0; the windows' actuals (what the learned
    # combination is weighed on) held it as an observation, scoring every member against 0.0.
    frame = ugly_yearly_frame()
    gap = (frame["unique_id"] == "001") & (frame["ds"] == frame["ds"].max() - pd.DateOffset(years=1))
    frame.loc[gap, "y"] = np.nan
    model = tiny_fit(frame, freq="YS", horizon=HORIZON, input_size=6, missing_policy="mask")
    members = model.cross_validation(frame, WINDOWS)
    at = members[(members["unique_id"] == "001") & (members["ds"] == frame.loc[gap, "ds"].iloc[0])]
    assert len(at) and at["y"].isna().all(), at  # before: 0.0
    assert members["y"].isna().sum() == len(at)  # every other actual as given
