"""Intervals of a combination that holds the network on seasonal data: the spread of the combination's
backtest errors in units of each series' MASE scale around the point (`calibration.method`,
``scale_units_centred``; docs/accuracy.md, issue #27, seventh session), on ugly quarterly data; a model
saved before, with width corrections, predicts as it did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.contract import LSTM
from forecaster.data.schema import Columns
from forecaster.evaluation.backtest import run_backtest
from forecaster.evaluation.calibration import (
    SCALE_UNITS,
    SCALE_UNITS_CENTRED,
    WIDTH_UNITS,
    apply_corrections,
    conformal_corrections,
    method,
    scaled_in,
    scaled_offsets,
)
from forecaster.evaluation.metrics import mase_scale
from forecaster.forecaster import LSTMForecaster
from forecaster.models.combination import weights_of
from tests.synthetic import tiny_fit, ugly_training_run

HORIZON = 4
WINDOWS = 2
SEASON = 4
QUANTILES = ["q0.1", "q0.5", "q0.9"]


def _ugly_quarterly() -> pd.DataFrame:
    """Quarterly series as users send them: two seasonal ones of very different size, one with zeros,
    one with a 1e9 spike, a constant one (no MASE scale), a 3-value one (the fallback's)."""
    rng = np.random.default_rng(5)
    n = 32
    ds = pd.date_range("2000-01-01", periods=n, freq="QS")
    season = np.tile([0.0, 3.0, -2.0, 1.0], n // SEASON)
    series = {
        "small": 10.0 + season + rng.normal(0, 0.5, n),
        "large": 1e6 + 1e5 * season + 2e3 * np.arange(n) + rng.normal(0, 2e4, n),
        "zeros": np.where(np.arange(n) % SEASON == 0, 0.0, 5.0 + rng.normal(0, 1, n)),
        "spike": np.where(np.arange(n) == 13, 1e9, 200.0 + 10 * season + rng.normal(0, 3, n)),
        "flat": np.full(n, 7.0),
    }
    parts = [pd.DataFrame({"unique_id": sid, "ds": ds, "y": y}) for sid, y in series.items()]
    parts.append(pd.DataFrame({"unique_id": "tiny", "ds": ds[-3:], "y": [1.0, 2.0, 3.0]}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, LSTMForecaster]:
    frame = _ugly_quarterly()
    return frame, tiny_fit(frame, freq="QS", horizon=HORIZON, input_size=8)


def _backtest(model: LSTMForecaster, frame: pd.DataFrame) -> pd.DataFrame:
    frame = model._validate(frame, model.columns_, model.freq_).frame
    return run_backtest(model.predict, frame, Columns(), HORIZON, WINDOWS, HORIZON, SEASON,
                        model.quantiles_).forecasts


def test_the_rule_centred_scale_units_on_seasonal_combinations_the_network_alone_widened():
    with_network = weights_of("otm+dotm+aets")
    assert method(SEASON, with_network) == method(12, with_network) == method(24, with_network) == SCALE_UNITS_CENTRED
    assert method(1, {"otm": 0.5, "rtrend8": 0.5}) == method(SEASON, {"otm": 1.0}) == SCALE_UNITS  # the network dropped
    assert method(SEASON, weights_of("none")) == method(24, {LSTM: 1.0}) == WIDTH_UNITS  # the network alone
    assert method(1, weights_of("otm+dotm+aets+rtrend+rtrend8")) == WIDTH_UNITS  # yearly with the network: as before


def test_a_seasonal_combination_with_the_network_takes_its_intervals_from_its_errors_in_scale_units(fitted,
                                                                                                  tmp_path):
    frame, model = fitted
    assert LSTM in model.weights_ and len(model.weights_) > 1  # auto's seasonal default holds the network
    assert model.calibration_method() == SCALE_UNITS_CENTRED
    backtest = _backtest(model, frame)
    calibration = model.calibrate(backtest).calibration_
    assert scaled_in(calibration) and "q0.1-q0.9" in calibration  # the width kept for series without a scale
    # the errors' spread around the point: each step's median left out, the median forecast the point
    biased = scaled_offsets(backtest, Columns(), model.quantiles_, HORIZON)
    np.testing.assert_allclose(calibration["scaled.q0.5"], 0.0, atol=1e-12)
    for q in ("q0.1", "q0.9"):
        np.testing.assert_allclose(calibration[f"scaled.{q}"],
                                   np.array(biased[f"scaled.{q}"]) - np.array(biased["scaled.q0.5"]))
    out = model.predict(frame).set_index("unique_id")
    raw = model.predict(frame, calibrated=False).set_index("unique_id")
    one = out.loc["large"]
    scale = mase_scale([frame.loc[frame["unique_id"] == "large", "y"].to_numpy()], SEASON)[0]
    for q in QUANTILES:  # every quantile the point plus its offsets in the series' scale (none floored here)
        np.testing.assert_allclose(one[q], one["forecast"] + scale * np.array(calibration[f"scaled.{q}"]))
    np.testing.assert_array_equal(out["forecast"], raw["forecast"])  # the point untouched
    # a constant history is the fallback's: its value at every quantile, no correction to widen
    assert (out.loc["flat", ["forecast", *QUANTILES]].to_numpy() == 7.0).all()
    fallback = out["model"] != LSTM  # the 3-value series and the constant one keep seasonal naive's intervals
    assert set(out.index[fallback]) == {"tiny", "flat"}
    pd.testing.assert_frame_equal(out[fallback], raw[fallback])
    values = out[["forecast", *QUANTILES]].to_numpy("float64")
    assert np.isfinite(values).all()
    assert np.all(np.diff(values[:, 1:], axis=1) >= 0)  # no crossed quantiles
    assert (out.loc["zeros", "q0.1"] >= 0).all()  # the floor after the intervals
    assert out.loc["spike", "q0.9"].max() < 1e6  # the spike treated, not in the scale
    again = LSTMForecaster.load(model.save(tmp_path / "m")).predict(frame).set_index("unique_id")
    pd.testing.assert_frame_equal(again, out)


def test_the_network_alone_keeps_the_width_corrections(fitted):
    frame, model = fitted
    saved = model._fitted
    try:
        model.combine_, model.weights_ = "none", weights_of("none")
        assert model.calibration_method() == WIDTH_UNITS
        assert not scaled_in(model.calibrate(_backtest(model, frame)).calibration_)
    finally:
        model._fitted = saved


def test_a_model_saved_with_width_corrections_predicts_as_before(fitted, tmp_path):
    """A seasonal model trained before this rule carries width corrections only: loaded, it applies
    them as it did (the rule is decided at calibration, the saved corrections say which)."""
    frame, model = fitted
    saved = model._fitted
    try:
        width = conformal_corrections(_backtest(model, frame), Columns(), model.quantiles_, HORIZON)
        assert width and not scaled_in(width)
        model.calibration_ = width  # what `calibrate` stored for this combination before
        loaded = LSTMForecaster.load(model.save(tmp_path / "old"))
    finally:
        model._fitted = saved
    assert loaded.calibration_ == width
    out = loaded.predict(frame).set_index("unique_id")
    raw = loaded.predict(frame, calibrated=False).set_index("unique_id")
    net = out["model"] == LSTM
    ids = list(dict.fromkeys(out.index[net]))
    values = np.stack([raw.loc[ids, q].to_numpy().reshape(len(ids), HORIZON) for q in QUANTILES], axis=-1)
    widened = apply_corrections(values, loaded.quantiles_, width)
    never_negative = np.array([(frame.loc[frame["unique_id"] == i, "y"] >= 0).all() for i in ids])
    widened = np.where(never_negative[:, None, None], np.maximum(widened, 0.0), widened)
    got = np.stack([out.loc[ids, q].to_numpy().reshape(len(ids), HORIZON) for q in QUANTILES], axis=-1)
    np.testing.assert_allclose(got, widened)


@pytest.mark.slow  # a whole training run: backtest, final fit, an MLflow run
def test_a_seasonal_training_run_logs_the_centred_method_and_forecasts_finite_ordered_intervals(tmp_path,
                                                                                              monkeypatch):
    result, run = ugly_training_run(_ugly_quarterly(), tmp_path, monkeypatch, freq="QS", horizon=HORIZON,
                                    windows=WINDOWS, input_size=8)
    final = result.model
    assert LSTM in final.weights_ and len(final.weights_) > 1
    assert run.data.params["calibration.method"] == SCALE_UNITS_CENTRED
    assert scaled_in(final.calibration_)
    out = final.predict(_ugly_quarterly())
    values = out[["forecast", *QUANTILES]].to_numpy("float64")
    assert np.isfinite(values).all() and np.all(np.diff(values[:, 1:], axis=1) >= 0)
