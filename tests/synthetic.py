"""Small real-looking data for pipeline tests: hourly series with a daily cycle, trend and noise."""

from __future__ import annotations

import numpy as np
import pandas as pd


def hourly_frame(n_series: int = 6, length: int = 240, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """A long frame (unique_id, ds, y) of ``n_series`` hourly series of ``length`` points."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    parts = []
    for s in range(n_series):
        level = rng.uniform(50, 500)
        daily = level * 0.3 * np.sin(2 * np.pi * (t + rng.integers(24)) / 24)
        y = level + daily + level * 0.001 * t + rng.normal(scale=level * 0.03, size=length)
        parts.append(pd.DataFrame({"unique_id": f"S{s}", "ds": pd.date_range(start, periods=length, freq="h"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True)
