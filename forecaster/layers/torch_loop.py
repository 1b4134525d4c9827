"""The LSTM recurrence for the torch backend: one autograd function, its backward written by hand.

Keras' generic loop steps the cell with a dozen Keras ops per step, and torch's autograd records and
replays every one of them. Here, for the plain cell (sigmoid gates, tanh, no extras), the recurrence is
one `torch.autograd.Function`:

- forward: x W + b for every step in one product before the loop; a step is then one ``addmm`` and
  the gating (no autograd graph is recorded; what the backward needs is kept only where a gradient
  can be asked for);
- backward: the gating's local derivatives for all steps in a few whole-sequence operations, then a
  loop of five small operations and one product per step (dz_t, dh_{t-1} = dz_t U^T, dc_{t-1}); the
  input's and the weights' gradients are three products over all steps after the loop.

The math is `fused_loop`'s plain backward (`_plain_local_derivatives`), masks included: a masked step
holds h and c, outputs zeros or the previous output (from zeros before the first step, as Keras'
torch loop). Half precision on a CPU is computed in float32 and rounded once at the end, as the
TensorFlow loop does. Cells with extras or other activations stay on Keras' generic loop.

Where no gradient can be asked for (``no_grad``, as predict runs) and there is no mask, the forward is
`_forward_no_grad` instead: the same step in place, into buffers allocated once (1.36x faster than
the autograd function's forward at (48, 64) and (168, 128), `bench/torch_forward.py`).
``torch.compile`` of the step was slower than both on a CPU and is not used.
"""

from __future__ import annotations

from typing import Any

import torch
from keras import ops

from forecaster.layers.lstm_cell import LSTMCell

# Whether a call no gradient can be asked for, without a mask, runs `_forward_no_grad` (False: the
# autograd function's forward, as before; bench/torch_forward.py times both).
FAST_INFERENCE = True


class _PlainLSTM(torch.autograd.Function):
    """(last_output, outputs, h, c) of the plain cell over time-major steps (T, B, F)."""

    @staticmethod
    def forward(ctx, steps, h0, c0, kernel, recurrent_kernel, bias, steps_mask, return_sequences,
                zero_output_for_mask, keep):
        num_steps = steps.shape[0]
        u = c0.shape[1]
        xz = torch.matmul(steps, kernel)
        if bias is not None:
            xz = xz + bias
        # What the backward pass needs of each step, only where a gradient can be asked for (``keep``): the
        # states entering it, the gates' sigmoids (the candidate's slot unused), the candidate, tanh(c_t).
        kept: tuple[list, ...] = ([], [], [], [], [])
        outs = []
        h, c, out = h0, c0, torch.zeros_like(h0)
        for t in range(num_steps):
            z = torch.addmm(xz[t], h, recurrent_kernel)
            s = torch.sigmoid(z)
            g = torch.tanh(z[:, 2 * u : 3 * u])
            c_new = torch.addcmul(s[:, u : 2 * u] * c, s[:, :u], g)
            tc = torch.tanh(c_new)
            h_new = s[:, 3 * u :] * tc
            if keep:
                for kept_list, value in zip(kept, (h, c, s, g, tc)):
                    kept_list.append(value)
            if steps_mask is None:
                h, c, out = h_new, c_new, h_new
            else:
                m = steps_mask[t]
                h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)
                out = torch.where(m, h_new, torch.zeros_like(h_new) if zero_output_for_mask else out)
            if return_sequences:
                outs.append(out)
        outputs = torch.stack(outs) if return_sequences else out.unsqueeze(0)
        if keep:
            ctx.save_for_backward(steps, kernel, recurrent_kernel, steps_mask, *(torch.stack(k) for k in kept))
        ctx.options = (bias is not None, return_sequences, zero_output_for_mask)
        return out.clone(), outputs, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_last, d_outputs, d_h, d_c):
        steps, kernel, recurrent_kernel, steps_mask, h_states, c_states, sig, cand, tanh_c = ctx.saved_tensors
        # h_states[t], c_states[t]: the states entering step t.
        has_bias, return_sequences, zero_output_for_mask = ctx.options
        num_steps, batch, _ = steps.shape
        u = cand.shape[2]
        i, f, o = sig[..., :u], sig[..., u : 2 * u], sig[..., 3 * u :]
        # The local derivatives of every step's gating at once (see fused_loop._plain_local_derivatives).
        q = torch.cat([cand * i * (1 - i), c_states * f * (1 - f), i * (1 - cand * cand),
                       tanh_c * o * (1 - o)], dim=2)
        p = o * (1 - tanh_c * tanh_c)
        zero = torch.zeros_like(d_h)
        dh, dc = d_h.clone(), d_c.clone()
        dout_next = zero
        dz = torch.empty_like(sig)
        recurrent_t = recurrent_kernel.t()
        for t in range(num_steps - 1, -1, -1):
            dout = dout_next
            if return_sequences:
                dout = dout + d_outputs[t]
            if t == num_steps - 1:
                dout = dout + d_last
                if not return_sequences:
                    dout = dout + d_outputs[0]
            if steps_mask is None:
                dh_new, dc_new = dh + dout, dc
            else:
                m = steps_mask[t]
                dh_new, dc_new = torch.where(m, dh + dout, zero), torch.where(m, dc, zero)
            dc_new = torch.addcmul(dc_new, dh_new, p[t])
            torch.mul(q[t], torch.cat([dc_new, dc_new, dc_new, dh_new], dim=1), out=dz[t])
            dh_prev = torch.mm(dz[t], recurrent_t)
            dc_prev = dc_new * f[t]
            if steps_mask is None:
                dout_next = zero
            else:
                dh_prev = dh_prev + torch.where(m, zero, dh)
                dc_prev = dc_prev + torch.where(m, zero, dc)
                dout_next = zero if zero_output_for_mask else torch.where(m, zero, dout)
            dh, dc = dh_prev, dc_prev
        flat_dz = dz.reshape(num_steps * batch, 4 * u)
        d_steps = torch.matmul(dz, kernel.t())
        d_kernel = steps.reshape(num_steps * batch, -1).t() @ flat_dz
        d_recurrent = h_states.reshape(num_steps * batch, u).t() @ flat_dz
        d_bias = flat_dz.sum(0) if has_bias else None
        return d_steps, dh, dc, d_kernel, d_recurrent, d_bias, None, None, None, None


def _forward_no_grad(steps, h0, c0, kernel, recurrent_kernel, bias, return_sequences):
    """(last_output, time-major outputs, h, c) of the plain cell without a mask, where no gradient can be
    asked for (predict): each step writes into buffers allocated once, through views made once.

    The gates' columns are reordered (i, f, o | g) so that one sigmoid covers three gates; a step is one
    ``addmm`` into the pre-activation buffer, the sigmoid and tanh in place, c updated in place, and
    h_t written straight into its row of the outputs: seven torch calls and one view (that row), no
    allocation.
    """
    num_steps, batch, _ = steps.shape
    u = c0.shape[1]
    order = torch.cat([torch.arange(2 * u), torch.arange(3 * u, 4 * u), torch.arange(2 * u, 3 * u)]).to(steps.device)
    kernel, recurrent_kernel = kernel[:, order], recurrent_kernel[:, order].contiguous()
    xz = torch.matmul(steps, kernel)
    if bias is not None:
        xz += bias[order]
    z = xz.new_empty((batch, 4 * u))  # on the inputs' device, in their dtype
    sig, i, f, o, g = z[:, : 3 * u], z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
    c, tanh_c = c0.clone(), torch.empty_like(c0)
    outputs = xz.new_empty((num_steps if return_sequences else 1, batch, u))
    h = h0
    for t in range(num_steps):
        torch.addmm(xz[t], h, recurrent_kernel, out=z)
        sig.sigmoid_()
        g.tanh_()
        c.mul_(f).addcmul_(i, g)
        torch.tanh(c, out=tanh_c)
        h = outputs[t if return_sequences else 0]
        torch.mul(o, tanh_c, out=h)
    return h.clone(), outputs, h.clone(), c


def run_loop(
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
    """The `(last_output, outputs, [h, c])` triple of `keras.layers.RNN.inner_loop`, under torch."""
    sequences = cell.promote_inputs(sequences)
    dtype = sequences.dtype
    if dtype in (torch.float16, torch.bfloat16) and sequences.device.type == "cpu":
        # No half-precision units to gain from on a CPU; float32, rounded once (as fused_loop does).
        last, outputs, (h, c) = run_loop(
            cell, sequences.float(), h0.float(), c0.float(), mask, return_sequences=return_sequences,
            go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
        )
        return last.to(dtype), outputs.to(dtype), [h.to(dtype), c.to(dtype)]
    kernel, recurrent_kernel = (ops.cast(w, dtype) for w in (cell.kernel, cell.recurrent_kernel))
    bias = None if cell.bias is None else ops.cast(cell.bias, dtype)
    steps = sequences.transpose(0, 1)
    steps_mask = None if mask is None else mask.to(torch.bool).transpose(0, 1).unsqueeze(-1)
    if go_backwards:
        steps = steps.flip(0)
        steps_mask = None if steps_mask is None else steps_mask.flip(0)
    inputs = (steps.contiguous(), h0.to(dtype), c0.to(dtype), kernel, recurrent_kernel, bias)
    # Inside the function grad mode is off and needs_input_grad says True even under no_grad (predict):
    # whether a gradient can be asked for is read here.
    keep = torch.is_grad_enabled() and any(v is not None and v.requires_grad for v in inputs)
    if not keep and steps_mask is None and FAST_INFERENCE and steps.shape[0] > 0:
        with torch.no_grad():
            last, outputs, h, c = _forward_no_grad(*inputs, return_sequences)
        return last, outputs.transpose(0, 1), [h, c]
    last, outputs, h, c = _PlainLSTM.apply(
        *inputs, None if steps_mask is None else steps_mask.contiguous(), return_sequences, zero_output_for_mask,
        keep,
    )
    return last, outputs.transpose(0, 1), [h, c]
