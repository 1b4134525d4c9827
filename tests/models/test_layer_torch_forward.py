"""Under torch, a call no gradient can be asked for (predict, ``no_grad``) without a mask runs the buffered
in-place forward (`torch_loop._forward_no_grad`): Keras' answer for every option it serves, the caller's
initial states untouched, and the same numbers as the autograd function's forward."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecaster.layers import LSTM

pytestmark = [pytest.mark.layer, pytest.mark.skipif(keras.backend.backend() != "torch",
                                                    reason="the buffered forward is the torch loop's")]


@pytest.mark.parametrize(
    "options",
    [
        {"return_sequences": True, "return_state": True},
        {"return_sequences": False, "return_state": True, "go_backwards": True},
        {"return_sequences": True, "use_bias": False},
        {"return_sequences": False, "dtype": "float64"},
        {"return_sequences": True, "dtype": "mixed_bfloat16"},
    ],
    ids=["sequences-state", "last-backwards", "no-bias", "float64", "bfloat16"],
)
def test_no_grad_forward_gives_keras_answer(options):
    import torch

    from forecaster.layers import torch_loop

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    theirs = keras.layers.LSTM(4, **options)
    theirs.build(x.shape)
    theirs.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours = LSTM(4, **options)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    state = [torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float32) for _ in range(2)]
    state_before = [s.clone() for s in state]
    answers = {}
    for name, layer, fast in (("keras", theirs, True), ("buffered", ours, True), ("autograd", ours, False)):
        torch_loop.FAST_INFERENCE = fast
        try:
            with torch.no_grad():
                out = layer(x, initial_state=state)
        finally:
            torch_loop.FAST_INFERENCE = True
        answers[name] = [keras.ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
    for s, before in zip(state, state_before):
        assert torch.equal(s, before), "the forward wrote into the caller's initial state"
    tol = {"atol": 1e-2, "rtol": 1e-2} if "bfloat16" in options.get("dtype", "") else {"atol": 1e-5, "rtol": 1e-5}
    for a, b, c in zip(answers["keras"], answers["buffered"], answers["autograd"]):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(b, a, **tol)
        np.testing.assert_allclose(b, c, atol=1e-6, rtol=1e-6)


def test_no_grad_forward_runs_where_no_gradient_can_be_asked_for():
    """The buffered forward runs under no_grad without a mask; with a mask, or where a gradient can be
    asked for, the autograd function runs (it keeps what the backward needs)."""
    import torch

    from forecaster.layers import torch_loop

    calls = []
    original = torch_loop._forward_no_grad
    torch_loop._forward_no_grad = lambda *a: calls.append(1) or original(*a)
    try:
        layer = LSTM(3)
        x = np.ones((2, 4, 2), "float32")
        with torch.no_grad():
            layer(x)
            assert len(calls) == 1
            layer(x, mask=np.array([[True] * 4, [True, True, False, False]]))
            assert len(calls) == 1
        out = layer(x)
        assert len(calls) == 1 and out.requires_grad
    finally:
        torch_loop._forward_no_grad = original
