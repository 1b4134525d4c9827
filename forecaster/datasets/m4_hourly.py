"""M4 Hourly: the demo and benchmark dataset that ships with the package.

Source: the hourly subset of the M4 forecasting competition (Makridakis, Spiliotis & Assimakopoulos,
2018/2020), as published by the organisers in their public repository
https://github.com/Mcompetitions/M4-methods, folder ``Dataset/`` (``Hourly-train.csv``,
``Hourly-test.csv``). ``data/`` holds unchanged gzip copies of both files (see ``data/README.md``):
414 series ``H1``...``H414`` of 700 or 960 hourly values, plus the 48-value hold-out of each.

The data carry no timestamps, so the loaders give each series a synthetic hourly index: every test
window starts at ``ANCHOR`` (2017-01-01 00:00), the training part of a series of length n covers the
n hours before it, ``ANCHOR - n h`` ... ``ANCHOR - 1 h``. Train and test are therefore contiguous, and
series of different lengths end together (the anchor is arbitrary: only the hourly spacing matters).
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

#: Competition protocol and the published Naive2 accuracy on this subset (for OWA).
M4_HOURLY: dict[str, int | float | str] = {
    "horizon": 48,
    "seasonality": 24,
    "freq": "h",
    "naive2_smape": 18.383,
    "naive2_mase": 2.395,
}

#: Start of every series' test window in the synthetic time index.
ANCHOR = pd.Timestamp("2017-01-01 00:00")

_ORIGINAL = {"train": "Hourly-train.csv", "test": "Hourly-test.csv"}
_PACKAGED = {"train": "m4_hourly_train.csv.gz", "test": "m4_hourly_test.csv.gz"}


class M4Arrays(NamedTuple):
    """The dataset as numpy arrays: ids in file order, train histories (varying lengths), test (n, 48)."""

    ids: list[str]
    train: list[np.ndarray]
    test: np.ndarray


def _read_bytes(split: str, data_dir: str | Path | None) -> tuple[bytes, str | None]:
    if data_dir is None:
        blob = resources.files("forecaster.datasets").joinpath("data", _PACKAGED[split]).read_bytes()
        return blob, "gzip"
    path = Path(data_dir) / _ORIGINAL[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: data_dir must hold the original M4 {_ORIGINAL[split]}")
    return path.read_bytes(), None


def load_m4_hourly_wide(
    data_dir: str | Path | None = None, split: Literal["train", "test"] = "train"
) -> pd.DataFrame:
    """One split in the original wide layout: index ``unique_id`` (file order), columns 0..L-1, NaN-padded.

    ``data_dir`` reads ``Hourly-train.csv``/``Hourly-test.csv`` from that directory instead of the
    packaged copy. Raises ValueError if a row has a gap (values must be contiguous, padding trailing).
    """
    if split not in _ORIGINAL:
        raise ValueError(f"split must be 'train' or 'test' here, got {split!r}")
    blob, compression = _read_bytes(split, data_dir)
    raw = pd.read_csv(io.BytesIO(blob), compression=compression, dtype={"V1": str})
    wide = raw.drop(columns="V1").astype(np.float64)
    wide.index = pd.Index(raw["V1"].astype(str), name="unique_id")
    wide.columns = pd.RangeIndex(wide.shape[1])
    if wide.index.has_duplicates:
        raise ValueError(f"duplicate series ids in M4 Hourly {split}")
    observed = wide.notna().to_numpy()
    lengths = observed.sum(axis=1)
    if not np.array_equal(observed, np.arange(wide.shape[1])[None, :] < lengths[:, None]):
        raise ValueError(f"M4 Hourly {split}: a series has missing values inside its history")
    return wide


def load_m4_hourly_arrays(data_dir: str | Path | None = None) -> M4Arrays:
    """Train histories and test targets as arrays, for vectorised metrics and baselines."""
    train = load_m4_hourly_wide(data_dir, "train")
    test = load_m4_hourly_wide(data_dir, "test")
    if not train.index.equals(test.index):
        raise ValueError("M4 Hourly train and test list different series")
    values = train.to_numpy()
    lengths = train.notna().to_numpy().sum(axis=1)
    histories = [values[i, : lengths[i]].copy() for i in range(len(values))]
    return M4Arrays(ids=list(train.index), train=histories, test=test.to_numpy())


def _to_long(wide: pd.DataFrame, start_hours: np.ndarray) -> pd.DataFrame:
    """Long rows of the observed cells; value j of series i is at ANCHOR + (start_hours[i] + j) h."""
    values = wide.to_numpy()
    mask = ~np.isnan(values)
    rows, cols = np.nonzero(mask)
    offsets = (start_hours[rows] + cols).astype("timedelta64[h]")
    return pd.DataFrame(
        {
            "unique_id": pd.array(wide.index.to_numpy()[rows], dtype="str"),
            "ds": pd.DatetimeIndex(ANCHOR.to_datetime64() + offsets).as_unit("ns"),
            "y": values[mask],
        }
    )


def load_m4_hourly(
    data_dir: str | Path | None = None, split: Literal["train", "test", "both"] = "train"
) -> pd.DataFrame:
    """M4 Hourly in long format: columns ``unique_id`` (str), ``ds`` (datetime64[ns]), ``y`` (float64).

    Rows are grouped by series in file order (H1, H2, ..., not sorted as strings) and ordered by time
    within a series. ``split="both"`` returns each series' training part followed by its 48 test
    values. Timestamps are synthetic (see the module docstring: test windows start at ``ANCHOR``).
    ``data_dir`` reads the original ``Hourly-train.csv``/``Hourly-test.csv`` from that directory.
    """
    if split not in ("train", "test", "both"):
        raise ValueError(f"split must be 'train', 'test' or 'both', got {split!r}")
    parts = []
    if split in ("train", "both"):
        train = load_m4_hourly_wide(data_dir, "train")
        parts.append(_to_long(train, -train.notna().to_numpy().sum(axis=1)))
    if split in ("test", "both"):
        test = load_m4_hourly_wide(data_dir, "test")
        parts.append(_to_long(test, np.zeros(len(test), dtype=np.int64)))
    if len(parts) == 1:
        return parts[0]
    order = {uid: i for i, uid in enumerate(train.index)}
    if set(test.index) != set(order):
        raise ValueError("M4 Hourly train and test list different series")
    both = pd.concat(parts, ignore_index=True)
    codes = both["unique_id"].map(order).to_numpy()
    return both.iloc[np.lexsort((both["ds"].to_numpy(), codes))].reset_index(drop=True)
