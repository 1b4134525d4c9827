"""The LSTM recurrence for the JAX backend: one `lax.scan`, unrolled on a GPU.

A step is z_t = x_t W + h U + b and the cell's own `gates` (extras included); JAX differentiates the
scan, and its backward is a scan of the same shape. What suits XLA's GPU and CPU code differs:

- on a GPU each loop iteration costs kernel launches and a loop-condition check that dwarf the
  arithmetic at forecasting sizes, so the scan does `GPU_UNROLL` steps per iteration (on an H100
  under `model.fit`, 1.4-2.0x faster than one step per iteration), and x W + b is one matmul over all
  steps before the loop (as fast there, and d(kernel) becomes one contraction instead of a sum
  accumulated over the steps: half the float32 error at 168 steps, docs/validation.md);
- on a CPU both make XLA's code slower (unrolling by 8: 1.4x slower forward at (168, 128); the matmul
  before the loop: 3-4x slower forward), so there the step is the cell's own, one per iteration
  (`bench/jax_loop_variants.py` times the four variants).

On a CPU the plain cell (sigmoid gates, tanh, no extras) has its gradient written by hand
(`_plain_lstm`, a `jax.custom_vjp`; `bench/jax_hand_gradient.py`): the forward scan keeps z_t and the
states entering each step, and the backward is one reverse scan that recomputes the gating's local
derivatives, steps dz_t, dh_{t-1} = dz_t U^T, dc_{t-1}, and accumulates the weights' gradients
(x_t^T dz_t, h_{t-1}^T dz_t) in the loop. Everything a step touches stays in cache: on XLA's CPU code,
products or elementwise passes over whole (T, B, 4 units) sequences are slower than the same work done
step by step (at (168, 128): x W for all steps before the loop, a 1.9x slower forward; d(weights) as
products after the loop, a 1.3x slower value-and-gradient). JAX's own transpose of the scan took 1.46x
(48, 64) and 1.84x (168, 128) the time of this one. On a GPU the generic scan stays (the hand-written
one is not measured there).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from keras import ops

from forecaster.layers.lstm_cell import LSTMCell

# Steps per iteration of the scan on a GPU (4: 5-15 % slower, 16: no faster; H100, model.fit).
GPU_UNROLL = 8
# Whether the plain cell runs `_plain_lstm` (its gradient by hand); False: JAX differentiates the scan.
HAND_WRITTEN_GRADIENT = True


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _unroll(num_steps: int | None) -> int:
    """Steps per scan iteration: ``GPU_UNROLL`` where JAX computes on a GPU, else 1."""
    if not _on_gpu():
        return 1
    return max(1, min(GPU_UNROLL, num_steps or 1))


def _plain_step(z: Any, c_prev: Any, units: int) -> tuple[Any, Any]:
    """The plain cell's gating of one step's pre-activations ``z``: (h_t, c_t)."""
    s = jax.nn.sigmoid(z)
    g = jnp.tanh(z[:, 2 * units : 3 * units])
    c = s[:, units : 2 * units] * c_prev + s[:, :units] * g
    return s[:, 3 * units :] * jnp.tanh(c), c


# How the hand-written gradient is laid out (bench/jax_hand_gradient.py times the choices): x W + b for all
# steps before the loop or in each step; the weights' gradients accumulated in the reverse loop or as
# products over all steps after it.
_HOIST = False
_ACCUMULATE = True


def _scan(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, gates, *, hoist, return_sequences,
          zero_output_for_mask, keep):
    """The recurrence over time-major ``steps``, a step's gating by ``gates(z, c_prev) -> (h, c)``:
    ((h, c, last_output), (time-major outputs or None, what `keep` asks: each step's z_t and the states
    entering it)). ``hoist``: x W + b for every step in one product before the loop. A masked step holds
    h and c and outputs the previous output, h0 before the first (Keras' JAX loop; its TF loop starts from
    zeros, and so does `fused_loop`)."""
    if hoist:
        xs = jnp.einsum("tbf,fg->tbg", steps, kernel)
        xs = xs if bias is None else xs + bias
    else:
        xs = steps

    def step(carry: tuple, inputs: tuple) -> tuple:
        h_prev, c_prev, out_prev = carry
        x_t, m = inputs
        if hoist:
            z = x_t + h_prev @ recurrent_kernel
        else:
            z = x_t @ kernel + h_prev @ recurrent_kernel
            z = z if bias is None else z + bias
        h, c = gates(z, c_prev)
        out = h
        if m is not None:
            h = jnp.where(m, h, h_prev)
            c = jnp.where(m, c, c_prev)
            out = jnp.where(m, out, jnp.zeros_like(out) if zero_output_for_mask else out_prev)
        kept = (z, h_prev, c_prev) if keep else None
        return (h, c, out), (out if return_sequences else None, kept)

    return jax.lax.scan(step, (h0, c0, h0), (xs, steps_mask), unroll=_unroll(steps.shape[0]))


def _plain_forward(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences,
                   zero_output_for_mask, keep):
    """The plain recurrence over time-major ``steps``; with ``keep``, also what the backward needs of
    every step: the pre-activations z_t and the states entering it."""
    units = h0.shape[1]
    (h, c, last), (outs, kept) = _scan(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask,
                                       lambda z, c_prev: _plain_step(z, c_prev, units), hoist=_HOIST,
                                       return_sequences=return_sequences,
                                       zero_output_for_mask=zero_output_for_mask, keep=keep)
    outputs = outs if return_sequences else last[None]
    return (last, outputs, h, c), kept


@partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _plain_lstm(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences, zero_output_for_mask):
    """(last_output, time-major outputs, h, c) of the plain cell (sigmoid gates, tanh, no extras), its
    gradient written by hand (`_plain_backward`) instead of JAX's transpose of the scan."""
    return _plain_forward(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences,
                          zero_output_for_mask, keep=False)[0]


def _plain_fwd(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences, zero_output_for_mask):
    result, kept = _plain_forward(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences,
                                  zero_output_for_mask, keep=True)
    return result, (steps, kernel, recurrent_kernel, bias is not None, steps_mask, *kept)


def _local_derivatives(z, c_prev, units):
    """The plain gating's local derivatives (`fused_loop._plain_local_derivatives`): q, p and f."""
    s = jax.nn.sigmoid(z)
    i, f, o = s[..., :units], s[..., units : 2 * units], s[..., 3 * units :]
    g = jnp.tanh(z[..., 2 * units : 3 * units])
    tanh_c = jnp.tanh(f * c_prev + i * g)
    q = jnp.concatenate([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1)
    return q, o * (1 - tanh_c * tanh_c), f


def _plain_backward(return_sequences, zero_output_for_mask, residuals, cotangents):
    """The gradient of `_plain_lstm`: a reverse scan of the per-step work (the gating's local derivatives,
    dz_t, dh_{t-1} = dz_t U^T, dc_{t-1}), and the input's and weights' gradients."""
    steps, kernel, recurrent_kernel, has_bias, steps_mask, z, h_states, c_states = residuals
    d_last, d_outputs, d_h, d_c = cotangents
    units = h_states.shape[2]
    recurrent_t, kernel_t = recurrent_kernel.T, kernel.T
    # The last step's output is read as last_output and, without return_sequences, as outputs[0].
    dout_last = d_last if return_sequences else d_last + d_outputs[0]

    def step(carry: tuple, inputs: tuple) -> tuple:
        dh, dc, dout_next, grads = carry
        z_t, h_prev, c_prev, x_t, m, dseq_t = inputs
        q_t, p_t, f_t = _local_derivatives(z_t, c_prev, units)
        dout = dout_next if dseq_t is None else dout_next + dseq_t
        if m is None:
            dh_new, dc_new = dh + dout, dc
        else:
            dh_new, dc_new = jnp.where(m, dh + dout, 0), jnp.where(m, dc, 0)
        dc_new = dc_new + dh_new * p_t
        dz = q_t * jnp.concatenate([dc_new, dc_new, dc_new, dh_new], axis=1)
        dh_prev = dz @ recurrent_t
        dc_prev = dc_new * f_t
        if m is None:
            dout_next = jnp.zeros_like(dout)
        else:
            dh_prev = dh_prev + jnp.where(m, 0, dh)
            dc_prev = dc_prev + jnp.where(m, 0, dc)
            dout_next = jnp.zeros_like(dout) if zero_output_for_mask else jnp.where(m, 0, dout)
        if _ACCUMULATE:
            d_kernel, d_recurrent, d_bias = grads
            grads = (d_kernel + x_t.T @ dz, d_recurrent + h_prev.T @ dz, d_bias + dz.sum(axis=0))
            return (dh_prev, dc_prev, dout_next, grads), dz @ kernel_t
        return (dh_prev, dc_prev, dout_next, grads), dz

    grads0 = (jnp.zeros_like(kernel), jnp.zeros_like(recurrent_kernel), jnp.zeros_like(kernel[0]))

    (dh, dc, dout_first, grads), per_step = jax.lax.scan(
        step, (d_h, d_c, dout_last, grads0 if _ACCUMULATE else None),
        (z, h_states, c_states, steps, steps_mask, d_outputs if return_sequences else None),
        reverse=True, unroll=_unroll(z.shape[0]),
    )
    # A masked first step outputs h0 (the scan's first out_prev), so h0 also gets what reached it.
    d_h0 = dh + dout_first
    if _ACCUMULATE:
        d_steps, (d_kernel, d_recurrent, d_bias) = per_step, grads
    else:
        dz = per_step
        d_steps = jnp.einsum("tbg,fg->tbf", dz, kernel)
        d_kernel = jnp.einsum("tbf,tbg->fg", steps, dz)
        d_recurrent = jnp.einsum("tbu,tbg->ug", h_states, dz)
        d_bias = dz.sum(axis=(0, 1))
    return d_steps, d_h0, dc, d_kernel, d_recurrent, d_bias if has_bias else None, None


_plain_lstm.defvjp(_plain_fwd, _plain_backward)


def run_scan(
    cell: LSTMCell,
    sequences: Any,
    h0: Any,
    c0: Any,
    mask: Any | None,
    *,
    return_sequences: bool,
    go_backwards: bool,
    zero_output_for_mask: bool,
) -> tuple[Any, Any, list[Any]]:
    """The `(last_output, outputs, [h, c])` triple of `keras.layers.RNN.inner_loop`, under JAX."""
    sequences = cell.promote_inputs(sequences)
    dtype = sequences.dtype
    kernel = ops.cast(ops.convert_to_tensor(cell.kernel), dtype)
    recurrent_kernel = ops.cast(ops.convert_to_tensor(cell.recurrent_kernel), dtype)
    extras = {k: ops.cast(ops.convert_to_tensor(v), dtype) for k, v in cell.extra_weights().items()}
    bias = None if cell.bias is None else ops.cast(ops.convert_to_tensor(cell.bias), dtype)
    steps = jnp.swapaxes(sequences, 0, 1)
    steps_mask = None if mask is None else jnp.swapaxes(mask.astype(bool), 0, 1)[..., None]
    if go_backwards:
        steps = steps[::-1]
        steps_mask = None if steps_mask is None else steps_mask[::-1]
    if cell.is_plain() and HAND_WRITTEN_GRADIENT and not _on_gpu():
        last_output, outs, h, c = _plain_lstm(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask,
                                              return_sequences, zero_output_for_mask)
        return last_output, jnp.swapaxes(outs, 0, 1), [h, c]
    # On a GPU x W + b for every step in one product: its gradient is then one contraction over all
    # steps, not a sum accumulated step by step (half the float32 error of d(kernel) at 168 steps).
    (h, c, last_output), (outs, _) = _scan(steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask,
                                           lambda z, c_prev: cell.gates(z, c_prev, extras)[:2], hoist=_on_gpu(),
                                           return_sequences=return_sequences,
                                           zero_output_for_mask=zero_output_for_mask, keep=False)
    outputs = jnp.swapaxes(outs, 0, 1) if return_sequences else last_output[:, None, :]
    return last_output, outputs, [h, c]
