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
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from keras import ops

from forecaster.layers.lstm_cell import LSTMCell

# Steps per iteration of the scan on a GPU (4: 5-15 % slower, 16: no faster; H100, model.fit).
GPU_UNROLL = 8


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _unroll(num_steps: int | None) -> int:
    """Steps per scan iteration: ``GPU_UNROLL`` where JAX computes on a GPU, else 1."""
    if not _on_gpu():
        return 1
    return max(1, min(GPU_UNROLL, num_steps or 1))


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
    hoist = _on_gpu()
    if hoist:
        # x W + b for every step in one matmul: its gradient is then one contraction over all steps,
        # not a sum accumulated step by step (half the float32 error of d(kernel) at 168 steps).
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
        h, c, _ = cell.gates(z, c_prev, extras)
        out = h
        if m is not None:
            h = jnp.where(m, h, h_prev)
            c = jnp.where(m, c, c_prev)
            out = jnp.where(m, out, jnp.zeros_like(out) if zero_output_for_mask else out_prev)
        return (h, c, out), (out if return_sequences else None)

    # A masked step outputs the previous output, h0 before the first (Keras' JAX loop; its TF loop
    # starts from zeros, and so does `fused_loop`).
    (h, c, last_output), outs = jax.lax.scan(
        step, (h0, c0, h0), (xs, steps_mask), unroll=_unroll(steps.shape[0])
    )
    outputs = jnp.swapaxes(outs, 0, 1) if return_sequences else last_output[:, None, :]
    return last_output, outputs, [h, c]
