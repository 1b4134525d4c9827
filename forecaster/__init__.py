"""forecaster: time-series forecasting built around an LSTM cell written here."""

from forecaster import quiet as _quiet

__version__ = "0.1.0"

_quiet.install()
