"""On data without a season, ``combine = "auto"`` asks the backtest's windows whether the network helps its
combination, and drops it where the statistical members alone score lower there
(`forecaster.models.combination.without_network`, `LSTMForecaster.combine_on_windows`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from forecaster.defaults import NETWORK_REVIEW_MARGIN, NON_SEASONAL_COMBINATION, reviews_network
from forecaster.forecaster import LSTMForecaster
from forecaster.models.combination import AUTO, LEARNED, MEMBERS, member_forecasts, weights_of, without_network
from forecaster.models.keras_network import NetworkSpec

HORIZON = 4
STATISTICAL = MEMBERS[NON_SEASONAL_COMBINATION]


def _windows(network_error: float, rows: int = 40) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Backtest windows where each statistical member misses by +-1 (alternating, so their mean by
    +-0.2) and the network by ``network_error``."""
    rng = np.random.default_rng(0)
    actual = rng.normal(50.0, 5.0, (rows, HORIZON))
    forecasts = {"lstm": actual + network_error}
    for k, name in enumerate(STATISTICAL):
        forecasts[name] = actual + (1.0 if k % 2 else -1.0)
    return actual, forecasts, np.ones(rows)


def test_the_network_is_dropped_where_it_hurts_the_mean_and_kept_where_it_helps():
    weights, scores = without_network(*_windows(6.0), NON_SEASONAL_COMBINATION, 0.0)
    assert weights == {name: pytest.approx(0.2) for name in STATISTICAL}
    # the members' errors -1, +1, -1, +1, -1: their mean -0.2; with the network's +6, (6 - 1) / 6
    assert scores["without_network"] == pytest.approx(0.2) and scores["with_network"] == pytest.approx(5 / 6)
    assert scores["lstm"] == pytest.approx(6.0) and scores["otm"] == pytest.approx(1.0)
    weights, scores = without_network(*_windows(1.2), NON_SEASONAL_COMBINATION, 0.0)
    assert weights is None and scores["with_network"] == pytest.approx(0.2 / 6)
    # lower by more than the margin: 0.2 against (2.5 - 1) / 6 = 0.25 is 20 % lower
    assert without_network(*_windows(2.0), NON_SEASONAL_COMBINATION, 0.0)[0] is None
    assert without_network(*_windows(2.5), NON_SEASONAL_COMBINATION, 0.0)[0] is not None
    assert without_network(*_windows(2.5), NON_SEASONAL_COMBINATION, 0.1)[0] is not None
    assert without_network(*_windows(2.5), NON_SEASONAL_COMBINATION, 0.25)[0] is None


def test_unusable_rows_count_against_neither_and_none_left_drops_nothing():
    actual, forecasts, scale = _windows(6.0)
    scale[:10] = 0.0  # a constant history: no MASE scale
    forecasts["aets"][10:20] = np.nan  # a member that could not forecast these rows
    actual[20, 0] = np.nan
    weights, scores = without_network(actual, forecasts, scale, NON_SEASONAL_COMBINATION, 0.0)
    assert weights is not None and np.isfinite(list(scores.values())).all()
    assert without_network(actual, forecasts, np.zeros(40), NON_SEASONAL_COMBINATION, 0.0) == (None, {})
    assert without_network(actual, forecasts, scale, "none", 0.0) == (None, {})


def test_only_data_without_a_season_is_reviewed():
    assert reviews_network(1) and not reviews_network(4) and not reviews_network(12) and not reviews_network(24)
    assert 0.0 <= NETWORK_REVIEW_MARGIN < 0.1


def _yearly(n_series: int = 6, length: int = 24) -> pd.DataFrame:
    """Straight lines with a little noise: the statistical members forecast them almost exactly, a
    network trained for one epoch does not."""
    rng = np.random.default_rng(1)
    parts = []
    for k in range(n_series):
        y = 100.0 + 3.0 * (k + 1) * np.arange(length) + rng.normal(0, 0.5, length)
        parts.append(pd.DataFrame({"unique_id": f"Y{k}", "ds": pd.date_range("1990-01-01", periods=length, freq="YS"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True)


def _fit(frame: pd.DataFrame, freq: str, combine: str = "auto") -> LSTMForecaster:
    return LSTMForecaster(horizon=HORIZON, input_size=8, freq=freq, network=NetworkSpec(units=4, head_units=8),
                          epochs=1, batch_size=32, verbose=0, combine=combine, seed=0).fit(frame)


@pytest.fixture(scope="module")
def yearly() -> tuple[pd.DataFrame, LSTMForecaster]:
    frame = _yearly()
    model = _fit(frame, "YS")
    if model.combine_ == "none":  # the holdout rule kept the network alone: make the review apply
        model.combine_ = NON_SEASONAL_COMBINATION
    return frame, model


@pytest.fixture
def fresh(yearly):
    """The module's yearly model as fitted, its fitted state put back after the test (a test may decide
    its combination): (frame, model, the fitted state)."""
    frame, model = yearly
    saved = model._fitted
    yield frame, model, saved
    model._fitted = saved


def test_a_yearly_fit_drops_a_network_that_misses_and_forecasts_the_members_mean(fresh):
    frame, model, saved = fresh
    assert model.reviews_network()
    members = model.cross_validation(frame, n_windows=2)
    model.combine_on_windows(members)
    scores = model.member_scores_
    assert {"lstm", *STATISTICAL, "with_network", "without_network"} == set(scores)
    assert np.isfinite(list(scores.values())).all()
    assert scores["without_network"] < scores["with_network"], "lines: the members beat a 1-epoch network"
    assert model.combine_ == LEARNED and model.weights_ == {name: pytest.approx(0.2) for name in STATISTICAL}
    out = model.predict(frame, calibrated=False)
    values = out.drop(columns=["unique_id", "ds", "model"]).to_numpy("float64")
    assert np.isfinite(values).all()
    histories = [part["y"].to_numpy("float64") for _, part in frame.groupby("unique_id", sort=False)]
    expected = np.mean(list(member_forecasts(histories, HORIZON, 1, set(STATISTICAL)).values()), axis=0)
    np.testing.assert_allclose(out["forecast"].to_numpy().reshape(-1, HORIZON), expected, rtol=1e-6)
    decided = model._fitted
    model.combine_on_windows(members)
    assert model._fitted is decided, "decided once: a second call changes nothing"
    # the same windows decide the same, and the forecasts are the same to the bit
    model._fitted = saved
    again = model.combine_on_windows(model.cross_validation(frame, n_windows=2)).predict(frame, calibrated=False)
    pd.testing.assert_frame_equal(out, again)


def test_the_network_is_kept_where_the_windows_say_it_helps(fresh):
    frame, model, _ = fresh
    members = model.cross_validation(frame, n_windows=2)
    # the network's column replaced by the actuals: it is now the best member by far
    members["lstm"] = members["y"]
    model.combine_on_windows(members)
    assert model.combine_ == NON_SEASONAL_COMBINATION and model.weights_["lstm"] == pytest.approx(1 / 6)
    assert model.member_scores_["with_network"] < model.member_scores_["without_network"]


def test_a_members_frame_without_a_member_of_the_combination_is_our_error_naming_it(fresh):
    # "auto" scores its own combination's members: without one of their columns (a frame cut down by
    # hand, or written before the member existed) the review cannot be made; a KeyError before.
    from forecaster.errors import MissingColumnError

    frame, model, saved = fresh
    members = model.cross_validation(frame, n_windows=2).drop(columns=["rtrend8"])
    with pytest.raises(MissingColumnError, match="rtrend8"):
        model.combine_on_windows(members)
    assert model._fitted is saved, "nothing decided"


def test_seasonal_data_and_a_network_kept_alone_are_not_reviewed(fresh):
    frame, model, _ = fresh
    model.combine_ = "none"  # "auto" kept the network alone on the holdout: nothing to review
    assert not model.reviews_network()
    model.combine_on_windows(model.cross_validation(frame, n_windows=2))
    assert model.combine_ == "none" and model.weights_ == {"lstm": 1.0}
    quarterly = _yearly(length=32).assign(ds=lambda f: f.groupby("unique_id").cumcount().map(
        dict(enumerate(pd.date_range("1990-01-01", periods=32, freq="QS")))))
    seasonal = _fit(quarterly, "QS")
    assert not seasonal.reviews_network()
    before = (seasonal.combine_, dict(seasonal.weights_))
    seasonal.combine_on_windows(seasonal.cross_validation(quarterly, n_windows=2))
    assert (seasonal.combine_, seasonal.weights_) == before and before[0] in (AUTO, "none")


@pytest.mark.slow  # a whole training run: backtest, final fit, an MLflow run
def test_a_yearly_training_run_reviews_the_network_on_the_backtest_windows_and_logs_it(tmp_path, monkeypatch, caplog):
    from mlflow import MlflowClient

    from forecaster.config import model_config_from_dict
    from pipelines.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "history.csv"
    _yearly().to_csv(data, index=False)
    config = model_config_from_dict({
        "model": {"name": "yearly", "horizon": HORIZON, "combine": "auto"}, "data": {"source": str(data), "freq": "YS"},
        "network": {"units": 4, "head_units": 8}, "training": {"input_size": 8, "epochs": 1, "batch_size": 32},
        "backtest": {"n_windows": 2, "step": HORIZON}})
    with caplog.at_level("INFO", logger="forecaster"):
        result = train(config, register=False, verbose=0)
    members, final = result.backtest.members, result.model
    if final.combine_scores_ and final.combine_ == "none":
        pytest.skip("the holdout rule kept the network alone: nothing to review")  # not seen with these lines
    assert members is not None and set(members["window"]) == {0, 1}
    # the final model carries what the backtest's windows decided
    expected = LSTMForecaster(**final.get_params())
    expected._fitted = replace(final._fitted, combine=NON_SEASONAL_COMBINATION,
                               weights=weights_of(NON_SEASONAL_COMBINATION))
    expected.combine_on_windows(members)
    assert (final.combine_, final.weights_) == (expected.combine_, expected.weights_)
    said = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("combine: "))
    assert final.combine_ == LEARNED and "lstm" not in final.weights_, "lines: the members beat a 1-epoch network"
    assert "the network dropped" in said and "without" in said, said
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["resolved.combine"] == final.combine_
    assert {"combine.member_mase.with_network", "combine.member_mase.without_network"} <= set(run.data.metrics)
    out = final.predict(_yearly())
    assert np.isfinite(out.drop(columns=["unique_id", "ds", "model"]).to_numpy("float64")).all()


def test_the_run_says_what_the_backtest_windows_decided_dropped_or_kept(fresh):
    from pipelines.steps import describe_combination

    _, model, _ = fresh
    kept = {"lstm": 2.0, "with_network": 1.2345, "without_network": 1.2}
    model._fitted = replace(model._fitted, combine=NON_SEASONAL_COMBINATION, combine_scores={"mean": 1.1},
                            weights=weights_of(NON_SEASONAL_COMBINATION), member_scores=kept)
    lines = describe_combination(model)
    assert lines[0].startswith(f"combine: {NON_SEASONAL_COMBINATION} (MASE on the final fit's holdout: mean 1.1000")
    assert lines[1] == "combine: the network kept on the backtest windows (MASE with it 1.2345, without 1.2000)"
    dropped = {**kept, "with_network": 1.5}
    model._fitted = replace(model._fitted, combine=LEARNED, weights={n: 0.2 for n in STATISTICAL},
                            member_scores=dropped)
    assert describe_combination(model) == [
        "combine: " + "+".join(STATISTICAL) + ", the network dropped (MASE on the backtest windows: "
        "with it 1.5000, without 1.2000)"]
    model._fitted = replace(model._fitted, combine=AUTO, combine_scores={}, weights={"lstm": 1.0}, member_scores={})
    assert describe_combination(model) == []  # nothing decided: nothing said
