"""forecaster: time-series forecasting built around an LSTM cell written here."""

__version__ = "0.1.0"
