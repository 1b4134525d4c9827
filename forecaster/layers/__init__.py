"""Keras layers written here: the LSTM cell and the layer that runs it over a sequence."""

from forecaster.layers.lstm import LSTM
from forecaster.layers.lstm_cell import LSTMCell

__all__ = ["LSTM", "LSTMCell"]
