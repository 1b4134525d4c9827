"""Keras layers written here: the LSTM cell and the layer that runs it over a sequence.

Importing them asks TensorFlow for its pooling (BFC) CPU allocator, unless ``TF_CPU_ALLOCATOR_USE_BFC``
is already set (``0`` keeps TensorFlow's default). A training step keeps 7 x units floats a row and
timestep for its gradient, the largest buffer 4 x units (44 MB a core's part at 168 steps, 128 units);
glibc serves blocks over 32 MB with a fresh ``mmap`` each time: ~22,000 page faults a training step at
that shape (`docs/benchmarks.md`, "The AMD EPYC machine"). TensorFlow reads the variable when it makes
its CPU allocator, at its first op, so this works wherever no TensorFlow op has run yet. That
allocator stops at 64 GB unless ``TF_CPU_BFC_MEM_LIMIT_IN_MB`` says otherwise, where the system's
would not: when it is asked for here, its limit is the machine's memory (unless that variable is set).
"""

import os


def physical_memory_mb() -> int | None:
    """This machine's memory in MB, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (AttributeError, OSError, ValueError):
        return None


def _ask_for_the_pooling_allocator() -> None:
    if "TF_CPU_ALLOCATOR_USE_BFC" in os.environ:
        return
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "1"
    memory = physical_memory_mb()
    if memory is not None:
        os.environ.setdefault("TF_CPU_BFC_MEM_LIMIT_IN_MB", str(memory))


_ask_for_the_pooling_allocator()

from forecaster.layers.lstm import LSTM  # noqa: E402  (after the allocator choice, before any op)
from forecaster.layers.lstm_cell import LSTMCell  # noqa: E402

__all__ = ["LSTM", "LSTMCell"]
