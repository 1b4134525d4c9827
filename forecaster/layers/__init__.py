"""Keras layers written here: the LSTM cell and the layer that runs it over a sequence.

Importing them asks TensorFlow for its pooling (BFC) CPU allocator, unless ``TF_CPU_ALLOCATOR_USE_BFC``
is already set (``0`` keeps TensorFlow's default). A training step keeps T x B x 7 units floats for its
gradient (44 MB a core's part at 168 steps, 128 units); glibc serves blocks over 32 MB with a fresh
``mmap`` each time: ~22,000 page faults a training step at that shape, and the step's two parts
15-19 % slower than with the pooling allocator (`docs/benchmarks.md`, "The AMD EPYC machine").
TensorFlow reads the variable when it makes its CPU allocator, at its first op, so this works wherever
no TensorFlow op has run yet.
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")

from forecaster.layers.lstm import LSTM
from forecaster.layers.lstm_cell import LSTMCell

__all__ = ["LSTM", "LSTMCell"]
