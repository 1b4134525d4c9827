"""Under JAX on a CPU the plain cell's gradient is written by hand (`jax_loop._plain_lstm`): it equals
JAX's own differentiation of the same recurrence, for every output's cotangent (last output, sequences,
h and c), masks and initial states, and the layer really runs it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from forecaster.layers import LSTM
from forecaster.layers.lstm_cell import LSTMCell

pytestmark = [pytest.mark.layer, pytest.mark.skipif(keras.backend.backend() != "jax",
                                                    reason="the hand-written gradient is the JAX loop's")]


def _loss_and_grads(cell, x, h0, c0, mask, hand: bool, **options):
    """A loss reading every output of `run_scan` with distinct weights, and its gradient with respect to
    the input, the initial states and the weights, with the hand-written gradient or JAX's."""

    from forecaster.layers.jax_loop import run_scan

    def loss(x, h0, c0, kernel, recurrent_kernel, bias):
        mapping = zip((cell.kernel, cell.recurrent_kernel, cell.bias), (kernel, recurrent_kernel, bias))
        with keras.StatelessScope(state_mapping=list(mapping)):
            last, outputs, (h, c) = run_scan(cell, x, h0, c0, mask, **options)
        scale = jnp.arange(outputs.size, dtype=outputs.dtype).reshape(outputs.shape) / outputs.size
        return 1.3 * last.sum() + (scale * outputs).sum() + 0.7 * h.sum() + (c * c).sum()

    from forecaster.layers import jax_loop  # imports keras.ops' JAX functions: under JAX only

    weights = [jnp.asarray(w.value) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
    before = jax_loop.HAND_WRITTEN_GRADIENT
    jax_loop.HAND_WRITTEN_GRADIENT = hand
    try:
        jaxpr = str(jax.make_jaxpr(loss)(x, h0, c0, *weights))
        value, grads = jax.value_and_grad(loss, argnums=range(6))(x, h0, c0, *weights)
    finally:
        jax_loop.HAND_WRITTEN_GRADIENT = before
    return jaxpr, value, grads


@pytest.mark.parametrize("mask_kind", ["none", "random"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("zero_output_for_mask", [True, False])
def test_hand_gradient_equals_jax_differentiation(mask_kind, return_sequences, zero_output_for_mask):
    go_backwards = mask_kind == "random"  # reversed before the recurrence: one case of each is enough
    rng = np.random.default_rng(7)
    batch, steps, features, units = 3, 6, 2, 4
    cell = LSTMCell(units)
    cell.build((None, features))
    cell.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in cell.get_weights()])
    x = jnp.asarray(rng.normal(size=(batch, steps, features)), jnp.float32)
    h0, c0 = (jnp.asarray(rng.normal(size=(batch, units)), jnp.float32) for _ in range(2))
    # A masked first step included: it outputs h0 unless zero_output_for_mask, so h0's gradient has a share.
    mask = None if mask_kind == "none" else jnp.asarray(rng.random((batch, steps)) > 0.4).at[0, 0].set(False)
    options = {"return_sequences": return_sequences, "go_backwards": go_backwards,
               "zero_output_for_mask": zero_output_for_mask}
    jaxpr_hand, value_hand, grads_hand = _loss_and_grads(cell, x, h0, c0, mask, True, **options)
    jaxpr_jax, value_jax, grads_jax = _loss_and_grads(cell, x, h0, c0, mask, False, **options)
    assert "custom_vjp_call" in jaxpr_hand and "custom_vjp_call" not in jaxpr_jax
    np.testing.assert_allclose(value_hand, value_jax, rtol=1e-6)
    for name, hand, auto in zip(("x", "h0", "c0", "kernel", "recurrent_kernel", "bias"), grads_hand, grads_jax):
        assert float(jnp.abs(auto).max()) > 0, name  # every gradient reaches its input
        np.testing.assert_allclose(hand, auto, atol=1e-5, rtol=1e-5, err_msg=name)


def test_layer_runs_the_hand_gradient_for_the_plain_cell_only():
    """The plain cell's gradient is the hand-written one; a cell with extras keeps JAX's."""
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    for layer, expected in ((LSTM(4), True), (LSTM(4, peephole=True), False)):
        layer.build(x.shape)
        jaxpr = str(jax.make_jaxpr(lambda x, layer=layer: layer(x))(x))
        assert ("custom_vjp_call" in jaxpr) is expected
