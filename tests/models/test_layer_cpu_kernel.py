"""The hand-written CPU kernel (forecaster/layers/lstm_cpu.cc) against the XLA loops and Keras' LSTM,
where the layer takes it and where it must not, and what happens when it cannot be built. (A model
compiled with ``jit_compile=True``, which must run the XLA loops, trains like Keras' in test_layer_parity.py.)

TensorFlow only: the kernel is a TensorFlow op (under JAX these tests are not collected by the layer run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("the CPU kernel is a TensorFlow op", allow_module_level=True)

import tensorflow as tf

from forecaster.layers import LSTM, cpu_kernel, physical_memory_mb
from forecaster.layers import fused_loop as fl
from forecaster.layers.lstm_cell import LSTMCell
from tests.layer_support import outputs_and_grads

ROOT = Path(__file__).resolve().parents[2]
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def ops():
    module = cpu_kernel.ops()
    assert module is not None, "the CPU kernel did not build here (see the warning logged above)"
    return module


# (T, B, F, units): a batch under one tile of rows; and one with whole tiles and a remainder, panels of
# 16 columns with a remainder, and a reduction over 4 x 70 = 280 gates (two passes of 256 in ours).
SHAPES = [(9, 5, 3, 6), (4, 13, 5, 70)]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=["one-tile", "tiles"])
def test_the_ops_give_what_the_xla_loops_give(ops, masked, return_sequences, zero_output_for_mask, shape):
    """Outputs, states, every kept value and every gradient, for the same inputs and upstream gradients."""
    T, B, F, U = shape
    rng = np.random.default_rng(7)
    cell = LSTMCell(U)
    cell.build((None, F))
    cell.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in cell.get_weights()])
    steps = tf.constant(rng.normal(size=(T, B, F)).astype("float32"))
    h0, c0 = (tf.constant(rng.normal(scale=0.5, size=(B, U)).astype("float32")) for _ in range(2))
    mask = tf.constant(rng.random((T, B, 1)) > 0.3) if masked else None
    weights = (cell.kernel, cell.recurrent_kernel, cell.bias)
    options = {"return_sequences": return_sequences, "zero_output_for_mask": zero_output_for_mask}
    forward, backward = fl._compiled(cell)
    expected = forward(steps, h0, c0, mask, *weights, {}, keep_for_backward=True, unroll=1, **options)
    got = ops.forecaster_lstm_forward(steps, h0, c0, *weights, tf.zeros((0,), tf.bool) if mask is None else mask,
                                      keep=True, **options)
    for a, b in zip(expected[:4], got[:4]):
        np.testing.assert_allclose(b.numpy(), a.numpy(), **TOL)
    for name, b in zip(("q", "f_p", "h_prev"), got[4:]):
        np.testing.assert_allclose(b.numpy(), expected[4][name].numpy(), **TOL)

    upstream = [tf.constant(rng.normal(size=s).astype("float32"))
                for s in ((B, U), expected[1].shape, (B, U), (B, U))]
    if not return_sequences:
        upstream[1] = tf.zeros(expected[1].shape)  # the layer never reads outputs then
    want = backward(steps, mask, *weights, {}, expected[4], *upstream, unroll=1, **options)
    have = ops.forecaster_lstm_backward(steps, tf.zeros((0,), tf.bool) if mask is None else mask,
                                        cell.kernel, cell.recurrent_kernel, *got[4:], *upstream,
                                        has_bias=True, **options)
    for a, b in zip(want[:6], have):
        np.testing.assert_allclose(b.numpy(), a.numpy(), **TOL)


def _op_types(layer: LSTM, x: np.ndarray, jit: bool = False) -> set[str]:
    """The op types of a traced training step (forward and gradient) through ``layer``."""

    def step(x):
        with tf.GradientTape() as tape:
            y = tf.add_n([tf.reduce_sum(v) for v in tf.nest.flatten(layer(x, training=True))])
        return tape.gradient(y, layer.trainable_weights)

    graph = tf.function(step, jit_compile=jit).get_concrete_function(tf.constant(x)).graph
    types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():  # the bodies of nested functions (the custom gradient's)
        types |= {node.op for node in function.cached_definition.node_def}
    return types


def test_the_layer_trains_through_the_kernel_on_a_cpu_and_not_under_xla_compilation(ops):
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    layer = LSTM(5)
    layer.build(x.shape)
    assert {"ForecasterLstmForward", "ForecasterLstmBackward"} <= _op_types(layer, x)
    # Inside an XLA-compiled function (Keras' jit_compile=True) the op would fail the compilation.
    assert not {"ForecasterLstmForward", "ForecasterLstmBackward"} & _op_types(layer, x, jit=True)
    assert not {"ForecasterLstmForward"} & _op_types(LSTM(5, dtype="float64"), x.astype("float64"))
    assert not {"ForecasterLstmForward"} & _op_types(LSTM(5, peephole=True), x)


@pytest.mark.parametrize("kernel", ["on", "off"])
@pytest.mark.parametrize("mask_kind", ["none", "left"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_the_layer_equals_keras_with_and_without_the_kernel(monkeypatch, kernel, mask_kind, go_backwards):
    """Keras' LSTM with the same weights, outputs, states and gradients, in whichever loops run."""
    monkeypatch.setenv("FORECASTER_CPU_KERNEL", "1" if kernel == "on" else "0")
    rng = np.random.default_rng(3)
    batch, steps, features, units = 67, 11, 3, 7  # 67 rows: two parts of the batch, one padded row
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    options = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    theirs = keras.layers.LSTM(units, **options)
    theirs.build(x.shape)
    theirs.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours = LSTM(units, **options)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    call = {"initial_state": [rng.normal(size=(batch, units)).astype("float32") for _ in range(2)]}
    if mask_kind == "left":
        lengths = rng.integers(1, steps + 1, size=batch)
        call["mask"] = np.arange(steps)[None, :] >= (steps - lengths)[:, None]
    out_t, grads_t = outputs_and_grads(theirs, x, **call)
    out_o, grads_o = outputs_and_grads(ours, x, **call)
    for a, b in zip(out_t + grads_t, out_o + grads_o):
        np.testing.assert_allclose(b, a, **TOL)
    uses_kernel = "ForecasterLstmForward" in _op_types(ours, x)
    assert uses_kernel == (kernel == "on")


@pytest.mark.slow
def test_the_other_products_give_the_same(monkeypatch):
    """The test above in a real process whose ops are built with the products this CPU does not take
    by default (Eigen's where ours are the default, ours where Eigen's are and the CPU has AVX2), under
    a name of its own in the kernel cache (built there once per machine, as a user's library is): both
    kinds are held to the XLA loops on whichever machine runs the suite."""
    other = "eigen" if cpu_kernel.products() == "avx2" else "avx2"
    if other == "avx2" and not {"avx2", "fma"} <= set(cpu_kernel._cpu_flags().split()):
        pytest.skip("this CPU has no AVX2 and FMA: Eigen's products are the only kind it runs")
    monkeypatch.setenv("FORECASTER_KERNEL_PRODUCTS", other)
    theirs = cpu_kernel.library_path()
    monkeypatch.delenv("FORECASTER_KERNEL_PRODUCTS")
    assert theirs != cpu_kernel.library_path(), "the other products would share the default library's name"
    env = {**os.environ, "FORECASTER_KERNEL_PRODUCTS": other, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    test = f"{Path(__file__).relative_to(ROOT)}::test_the_ops_give_what_the_xla_loops_give"
    # The shape with whole tiles and remainders of rows and columns and a two-pass reduction: every
    # path of the products (the library's build is most of this test's time).
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "tiles", test],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "8 passed" in done.stdout
    assert theirs.is_file(), "the other products were not built under their own name"


def test_a_products_choice_that_cannot_be_honoured_is_a_build_error(monkeypatch):
    monkeypatch.setenv("FORECASTER_KERNEL_PRODUCTS", "mkl")
    with pytest.raises(cpu_kernel.KernelBuildError, match="FORECASTER_KERNEL_PRODUCTS='mkl'"):
        cpu_kernel.build()
    monkeypatch.setenv("FORECASTER_KERNEL_PRODUCTS", "eigen")
    eigen = cpu_kernel.library_path()
    monkeypatch.delenv("FORECASTER_KERNEL_PRODUCTS")
    assert (cpu_kernel.library_path() == eigen) == (cpu_kernel.products() == "eigen")


def test_the_library_is_built_once_into_the_cache_and_found_there(ops, monkeypatch):
    path = cpu_kernel.library_path()
    assert path.is_file() and cpu_kernel.build() == path
    assert not list(path.parent.glob("*.tmp")), "a half-written library was left in the cache"
    # A different compiler, source or machine is a different library, never a stale one.
    monkeypatch.setenv("CXX", "clang++")
    assert cpu_kernel.library_path() != path


@pytest.mark.slow  # a process importing TensorFlow
def test_without_a_compiler_the_layer_warns_once_and_runs_its_xla_loops(tmp_path):
    """A real process with no usable compiler and an empty cache: same outputs, one warning, no error."""
    script = textwrap.dedent("""
        import numpy as np, keras
        from forecaster.layers import LSTM, cpu_kernel
        x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype("float32")
        theirs = keras.layers.LSTM(4)
        theirs.build(x.shape)
        ours = LSTM(4)
        ours.build(x.shape)
        ours.set_weights(theirs.get_weights())
        for _ in range(2):
            np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)
        assert cpu_kernel.ops() is None
        print("ok")
    """)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "FORECASTER_KERNEL_CACHE": str(tmp_path / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
    warnings = [line for line in done.stderr.splitlines() if "CPU kernel is not available" in line]
    assert len(warnings) == 1 and "no-such-compiler" in warnings[0]
    assert not list((tmp_path / "cache").glob("*.so"))


@pytest.mark.parametrize("cxx", ['"g++ -O2', "   "])
def test_a_cxx_that_names_no_command_is_a_build_error_not_a_crash(monkeypatch, cxx):
    """An unreadable ``$CXX`` ends in `KernelBuildError`, which the layer turns into its one warning and
    the XLA loops (the test above), not a ValueError or IndexError at the user's first call."""
    monkeypatch.setenv("CXX", cxx)
    with pytest.raises(cpu_kernel.KernelBuildError, match="CXX="):
        cpu_kernel.build()


_ALLOCATOR_PROBE = textwrap.dedent("""
    import os
    import tensorflow as tf
    import forecaster.layers  # after TensorFlow's import, as users write it, before its first op
    tf.reduce_sum(tf.ones([4, 4])).numpy()
    print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"], os.environ.get("TF_CPU_BFC_MEM_LIMIT_IN_MB", "-"))
""")


@pytest.mark.slow  # two processes importing TensorFlow
def test_the_layers_ask_for_tensorflows_pooling_allocator_unless_told_otherwise():
    """Real processes: importing the layers sets ``TF_CPU_ALLOCATOR_USE_BFC=1`` where it is unset, with
    the machine's memory as its limit instead of TensorFlow's 64 GB, and a user's ``0`` is kept. This is
    the contract; what the allocator saves (page faults a step) depends on the machine's C library and
    kernel and is measured by ``bench/bench_allocator.py``, not asserted here."""
    runs = {}
    for preset in (None, "0"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPU_")}
        env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}, **({} if preset is None else
                   {"TF_CPU_ALLOCATOR_USE_BFC": preset}))
        done = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[preset] = tuple(done.stdout.split())
    assert runs[None] == ("1", str(physical_memory_mb()))
    assert runs["0"] == ("0", "-")


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("FORECASTER_CPU_KERNEL", "0")
    assert cpu_kernel.ops() is None


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_on_a_cpu_runs_the_recurrence_in_float32(ops, policy):
    """Half-precision XLA loops are many times slower on a CPU: the loop runs in float32, through the
    kernel, and the layer still returns its compute dtype, close to the float32 layer's numbers."""
    x = np.random.default_rng(1).normal(size=(8, 9, 3)).astype("float32")
    ours = LSTM(5, dtype=policy, return_sequences=True)
    ours.build(x.shape)
    wide = LSTM(5, return_sequences=True)
    wide.build(x.shape)
    wide.set_weights(ours.get_weights())
    out = ours(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.removeprefix("mixed_")
    # Only the weights and the inputs are rounded to the compute dtype, and the result at the end.
    atol = 3e-2 if "bfloat" in policy else 3e-3
    np.testing.assert_allclose(np.asarray(out, "float32"), np.asarray(wide(x)), atol=atol)
    assert "ForecasterLstmForward" in _op_types(ours, x)


def test_the_ops_refuse_inputs_of_the_wrong_shape_before_reading_them(ops):
    steps, state = tf.zeros((4, 3, 2)), tf.zeros((3, 5))
    kernel, recurrent, bias = tf.zeros((2, 20)), tf.zeros((5, 20)), tf.zeros((20,))
    no_mask = tf.zeros((0,), tf.bool)
    flags = {"return_sequences": False, "zero_output_for_mask": False}
    with pytest.raises(tf.errors.InvalidArgumentError, match="states must be"):
        ops.forecaster_lstm_forward(steps, tf.zeros((2, 5)), state, kernel, recurrent, bias, no_mask, keep=True,
                                    **flags)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        ops.forecaster_lstm_forward(steps, state, state, kernel, recurrent, bias, tf.zeros((4, 2, 1), tf.bool),
                                    keep=True, **flags)
    _, _, _, _, *kept = ops.forecaster_lstm_forward(steps, state, state, kernel, recurrent, bias, no_mask,
                                                    keep=True, **flags)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be"):
        ops.forecaster_lstm_backward(steps, no_mask, kernel, recurrent, kept[0][:2], *kept[1:], state,
                                     tf.zeros((1, 3, 5)), state, state, has_bias=True, **flags)
