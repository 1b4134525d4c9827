"""Model inputs: per-series feature arrays, streamed training windows and inference windows.

Feature layout (float32):

* ``past``   (n, P): ``[y_scaled, observed, <calendar...>, <past_only...>, <known_future...>]``
* ``future`` (n, K): ``[<calendar...>, <known_future...>]`` - the same timestamps as ``past``; the
  horizon part of a window reads these rows;
* ``static`` (S,):   ``[<static...>]``.

Calendar features come from :func:`forecaster.data.calendar.calendar_features`.  Covariates (static,
past-only and known-future) are standardised globally - one mean and standard deviation per column
over the training rows (statics: over training series) - and not per series; the statistics are kept
as plain numbers in :class:`CovariateStats` so prediction applies exactly the same transform.  Under
the "mask" policy, masked targets are 0.0 in ``y_scaled`` (not ``-center/scale``).

A training window ending at step ``e`` of a series reads past rows ``e-L+1 .. e`` and target/future
rows ``e+1 .. e+H``.  Windows need a full input (``e >= L-1``), except in a series too short for any
full window, whose windows start at ``e >= 0`` with the missing steps left-padded by zeros (hence
``observed`` = 0).  Inference windows are left-padded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from forecaster.data.calendar import calendar_features
from forecaster.data.frequency import future_index
from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import OBSERVED, Columns
from forecaster.data.validation import ValidatedFrame
from forecaster.errors import ConfigError, CovariateError, DataError, ShortHistoryError


@dataclass
class CovariateStats:
    """Global mean and standard deviation of each covariate column, as plain floats."""

    names: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, names: list[str]) -> CovariateStats:
        """Statistics of ``values`` (rows, len(names)); zero or undefined spreads become 1.0."""
        if not names:
            return cls([], [], [])
        values = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
        if len(values) == 0:
            return cls(list(names), [0.0] * len(names), [1.0] * len(names))
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12 * np.maximum(np.abs(mean), 1.0)), std, 1.0)
        return cls(list(names), [float(m) for m in mean], [float(s) for s in std])

    def apply(self, values: np.ndarray, names: list[str]) -> np.ndarray:
        """Standardise columns ``names`` of ``values`` (every name must have statistics)."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ConfigError(f"no covariate statistics for {unknown}")
        where = [self.names.index(n) for n in names]
        mean = np.asarray(self.mean, dtype=np.float64)[where]
        std = np.asarray(self.std, dtype=np.float64)[where]
        return (np.asarray(values, dtype=np.float64) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CovariateStats:
        """Inverse of :meth:`to_dict`."""
        return cls(list(data["names"]), [float(v) for v in data["mean"]], [float(v) for v in data["std"]])


@dataclass
class SeriesArrays:
    """Features of every series, stored flat (series after series) with per-series views.

    Rows of series ``ids[s]`` are ``offsets[s]:offsets[s+1]`` of the flat arrays; the dict properties
    (``past``, ``future_feats``, ``static``, ``target``, ``weight``) give per-series views without
    copying.
    """

    ids: list[str]
    offsets: np.ndarray
    past_flat: np.ndarray
    future_flat: np.ndarray
    static_matrix: np.ndarray
    time_index: pd.DatetimeIndex
    past_names: list[str]
    future_names: list[str]
    static_names: list[str]
    stats: CovariateStats
    freq: str
    horizon: int
    columns: Columns = field(default_factory=Columns)

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {sid: flat[self.offsets[s] : self.offsets[s + 1]] for s, sid in enumerate(self.ids)}

    @cached_property
    def times(self) -> dict[str, pd.DatetimeIndex]:
        """Per series timestamps (built on first use: a slice per series is costly at many series)."""
        return {sid: self.time_index[self.offsets[s] : self.offsets[s + 1]] for s, sid in enumerate(self.ids)}

    @property
    def last_times(self) -> pd.DatetimeIndex:
        """Each series' last timestamp, in ``ids`` order."""
        return self.time_index[self.offsets[1:] - 1]

    @cached_property
    def past(self) -> dict[str, np.ndarray]:
        """Per series (n, P) past features."""
        return self._views(self.past_flat)

    @cached_property
    def future_feats(self) -> dict[str, np.ndarray]:
        """Per series (n, K) future features."""
        return self._views(self.future_flat)

    @cached_property
    def target(self) -> dict[str, np.ndarray]:
        """Per series (n,) scaled target (the first past column)."""
        return self._views(self.past_flat[:, 0])

    @cached_property
    def weight(self) -> dict[str, np.ndarray]:
        """Per series (n,) observed weights (the second past column)."""
        return self._views(self.past_flat[:, 1])

    @cached_property
    def static(self) -> dict[str, np.ndarray]:
        """Per series (S,) standardised static covariates."""
        return {sid: self.static_matrix[s] for s, sid in enumerate(self.ids)}

    @property
    def lengths(self) -> np.ndarray:
        """Number of rows of each series."""
        return np.diff(self.offsets)


def _until_mask(frame: pd.DataFrame, columns: Columns, until: Any) -> np.ndarray:
    if until is None:
        return np.ones(len(frame), dtype=bool)
    times = frame[columns.time].reset_index(drop=True)
    if isinstance(until, dict):
        limits = pd.to_datetime(frame[columns.id].reset_index(drop=True).map({str(k): v for k, v in until.items()}))
        if limits.isna().any():
            raise ConfigError("`until` must give a cutoff for every series")
        return (times <= limits).to_numpy()
    return (times <= pd.Timestamp(until)).to_numpy()


def build_feature_arrays(
    vframe: ValidatedFrame,
    scaler: SeriesScaler,
    horizon: int,
    stats: CovariateStats | None = None,
    until: pd.Timestamp | dict[str, pd.Timestamp] | None = None,
) -> SeriesArrays:
    """Feature arrays of every series of ``vframe`` (layout in the module doc).

    ``scaler`` must know every series.  Covariate statistics are fitted on rows with time <= ``until``
    unless ``stats`` (from training) is given, as at prediction time.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    cols = vframe.columns
    frame = vframe.frame
    # Factorized as a Series (pandas' string routines), and scaled per series, not per row's id.
    codes, labels = pd.factorize(frame[cols.id].astype(str), sort=False)
    ids = [str(x) for x in labels]
    offsets = np.searchsorted(codes, np.arange(len(ids) + 1))
    if not (np.diff(codes) >= 0).all():
        raise DataError("frame is not grouped by series; pass the frame returned by validate_frame")

    observed = frame[OBSERVED].to_numpy(dtype=np.float64)
    center, scale = scaler.series_params(ids)
    lengths = np.diff(offsets)
    y_scaled = (frame[cols.target].to_numpy(dtype=np.float64) - np.repeat(center, lengths)) / np.repeat(scale, lengths)
    if vframe.missing_policy == "mask":
        y_scaled = np.where(observed == 1.0, y_scaled, 0.0)

    calendar, calendar_names = calendar_features(frame[cols.time], vframe.freq)
    dynamic_names = [*cols.past_only, *cols.known_future]
    if stats is None:
        train = _until_mask(frame, cols, until)
        first_rows = offsets[:-1]
        static_train = frame[list(cols.static)].to_numpy(dtype=np.float64)[first_rows][train[first_rows]]
        static_stats = CovariateStats.fit(static_train, list(cols.static))
        dyn_stats = CovariateStats.fit(frame.loc[train, dynamic_names].to_numpy(np.float64), dynamic_names)
        stats = CovariateStats(
            static_stats.names + dyn_stats.names, static_stats.mean + dyn_stats.mean,
            static_stats.std + dyn_stats.std,
        )
    past_only = stats.apply(frame[list(cols.past_only)].to_numpy(np.float64), list(cols.past_only))
    known = stats.apply(frame[list(cols.known_future)].to_numpy(np.float64), list(cols.known_future))
    static = stats.apply(
        frame[list(cols.static)].to_numpy(np.float64)[offsets[:-1]], list(cols.static)
    ).reshape(len(ids), len(cols.static))

    past_flat = np.column_stack([y_scaled, observed, calendar, past_only, known]).astype(np.float32)
    future_flat = np.column_stack([calendar, known]).reshape(len(frame), -1).astype(np.float32)
    times_index = pd.DatetimeIndex(frame[cols.time])
    return SeriesArrays(
        ids=ids,
        offsets=offsets.astype(np.int64),
        past_flat=past_flat,
        future_flat=future_flat,
        static_matrix=static.astype(np.float32),
        time_index=times_index,
        past_names=["y_scaled", OBSERVED, *calendar_names, *cols.past_only, *cols.known_future],
        future_names=[*calendar_names, *cols.known_future],
        static_names=list(cols.static),
        stats=stats,
        freq=vframe.freq,
        horizon=horizon,
        columns=cols,
    )


def _per_series_index(arrays: SeriesArrays, values: dict | None, default: int, name: str) -> np.ndarray:
    """Per-series step index from a dict of ints or timestamps (timestamp -> last step <= it)."""
    if values is None:
        return np.full(len(arrays.ids), default, dtype=np.int64)
    absent = [sid for sid in arrays.ids if sid not in {str(k) for k in values}]
    if absent:
        raise ConfigError(f"`{name}` has no entry for series {absent[:5]} ({len(absent)} in all)")
    lookup = {str(k): v for k, v in values.items()}
    out = np.empty(len(arrays.ids), dtype=np.int64)
    for s, sid in enumerate(arrays.ids):
        value = lookup[sid]
        if isinstance(value, (int, np.integer)):
            out[s] = int(value)
        else:
            out[s] = int(arrays.times[sid].searchsorted(pd.Timestamp(value), side="right")) - 1
    return out


def window_ends(usable: Any, input_size: int, horizon: int, min_context: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and last end step ``e`` of the training windows of series with ``usable`` steps (before
    the cutoff): full windows only, unless a series is too short for any, then left-padded ones with at
    least ``min_context`` real steps.  The one statement of which windows a series gives: the window
    index reads it, and so does the training budget (`forecaster.defaults.windows_available`)."""
    usable = np.asarray(usable)
    e_max = usable - horizon - 1
    e_min = np.where(usable >= input_size + horizon, input_size - 1, max(min(min_context, input_size), 1) - 1)
    return e_min, e_max


def window_index(
    arrays: SeriesArrays,
    input_size: int,
    horizon: int,
    cutoff: dict | None = None,
    start_after: dict | None = None,
    seed: int = 0,
    max_windows_per_series: int | None = None,
    stride: int = 1,
    min_context: int = 1,
) -> np.ndarray:
    """Table of training windows, one row ``(flat offset of series, end step e, series number)``.

    A window's targets are steps ``e+1 .. e+H``; the last must be <= ``cutoff[id]`` (a step index or
    a timestamp; no cutoff: the series end) and the first > ``start_after[id]`` when given (validation
    windows after a training cutoff).  Windows whose targets are all unobserved are left out.  With
    ``stride`` > 1 windows are taken every ``stride`` steps back from the latest one;
    ``max_windows_per_series`` keeps a random (``seed``) subset per series.  Series shorter than
    ``input_size + horizon`` give left-padded windows with at least ``min_context`` real steps.
    Sorted by (series, e).
    """
    if input_size < 1 or horizon < 1 or stride < 1:
        raise ConfigError("input_size, horizon and stride must be >= 1")
    lengths = arrays.lengths
    limit = np.minimum(_per_series_index(arrays, cutoff, 1 << 62, "cutoff"), lengths - 1)
    e_min, e_max = window_ends(limit + 1, input_size, horizon, min_context)
    if start_after is not None:
        e_min = np.maximum(e_min, _per_series_index(arrays, start_after, -1, "start_after"))
    count = np.where(e_max >= e_min, (e_max - e_min) // stride + 1, 0)
    series = np.repeat(np.arange(len(lengths)), count)
    first = np.concatenate([[0], np.cumsum(count)])[:-1]
    end = e_max[series] - (np.arange(len(series)) - np.repeat(first, count)) * stride
    offset = arrays.offsets[series]

    weights = np.concatenate([[0.0], np.cumsum(arrays.past_flat[:, 1], dtype=np.float64)])
    observed = weights[offset + end + 1 + horizon] - weights[offset + end + 1]
    keep = observed > 0
    series, end, offset = series[keep], end[keep], offset[keep]

    if max_windows_per_series is not None:
        keys = np.random.default_rng(seed).random(len(series))
        order = np.lexsort((keys, series))
        starts = np.searchsorted(series[order], series[order], side="left")
        chosen = order[np.arange(len(order)) - starts < max_windows_per_series]
        series, end, offset = series[chosen], end[chosen], offset[chosen]
    order = np.lexsort((end, series))
    return np.stack([offset[order], end[order], series[order]], axis=1).astype(np.int64)


def make_window_dataset(
    arrays: SeriesArrays,
    input_size: int,
    horizon: int,
    batch_size: int,
    cutoff: dict | None = None,
    shuffle: bool = True,
    seed: int = 0,
    max_windows_per_series: int | None = None,
    stride: int = 1,
    start_after: dict | None = None,
    min_context: int = 1,
) -> tf.data.Dataset:
    """Stream batches ``({"past", "future", "static"}, target, sample_weight)`` of training windows.

    Shapes: past (B, L, P), future (B, H, K), static (B, S), target and sample_weight (B, H).  Only the
    flat feature arrays and the small window table (:func:`window_index`) are held in memory; windows
    are gathered batch by batch.  The order is deterministic for a given ``seed``.
    """
    table = window_index(arrays, input_size, horizon, cutoff, start_after, seed, max_windows_per_series, stride,
                         min_context)
    if len(table) == 0:
        raise ShortHistoryError(
            f"no training window fits: series are too short for input_size={input_size} and "
            f"horizon={horizon} (or have no observed target) before the cutoff",
        )
    past = tf.constant(arrays.past_flat)
    future = tf.constant(arrays.future_flat)
    static = tf.constant(arrays.static_matrix)
    past_steps = tf.range(input_size, dtype=tf.int64) - (input_size - 1)
    target_steps = tf.range(1, horizon + 1, dtype=tf.int64)

    def gather(rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        offset, end = rows[:, 0:1], rows[:, 1:2]
        local = end + past_steps
        valid = tf.cast(local >= 0, tf.float32)[..., None]
        past_rows = tf.gather(past, offset + tf.maximum(local, 0)) * valid
        ahead = offset + end + target_steps
        ahead_past = tf.gather(past, ahead)
        inputs = {
            "past": past_rows,
            "future": tf.gather(future, ahead),
            "static": tf.gather(static, rows[:, 2]),
        }
        return inputs, ahead_past[..., 0], ahead_past[..., 1]

    dataset = tf.data.Dataset.from_tensor_slices(table)
    if shuffle:
        dataset = dataset.shuffle(len(table), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def future_calendar(times: pd.DatetimeIndex, freq: str, horizon: int) -> np.ndarray:
    """(N, H, K) calendar features of ``N * horizon`` future timestamps, series after series (on each
    series' local clock), as `future_features` computes them from a dict of per-series indexes."""
    wall = times.tz_localize(None) if times.tz is not None else times
    calendar, _ = calendar_features(wall, freq)
    return calendar.reshape(len(times) // horizon if horizon else 0, horizon, -1)


def future_features(
    source: pd.DataFrame | dict[str, pd.DatetimeIndex],
    freq: str,
    columns: Columns,
    stats: CovariateStats,
) -> dict[str, np.ndarray]:
    """Per series (H, K) future features ``[calendar..., known_future...]`` for the forecast horizon.

    ``source`` is ``ValidatedFrame.future`` (id, time, known-future columns) or, when there are no
    known-future columns, a dict of future timestamps per series (e.g. from ``future_index``).
    """
    if isinstance(source, dict):
        if columns.known_future:
            raise CovariateError(
                "known-future covariates need their future values; pass the validated future frame",
                column=", ".join(columns.known_future),
            )
        if not source:
            return {}
        # One calendar computation over every series' timestamps, then split: per-series calls cost
        # more in pandas overhead than in arithmetic.
        sids = [str(sid) for sid in source]
        sizes = np.array([len(times) for times in source.values()])
        wall = [pd.DatetimeIndex(t) for t in source.values()]
        wall = [t.tz_localize(None) if t.tz is not None else t for t in wall]  # local clock time, as per series
        calendar, _ = calendar_features(pd.DatetimeIndex(np.concatenate([t.to_numpy() for t in wall])), freq)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return {sid: calendar[bounds[s] : bounds[s + 1]] for s, sid in enumerate(sids)}
    frame = source.sort_values([columns.id, columns.time], kind="stable")
    calendar, _ = calendar_features(frame[columns.time], freq)
    known = stats.apply(frame[list(columns.known_future)].to_numpy(np.float64), list(columns.known_future))
    flat = np.column_stack([calendar, known.reshape(len(frame), -1)]).astype(np.float32)
    codes, labels = pd.factorize(frame[columns.id].astype(str).to_numpy(), sort=False)
    bounds = np.searchsorted(codes, np.arange(len(labels) + 1))
    return {str(sid): flat[bounds[s] : bounds[s + 1]] for s, sid in enumerate(labels)}


def last_windows(
    arrays: SeriesArrays,
    input_size: int,
    horizon: int,
    future_feats: dict[str, np.ndarray] | np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Inference inputs: the last ``input_size`` steps of every series and its horizon features.

    ``future_feats``: per series (H, K) arrays, or one (N, H, K) array in ``arrays.ids`` order.

    Returns ``({"past": (N, L, P), "future": (N, H, K), "static": (N, S)}, ids)``.  Short series are
    left-padded with zeros.  Without ``future_feats`` the horizon gets calendar features only, which
    is allowed only when there are no known-future covariates.
    """
    if future_feats is None:
        upcoming = {sid: future_index(arrays.times[sid][-1], arrays.freq, horizon) for sid in arrays.ids}
        future_feats = future_features(upcoming, arrays.freq, arrays.columns, arrays.stats)
    ends = arrays.offsets[1:] - 1
    local = np.arange(input_size) - (input_size - 1)
    rows = ends[:, None] + local[None, :]
    valid = rows >= arrays.offsets[:-1, None]
    past = arrays.past_flat[np.where(valid, rows, 0)] * valid[..., None]
    width = len(arrays.future_names)
    if isinstance(future_feats, np.ndarray):  # (N, H, K) in ``arrays.ids`` order
        if future_feats.shape != (len(arrays.ids), horizon, width):
            raise CovariateError(f"future features must have shape ({len(arrays.ids)}, {horizon}, {width}); "
                                 f"got {future_feats.shape}")
        inputs = {"past": past.astype(np.float32), "future": future_feats.astype(np.float32, copy=False),
                  "static": arrays.static_matrix.copy()}
        return inputs, list(arrays.ids)
    missing = [sid for sid in arrays.ids if sid not in future_feats]
    if missing:
        raise CovariateError("no future features for some series", series=missing)
    wrong = [sid for sid in arrays.ids if np.shape(future_feats[sid]) != (horizon, width)]
    if wrong:
        raise CovariateError(
            f"future features must have shape ({horizon}, {width}); got "
            f"{np.shape(future_feats[wrong[0]])} for {wrong[0]}",
            series=wrong,
        )
    future = np.stack([np.asarray(future_feats[sid], dtype=np.float32) for sid in arrays.ids]) if arrays.ids \
        else np.zeros((0, horizon, width), np.float32)
    inputs = {"past": past.astype(np.float32), "future": future, "static": arrays.static_matrix.copy()}
    return inputs, list(arrays.ids)
