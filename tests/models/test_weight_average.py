"""`[training] weight_average`: the fit keeps the moving average of its steps' weights (forecaster/models/averaging.py).

Real fits on tiny synthetic hourly data; the steps' raw weights are recorded by a Keras callback of the
test's own and the average recomputed from them, so what the fit kept is checked against its definition.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecaster.config import model_config_from_dict
from forecaster.defaults import WEIGHT_AVERAGE_EPOCHS, derive
from forecaster.errors import ConfigError
from forecaster.forecaster import LSTMForecaster
from forecaster.models.averaging import WeightAverage, momentum
from forecaster.models.network_spec import NetworkSpec
from pipelines.steps.describe import describe_resolved
from tests.synthetic import hourly_frame

NETWORK = NetworkSpec(units=8, head_units=16)


class Steps(keras.callbacks.Callback):
    """The trainable weights the fit starts from and those after each training step (raw: the steps')."""

    def __init__(self) -> None:
        super().__init__()
        self.start: list[np.ndarray] = []
        self.steps: list[list[np.ndarray]] = []

    def on_train_begin(self, logs=None) -> None:
        self.start = [v.numpy().copy() for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])


def _fit(epochs: int = 1, **kwargs) -> tuple[LSTMForecaster, Steps]:
    steps = Steps()
    model = LSTMForecaster(horizon=12, input_size=48, freq="h", network=NETWORK, epochs=epochs, batch_size=16,
                           max_windows_per_series=20, patience=10, seed=3, verbose=0, combine="none", **kwargs)
    return model.fit(hourly_frame(n_series=3, length=200), callbacks=[steps]), steps


def _trainable(model: LSTMForecaster) -> list[np.ndarray]:
    return [v.numpy() for v in model.model_.trainable_variables]


def test_momentum_spans_epochs_of_steps_and_a_span_of_one_step_averages_nothing():
    assert momentum(1.0, 100) == pytest.approx(0.99)
    assert momentum(2.0, 50) == pytest.approx(0.99)
    assert momentum(0.0, 100) == momentum(1.0, 1) == momentum(0.5, 2) == 0.0
    with pytest.raises(ValueError, match="momentum"):
        WeightAverage(1.0)


def test_the_fit_keeps_the_moving_average_of_its_steps_weights():
    model, steps = _fit(epochs=1, weight_average=1.0)
    assert "the weights' moving average over 1 epoch(s) kept" in describe_resolved(model)  # the run says so
    n = len(steps.steps)
    assert n > 2 and model.resolved_.weight_average == 1.0
    m = 1.0 - 1.0 / n  # one epoch of n steps
    expected = [w.astype(np.float64) for w in steps.start]
    for step in steps.steps:
        expected = [m * e + (1.0 - m) * w for e, w in zip(expected, step)]
    kept = _trainable(model)
    for got, want in zip(kept, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(got, last) for got, last in zip(kept, steps.steps[-1])), \
        "the average differs from the last step's weights"


def test_early_stopping_restores_the_best_epochs_average_and_the_steps_train_the_raw_weights():
    averaged, steps = _fit(epochs=3, weight_average=1.0)
    plain, plain_steps = _fit(epochs=3, weight_average=0.0)
    # The steps are the same (the average is only scored and kept): the same training loss every epoch.
    assert averaged.history_["loss"] == plain.history_["loss"]
    assert averaged.history_["val_loss"] != plain.history_["val_loss"]
    for a, b in zip(steps.steps[-1], plain_steps.steps[-1]):
        np.testing.assert_array_equal(a, b)
    per_epoch = len(steps.steps) // 3
    m = 1.0 - 1.0 / per_epoch
    expected, by_epoch = [w.astype(np.float64) for w in steps.start], []
    for i, step in enumerate(steps.steps, start=1):
        expected = [m * e + (1.0 - m) * w for e, w in zip(expected, step)]
        if i % per_epoch == 0:
            by_epoch.append(expected)
    best = int(np.argmin(averaged.history_["val_loss"]))
    for got, want in zip(_trainable(averaged), by_epoch[best], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_off_keeps_the_last_steps_weights_bit_for_bit():
    model, steps = _fit(epochs=1, weight_average=0.0)
    for got, last in zip(_trainable(model), steps.steps[-1], strict=True):
        np.testing.assert_array_equal(got, last)
    given, _ = _fit(epochs=1)  # a network given in [network]: derived off
    assert given.resolved_.weight_average == 0.0 and "weight_average" in given.resolved_.derived
    assert describe_resolved(given).endswith(", the last step's weights kept")
    for a, b in zip(_trainable(model), _trainable(given), strict=True):
        np.testing.assert_array_equal(a, b)


def test_derived_where_the_network_is_and_kept_by_a_warm_start():
    lengths = np.full(4, 500)
    derived = derive("h", 24, lengths, 24, network=None, input_size=None, max_windows_per_series=None,
                     epochs=None)
    assert derived.weight_average == WEIGHT_AVERAGE_EPOCHS and "weight_average" in derived.derived
    given = derive("h", 24, lengths, 24, network=NETWORK, input_size=48, max_windows_per_series=None,
                   epochs=None)
    assert given.weight_average == 0.0
    chosen = derive("h", 24, lengths, 24, network=None, input_size=None, max_windows_per_series=None,
                    epochs=None, weight_average=0.5)
    assert chosen.weight_average == 0.5 and "weight_average" not in chosen.derived
    assert type(derived).from_dict(derived.to_dict()) == derived
    old = derived.to_dict()
    del old["weight_average"]  # a model saved before the key existed trained without the average
    assert type(derived).from_dict(old).weight_average == 0.0


def test_the_key_reaches_the_forecaster_and_bad_values_are_refused():
    config = model_config_from_dict({"model": {"name": "m", "horizon": 6},
                                     "data": {"source": "package:m4_hourly", "freq": "h"},
                                     "training": {"weight_average": 2}})
    assert LSTMForecaster.from_config(config, verbose=0).weight_average == 2.0
    for bad, said in ((-1.0, "a finite number >= 0"), (float("inf"), "a finite number >= 0"),
                      ("one", "a number or none")):
        with pytest.raises(ConfigError, match=rf"weight_average must be {said}"):
            model_config_from_dict({"model": {"name": "m", "horizon": 6},
                                    "data": {"source": "package:m4_hourly", "freq": "h"},
                                    "training": {"weight_average": bad}})
        with pytest.raises(ConfigError, match="weight_average"):
            LSTMForecaster(horizon=6, freq="h", weight_average=bad).fit(hourly_frame(n_series=2, length=100))


def test_a_warm_start_that_leaves_it_to_be_derived_keeps_the_initial_fits_span():
    """As it keeps the initial network (the pipeline's warm final fit goes on from the backtest's)."""
    options = {"horizon": 12, "freq": "h", "epochs": 1, "max_windows_per_series": 4, "verbose": 0,
               "combine": "none"}
    initial = LSTMForecaster(**options, weight_average=0.5).fit(hourly_frame(n_series=2, length=130, seed=2))
    warm = LSTMForecaster(**options).fit(hourly_frame(n_series=2, length=300, seed=2), initial=initial)
    assert warm.resolved_.weight_average == initial.resolved_.weight_average == 0.5
    assert "weight_average" in warm.resolved_.derived
    fresh = LSTMForecaster(**options).fit(hourly_frame(n_series=2, length=130, seed=2))
    assert fresh.resolved_.weight_average == WEIGHT_AVERAGE_EPOCHS
