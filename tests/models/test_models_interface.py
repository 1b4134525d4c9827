"""Every forecasting method is a model behind one interface (`forecaster.models.base.ForecastModel`),
and a learned combination weighs them by greedy ensemble selection on out-of-sample forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import ConfigError, DataError, MissingColumnError
from forecaster.evaluation.metrics import mase, mase_scale
from forecaster.forecaster import LSTMForecaster
from forecaster.models import baselines
from forecaster.models.base import ForecastModel, SeriesBatch
from forecaster.models.combination import CANDIDATES, greedy_weights, point_model
from forecaster.models.keras_network import NetworkSpec
from forecaster.models.naive import SeasonalNaive
from forecaster.models.statistical import METHODS, Statistical
from tests.synthetic import hourly_frame

HORIZON = 12


@pytest.fixture(scope="module")
def fitted() -> LSTMForecaster:
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                           epochs=1, batch_size=64, max_windows_per_series=20, verbose=0, combine="learned")
    return model.fit(hourly_frame(n_series=4, length=200))


def _batch(frame, ids=None) -> SeriesBatch:
    vframe = validate_frame(frame, Columns(), freq="h")
    return SeriesBatch(vframe, list(vframe.ids) if ids is None else ids)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_statistical_method_is_a_model_forecasting_what_its_function_does(name):
    frame = hourly_frame(n_series=3, length=100)
    batch = _batch(frame)
    model = point_model(name)
    assert isinstance(model, ForecastModel) and model.point_only and model.name == name
    out = model.forecast(batch, HORIZON)
    histories = [part["y"].to_numpy("float64") for _, part in frame.groupby("unique_id", sort=False)]
    np.testing.assert_allclose(out[..., 0], METHODS[name](histories, HORIZON, 24), rtol=1e-12)
    again = Statistical.from_state(model.get_state()).forecast(_batch(frame, batch.ids[::-1]), HORIZON)
    np.testing.assert_allclose(again, out[::-1], rtol=1e-12)  # rows follow the batch's order


def test_seasonal_naive_is_the_fallback_with_intervals_and_a_point_member_without():
    frame = hourly_frame(n_series=2, length=100)
    batch = _batch(frame)
    with_q = SeasonalNaive((0.1, 0.5, 0.9)).forecast(batch, HORIZON)
    point = point_model(SeasonalNaive.name).forecast(batch, HORIZON)
    assert with_q.shape == (2, HORIZON, 4) and point.shape == (2, HORIZON, 1)
    last = frame.groupby("unique_id", sort=False)["y"].apply(lambda y: y.to_numpy()[-24:-12]).tolist()
    np.testing.assert_array_equal(point[..., 0], np.stack(last))
    np.testing.assert_array_equal(with_q[..., 0], point[..., 0])
    assert (np.diff(with_q[..., 1:], axis=-1) >= 0).all()


def test_the_network_is_a_model_in_the_forecasters_state(fitted):
    frame = hourly_frame(n_series=4, length=200)
    network = fitted._network(fitted._fitted)
    assert isinstance(network, ForecastModel) and not network.point_only
    out = network.forecast(_batch(frame), HORIZON)
    assert out.shape == (4, HORIZON, 4) and np.isfinite(out).all()
    fitted.combine_ = "none"
    try:
        alone = fitted.predict(frame, calibrated=False)["forecast"].to_numpy().reshape(4, HORIZON)
    finally:
        fitted.combine_ = "learned"
    np.testing.assert_allclose(out[..., 0], alone, rtol=1e-6)


def test_greedy_selection_picks_the_right_member_and_mixes_opposite_errors():
    rng = np.random.default_rng(0)
    actual = rng.normal(10, 1, (30, 6))
    scale = np.ones(30)
    right = {"lstm": actual + 3.0, "theta": actual.copy(), "ets": actual - 5.0}
    weights, scores = greedy_weights(actual, right, scale)
    assert weights == {"theta": 1.0} and scores["theta"] == 0.0 and scores["lstm"] == pytest.approx(3.0)
    opposite = {"lstm": actual + 1.0, "ets": actual - 1.0}
    weights, _ = greedy_weights(actual, opposite, scale, rounds=10)
    assert weights == {"lstm": 0.5, "ets": 0.5}
    weights, _ = greedy_weights(actual, {"lstm": actual + 1, "theta": actual + np.nan}, scale)
    assert weights == {"lstm": 1.0}, "a member with a non-finite forecast is never chosen"


def test_learned_weights_combine_the_members_forecasts_and_move_the_quantiles_with_the_point(fitted):
    saved = fitted._fitted  # the fixture is shared: its fitted state is put back
    try:
        _check_learned_combination(fitted)
    finally:
        fitted._fitted = saved


def _check_learned_combination(fitted):
    frame = hourly_frame(n_series=4, length=200)
    cv = fitted.cross_validation(frame, n_windows=2)
    assert set(cv["window"]) == {0, 1} and {"lstm", *CANDIDATES} <= set(cv.columns)
    # each candidate's column is its forecast from the history before that window's cutoff
    one = cv[(cv["window"] == 0) & (cv["unique_id"] == "S1")]
    history = frame[(frame["unique_id"] == "S1") & (frame["ds"] <= one["cutoff"].iloc[0])]["y"].to_numpy("float64")
    np.testing.assert_allclose(one["ets"], baselines.ets_batch([history], HORIZON, 24)[0], rtol=1e-9)
    assert one["scale"].iloc[0] == pytest.approx(mase_scale([history], 24)[0])
    fitted.learn_combination(cv)
    weights = fitted.weights_
    assert fitted.combine_ == "learned" and sum(weights.values()) == pytest.approx(1.0)
    assert set(fitted.member_scores_) == {"lstm", *CANDIDATES}
    combined = fitted.predict(frame, calibrated=False)
    fitted.combine_ = "none"
    alone = fitted.predict(frame, calibrated=False)
    fitted.learn_combination(cv)
    histories = [part["y"].to_numpy("float64") for _, part in frame.groupby("unique_id", sort=False)]
    members = {name: METHODS[name](histories, HORIZON, 24) if name in METHODS else
               baselines.seasonal_naive_batch(histories, HORIZON, 24) for name in CANDIDATES}
    members["lstm"] = alone["forecast"].to_numpy().reshape(4, HORIZON)
    expected = sum(w * members[name] for name, w in weights.items())
    np.testing.assert_allclose(combined["forecast"].to_numpy().reshape(4, HORIZON), expected, rtol=1e-5)
    np.testing.assert_allclose(combined["q0.9"] - combined["q0.1"], alone["q0.9"] - alone["q0.1"], atol=1e-4)


def test_learn_combination_names_what_a_wrong_members_frame_lacks(fitted):
    # Was a KeyError or a numpy reshape ValueError: a traceback instead of the column at fault.
    cv = fitted.cross_validation(hourly_frame(n_series=4, length=200), n_windows=1)
    with pytest.raises(MissingColumnError, match="column: 'scale'"):
        fitted.learn_combination(cv.drop(columns="scale"))
    with pytest.raises(DataError, match=f"horizon = {HORIZON} rows per series and window.*has {len(cv) - 1} rows"):
        fitted.learn_combination(cv.iloc[1:])
    with pytest.raises(DataError, match="got list"):
        fitted.learn_combination([1, 2])


def test_a_fit_with_learned_weights_weighs_the_members_on_its_holdout(fitted):
    frame = hourly_frame(n_series=4, length=200)
    held_out = frame.groupby("unique_id").cumcount(ascending=False) < HORIZON
    history, actual = frame[~held_out], frame[held_out]["y"].to_numpy().reshape(4, HORIZON)
    insample = [part["y"].to_numpy("float64") for _, part in history.groupby("unique_id", sort=False)]
    assert fitted.combine_ == "learned" and sum(fitted.weights_.values()) == pytest.approx(1.0)
    assert set(fitted.member_scores_) == {"lstm", *CANDIDATES} and set(fitted.weights_) <= {"lstm", *CANDIDATES}
    theta = baselines.theta_batch(insample, HORIZON, 24)
    assert fitted.member_scores_["theta"] == pytest.approx(mase(actual, theta, insample, 24), rel=1e-9)
    chosen = dict(fitted.weights_)
    fitted.combine_ = "none"
    try:
        network = fitted.predict(history, calibrated=False)["forecast"].to_numpy().reshape(4, HORIZON)
    finally:
        fitted.combine_, fitted.weights_ = "learned", chosen
    assert fitted.member_scores_["lstm"] == pytest.approx(mase(actual, network, insample, 24), rel=1e-6)


@pytest.mark.slow  # a training run end to end (backtest, final fit, MLflow run)
def test_a_training_run_weighs_the_members_on_the_backtest_windows_and_logs_the_weights(tmp_path, monkeypatch):
    from dataclasses import replace

    from mlflow import MlflowClient

    from pipelines.train import train
    from tests.synthetic import tiny_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "history.csv"
    hourly_frame(n_series=4, length=200).to_csv(data, index=False)
    config = tiny_config(data, epochs=1)
    result = train(replace(config, combine="learned"), register=False, verbose=0)
    members = result.backtest.members
    assert members is not None and set(members["window"]) == {0, 1}
    final = result.model
    # the final model carries the weights chosen on the backtest windows (not on its own holdout)
    expected = LSTMForecaster(**final.get_params())
    expected._fitted = final._fitted
    assert final.weights_ == expected.learn_combination(members).weights_
    assert final.combine_ == "learned" and final.calibration_, "calibrated on the combined forecast"
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["resolved.combine"] == "learned"
    logged = {k.removeprefix("combine.weight."): float(v) for k, v in run.data.params.items()
              if k.startswith("combine.weight.")}
    assert logged == pytest.approx(final.weights_, abs=1e-4)
    assert {f"combine.member_mase.{m}" for m in ("lstm", *CANDIDATES)} <= set(run.data.metrics)


@pytest.mark.parametrize(("kwargs", "key"), [({"n_windows": 0}, "n_windows"), ({"n_windows": "2"}, "n_windows"),
                                             ({"n_windows": 2, "step": 0}, "step"),
                                             ({"n_windows": 10**6}, "n_windows")])
def test_cross_validation_refuses_windows_it_cannot_make_before_any_work(fitted, kwargs, key):
    """A count or step that is not a positive whole number, or windows reaching before every series'
    first rows, is a ConfigError naming the key (were an empty concat, a TypeError, a step of 0 repeating
    one window, a million windows looped over)."""
    with pytest.raises(ConfigError, match=key):
        fitted.cross_validation(hourly_frame(n_series=3), **kwargs)


@pytest.mark.parametrize("season", [1, 4, 12, 24])
def test_a_series_gets_the_same_bits_alone_and_batched_with_others(season):
    # A chunked prediction equals the whole frame's only if no member's forecast of a series depends on
    # the series beside it: the rows of a batch are padded to the longest, and numpy's pairwise sums
    # over a padded row once changed the last bits (`baselines.row_sums`).
    rng = np.random.default_rng(season)
    histories = [level + np.cumsum(rng.normal(0, 1, n)) + 5 * np.sin(np.arange(n) * 2 * np.pi / season)
                 for n, level in zip(rng.integers(2, 400, 12), [100.0, -50.0, 0.0, 1e6] * 3)]
    for name, method in METHODS.items():
        together = method(histories, 8, season)
        alone = np.stack([method([h], 8, season)[0] for h in histories])
        np.testing.assert_array_equal(together, alone, err_msg=name)


def test_the_fallback_reads_a_masked_reading_as_interpolated_not_as_its_zero():
    # Under missing_policy "mask" a masked reading's target is 0.0: the fallback forecast 0.0 for a short
    # series whose last reading was masked (q0.1 at -8 below a history of 10..14), while the backtest's
    # seasonal naive and the members read the interpolated history.
    t = pd.date_range("2020-01-01", periods=6, freq="h")
    frame = pd.DataFrame({"unique_id": "a", "ds": t, "y": [10.0, 11.0, 12.0, 13.0, 14.0, np.nan]})
    batch = SeriesBatch(validate_frame(frame, Columns(), freq="h", missing_policy="mask"), ["a"])
    out = SeasonalNaive((0.1, 0.5, 0.9)).forecast(batch, 3)
    history = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 14.0])
    np.testing.assert_array_equal(out[0, :, 0], 14.0)
    np.testing.assert_allclose(out[0, :, 1:], baselines.seasonal_naive_intervals(history, 3, 24, [0.1, 0.5, 0.9]))
