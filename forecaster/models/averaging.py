"""The weights a fit keeps: an exponential moving average of the training steps' weights instead of the
last step's (`WeightAverage`).

A network trained with a constant learning rate ends wherever the last mini-batches pushed it; which
batches those were is the seed's doing, and on M4 Hourly the seed alone moved validation OWA by 0.04
(docs/accuracy.md, "M4 Hourly, sixth session"). Averaging the weights of the last steps (Polyak
averaging, as stochastic weight averaging and Keras' ``use_ema`` do) smooths that noise out for the
cost of one multiply-add per weight and step. The average is what the epochs are scored on (the
validation loss early stopping watches) and what the fit keeps, so early stopping chooses among
averaged weights.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np


def momentum(span_epochs: float, steps_per_epoch: int) -> float:
    """The per-step momentum of an average whose span is ``span_epochs`` epochs of ``steps_per_epoch``
    steps (``1 - 1 / steps``; 0, no averaging, for a span of one step or less): the span is set in
    epochs so that a fit on few series averages as many epochs as a fit on many. Below 1 for every
    finite span: past 2**53 steps ``1 - 1 / steps`` rounds to 1, which `WeightAverage` refuses, so such a
    span takes the largest momentum below 1 (the average all but fixed where it starts)."""
    steps = float(span_epochs) * max(int(steps_per_epoch), 0)
    return 0.0 if steps <= 1.0 else min(1.0 - 1.0 / steps, math.nextafter(1.0, 0.0))


class WeightAverage(keras.callbacks.Callback):
    """Keeps an exponential moving average of the model's trainable weights over the training steps
    (``momentum`` per step) and puts it in the model for each epoch's validation and at the end of
    training; the steps themselves train the raw weights.

    The average starts from the weights the fit starts with where those are trained (``warm``: a warm
    start), else from the first epoch's end: random weights would otherwise weigh on a short fit's
    average (a third of it after one epoch at a span of one epoch), and a one-epoch fit from scratch
    keeps its last step's weights.

    Keras calls ``on_test_begin`` before the epoch's validation and ``on_epoch_begin`` before the next
    epoch's steps: the average goes in at the first and the raw weights come back at the second, so
    `keras.callbacks.EarlyStopping` (which reads the weights at the epoch's end) keeps and restores the
    best epoch's average. Deterministic: the same steps give the same average.
    """

    def __init__(self, momentum: float, warm: bool = False) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"the weight average's momentum must be in [0, 1), got {momentum}")
        self.momentum, self.warm = float(momentum), bool(warm)
        self._average: list[np.ndarray] | None = None
        self._raw: list[np.ndarray] | None = None

    def _variables(self) -> list[Any]:
        return list(self.model.trainable_variables)

    def _current(self) -> list[np.ndarray]:
        return [np.array(v.numpy(), dtype=np.float64) for v in self._variables()]

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._average = self._current() if self.warm else None
        self._raw = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._average is None:  # the first epoch of a fit from scratch: not averaged yet
            return
        m = self.momentum
        for avg, var in zip(self._average, self._variables()):
            avg *= m
            avg += (1.0 - m) * var.numpy()

    def _swap_in(self) -> None:
        """The average into the model, the raw weights kept aside (once per epoch); at the first
        epoch's end of a fit from scratch the average starts as the weights there."""
        if self._average is None:
            self._average = self._current()
        if self._raw is None:
            variables = self._variables()
            self._raw = [v.numpy() for v in variables]
            for var, avg in zip(variables, self._average):
                var.assign(avg.astype(var.dtype))

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._swap_in()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._swap_in()  # a fit without validation data: the average is still what the epoch ends with

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._raw is not None:
            for var, raw in zip(self._variables(), self._raw):
                var.assign(raw)
            self._raw = None
