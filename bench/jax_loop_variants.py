"""Four ways to write the LSTM scan in plain JAX, timed on whatever device JAX has (CPU or GPU).

`inside`: z_t = x_t W + h U + b inside the step (the cell's own step); `hoisted`: x W + b for all
steps as one matmul before the scan (time-major), `hoisted_bm` the same matmul batch-major and then
transposed; each with the scan doing 1 and 8 steps per iteration. Prints milliseconds for a forward
pass and for the gradient with respect to both kernels, batch 256, 8 features. This chose the JAX
loop's per-device formulation (`forecaster/layers/jax_loop.py`).

    python bench/jax_loop_variants.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

BATCH, FEATURES = 256, 8


def _gates(z, c, units):
    i = jax.nn.sigmoid(z[:, :units])
    f = jax.nn.sigmoid(z[:, units:2 * units])
    g = jnp.tanh(z[:, 2 * units:3 * units])
    o = jax.nn.sigmoid(z[:, 3 * units:])
    c = f * c + i * g
    return o * jnp.tanh(c), c


def _scan(zs, recurrent, units, unroll, step_input):
    def step(carry, z_t):
        h, c = carry
        return _gates(step_input(z_t) + h @ recurrent, c, units), None

    zeros = jnp.zeros((zs.shape[1], units))
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), zs, unroll=unroll)
    return h


def inside(x, kernel, recurrent, bias, unroll):
    return _scan(jnp.swapaxes(x, 0, 1), recurrent, recurrent.shape[0], unroll, lambda x_t: x_t @ kernel + bias)


def hoisted(x, kernel, recurrent, bias, unroll):
    zs = jnp.einsum("tbf,fg->tbg", jnp.swapaxes(x, 0, 1), kernel) + bias
    return _scan(zs, recurrent, recurrent.shape[0], unroll, lambda z_t: z_t)


def hoisted_bm(x, kernel, recurrent, bias, unroll):
    zs = jnp.swapaxes(x @ kernel + bias, 0, 1)
    return _scan(zs, recurrent, recurrent.shape[0], unroll, lambda z_t: z_t)


def _ms(fn, args, calls):
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    print(f"device {jax.devices()[0].platform}, batch {BATCH}, {FEATURES} features")
    print("| (T, units) | variant | unroll | forward ms | gradient ms |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for timesteps, units in [(48, 64), (168, 128)]:
        args = (
            jnp.asarray(rng.normal(size=(BATCH, timesteps, FEATURES)), jnp.float32),
            jnp.asarray(rng.normal(scale=0.1, size=(FEATURES, 4 * units)), jnp.float32),
            jnp.asarray(rng.normal(scale=0.1, size=(units, 4 * units)), jnp.float32),
            jnp.zeros(4 * units, jnp.float32),
        )
        for name, variant in (("inside", inside), ("hoisted", hoisted), ("hoisted_bm", hoisted_bm)):
            for unroll in (1, 8):
                forward = jax.jit(lambda *a, v=variant, u=unroll: v(*a, u))
                gradient = jax.jit(jax.grad(lambda *a, v=variant, u=unroll: v(*a, u).sum(), argnums=(1, 2)))
                print(f"| ({timesteps}, {units}) | {name} | {unroll} | {_ms(forward, args, 50):.1f} "
                      f"| {_ms(gradient, args, 20):.1f} |", flush=True)


if __name__ == "__main__":
    main()
