"""Keras layers written here: the LSTM cell and the layer that runs it over a sequence.

Importing them asks TensorFlow for its pooling (BFC) CPU allocator, unless ``TF_CPU_ALLOCATOR_USE_BFC``
is already set (``0`` keeps TensorFlow's default). A training step keeps T x B x 7 units floats for its
gradient (44 MB a core's part at 168 steps, 128 units); glibc serves blocks over 32 MB with a fresh
``mmap`` each time: ~22,000 page faults a training step at that shape, and the step's two parts
15-19 % slower than with the pooling allocator (`docs/benchmarks.md`, "The AMD EPYC machine").
TensorFlow reads the variable when it makes its CPU allocator, at its first op, so this works wherever
no TensorFlow op has run yet. That allocator stops at 64 GB unless ``TF_CPU_BFC_MEM_LIMIT_IN_MB`` says
otherwise, where the system's would not: when it is asked for here, its limit is the machine's memory
(unless that variable is set too).
"""

import os


def _physical_memory_mb() -> int | None:
    """This machine's memory in MB, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (AttributeError, OSError, ValueError):
        return None


if "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ:
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "1"
    if (_memory := _physical_memory_mb()) is not None:
        os.environ.setdefault("TF_CPU_BFC_MEM_LIMIT_IN_MB", str(_memory))

from forecaster.layers.lstm import LSTM  # noqa: E402  (after the allocator choice, before any op)
from forecaster.layers.lstm_cell import LSTMCell  # noqa: E402

__all__ = ["LSTM", "LSTMCell"]
