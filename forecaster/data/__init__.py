"""Data layer: reading frames, validating them, frequencies, calendar features, scaling and windows.

The window utilities (``forecaster.data.windows``) import TensorFlow, so they are loaded on first use
rather than with this package.
"""

from __future__ import annotations

import importlib
from typing import Any

from forecaster.data.calendar import calendar_feature_names, calendar_features
from forecaster.data.frequency import future_index, infer_frequency, normalize_frequency, seasonal_period
from forecaster.data.io import read_frame, write_frame_atomic
from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import OBSERVED, Columns
from forecaster.data.validation import ValidatedFrame, validate_frame

_LAZY = {
    "CovariateStats", "SeriesArrays", "build_feature_arrays", "future_features", "last_windows",
    "make_window_dataset", "window_index",
}

__all__ = [
    "OBSERVED",
    "Columns",
    "CovariateStats",
    "SeriesArrays",
    "SeriesScaler",
    "ValidatedFrame",
    "build_feature_arrays",
    "calendar_feature_names",
    "calendar_features",
    "future_features",
    "future_index",
    "infer_frequency",
    "last_windows",
    "make_window_dataset",
    "normalize_frequency",
    "read_frame",
    "seasonal_period",
    "validate_frame",
    "window_index",
    "write_frame_atomic",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("forecaster.data.windows"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
