"""Datasets that ship with the package (currently M4 Hourly, the demo and benchmark set)."""

from forecaster.datasets.m4_hourly import (
    ANCHOR,
    M4_HOURLY,
    M4Arrays,
    load_m4_hourly,
    load_m4_hourly_arrays,
    load_m4_hourly_wide,
)

__all__ = [
    "ANCHOR",
    "M4_HOURLY",
    "M4Arrays",
    "load_m4_hourly",
    "load_m4_hourly_arrays",
    "load_m4_hourly_wide",
]
