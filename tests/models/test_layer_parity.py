"""forecaster.layers.LSTM against keras.layers.LSTM with the same weights: outputs, states, gradients.

Tolerance: 1e-5 absolute and relative (Keras' own LSTM tests use 1e-5); observed differences are ~1e-7.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forecaster.layers import LSTM
from tests.layer_support import outputs_and_grads, sweep_examples

pytestmark = pytest.mark.layer
TOL = {"atol": 1e-5, "rtol": 1e-5}
# Any backend's tensor as NumPy (a torch tensor that requires grad included).
_numpy = keras.ops.convert_to_numpy


def _pair(units: int, input_shape: tuple, weight_seed: int = 0, **kwargs) -> tuple:
    """A Keras LSTM and ours with the same random weights (bias randomised too)."""
    theirs = keras.layers.LSTM(units, **kwargs)
    theirs.build(input_shape)
    rng = np.random.default_rng(weight_seed)
    theirs.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours = LSTM(units, **kwargs)
    ours.build(input_shape)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def _mask(kind: str, batch: int, steps: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "none":
        return None
    lengths = rng.integers(1, steps + 1, size=batch)
    idx = np.arange(steps)[None, :]
    if kind == "right":
        return idx < lengths[:, None]
    return idx >= (steps - lengths)[:, None]  # left-padded


@settings(max_examples=sweep_examples(15, under_jax=6), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
# Cases that found or could hide real differences, run every time besides the random ones: a masked
# first step with an initial state (Keras' JAX loop outputs h0 there, its TF loop zeros), a left-padded
# reversed sequence with state, and one step.
@example(batch=2, steps=5, features=2, units=3, return_sequences=True, return_state=True, go_backwards=False,
         use_bias=True, mask_kind="left", with_initial_state=True, seed=3)
@example(batch=3, steps=7, features=1, units=2, return_sequences=True, return_state=True, go_backwards=True,
         use_bias=False, mask_kind="right", with_initial_state=True, seed=11)
@example(batch=1, steps=1, features=1, units=1, return_sequences=False, return_state=True, go_backwards=False,
         use_bias=True, mask_kind="none", with_initial_state=False, seed=0)
@given(
    batch=st.integers(1, 4),
    steps=st.integers(1, 13),  # the TF loop does 4, 2 or 1 steps per iteration: gcd(steps, 4)
    features=st.integers(1, 4),
    units=st.integers(1, 5),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    go_backwards=st.booleans(),
    use_bias=st.booleans(),
    mask_kind=st.sampled_from(["none", "right", "left"]),
    with_initial_state=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_outputs_states_and_gradients_equal_keras(
    batch, steps, features, units, return_sequences, return_state, go_backwards, use_bias, mask_kind,
    with_initial_state, seed,
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    options = dict(return_sequences=return_sequences, return_state=return_state,
                   go_backwards=go_backwards, use_bias=use_bias)
    theirs, ours = _pair(units, x.shape, weight_seed=seed, **options)
    call = {}
    mask = _mask(mask_kind, batch, steps, rng)
    if mask is not None:
        call["mask"] = mask
    if with_initial_state:
        call["initial_state"] = [rng.normal(size=(batch, units)).astype("float32") for _ in range(2)]
    out_t, grads_t = outputs_and_grads(theirs, x, **call)
    out_o, grads_o = outputs_and_grads(ours, x, **call)
    assert len(out_t) == len(out_o) == (3 if return_state else 1)
    for a, b in zip(out_t, out_o):
        np.testing.assert_allclose(b, a, **TOL)
    assert len(grads_t) == len(grads_o)
    for a, b in zip(grads_t, grads_o):
        np.testing.assert_allclose(b, a, **TOL)


def test_our_loop_runs_under_every_backend():
    """The parity tests exercise our own loop, not Keras' generic one, under TensorFlow, JAX and torch
    (under torch for Keras' own cell; a cell with extras is stepped by Keras' loop there)."""
    ours = LSTM(3)
    ours.build((None, 4, 2))
    assert ours._own_loop() == keras.backend.backend()
    with_extras = LSTM(3, peephole=True)
    with_extras.build((None, 4, 2))
    assert with_extras._own_loop() == (None if keras.backend.backend() == "torch" else keras.backend.backend())
    assert LSTM(3, recurrent_dropout=0.2)._own_loop() is None
    assert LSTM(3, unroll=True)._own_loop() is None


@pytest.fixture(params=["as-here", "as-on-gpu"])
def scan_formulation(request, monkeypatch):
    """Under JAX, also run the loop as it runs on a GPU (x W before the scan, 8 steps per iteration
    with a rest when they do not divide the length)."""
    if request.param == "as-on-gpu":
        if keras.backend.backend() != "jax":
            pytest.skip("the GPU formulation is the JAX loop's")
        from forecaster.layers import jax_loop

        monkeypatch.setattr(jax_loop, "_on_gpu", lambda: True)
    return request.param


@pytest.mark.parametrize("steps", [7, 10, 12])
@pytest.mark.parametrize("mask_kind", ["none", "left"])
def test_unrolled_loop_iterations_equal_keras(steps, mask_kind, scan_formulation):
    """Several iterations of 4 (12), of 2 (10) and of 1 (7) steps (TF), of 8 with a rest (JAX on a
    GPU: 10; 7 is one iteration of all the steps), sequences and gradients included.

    Under JAX the lengths that take no other path are left out (a third of the JAX run's time): on a
    CPU its scan does one step per iteration whatever the length (7 stands for all three; any length
    is also in the random cases above), and on a GPU 12 is 8 with a rest, as 10 is."""
    if keras.backend.backend() == "jax" and (steps, scan_formulation) in {(10, "as-here"), (12, "as-here"),
                                                                           (12, "as-on-gpu")}:
        pytest.skip("the JAX scan takes the path of another length here")
    rng = np.random.default_rng(steps)
    x = rng.normal(size=(3, steps, 2)).astype("float32")
    theirs, ours = _pair(4, x.shape, weight_seed=steps, return_sequences=True, return_state=True)
    mask = _mask(mask_kind, 3, steps, rng)
    call = {} if mask is None else {"mask": mask}
    (out_t, grads_t), (out_o, grads_o) = (outputs_and_grads(layer, x, **call) for layer in (theirs, ours))
    assert len(out_o) == 3 and len(grads_o) == len(grads_t) == 4  # x, kernel, recurrent_kernel, bias
    for a, b in zip(out_t + grads_t, out_o + grads_o):
        np.testing.assert_allclose(b, a, **TOL)


@pytest.mark.parametrize("batch", [67, 128])
@pytest.mark.parametrize("mask_kind", ["none", "left"])
def test_batch_split_across_cores_equals_keras(batch, mask_kind, monkeypatch):
    """Under TensorFlow the batch is cut into one compiled loop per core (4 here, whatever this
    machine has): outputs, states and gradients equal Keras' unsplit ones."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the batch is split by the TensorFlow loop")
    from forecaster.layers import fused_loop

    monkeypatch.setattr(fused_loop, "_cores", lambda: 4)
    assert fused_loop._shard_count(np.zeros((5, batch, 2), "float32")) == min(4, batch // 32)
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 8, 2)).astype("float32")
    theirs, ours = _pair(4, x.shape, weight_seed=batch, return_sequences=True, return_state=True,
                         go_backwards=mask_kind == "left")
    mask = _mask(mask_kind, batch, 8, rng)
    call = {"initial_state": [rng.normal(size=(batch, 4)).astype("float32") for _ in range(2)]}
    if mask is not None:
        call["mask"] = mask
    (out_t, grads_t), (out_o, grads_o) = (outputs_and_grads(layer, x, **call) for layer in (theirs, ours))
    for a, b in zip(out_t + grads_t, out_o + grads_o):
        np.testing.assert_allclose(b, a, **TOL)


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_batch_of_unknown_size_split_across_cores_equals_keras(batch, monkeypatch):
    """A batch size unknown when tracing (Keras retraces so for a short last batch) is split at run
    time into 3 equal parts, padded with rows that take no part in the results."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the batch is split by the TensorFlow loop")
    import tensorflow as tf

    from forecaster.layers import fused_loop

    monkeypatch.setattr(fused_loop, "_cores", lambda: 3)
    theirs, ours = _pair(3, (None, 6, 2), weight_seed=batch, return_sequences=True)
    x = np.random.default_rng(batch).normal(size=(batch, 6, 2)).astype("float32")

    def run(layer):
        @tf.function(input_signature=[tf.TensorSpec((None, 6, 2), tf.float32)])
        def outputs_and_grads(xv):
            with tf.GradientTape() as tape:
                tape.watch(xv)
                out = layer(xv)
                weights = tf.reshape(tf.sin(tf.range(tf.size(out), dtype=tf.float32)), tf.shape(out))
                loss = tf.reduce_sum(out * weights)
            return out, tape.gradient(loss, [xv, *layer.trainable_variables])

        out, grads = outputs_and_grads(tf.constant(x))
        return [_numpy(out)], [_numpy(g) for g in grads]

    (out_t, grads_t), (out_o, grads_o) = run(theirs), run(ours)
    for a, b in zip(out_t + grads_t, out_o + grads_o):
        np.testing.assert_allclose(b, a, **TOL)


def test_weights_round_trip_both_ways():
    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    theirs, ours = _pair(4, x.shape, weight_seed=1)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert [w.name for w in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
    fresh = keras.layers.LSTM(4)
    fresh.build(x.shape)
    fresh.set_weights(ours.get_weights())
    np.testing.assert_allclose(_numpy(fresh(x)), _numpy(ours(x)), **TOL)


def test_unit_forget_bias_initialisation_matches_keras():
    ours = LSTM(3, bias_initializer="ones")
    ours.build((1, 2, 2))
    np.testing.assert_array_equal(_numpy(ours.cell.bias), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    ours = LSTM(3)
    ours.build((1, 2, 2))
    np.testing.assert_array_equal(_numpy(ours.cell.bias), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_golden_constant_initialisers_like_keras_own_test():
    # The constant-initialiser case of Keras' lstm_test, checked against Keras itself.
    x = np.arange(24, dtype="float32").reshape((2, 3, 4)) / 10.0
    kwargs = dict(kernel_initializer=keras.initializers.Constant(0.01),
                  recurrent_initializer=keras.initializers.Constant(0.02),
                  bias_initializer=keras.initializers.Constant(0.03), return_sequences=True)
    np.testing.assert_allclose(_numpy(LSTM(3, **kwargs)(x)), _numpy(keras.layers.LSTM(3, **kwargs)(x)),
                               **TOL)


def test_stateful_calls_across_batches_match_keras():
    rng = np.random.default_rng(2)
    chunks = [rng.normal(size=(2, 4, 3)).astype("float32") for _ in range(3)]
    theirs, ours = _pair(5, (2, 4, 3), stateful=True, return_sequences=True)
    for chunk in chunks:
        np.testing.assert_allclose(_numpy(ours(chunk)), _numpy(theirs(chunk)), **TOL)
    np.testing.assert_allclose(_numpy(ours.states[0]), _numpy(theirs.states[0]), **TOL)
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(_numpy(ours(chunks[0])), _numpy(theirs(chunks[0])), **TOL)
    # State carried over is not the same as a fresh start: the test above can fail.
    assert not np.allclose(_numpy(ours(chunks[0])), _numpy(theirs(chunks[1])))


@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
def test_dropout_draws_the_same_masks_as_keras_for_the_same_seed(recurrent_dropout):
    x = np.random.default_rng(3).normal(size=(4, 6, 5)).astype("float32")
    theirs, ours = _pair(6, x.shape, dropout=0.4, recurrent_dropout=recurrent_dropout, seed=7,
                         return_sequences=True)
    a = _numpy(theirs(x, training=True))
    b = _numpy(ours(x, training=True))
    np.testing.assert_allclose(b, a, **TOL)
    # Dropout is active (training differs from inference) and off at inference.
    assert not np.allclose(b, _numpy(ours(x, training=False)), atol=1e-3)
    np.testing.assert_allclose(_numpy(ours(x)), _numpy(theirs(x)), **TOL)


def test_bidirectional_matches_keras():
    x = np.random.default_rng(4).normal(size=(3, 5, 2)).astype("float32")
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    ours = keras.layers.Bidirectional(LSTM(4, return_sequences=True))
    theirs.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_allclose(_numpy(ours(x, mask=mask)), _numpy(theirs(x, mask=mask)), **TOL)


def test_mixed_precision_matches_keras():
    x = np.random.default_rng(5).normal(size=(2, 6, 3)).astype("float32")
    theirs, ours = _pair(4, x.shape, dtype="mixed_float16", return_sequences=True)
    a, b = theirs(x), ours(x)
    assert keras.backend.standardize_dtype(b.dtype) == "float16"
    assert ours.cell.kernel.dtype == "float32"
    np.testing.assert_allclose(_numpy(b).astype("float32"), _numpy(a).astype("float32"), atol=2e-3)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_layer_inside_a_model_trains_like_keras(jit_compile):
    """Also compiled with ``jit_compile=True``, where the TensorFlow layer runs its XLA loops (the CPU
    kernel's ops cannot be compiled by XLA)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, 7, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    losses = []
    for layer_cls in (keras.layers.LSTM, LSTM):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((7, 3)), layer_cls(5), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit_compile)
        losses.append(model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert losses[1][-1] < losses[1][0]
