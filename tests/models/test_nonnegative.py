"""Series that never go below 0 are forecast at or above 0 (``nonnegative = "auto"``, the default):
the point and every quantile, from the network, a combination or the seasonal-naive fallback; series
with a negative reading keep their forecasts as the models give them."""

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import ConfigError
from forecaster.forecaster import LSTMForecaster
from forecaster.models.keras_network import NetworkSpec

HORIZON = 6
VALUES = ["forecast", "q0.1", "q0.5", "q0.9"]


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    t = np.arange(30, dtype=np.float64)
    series = {
        # falling towards 0: every trend member extrapolates below it
        "fall": np.maximum(600.0 - 21.0 * t + rng.normal(0, 3.0, 30), 1.0),
        # crosses 0 within its history: nothing says it cannot go lower
        "cross": 200.0 - 15.0 * t + rng.normal(0, 3.0, 30),
        "rise": 100.0 + 3.0 * t + rng.normal(0, 3.0, 30),
        "flat": 50.0 + rng.normal(0, 5.0, 30),
        # too short for the network: the seasonal-naive fallback, its interval around a last value of 0
        "short": np.array([40.0, 0.0, 35.0, 0.0]),
    }
    parts = [pd.DataFrame({"unique_id": sid, "ds": pd.date_range("1990-01-01", periods=len(y), freq="YS"), "y": y})
             for sid, y in series.items()]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> tuple[LSTMForecaster, pd.DataFrame]:
    frame = _frame()
    model = LSTMForecaster(horizon=HORIZON, input_size=8, freq="YS", network=NetworkSpec(units=4, head_units=8),
                           epochs=1, batch_size=32, verbose=0, combine="otm+dotm+aets+rtrend+rtrend8").fit(frame)
    return model, frame


def _by_series(out: pd.DataFrame) -> dict[str, np.ndarray]:
    return {sid: part[VALUES].to_numpy("float64") for sid, part in out.groupby("unique_id", sort=False)}


def test_a_series_never_below_zero_is_forecast_at_or_above_zero_and_others_as_given(fitted):
    model, frame = fitted
    assert model.nonnegative == "auto"
    floored = _by_series(model.predict(frame))
    raw = _by_series(model.set_params(nonnegative="never").predict(frame))
    model.set_params(nonnegative="auto")
    # Without the floor the falling series and the fallback's interval go below 0: the floor has work here.
    assert (raw["fall"] < 0).any() and (raw["short"] < 0).any()
    for sid in ("fall", "rise", "flat", "short"):
        assert (floored[sid] >= 0).all(), sid
        np.testing.assert_array_equal(floored[sid], np.maximum(raw[sid], 0.0))
        assert not np.signbit(floored[sid]).any(), sid  # 0.0, never -0.0, in the output
        assert (np.diff(floored[sid][:, 1:], axis=1) >= 0).all(), sid  # quantiles still in order
    assert (raw["cross"] < 0).any()
    np.testing.assert_array_equal(floored["cross"], raw["cross"])


def test_the_rule_is_a_parameter_saved_with_the_model(fitted, tmp_path):
    model, frame = fitted
    loaded = LSTMForecaster.load(model.save(tmp_path / "m"))
    assert loaded.nonnegative == "auto"
    pd.testing.assert_frame_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(ConfigError, match="nonnegative must be one of auto, never, got 'sometimes'"):
        loaded.set_params(nonnegative="sometimes").predict(frame)


def test_which_series_are_never_negative_reads_observed_values_only_and_keeps_ids_as_given():
    from forecaster.data.schema import Columns
    from forecaster.data.validation import validate_frame
    from forecaster.models.base import SeriesBatch

    ds = pd.date_range("2020-01-01", periods=4, freq="D")
    frame = pd.DataFrame({
        "unique_id": ["001"] * 4 + ["NA"] * 4 + ["1"] * 4 + ["gap"] * 4,
        "ds": list(ds) * 4,
        # "NA" has one reading below 0; "gap" none observed (its missing value is masked, filled with 0.0)
        "y": [0.0, 5.0, 0.0, 2.0, 3.0, -1.0, 4.0, 5.0, 1e14, 0.0, 0.0, 0.0, 2.0, np.nan, 3.0, 1.0],
    })
    vframe = validate_frame(frame, Columns(), freq="D", missing_policy="mask")
    order = ["gap", "NA", "001", "1"]
    np.testing.assert_array_equal(SeriesBatch(vframe, order).never_negative, [True, False, True, True])
    # a series whose only value below 0 is in its history makes no other series count as negative
    only = SeriesBatch(vframe, ["NA"]).never_negative
    np.testing.assert_array_equal(only, [False])
