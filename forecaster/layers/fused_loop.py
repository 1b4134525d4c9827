"""The LSTM recurrence for the TensorFlow backend: forward and backward loops compiled with XLA.

Keras' generic loop dispatches a dozen separate ops per step, and autodiff of it keeps and replays
every one of them; at forecasting sizes (tens of timesteps, tens to hundreds of units) dispatch and
memory traffic, not arithmetic, are the bill. Here the forward loop and the backward loop are each
one XLA cluster:

- forward: z_t = x_t W + h U + b and the cell's gating, fused by XLA; in training it also keeps what
  the backward pass needs (in inference nothing is kept);
- backward, plain cell (sigmoid/tanh, no extras): the forward pass kept the gating's local derivatives,
  so a step is a few products and dh_{t-1} = dz_t U^T; any other cell: the kept z_t and c_{t-1} are
  re-differentiated through `gates` with a tape, step by step;
- the backward loop also adds each step's share of the kernel and bias gradients (one product of
  [x_t, h_{t-1}] with dz_t) and writes the input's gradient, while dz_t is in cache: keeping dz for
  all steps to contract afterwards cost more memory traffic than it saved;
- both loops do `UNROLL` steps per iteration when that divides the (static) number of steps;
- XLA runs a compiled loop on one core, so on a CPU the batch is cut into up to one equal part per
  core (`_Shards`), each its own compiled call, which TensorFlow runs side by side.

For the plain cell in float32 on a CPU, outside XLA compilation, the two loops are instead the
hand-written ops of `cpu_kernel` (same math, same kept values, a step as one matrix product and one
pass over the rows), called per part in the same way; where they cannot be built, the XLA loops.

The gating is the cell's own `gates`, so there is one definition of the math, extras included.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Any

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from forecaster.layers import cpu_kernel
from forecaster.layers.lstm_cell import LSTMCell

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PLAIN: dict[int, tuple[Any, Any]] = {}
# Steps per iteration of the forward and plain backward loops: fewer iterations, less loop overhead
# (measured: training steps 1-16 % faster, inference 2-10 %, over the four benchmark shapes).
UNROLL = 4
# The fewest batch rows worth a core of their own (see `_shard_count`).
MIN_SHARD_ROWS = 32


def _plain_local_derivatives(c_prev, i, f, g, o, c):
    """What the plain cell's backward step needs of step t, computed in the forward pass.

    With c_t = f c_{t-1} + i g and h_t = o tanh(c_t), and sigma' = s (1 - s), tanh' = 1 - tanh^2:
    dc_t = dc + dh p with p = o (1 - tanh^2 c_t); dz = q * [dc_t, dc_t, dc_t, dh] with
    q = [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2), tanh(c_t) o (1 - o)]; dc_{t-1} = dc_t f.
    """
    tanh_c = tf.tanh(c)
    q = tf.concat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=1)
    return {"q": q, "f_p": tf.concat([f, o * (1 - tanh_c * tanh_c)], axis=1)}


def _masked_step(cell, z, h_prev, c_prev, out_prev, m, extras, zero_output_for_mask):
    """The gating of one step plus the mask's hold: (h_t, c_t, output_t, (i, f, g, o, unmasked c_t))."""
    h, c, act = cell.gates(z, c_prev, extras)
    c_new, out = c, h
    if m is not None:
        h = tf.where(m, h, h_prev)
        c = tf.where(m, c, c_prev)
        out = tf.where(m, out, tf.zeros_like(out) if zero_output_for_mask else out_prev)
    return h, c, out, (*act, c_new)


def _unroll_factor(steps: tf.Tensor) -> int:
    """Steps done per loop iteration: UNROLL when it divides the (static) number of steps, else their gcd."""
    num_steps = steps.shape[0]
    return math.gcd(int(num_steps), UNROLL) if num_steps else 1


def _on_gpu() -> bool:
    """Whether TensorFlow sees a GPU: the layer's loops then run there, whole, in the compute dtype."""
    return bool(tf.config.list_logical_devices("GPU"))


def _cores() -> int:
    """The cores TensorFlow may run independent ops on at once: this process's CPUs, capped by the
    inter-op thread setting when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    return max(1, min(cores, inter_op) if inter_op else cores)


def _shard_count(steps: tf.Tensor) -> int:
    """Into how many equal parts the batch of time-major ``steps`` is cut, one compiled loop each.

    XLA runs each compiled loop on one core (its per-step products are too small to share out), so
    on a CPU with several cores the batch is cut into up to one part per core, of at least
    `MIN_SHARD_ROWS` rows where the batch size is known when tracing. Never on a GPU.
    """
    if _on_gpu():
        return 1
    batch = steps.shape[1]
    return max(1, _cores() if batch is None else min(_cores(), batch // MIN_SHARD_ROWS))


class _Shards:
    """Cuts batch-major values into ``count`` equal parts and joins the parts' results back.

    A batch that does not divide is padded with zero rows (masked out where there is a mask; their
    gradients are zero, since no loss reaches them), so that every part has one shape: one XLA
    compilation per batch size, not one per part size.
    """

    def __init__(self, steps: tf.Tensor, count: int) -> None:
        self.count = count
        batch = steps.shape[1]
        self.rows = tf.shape(steps)[1] if batch is None else batch
        self.pad = (-self.rows) % count

    def split(self, value: tf.Tensor, axis: int) -> list[tf.Tensor]:
        if self.count == 1:
            return [value]
        if not isinstance(self.pad, int) or self.pad:
            paddings = [[0, 0]] * len(value.shape)
            paddings[axis] = [0, self.pad]
            value = tf.pad(value, paddings)
        return tf.split(value, self.count, axis=axis)

    def join(self, values: list[tf.Tensor], axis: int) -> tf.Tensor:
        if self.count == 1:
            return values[0]
        joined = tf.concat(values, axis=axis)
        if isinstance(self.pad, int) and not self.pad:
            return joined
        return joined[: self.rows] if axis == 0 else joined[:, : self.rows]


def _forward(cell, steps, h0, c0, steps_mask, kernel, recurrent_kernel, bias, extras, *,
             return_sequences, zero_output_for_mask, keep_for_backward, unroll, plain=False):
    """Forward over time-major ``steps`` (T, B, F): outputs, final states and what backward needs.

    Keeping z_t and the previous states costs memory traffic of the order of the whole (T, B, 6u)
    sequence, so it is done only when a gradient is expected (``keep_for_backward``).
    """
    num_steps = tf.shape(steps)[0]
    dtype = steps.dtype
    # The generic backward differentiates `gates` again from z, h_{t-1}, c_{t-1}; the plain cell keeps
    # instead the local derivatives of its gating (see `_plain_local_derivatives`), so that its
    # backward step is a few multiplications and one matmul.
    names = ("q", "f_p", "h_prev", "out_prev") if plain else ("z", "h_prev", "c_prev", "out_prev")
    keep = {k: tf.TensorArray(dtype, size=num_steps) for k in names}
    outputs = tf.TensorArray(dtype, size=num_steps if return_sequences else 1)

    # In inference, for narrow states, one matmul of [x_t, h] by the stacked kernels is faster than two
    # (the x_t one, with few features, runs far below the machine's rate); measured on XLA CPU, it
    # loses for 128 units and more, and in training (where it disturbs the fusion of what is kept).
    stack_kernels = not keep_for_backward and recurrent_kernel.shape[0] is not None and recurrent_kernel.shape[0] <= 64
    stacked_kernel = tf.concat([kernel, recurrent_kernel], axis=0) if stack_kernels else None

    def step(t, h_prev, c_prev, out_prev, outputs, keep):
        if stack_kernels:
            z = tf.matmul(tf.concat([steps[t], h_prev], axis=1), stacked_kernel)
        else:
            z = tf.matmul(steps[t], kernel) + tf.matmul(h_prev, recurrent_kernel)
        if bias is not None:
            z = z + bias
        m = None if steps_mask is None else steps_mask[t]
        h, c, out, act = _masked_step(cell, z, h_prev, c_prev, out_prev, m, extras, zero_output_for_mask)
        if keep_for_backward:
            local = _plain_local_derivatives(c_prev, *act) if plain else {"z": z, "c_prev": c_prev}
            local.update(h_prev=h_prev, out_prev=out_prev)
            keep = {
                k: ta if k == "out_prev" and m is None else ta.write(t, local[k]) for k, ta in keep.items()
            }
        if return_sequences:
            outputs = outputs.write(t, out)
        return h, c, out, outputs, keep

    def body(n, h, c, out, outputs, keep):
        for j in range(unroll):
            h, c, out, outputs, keep = step(n * unroll + j, h, c, out, outputs, keep)
        return n + 1, h, c, out, outputs, keep

    _, h, c, last_output, outputs, keep = tf.while_loop(
        lambda n, *_: n < num_steps // unroll,
        body,
        (tf.constant(0), h0, c0, tf.zeros_like(h0), outputs, keep),
        maximum_iterations=num_steps // unroll,
    )
    if not return_sequences:
        outputs = outputs.write(0, last_output)
    kept = {}
    if keep_for_backward:
        kept = {k: v.stack() for k, v in keep.items() if k != "out_prev" or steps_mask is not None}
    return last_output, outputs.stack(), h, c, kept


def _weight_gradient_step(x_t, h_prev_t, dz, kernel_t, acc):
    """Step t's share of the weight gradients, added to ``acc`` = (d[kernel; recurrent_kernel], d bias),
    and the gradient of the step's input x_t.

    Accumulated inside the backward loop, while dz_t is in cache, rather than kept for all steps and
    contracted afterwards: the kept (T, B, 4u) array cost more memory traffic than its products.
    One product of [x_t, h_{t-1}] with dz_t gives both kernels' gradients.
    """
    d_weights, d_bias = acc
    d_weights = d_weights + tf.matmul(tf.concat([x_t, h_prev_t], axis=1), dz, transpose_a=True)
    return tf.matmul(dz, kernel_t), (d_weights, d_bias + tf.reduce_sum(dz, axis=0))


def _weight_gradient_start(kernel, recurrent_kernel):
    # Dynamic shapes: a shape-relaxed trace (shared by cells of one width) may not know the inputs'.
    rows = tf.shape(kernel)[0] + tf.shape(recurrent_kernel)[0]
    return (tf.zeros((rows, tf.shape(kernel)[1]), kernel.dtype), tf.zeros((tf.shape(kernel)[1],), kernel.dtype))


def _weight_gradient_end(kernel, bias, acc):
    """(d kernel, d recurrent_kernel, d bias) from the accumulated sums."""
    d_weights, d_bias = acc
    num_inputs = tf.shape(kernel)[0]
    return d_weights[:num_inputs], d_weights[num_inputs:], None if bias is None else d_bias


def _backward(cell, steps, steps_mask, kernel, recurrent_kernel, bias, extras, kept,
              d_last, d_outputs, d_h, d_c, *, return_sequences, zero_output_for_mask):
    """Gradients of the forward pass with respect to steps, h0, c0 and every weight."""
    num_steps = tf.shape(steps)[0]
    dtype = steps.dtype
    extra_names = sorted(extras)
    d_extras0 = [tf.zeros_like(extras[n]) for n in extra_names]
    d_steps = tf.TensorArray(dtype, size=num_steps)
    d_out0 = tf.zeros_like(d_h)
    kernel_t = tf.transpose(kernel)

    def body(t, dh, dc, dout_next, d_steps, d_extras, acc):
        # The output of step t gets the loss gradient of outputs[t] (or of last_output at the end)
        # plus, under a mask, what step t+1 passed back through its hold of the previous output.
        dout = dout_next
        if return_sequences:
            dout = dout + d_outputs[t]
        dout = dout + tf.cast(tf.equal(t, num_steps - 1), dtype) * d_last
        z, h_prev, c_prev = kept["z"][t], kept["h_prev"][t], kept["c_prev"][t]
        out_prev = kept["out_prev"][t] if steps_mask is not None else tf.zeros_like(h_prev)
        m = None if steps_mask is None else steps_mask[t]
        local = [z, h_prev, c_prev, out_prev] + [extras[n] for n in extra_names]
        with tf.GradientTape() as tape:
            tape.watch(local)
            h, c, out, _ = _masked_step(
                cell, z, h_prev, c_prev, out_prev, m,
                dict(zip(extra_names, local[4:])), zero_output_for_mask,
            )
        grads = tape.gradient(
            [h, c, out], local, output_gradients=[dh, dc, dout],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        dz, dh_direct, dc_prev, dout_prev = grads[:4]
        dh_prev = dh_direct + tf.matmul(dz, recurrent_kernel, transpose_b=True)
        d_extras = [a + b for a, b in zip(d_extras, grads[4:])]
        d_x, acc = _weight_gradient_step(steps[t], h_prev, dz, kernel_t, acc)
        return t - 1, dh_prev, dc_prev, dout_prev, d_steps.write(t, d_x), d_extras, acc

    _, dh0, dc0, _, d_steps, d_extras, acc = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (num_steps - 1, d_h, d_c, d_out0, d_steps, d_extras0, _weight_gradient_start(kernel, recurrent_kernel)),
        maximum_iterations=num_steps,
    )
    d_kernel, d_recurrent, d_bias = _weight_gradient_end(kernel, bias, acc)
    return d_steps.stack(), dh0, dc0, d_kernel, d_recurrent, d_bias, dict(zip(extra_names, d_extras))


def _backward_plain(steps, steps_mask, kernel, recurrent_kernel, bias, kept,
                    d_last, d_outputs, d_h, d_c, *, return_sequences, zero_output_for_mask, unroll):
    """`_backward` for the plain cell, by hand, from the local derivatives its forward pass kept."""
    num_steps = tf.shape(steps)[0]
    dtype = steps.dtype
    recurrent_t = tf.transpose(recurrent_kernel)
    kernel_t = tf.transpose(kernel)
    d_steps = tf.TensorArray(dtype, size=num_steps)
    masked = steps_mask is not None

    def step(t, dh, dc, dout_next, d_steps, acc):
        dout = dout_next
        if return_sequences:
            dout = dout + d_outputs[t]
        dout = dout + tf.cast(tf.equal(t, num_steps - 1), dtype) * d_last
        q = kept["q"][t]
        f, p = tf.split(kept["f_p"][t], 2, axis=1)
        if masked:
            m = steps_mask[t]
            zero = tf.zeros_like(dh)
            dh_new, dc_new = tf.where(m, dh + dout, zero), tf.where(m, dc, zero)
        else:
            dh_new, dc_new = dh + dout, dc
        dc_new = dc_new + dh_new * p
        dz = q * tf.concat([dc_new, dc_new, dc_new, dh_new], axis=1)
        dh_prev = tf.matmul(dz, recurrent_t)
        dc_prev = dc_new * f
        if masked:
            dh_prev = dh_prev + tf.where(m, zero, dh)
            dc_prev = dc_prev + tf.where(m, zero, dc)
            dout_prev = zero if zero_output_for_mask else tf.where(m, zero, dout)
        else:
            dout_prev = dout_next
        d_x, acc = _weight_gradient_step(steps[t], kept["h_prev"][t], dz, kernel_t, acc)
        return dh_prev, dc_prev, dout_prev, d_steps.write(t, d_x), acc

    def body(n, dh, dc, dout, d_steps, acc):
        for j in reversed(range(unroll)):
            dh, dc, dout, d_steps, acc = step(n * unroll + j, dh, dc, dout, d_steps, acc)
        return n - 1, dh, dc, dout, d_steps, acc

    _, dh0, dc0, _, d_steps, acc = tf.while_loop(
        lambda n, *_: n >= 0,
        body,
        (num_steps // unroll - 1, d_h, d_c, tf.zeros_like(d_h), d_steps,
         _weight_gradient_start(kernel, recurrent_kernel)),
        maximum_iterations=num_steps // unroll,
    )
    d_kernel, d_recurrent, d_bias = _weight_gradient_end(kernel, bias, acc)
    return d_steps.stack(), dh0, dc0, d_kernel, d_recurrent, d_bias, {}


def _compiled(cell: LSTMCell) -> tuple[Any, Any]:
    """The cell's forward and backward loops as XLA-compiled functions.

    Weights are arguments, not captures, so a plain cell's loops depend only on its width: every plain
    cell of that width shares one pair, and its compiled programs (per input shape). A training run
    that fits several networks in one process (the backtest's, then the final one; ensemble members)
    compiles each loop once instead of once per network. Other cells get a pair of their own.
    """
    plain = cell.is_plain()
    pair = _PLAIN.get(cell.units) if plain else _COMPILED.get(cell)
    if pair is None:
        # Every choice a trace makes from shapes (the unroll factor) comes in as an argument, taken from
        # the caller's static shapes: a shape-relaxed trace left by an earlier network then builds the
        # same program, so a fit's last bits do not depend on what else the process has run.
        compile_ = lambda fn: tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False)
        if plain:
            # The first plain cell of this width stands for all: the plain gating reads only `units`.
            pair = (
                compile_(lambda *a, **k: _forward(cell, *a, plain=True, **k)),
                compile_(lambda s, m, k, r, b, ex, *a, **kw: _backward_plain(s, m, k, r, b, *a, **kw)),
            )
            _PLAIN[cell.units] = pair
        else:
            pair = (
                compile_(lambda *a, **k: _forward(cell, *a, **k)),
                compile_(lambda *a, unroll, **k: _backward(cell, *a, **k)),
            )
            _COMPILED[cell] = pair
    return pair


def _kernel_loops(cell: LSTMCell, dtype: tf.DType) -> tuple[Any, Any] | None:
    """`cpu_kernel`'s ops as drop-in forward and backward loops, where they serve this call, else None.

    They do the plain cell in float32 on a CPU; inside an XLA-compiled function (a model compiled with
    ``jit_compile=True``) an op XLA cannot compile would fail the whole function, so there, as on a GPU,
    the XLA loops run.
    """
    if not cell.is_plain() or dtype != tf.float32 or _on_gpu():
        return None
    if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        return None
    module = cpu_kernel.ops()
    if module is None:
        return None
    no_mask = tf.zeros((0,), tf.bool)

    def forward(steps, h0, c0, steps_mask, kernel, recurrent_kernel, bias, extras, *, keep_for_backward,
                return_sequences, zero_output_for_mask, unroll):
        last, outputs, h, c, *kept = module.forecaster_lstm_forward(
            steps, h0, c0, kernel, recurrent_kernel, tf.zeros((0,), dtype) if bias is None else bias,
            no_mask if steps_mask is None else steps_mask, keep=keep_for_backward,
            return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask,
        )
        return last, outputs, h, c, kept

    def backward(steps, steps_mask, kernel, recurrent_kernel, bias, extras, kept, d_last, d_outputs, d_h, d_c,
                 *, return_sequences, zero_output_for_mask, unroll):
        *grads, d_bias = module.forecaster_lstm_backward(
            steps, no_mask if steps_mask is None else steps_mask, kernel, recurrent_kernel, *kept,
            d_last, d_outputs, d_h, d_c, has_bias=bias is not None,
            return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask,
        )
        return (*grads, None if bias is None else d_bias, {})

    return forward, backward


def run_fused(
    cell: LSTMCell,
    sequences: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    mask: tf.Tensor | None,
    *,
    return_sequences: bool,
    go_backwards: bool,
    zero_output_for_mask: bool,
    training: bool,
) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
    """The `(last_output, outputs, [h, c])` triple of `keras.layers.RNN.inner_loop`.

    In training the forward pass keeps what the backward pass needs; in inference it keeps nothing,
    and a gradient, if one is asked for all the same, runs the keeping forward pass again first.
    """
    sequences = cell.promote_inputs(sequences)
    dtype = sequences.dtype
    if dtype in (tf.float16, tf.bfloat16) and not _on_gpu():
        # Mixed precision on a CPU: XLA's CPU code for a half-precision loop is many times slower than
        # for float32 (mixed_bfloat16: model.fit 17.6x slower at (168, 64) on an AMX Xeon) and CPUs have
        # no half-precision units to gain from, so the recurrence runs in float32 (then the kernel's
        # ops) and its results are cast back to the layer's compute dtype.
        wide = (tf.cast(v, tf.float32) for v in (sequences, h0, c0))
        last_output, outputs, states = run_fused(
            cell, *wide, mask, return_sequences=return_sequences, go_backwards=go_backwards,
            zero_output_for_mask=zero_output_for_mask, training=training,
        )
        return tf.cast(last_output, dtype), tf.cast(outputs, dtype), [tf.cast(s, dtype) for s in states]
    forward, backward = _kernel_loops(cell, dtype) or _compiled(cell)
    steps = tf.transpose(sequences, (1, 0, 2))
    options = {"return_sequences": return_sequences, "zero_output_for_mask": zero_output_for_mask,
               "unroll": _unroll_factor(steps)}
    steps_mask = None
    if mask is not None:
        steps_mask = tf.expand_dims(tf.transpose(tf.cast(mask, tf.bool), (1, 0)), -1)
    if go_backwards:
        steps = tf.reverse(steps, [0])
        if steps_mask is not None:
            steps_mask = tf.reverse(steps_mask, [0])
    kernel = tf.cast(cell.kernel, dtype)
    recurrent_kernel = tf.cast(cell.recurrent_kernel, dtype)
    extras = {k: tf.cast(v, dtype) for k, v in cell.extra_weights().items()}
    extra_names = sorted(extras)
    has_bias = cell.bias is not None
    bias = tf.cast(cell.bias, dtype) if has_bias else tf.zeros((0,), dtype)

    shards = _Shards(steps, _shard_count(steps))

    @tf.custom_gradient
    def lstm(steps, h0, c0, kernel, recurrent_kernel, bias, *extra_values):
        # The compiled loops are differentiated by hand below; stop_gradient keeps the tape from
        # asking TensorFlow for a gradient of the XLA cluster (its loop state cannot leave XLA).
        steps, h0, c0, kernel, recurrent_kernel, bias = (
            tf.stop_gradient(v) for v in (steps, h0, c0, kernel, recurrent_kernel, bias)
        )
        ex = {n: tf.stop_gradient(v) for n, v in zip(extra_names, extra_values)}
        b = bias if has_bias else None
        # One call of the compiled loop per shard of the batch: independent ops that TensorFlow runs
        # on separate cores (XLA runs each loop on one).
        masks = [None] * shards.count if steps_mask is None else shards.split(steps_mask, 1)
        parts = [
            (s, h, c, m, kernel, recurrent_kernel, b, ex)
            for s, h, c, m in zip(shards.split(steps, 1), shards.split(h0, 0), shards.split(c0, 0), masks)
        ]
        results = [forward(*args, keep_for_backward=bool(training), **options) for args in parts]
        last, outs, h, c = (
            shards.join([r[i] for r in results], axis) for i, axis in ((0, 0), (1, 1), (2, 0), (3, 0))
        )

        def grad(d_last, d_outs, d_h, d_c):
            d_last, d_outs, d_h, d_c = (
                tf.zeros_like(v) if d is None else d
                for d, v in zip((d_last, d_outs, d_h, d_c), (last, outs, h, c))
            )
            upstream = zip(shards.split(d_last, 0), shards.split(d_outs, 1), shards.split(d_h, 0),
                           shards.split(d_c, 0))
            shard_grads = []
            for args, result, (dl, do, dh, dc) in zip(parts, results, upstream):
                saved = result[-1] if training else forward(*args, keep_for_backward=True, **options)[-1]
                s, _, _, m, *weights = args
                shard_grads.append(backward(s, m, *weights, saved, dl, do, dh, dc, **options))
            d_steps, dh0, dc0 = (
                shards.join([g[i] for g in shard_grads], axis) for i, axis in ((0, 1), (1, 0), (2, 0))
            )
            dk, dr = (tf.add_n([g[i] for g in shard_grads]) for i in (3, 4))
            db = tf.add_n([g[5] for g in shard_grads]) if has_bias else tf.zeros_like(bias)
            dex = [tf.add_n([g[6][n] for g in shard_grads]) for n in extra_names]
            return (d_steps, dh0, dc0, dk, dr, db, *dex)

        return (last, outs, h, c), grad

    last_output, stacked, h, c = lstm(
        steps, h0, c0, kernel, recurrent_kernel, bias, *[extras[n] for n in extra_names]
    )
    outputs = tf.transpose(stacked, (1, 0, 2))
    return last_output, outputs, [h, c]
