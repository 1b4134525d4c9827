"""The forecaster's fitted state is one frozen dataclass that save and load write and read field by
field: every fitted attribute (the public names ending in ``_``) of a loaded forecaster equals the
fitted one's, value by value, the network's weights and the scaler's statistics included."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import ModelError
from forecaster.evaluation.backtest import run_backtest
from forecaster.forecaster import LSTMForecaster
from forecaster.models.combination import MEMBERS
from forecaster.models.keras_network import NetworkSpec
from forecaster.models.state import FittedState
from tests.synthetic import hourly_frame

HORIZON = 12


def _frame():
    frame = hourly_frame(n_series=5, length=160)
    lengths = {"S0": 160, "S1": 160, "S2": 160, "S3": 40, "S4": 20}  # S3 padded, S4 too short to train
    frame = frame[frame.groupby("unique_id").cumcount(ascending=False) < frame["unique_id"].map(lengths)]
    frame = frame.reset_index(drop=True)
    frame.loc[[5, 6, 40], "y"] = np.nan  # masked targets: the validation report names the series
    return frame


def _fitted_names(model: LSTMForecaster) -> list[str]:
    return sorted(n for n in dir(type(model)) if n.endswith("_") and not n.startswith("_"))


def _assert_same(name: str, a, b) -> None:
    if isinstance(a, keras.Model):
        assert a.to_json() == b.to_json(), name
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb, err_msg=name)
    elif hasattr(a, "to_dict"):  # scaler, covariate statistics, columns, derived settings
        assert a.to_dict() == b.to_dict(), name
    else:
        assert a == b, name
        assert type(a) is type(b), name


def test_every_fitted_attribute_round_trips_save_and_load(tmp_path):
    frame = _frame()
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                           epochs=2, batch_size=64, max_windows_per_series=20, verbose=0, ensemble=2,
                           missing_policy="mask", combine="learned")
    model.fit(frame)
    vframe = validate_frame(frame, Columns(), freq="h", missing_policy="mask")
    model.learn_combination(model.cross_validation(frame, n_windows=2))
    model.calibrate(run_backtest(model.predict, vframe.frame, Columns(), HORIZON, 2, HORIZON, 24,
                                 model.quantiles_).forecasts)
    names = _fitted_names(model)
    assert names == sorted(f"{n}_" for n in FittedState.names())
    # The fields earlier versions never saved hold something here, so losing them fails this test.
    assert model.padded_ and len(model.member_histories_) == 2 and model.report_["targets_masked"] == 3
    assert model.calibration_ and model.combine_ == "learned" and model.member_scores_
    assert model.untrained_series_ == ["S4"]
    loaded = LSTMForecaster.load(model.save(tmp_path / "m"))
    for name in names:
        _assert_same(name, getattr(model, name), getattr(loaded, name))
    assert loaded.get_params().keys() == model.get_params().keys()
    assert loaded.ensemble == model.ensemble == 2
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], model.predict(frame)["forecast"], rtol=1e-6)


def test_the_state_is_frozen_and_absent_before_a_fit():
    model = LSTMForecaster(horizon=HORIZON, freq="h")
    with pytest.raises(AttributeError):
        model.model_  # noqa: B018
    assert not hasattr(model, "calibration_")
    with pytest.raises(ModelError, match="not fitted"):
        model.predict(_frame())
    assert dataclasses.fields(FittedState) and FittedState.__dataclass_params__.frozen


class _NoPredict(LSTMForecaster):
    def predict(self, *args, **kwargs):
        raise AssertionError("fit called predict")


def test_fit_scores_the_holdout_without_its_own_predict():
    model = _NoPredict(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                       epochs=1, batch_size=64, max_windows_per_series=10, verbose=0, combine="auto")
    model.fit(hourly_frame(n_series=3, length=120))
    assert set(model.combine_scores_) == set(MEMBERS)


def test_a_folder_saved_before_the_new_fields_loads_with_their_defaults(tmp_path):
    import json

    from forecaster.ops.integrity import sha256

    frame = hourly_frame(n_series=3, length=120)
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                           epochs=1, batch_size=64, max_windows_per_series=10, verbose=0, combine="theta")
    path = model.fit(frame).save(tmp_path / "old")
    meta = json.loads((path / "forecaster.json").read_text())
    new = ("padded", "member_histories", "report", "weights", "member_scores")
    (path / "forecaster.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in new}))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["forecaster.json"] = sha256(path / "forecaster.json")
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = LSTMForecaster.load(path)
    assert loaded.weights_ == model.weights_ == {"lstm": 0.5, "theta": 0.5}, "a named combination's weights"
    assert loaded.member_histories_ == [model.history_] and loaded.report_ == {} and not loaded.padded_
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], model.predict(frame)["forecast"], rtol=1e-6)
    meta["weights"] = {"lstm": -1.0}
    (path / "forecaster.json").write_text(json.dumps(meta))
    manifest["forecaster.json"] = sha256(path / "forecaster.json")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="weights"):
        LSTMForecaster.load(path)
