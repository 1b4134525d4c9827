"""A plain NumPy LSTM: the independent reference for the layer's equations, extras included."""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def numpy_lstm(
    x: np.ndarray,
    weights: dict[str, np.ndarray],
    units: int,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    layer_norm: bool = False,
    peephole: bool = False,
    proj_size: int | None = None,
    eps: float = 1e-3,
) -> dict[str, np.ndarray]:
    """Run the LSTM equations step by step in float64; returns every gate and state per step."""
    x = x.astype(np.float64)
    batch, steps, _ = x.shape
    out_units = proj_size or units
    h = np.zeros((batch, out_units)) if h0 is None else h0.astype(np.float64)
    c = np.zeros((batch, units)) if c0 is None else c0.astype(np.float64)
    W, U = weights["kernel"], weights["recurrent_kernel"]
    b = weights.get("bias", np.zeros(4 * units))
    record: dict[str, list] = {k: [] for k in ("input", "forget", "candidate", "output", "cell", "hidden")}
    for t in range(steps):
        z = x[:, t] @ W + h @ U + b
        if layer_norm:
            z4 = z.reshape(batch, 4, units)
            z = _norm(z4, weights["gate_norm_gamma"], weights["gate_norm_beta"], eps).reshape(batch, -1)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        if peephole:
            zi = zi + weights["peephole_kernel"][0] * c
            zf = zf + weights["peephole_kernel"][1] * c
        i, f, g = _sigmoid(zi), _sigmoid(zf), np.tanh(zg)
        c = f * c + i * g
        if peephole:
            zo = zo + weights["peephole_kernel"][2] * c
        o = _sigmoid(zo)
        c_out = _norm(c, weights["cell_norm_gamma"], weights["cell_norm_beta"], eps) if layer_norm else c
        h = o * np.tanh(c_out)
        if proj_size:
            h = h @ weights["projection_kernel"]
        for k, v in zip(record, (i, f, g, o, c, h)):
            record[k].append(v)
    return {k: np.stack(v, axis=1) for k, v in record.items()}


def float64_outputs_and_grads(
    x: np.ndarray,
    weights: dict[str, np.ndarray],
    cotangents: list[np.ndarray],
    mask: np.ndarray | None = None,
    return_sequences: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The plain LSTM's outputs ``[output, h, c]`` and the gradients of sum <output_k, cotangent_k>
    with respect to (x, kernel, recurrent_kernel, bias), exactly in float64: the equations above
    written in `jax.numpy` with x64 on (Keras' ops compute some float64 functions in float32), and
    differentiated by JAX. At masked steps the state and the output are held, as in Keras' generic loop."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    units = weights["recurrent_kernel"].shape[0]
    steps_mask = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask, bool)

    def run(xv, kernel, recurrent_kernel, bias):
        h = c = out = jnp.zeros((xv.shape[0], units), jnp.float64)
        outs = []
        for t in range(xv.shape[1]):
            z = xv[:, t] @ kernel + h @ recurrent_kernel + bias
            i, f, o = (jax.nn.sigmoid(z[:, k * units:(k + 1) * units]) for k in (0, 1, 3))
            c_new = f * c + i * jnp.tanh(z[:, 2 * units:3 * units])
            h_new = o * jnp.tanh(c_new)
            m = steps_mask[:, t, None]
            h, c = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
            out = jnp.where(m, h_new, out)
            outs.append(out)
        first = jnp.stack(outs, axis=1) if return_sequences else h
        return [first, h, c]

    def loss(*args):
        outs = run(*args)
        return sum(jnp.sum(o * jnp.asarray(ct, jnp.float64)) for o, ct in zip(outs, cotangents)), outs

    args = [jnp.asarray(a, jnp.float64) for a in
            (x, weights["kernel"], weights["recurrent_kernel"], weights["bias"])]
    (_, outs), grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(*args)
    return [np.asarray(o) for o in outs], [np.asarray(g) for g in grads]
