"""Validate forecaster.layers.LSTM against Keras' cuDNN LSTM on a GPU, under any Keras backend.

    KERAS_BACKEND=jax python bench/validate_gpu.py        # or tensorflow / torch

TF32 is switched off first (Ampere and Hopper GPUs use it for float32 matmuls and cuDNN RNNs by
default, which alone would differ by ~1e-3). Masks are right-padded with no empty row, as cuDNN
requires; where Keras' backend takes masks off the cuDNN path (JAX, torch) the masked cases are
reported but compare against Keras' generic GPU loop.

Two float32 implementations of a long recurrence differ by round-off that the recurrence amplifies
(seen on an H100: 2e-5 at 168 steps and 128 units under JAX), so each case also computes the exact
answer, the LSTM equations in float64 differentiated by JAX (`tests/lstm_reference.py`), and passes
when ours is within ``TOLERANCE`` of cuDNN or its relative error ||ours - exact|| / ||exact|| (the
worst over outputs and over gradients) is at most ``SLACK`` times cuDNN's own. Exits 0 when every
case passes, 1 when one does not, 2 when no GPU is visible.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from forecaster.layers import LSTM

TOLERANCE = 1e-5
SLACK = 2.0


def gpu_name() -> str | None:
    """The visible GPU's name under the current backend, with TF32 disabled; None without a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    if backend == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform == "gpu"]
        if not devices:
            return None
        jax.config.update("jax_default_matmul_precision", "highest")
        return devices[0].device_kind
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9 reads this for cuDNN's RNNs too
            torch.backends.fp32_precision = "ieee"
            torch.backends.cudnn.rnn.fp32_precision = "ieee"
        return torch.cuda.get_device_name(0)
    return None


def compare_case(timesteps: int, units: int, batch: int, features: int, masked: bool,
                 return_sequences: bool) -> dict:
    """Ours against Keras' LSTM(use_cudnn=True) and both against the exact float64 answer."""
    from tests.layer_support import outputs_and_grads
    from tests.lstm_reference import float64_outputs_and_grads

    rng = np.random.default_rng(timesteps * 1000 + units)
    x = rng.normal(size=(batch, timesteps, features)).astype("float32")
    options = dict(return_sequences=return_sequences, return_state=True)
    call = {}
    if masked:
        lengths = rng.integers(1, timesteps + 1, size=batch)
        call["mask"] = np.arange(timesteps)[None, :] < lengths[:, None]
    cudnn = "auto" if masked else True
    theirs = keras.layers.LSTM(units, use_cudnn=cudnn, **options)
    theirs.build(x.shape)
    theirs.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours = LSTM(units, **options)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    cotangents = [rng.normal(size=tuple(o.shape)).astype("float32") for o in theirs(x, **call)]
    out_t, grad_t = outputs_and_grads(theirs, x, cotangents, **call)
    out_o, grad_o = outputs_and_grads(ours, x, cotangents, **call)
    weights = dict(zip(("kernel", "recurrent_kernel", "bias"), theirs.get_weights()))
    out_e, grad_e = float64_outputs_and_grads(x, weights, cotangents, call.get("mask"), return_sequences)
    if masked and return_sequences:
        # cuDNN writes zeros at padded steps where the generic path repeats the last output.
        keep = call["mask"][..., None]
        out_t[0], out_o[0], out_e[0] = out_t[0] * keep, out_o[0] * keep, out_e[0] * keep

    def out_diff(a: list, b: list) -> float:
        return max(float(np.abs(u - v).max()) for u, v in zip(a, b))

    def grad_diff(a: list, b: list) -> float:
        return max(float(np.abs(u - v).max() / max(1.0, np.abs(v).max())) for u, v in zip(a, b))

    def rel_norm(a: list, b: list) -> float:
        return max(float(np.linalg.norm(u - v) / max(np.linalg.norm(v), 1e-30)) for u, v in zip(a, b))

    diff_out, diff_grad = out_diff(out_o, out_t), grad_diff(grad_o, grad_t)
    err = {name: (rel_norm(o, out_e), rel_norm(g, grad_e))
           for name, (o, g) in {"ours": (out_o, grad_o), "cudnn": (out_t, grad_t)}.items()}
    ok = all(
        direct <= TOLERANCE or err["ours"][k] <= max(TOLERANCE, SLACK * err["cudnn"][k])
        for k, direct in enumerate((diff_out, diff_grad))
    )
    return {"timesteps": timesteps, "units": units, "masked": masked, "return_sequences": return_sequences,
            "max_abs_diff_outputs": diff_out, "max_rel_diff_grads": diff_grad,
            "ours_rel_err_vs_float64": err["ours"], "cudnn_rel_err_vs_float64": err["cudnn"], "ok": ok}


CASES = [(48, 64, False, False), (48, 64, False, True), (168, 128, False, True), (24, 32, True, True),
         (48, 64, True, False)]


def main() -> int:
    name = gpu_name()
    if name is None:
        print(f"no GPU visible to Keras' {keras.backend.backend()} backend: nothing validated")
        return 2
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, GPU {name}, TF32 off, "
          f"tolerance {TOLERANCE}")
    results = [compare_case(t, u, 32, 8, m, r) for t, u, m, r in CASES]
    for r in results:
        print(r)
    ok = all(r["ok"] for r in results)
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
