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
    """The trainable weights the fit starts from, those after each training step (raw: the steps') and
    those in the model at each epoch's end (what the epoch is scored on)."""

    def __init__(self) -> None:
        super().__init__()
        self.start: list[np.ndarray] = []
        self.steps: list[list[np.ndarray]] = []
        self.ends: list[list[np.ndarray]] = []

    def on_train_begin(self, logs=None) -> None:
        self.start = [v.numpy().copy() for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.ends.append([v.numpy().copy() for v in self.model.trainable_variables])


def _fit(epochs: int = 1, initial: LSTMForecaster | None = None, **kwargs) -> tuple[LSTMForecaster, Steps]:
    steps = Steps()
    model = LSTMForecaster(horizon=12, input_size=48, freq="h", network=NETWORK, epochs=epochs, batch_size=16,
                           max_windows_per_series=20, patience=10, seed=3, verbose=0, combine="none", **kwargs)
    return model.fit(hourly_frame(n_series=3, length=200), callbacks=[steps], initial=initial), steps


def _trainable(model: LSTMForecaster) -> list[np.ndarray]:
    return [v.numpy() for v in model.model_.trainable_variables]


def _averages(start: list[np.ndarray], steps: list[list[np.ndarray]], m: float) -> list[np.ndarray]:
    average = [w.astype(np.float64) for w in start]
    for step in steps:
        average = [m * a + (1.0 - m) * w for a, w in zip(average, step)]
    return average


def _close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_momentum_spans_epochs_of_steps_and_a_span_of_one_step_averages_nothing():
    assert momentum(1.0, 100) == pytest.approx(0.99)
    assert momentum(2.0, 50) == pytest.approx(0.99)
    assert momentum(0.0, 100) == momentum(1.0, 1) == momentum(0.5, 2) == 0.0
    with pytest.raises(ValueError, match="momentum"):
        WeightAverage(1.0)
    # A huge span (params allow any finite one) rounded to 1.0: the fit raised ValueError, exit 1.
    for span in (1e17, 1e300):
        assert 0.999 < momentum(span, 100) < 1.0
        WeightAverage(momentum(span, 100))


def test_a_huge_span_keeps_the_first_epochs_weights():
    """The limit of the span: from scratch the average starts at the first epoch's end and stays there."""
    model, steps = _fit(epochs=2, weight_average=1e300)
    _close(steps.ends[1], steps.ends[0])
    _close(_trainable(model), steps.ends[0])


def test_from_scratch_the_average_starts_at_the_first_epochs_end_and_early_stopping_keeps_the_best():
    model, steps = _fit(epochs=3, weight_average=1.0)
    assert "the weights' moving average over 1 epoch(s) kept" in describe_resolved(model)  # the run says so
    n = len(steps.steps) // 3
    assert n > 2 and len(steps.steps) == 3 * n and model.resolved_.weight_average == 1.0
    m = 1.0 - 1.0 / n  # a span of one epoch of n steps
    _close(steps.ends[0], steps.steps[n - 1])  # the first epoch is scored on its last step's weights
    for epoch in (1, 2):  # then on the average of the steps since, started from there
        _close(steps.ends[epoch], _averages(steps.steps[n - 1], steps.steps[n:(epoch + 1) * n], m))
    assert not np.allclose(steps.ends[2][0], steps.steps[-1][0]), "the average is not the last step's"
    best = int(np.argmin(model.history_["val_loss"]))
    _close(_trainable(model), steps.ends[best])
    # The steps train the raw weights: the same training loss and last step as without the average.
    plain, plain_steps = _fit(epochs=3, weight_average=0.0)
    assert model.history_["loss"] == plain.history_["loss"]
    assert model.history_["val_loss"][0] == plain.history_["val_loss"][0]
    assert model.history_["val_loss"][1:] != plain.history_["val_loss"][1:]
    for a, b in zip(steps.steps[-1], plain_steps.steps[-1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_warm_start_averages_from_the_initial_weights_and_one_epoch_from_scratch_keeps_its_last_step():
    initial, scratch = _fit(epochs=1, weight_average=1.0)
    for got, last in zip(_trainable(initial), scratch.steps[-1], strict=True):
        np.testing.assert_array_equal(got, last)
    warm, steps = _fit(epochs=1, initial=initial, weight_average=1.0)
    for got, want in zip(steps.start, _trainable(initial), strict=True):
        np.testing.assert_array_equal(got, want)
    _close(_trainable(warm), _averages(steps.start, steps.steps, 1.0 - 1.0 / len(steps.steps)))


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
