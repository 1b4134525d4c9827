"""Every input keras.layers.LSTM takes, and Keras' answer for it: a property-based sweep.

Input dtypes (int32, int64, bool, float16, bfloat16, float32, float64) x the layer's dtype policy x the
constructor's options (go_backwards, return_sequences, return_state, stateful, masks, dropout and
recurrent dropout at inference, unroll, initial states), each against keras.layers.LSTM with the same
weights: the same output dtypes, the same numbers, the same kind of error where Keras refuses.

Tolerances (absolute and relative), by the compute dtype: 1e-5 in float32 and float64 (as
tests/models/test_layer_parity.py); 2e-3 in float16 and 3e-2 in bfloat16 (8 and 11 fewer mantissa bits than
float32: on a CPU our loop computes half precision in float32 and rounds once, Keras rounds each step).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forecaster.layers import LSTM
from tests.layer_support import sweep_examples

pytestmark = pytest.mark.layer
INPUT_DTYPES = ("int32", "int64", "bool", "float16", "bfloat16", "float32", "float64")
TOLERANCE = {"float32": 1e-5, "float64": 1e-5, "float16": 2e-3, "bfloat16": 3e-2}


def _layers(units: int, shape: tuple, weight_seed: int, **kwargs) -> tuple:
    """keras.layers.LSTM and ours, built for ``shape``, with the same random weights (bias included)."""
    theirs = keras.layers.LSTM(units, **kwargs)
    theirs.build(shape)
    rng = np.random.default_rng(weight_seed)
    theirs.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours = LSTM(units, **kwargs)
    ours.build(shape)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def _inputs(dtype: str, shape: tuple, rng: np.random.Generator) -> object:
    """An input of ``dtype``: small integers (both signs) for int, random bits for bool, normal floats."""
    if dtype.startswith("int"):
        return rng.integers(-3, 4, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    values = rng.normal(size=shape).astype("float32")
    # NumPy has no bfloat16: a backend tensor of that dtype, as a user under mixed_bfloat16 has.
    return keras.ops.cast(values, dtype) if dtype == "bfloat16" else values.astype(dtype)


def _numpy(value: object) -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.cast(value, "float64"))


def _outcome(layer: keras.layers.Layer, chunks: list, call: dict) -> tuple:
    """("ok", [outputs of each call]) or ("error", the exception's type)."""
    try:
        results = []
        for chunk in chunks:
            out = layer(chunk, **call)
            results.append(list(out) if isinstance(out, (list, tuple)) else [out])
        return "ok", results
    except Exception as exc:  # the point is to compare what each layer raises
        return "error", type(exc)


@settings(max_examples=sweep_examples(10, under_jax=5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The cases, every time: int64 into our own loop (Keras-sized errors under TF, truncated weights
# under JAX), int32 with recurrent dropout (the cell's per-gate path), bool reversed with state.
@example(dtype="int64", policy="float32", go_backwards=False, return_sequences=True, return_state=True,
         stateful=False, mask_kind="none", dropout=0.0, recurrent_dropout=0.0, unroll=False,
         initial_state=False, batch=2, steps=5, features=3, units=4, seed=0)
@example(dtype="int32", policy="float32", go_backwards=True, return_sequences=False, return_state=True,
         stateful=False, mask_kind="right", dropout=0.2, recurrent_dropout=0.3, unroll=False,
         initial_state=True, batch=3, steps=4, features=2, units=3, seed=1)
@example(dtype="bool", policy="float64", go_backwards=True, return_sequences=True, return_state=False,
         stateful=True, mask_kind="left", dropout=0.0, recurrent_dropout=0.0, unroll=True,
         initial_state=False, batch=2, steps=3, features=2, units=2, seed=2)
@example(dtype="int32", policy="mixed_bfloat16", go_backwards=False, return_sequences=True, return_state=False,
         stateful=False, mask_kind="none", dropout=0.0, recurrent_dropout=0.0, unroll=False,
         initial_state=False, batch=2, steps=6, features=3, units=4, seed=3)
@given(
    dtype=st.sampled_from(INPUT_DTYPES),
    policy=st.sampled_from(["float32", "float64", "mixed_float16", "mixed_bfloat16"]),
    go_backwards=st.booleans(),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    stateful=st.booleans(),
    mask_kind=st.sampled_from(["none", "right", "left"]),
    dropout=st.sampled_from([0.0, 0.3]),
    recurrent_dropout=st.sampled_from([0.0, 0.3]),
    unroll=st.booleans(),
    initial_state=st.booleans(),
    batch=st.integers(1, 3),
    steps=st.integers(1, 6),
    features=st.integers(1, 3),
    units=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_every_input_and_option_gives_keras_answer(
    dtype, policy, go_backwards, return_sequences, return_state, stateful, mask_kind, dropout,
    recurrent_dropout, unroll, initial_state, batch, steps, features, units, seed,
):
    rng = np.random.default_rng(seed)
    theirs, ours = _layers(
        units, (batch, steps, features), seed, dtype=policy, go_backwards=go_backwards,
        return_sequences=return_sequences, return_state=return_state, stateful=stateful, dropout=dropout,
        recurrent_dropout=recurrent_dropout, unroll=unroll, seed=seed,
    )
    # A stateful layer is called twice: the second call starts from the state the first left.
    chunks = [_inputs(dtype, (batch, steps, features), rng) for _ in range(2 if stateful else 1)]
    call = {}
    if mask_kind != "none":
        lengths = rng.integers(1, steps + 1, size=batch)
        idx = np.arange(steps)[None, :]
        call["mask"] = idx < lengths[:, None] if mask_kind == "right" else idx >= (steps - lengths)[:, None]
    if initial_state:
        call["initial_state"] = [rng.normal(size=(batch, units)).astype("float32") for _ in range(2)]

    kind_t, result_t = _outcome(theirs, chunks, call)
    kind_o, result_o = _outcome(ours, chunks, call)
    assert kind_o == kind_t, f"Keras: {kind_t} {result_t}; ours: {kind_o} {result_o}"
    if kind_t == "error":
        assert issubclass(result_o, result_t) or issubclass(result_t, result_o), (result_t, result_o)
        return
    tol = TOLERANCE[keras.backend.standardize_dtype(ours.compute_dtype)]
    for outs_t, outs_o in zip(result_t, result_o):
        assert len(outs_o) == len(outs_t) == (3 if return_state else 1)
        for a, b in zip(outs_t, outs_o):
            assert keras.backend.standardize_dtype(b.dtype) == keras.backend.standardize_dtype(a.dtype)
            assert tuple(b.shape) == tuple(a.shape)
            np.testing.assert_allclose(_numpy(b), _numpy(a), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_inputs_train_like_keras(dtype):
    """Gradients too: a model fed integers trains to Keras' losses (weights never cast to int)."""
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, size=(16, 6, 3)).astype(dtype)
    y = rng.normal(size=(16, 1)).astype("float32")
    losses = []
    for layer_cls in (keras.layers.LSTM, LSTM):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6, 3), dtype=dtype), layer_cls(4), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        losses.append(model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert losses[1][-1] < losses[1][0]


@pytest.mark.parametrize(
    "case",
    ["two-dimensional", "four-dimensional", "one-initial-state", "initial-state-of-wrong-width"],
)
def test_refuses_what_keras_refuses(case):
    """Where Keras' LSTM raises, ours raises the same kind of error (never an answer)."""
    rng = np.random.default_rng(8)
    theirs, ours = _layers(3, (2, 4, 2), 0)
    x = rng.normal(size=(2, 4, 2)).astype("float32")
    call = {}
    if case == "two-dimensional":
        x = x[:, 0, :]
    elif case == "four-dimensional":
        x = x[..., None]
    elif case == "one-initial-state":
        call["initial_state"] = [np.zeros((2, 3), "float32")]
    else:
        call["initial_state"] = [np.zeros((2, 5), "float32")] * 2
    kind_t, error_t = _outcome(theirs, [x], call)
    kind_o, error_o = _outcome(ours, [x], call)
    assert kind_t == "error", f"Keras took the {case} input: the case no longer tests a refusal"
    assert kind_o == "error", f"ours answered the {case} input Keras refuses"
    assert issubclass(error_o, error_t) or issubclass(error_t, error_o), (error_t, error_o)


def test_predict_gives_keras_answer():
    """``predict_on_batch`` (under torch: no_grad, where our torch loop keeps nothing for a backward)."""
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, size=(5, 7, 3)).astype("int32")
    theirs, ours = _layers(4, x.shape, 9, return_sequences=True)
    models = [keras.Sequential([keras.Input((7, 3), dtype="int32"), layer]) for layer in (theirs, ours)]
    a, b = (m.predict_on_batch(x) for m in models)
    assert np.asarray(b).dtype == np.asarray(a).dtype == np.float32
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)
