"""Backend-neutral helpers for the layer tests: outputs and gradients of a layer as NumPy arrays."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def _as_list(out: Any) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _output_shapes(layer: keras.layers.Layer, x: np.ndarray, call_kwargs: dict) -> list:
    """The shapes of ``layer(x, **call_kwargs)``'s outputs (objects with ``.shape``), for the cotangents.

    Under JAX they are traced abstractly (`jax.eval_shape`), not computed: an eager call compiles the
    forward pass on its own, a third of a parity case's time there (0.4-0.8 s of CPU a layer), only to
    read shapes that the gradient's own call computes anyway. Other backends call the layer."""
    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        return _as_list(jax.eval_shape(
            lambda xv: layer.stateless_call(trainable, non_trainable, xv, **call_kwargs)[0], x))
    return _as_list(layer(x, **call_kwargs))


def outputs_and_grads(
    layer: keras.layers.Layer,
    x: np.ndarray,
    cotangents: list[np.ndarray] | None = None,
    **call_kwargs: Any,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Call ``layer`` on ``x``; return its outputs and d(loss)/d(x, every trainable weight).

    The loss is sum_k <output_k, cotangent_k>, with fixed random cotangents, so that every output
    (sequence, final h, final c) takes part in the gradient with its own weighting.
    """
    backend = keras.backend.backend()
    if not layer.built:
        layer(x, **call_kwargs)
    if cotangents is None:
        rng = np.random.default_rng(123)
        cotangents = [rng.normal(size=tuple(o.shape)).astype("float32") for o in _output_shapes(layer, x, call_kwargs)]

    def loss_of(outs: list) -> Any:
        return sum(keras.ops.sum(o * c) for o, c in zip(outs, cotangents))

    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            outs = _as_list(layer(xt, **call_kwargs))
            loss = loss_of(outs)
        grads = tape.gradient(loss, [xt, *layer.trainable_variables])
        return [np.asarray(o) for o in outs], [np.asarray(g) for g in grads]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def f(xv: Any, tv: Any) -> Any:
            outs, _ = layer.stateless_call(tv, non_trainable, xv, **call_kwargs)
            outs = _as_list(outs)
            return loss_of(outs), outs

        (_, outs), (gx, gw) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(x, trainable)
        return [np.asarray(o) for o in outs], [np.asarray(gx), *[np.asarray(g) for g in gw]]
    if backend == "torch":
        xt = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        for v in layer.trainable_variables:
            v.value.grad = None
        outs = _as_list(layer(xt, **call_kwargs))
        sum(keras.ops.sum(o * keras.ops.convert_to_tensor(c)) for o, c in zip(outs, cotangents)).backward()
        grads = [xt.grad, *[v.value.grad for v in layer.trainable_variables]]
        return [keras.ops.convert_to_numpy(o) for o in outs], [g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(f"gradients for backend {backend}")


def sweep_examples(elsewhere: int, under_jax: int) -> int:
    """How many random cases a hypothesis sweep of the layer draws (besides its fixed ``@example`` cases):
    ``under_jax`` under JAX, ``elsewhere`` under TensorFlow and torch.

    Under JAX every case compiles its own scan (a new layer is a new function to trace: ~2 CPU s a case,
    whatever its shapes), so that run draws fewer; its fixed cases all still run there, the TensorFlow
    suite draws the full number through the same properties, and each run draws afresh (no example
    database in CI), so the JAX loop still meets new shapes and options every run."""
    return under_jax if keras.backend.backend() == "jax" else elsewhere
