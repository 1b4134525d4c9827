"""Rolling-origin backtest windows and the time-ordered validation split, for panels of series.

All indices are positions in each series' own history (0 = first observation), half-open, so
``y[:train_end]`` is what a model may see and ``y[train_end:test_end]`` is what it must forecast.
Windows are aligned on the *end* of each series, so series of different lengths are backtested over
their own last observations: window k (k = 0 .. n_windows-1) of a series of length n uses

    train_end = n - horizon - (n_windows - 1 - k) * step,    test_end = train_end + horizon,

and the last window (k = n_windows - 1) forecasts exactly the last ``horizon`` observations.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

import pandas as pd

__all__ = [
    "Backtest",
    "ValidationCutoffs",
    "backtest_windows",
    "rolling_origin_cutoffs",
    "time_ordered_validation_cutoff",
]

Lengths = Mapping[Hashable, int] | pd.Series


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _lengths(lengths: Lengths) -> dict[Hashable, int]:
    items = lengths.items()
    out = {}
    for sid, n in items:
        if int(n) != n or n < 0:
            raise ValueError(f"length of series {sid!r} must be a non-negative integer, got {n!r}")
        out[sid] = int(n)
    return out


def rolling_origin_cutoffs(lengths: Lengths, horizon: int, n_windows: int, step: int) -> list[int]:
    """Cutoff of each window as the number of steps before the end of a series (same for every series).

    Element k is ``horizon + (n_windows - 1 - k) * step``: window k trains on ``y[:n - cutoff_k]``
    and forecasts the ``horizon`` points after it, so the last element is ``horizon``. ``lengths``
    only guards against a plan no series can run: ValueError if even the longest series would have
    no training point in the first window (use `backtest_windows` for per-series feasibility).
    """
    _check_positive(horizon=horizon, n_windows=n_windows, step=step)
    cutoffs = [horizon + (n_windows - 1 - k) * step for k in range(n_windows)]
    sizes = _lengths(lengths)
    if sizes and max(sizes.values()) <= cutoffs[0]:
        raise ValueError(
            f"the longest series ({max(sizes.values())} points) leaves no history for the first window, "
            f"which needs more than {cutoffs[0]} points"
        )
    return cutoffs


class Backtest(NamedTuple):
    """`backtest_windows` result.

    windows: one dict per window k, series id -> (train_end, test_end) (exclusive indices), holding
        only the series long enough for that window.
    skipped: one row per (window, series) left out, columns window, unique_id, length, required
        (the minimum length that window needs: min_train + cutoff). Empty when nothing was skipped.
    """

    windows: list[dict[Hashable, tuple[int, int]]]
    skipped: pd.DataFrame


def backtest_windows(
    lengths: Lengths, horizon: int, n_windows: int, step: int, min_train: int = 1
) -> Backtest:
    """Per-series (train_end, test_end) of every rolling-origin window, end-aligned (see module docs).

    A series takes part in window k only if its training part has at least ``min_train`` points,
    i.e. ``n >= min_train + horizon + (n_windows - 1 - k) * step``; the others are listed in
    ``skipped`` (never dropped silently), so short series may join only the later windows.
    """
    _check_positive(horizon=horizon, n_windows=n_windows, step=step, min_train=min_train)
    sizes = _lengths(lengths)
    cutoffs = [horizon + (n_windows - 1 - k) * step for k in range(n_windows)]
    windows: list[dict[Hashable, tuple[int, int]]] = []
    skipped = []
    for k, cutoff in enumerate(cutoffs):
        window = {}
        for sid, n in sizes.items():
            train_end = n - cutoff
            if train_end >= min_train:
                window[sid] = (train_end, train_end + horizon)
            else:
                skipped.append((k, sid, n, min_train + cutoff))
        windows.append(window)
    report = pd.DataFrame(skipped, columns=["window", "unique_id", "length", "required"])
    return Backtest(windows=windows, skipped=report)


class ValidationCutoffs(NamedTuple):
    """`time_ordered_validation_cutoff` result: per-series cutoffs, and the series too short for one."""

    cutoffs: dict[Hashable, int]
    too_short: list[Hashable]


def time_ordered_validation_cutoff(
    lengths: Lengths, horizon: int, val_windows: int, min_train: int = 1
) -> ValidationCutoffs:
    """Where each series' training part ends when the last points are held out for early stopping.

    Validation uses ``val_windows`` forecast origins one step apart at the end of the series, the
    last one forecasting the final ``horizon`` points. Together their targets cover the last
    ``horizon + val_windows - 1`` points, so

        cutoff = n - horizon - val_windows + 1.

    Training windows must take their *targets* from ``y[:cutoff]`` only; validation origins are
    cutoff, cutoff + 1, ..., n - horizon (inputs may reach back before the cutoff, targets never
    leak into training). A series with ``cutoff < min_train`` is listed in ``too_short`` instead
    (the caller decides whether to train on it without validation or drop it).
    """
    _check_positive(horizon=horizon, val_windows=val_windows, min_train=min_train)
    held_out = horizon + val_windows - 1
    cutoffs: dict[Hashable, int] = {}
    too_short: list[Hashable] = []
    for sid, n in _lengths(lengths).items():
        if n - held_out >= min_train:
            cutoffs[sid] = n - held_out
        else:
            too_short.append(sid)
    return ValidationCutoffs(cutoffs=cutoffs, too_short=too_short)
