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
