"""The extras beyond Keras (layer norm, peepholes, projection, gate inspection) against NumPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from forecaster.layers import LSTM
from tests.layer_support import outputs_and_grads
from tests.lstm_reference import numpy_lstm

pytestmark = pytest.mark.layer
TOL = {"atol": 1e-5, "rtol": 1e-5}
EXTRAS = [dict(zip(("layer_norm", "peephole", "proj_size"), combo))
          for combo in itertools.product([False, True], [False, True], [None, 2])]


def _randomised(layer: LSTM, x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    layer.build(x.shape)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])
    return {w.name: np.asarray(w.value, dtype="float64") for w in layer.weights}


@pytest.mark.parametrize("extras", EXTRAS, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()))
def test_extras_follow_the_numpy_equations(extras):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    layer = LSTM(6, return_sequences=True, return_state=True, **extras)
    weights = _randomised(layer, x)
    seq, h, c = (np.asarray(v) for v in layer(x))
    ref = numpy_lstm(x, weights, 6, **extras)
    out_units = extras["proj_size"] or 6
    assert seq.shape == (3, 5, out_units) and h.shape == (3, out_units) and c.shape == (3, 6)
    np.testing.assert_allclose(seq, ref["hidden"], **TOL)
    np.testing.assert_allclose(h, ref["hidden"][:, -1], **TOL)
    np.testing.assert_allclose(c, ref["cell"][:, -1], **TOL)


@pytest.mark.parametrize("extras", EXTRAS, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()))
def test_extras_gradients_equal_the_generic_loop(extras):
    # The fused loop's hand-assembled backward pass against autodiff through Keras' unrolled loop.
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=bool)
    fused = LSTM(5, return_sequences=True, return_state=True, **extras)
    _randomised(fused, x, seed=3)
    generic = LSTM(5, return_sequences=True, return_state=True, unroll=True, **extras)
    generic.build(x.shape)
    generic.set_weights(fused.get_weights())
    out_f, grads_f = outputs_and_grads(fused, x, mask=mask)
    out_g, grads_g = outputs_and_grads(generic, x, mask=mask)
    for a, b in zip(out_g + grads_g, out_f + grads_f):
        np.testing.assert_allclose(b, a, **TOL)
    assert len(grads_f) == 1 + len(fused.trainable_variables)
    assert all(np.abs(g).sum() > 0 for g in grads_f)


def test_gate_activations_equal_numpy_reference():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    layer = LSTM(4, peephole=True)
    weights = _randomised(layer, x)
    gates = {k: np.asarray(v) for k, v in layer.gate_activations(x).items()}
    ref = numpy_lstm(x, weights, 4, peephole=True)
    assert set(gates) == {"input", "forget", "candidate", "output", "cell", "hidden"}
    for name, value in gates.items():
        np.testing.assert_allclose(value, ref[name], **TOL)
    assert np.all((gates["forget"] > 0) & (gates["forget"] < 1))
    np.testing.assert_allclose(gates["hidden"][:, -1], np.asarray(layer(x)), **TOL)


def test_gate_activations_hold_state_at_masked_steps():
    x = np.random.default_rng(13).normal(size=(1, 4, 2)).astype("float32")
    layer = LSTM(3)
    _randomised(layer, x)
    mask = np.array([[1, 1, 0, 0]], dtype=bool)
    gates = {k: np.asarray(v) for k, v in layer.gate_activations(x, mask=mask).items()}
    np.testing.assert_array_equal(gates["input"][0, 2:], 0.0)
    np.testing.assert_allclose(gates["cell"][0, 3], gates["cell"][0, 1], **TOL)
    np.testing.assert_allclose(gates["hidden"][0, 1], np.asarray(layer(x, mask=mask))[0], **TOL)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(4, proj_size=0)
    with pytest.raises(ValueError, match="use_cudnn"):
        LSTM(4, use_cudnn="sometimes")


def test_plain_layers_of_one_width_share_their_compiled_loops_and_keep_their_own_weights():
    """Two plain layers of the same width run one pair of compiled loops (weights are arguments), yet
    each computes with its own weights; other widths and non-plain cells have loops of their own."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the shared XLA loops are the TensorFlow backend's")
    from forecaster.layers.fused_loop import _compiled

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    first, second, wide, normed = LSTM(4), LSTM(4), LSTM(5), LSTM(4, layer_norm=True)
    weights = [_randomised(layer, x, seed) for seed, layer in enumerate((first, second, wide, normed))]
    assert _compiled(first.cell) is _compiled(second.cell)
    assert _compiled(wide.cell) is not _compiled(first.cell) and _compiled(normed.cell) is not _compiled(first.cell)
    for layer, w in zip((first, second, wide), weights[:3]):
        expected = numpy_lstm(x, w, layer.cell.units)["hidden"][:, -1]
        np.testing.assert_allclose(np.asarray(layer(x)), expected, **TOL)
