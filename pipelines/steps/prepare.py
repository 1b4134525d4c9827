"""Prepare: read the configured source, validate it and cut it at the as-of time."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecaster.config import ModelConfig
from forecaster.contract import (
    LSTM,
    MODEL_COLUMN,
)
from forecaster.data import splits
from forecaster.data.frequency import seasonal_period
from forecaster.data.io import read_frame
from forecaster.data.schema import Columns, observed_rows
from forecaster.data.validation import ValidatedFrame, validate_frame
from forecaster.errors import ConfigError, DataError, MissingColumnError
from forecaster.evaluation.backtest import BacktestResult
from forecaster.models.combination import series_histories

if TYPE_CHECKING:  # the network's module imports TensorFlow: a data-only command need not
    from forecaster.forecaster import LSTMForecaster

log = logging.getLogger("forecaster.steps")


@dataclass
class Prepared:
    """A config's data, validated: what fit, backtest, promotion and monitoring read."""

    config: ModelConfig
    raw: pd.DataFrame  # the input rows used (cut at the as-of, if any): what a forecast reads
    vframe: ValidatedFrame
    season: int
    step: int  # the backtest's origin spacing
    #: Series whose data ended more than a horizon before the as-of (`prepare` with an as-of): forecast
    #: from their own last time, every step would lie at or before the as-of.
    ended: list[str] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return self.vframe.frame

    @property
    def columns(self) -> Columns:
        return self.config.data.columns()

    @cached_property
    def too_short(self) -> dict[str, Any]:
        """Which series are too short for what, by the rules the forecaster and the backtest apply
        (counts, and up to 1,000 ids of each): written to ``data_report.json`` and printed; computed once."""
        c, h = self.columns, self.config.horizon
        model = make_forecaster(self.config, verbose=0)
        size = self.frame.groupby(c.id, sort=True).size()
        rules = model.series_rules(self.vframe.freq, size.to_numpy())
        need, window, lengths = rules.min_history, rules.input_size, size.to_numpy()
        # The fallback counts readings, as prediction's validation does: a blank (filled or masked) is none.
        readings = pd.Series(observed_rows(self.frame, c.target)).groupby(self.frame[c.id].to_numpy(), sort=True).sum()
        networks = rules.forecast_by_network(readings.loc[size.index].to_numpy())
        rules = {
            "fallback": (~networks,
                         f"fewer than min_history = {need} observed readings: seasonal naive at prediction"),
            "not_trained": (~rules.trainable(lengths), f"fewer than min_history + horizon = {need + h} steps: no "
                                                      "training window"),
            "not_backtested": (~splits.has_cutoff(lengths, h), f"fewer than horizon + 1 = {h + 1} steps: "
                                                               "cannot be scored"),
            "padded": (rules.padded(lengths), f"shorter than input_size + 2 horizons = {window + 2 * h} steps: "
                                              "trained on left-padded, masked windows"),
            # Those the fallback takes for their one value alone: a short one is counted once, above.
            "constant": (networks & size.index.isin(self.vframe.constant_series),
                         "enough observed readings, all of one value: forecast as that value (seasonal naive) at "
                         "prediction"),
        }
        out: dict[str, Any] = {"min_history": need, "input_size": window, "n_series": len(size)}
        for key, (mask, rule) in rules.items():
            ids = [str(i) for i in size.index[mask]]
            out[key] = {"count": len(ids), "rule": rule, "series": ids[:1000]}
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Series count, rows, time range and a content hash of the data used."""
        c, frame = self.columns, self.frame
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        return {"data.n_series": int(frame[c.id].nunique()), "data.n_rows": len(frame),
                "data.start": str(frame[c.time].min()), "data.end": str(frame[c.time].max()),
                "data.sha256": digest[:16]}


def load_source(config: ModelConfig) -> pd.DataFrame:
    """The config's raw data: ``package:m4_hourly`` (ships with the package) or a CSV/Parquet path."""
    source = config.source_path()
    if source == "package:m4_hourly":
        from forecaster.datasets import load_m4_hourly

        frame = load_m4_hourly(split="train")
    elif source.startswith("package:"):
        raise ConfigError(f"unknown packaged dataset {source!r}; available: package:m4_hourly")
    else:
        frame = read_frame(source, config.data.id)
    limit = config.data.series_limit
    if limit:
        if config.data.id not in frame.columns:
            raise MissingColumnError(f"missing column {config.data.id!r}; input has {list(frame.columns)}",
                                     column=config.data.id)
        keep = pd.unique(frame[config.data.id])[:limit]
        frame = frame[frame[config.data.id].isin(keep)]
    return frame


def prepare(config: ModelConfig, raw: pd.DataFrame | None = None,
            as_of: str | pd.Timestamp | None = None) -> Prepared:
    """Read (unless ``raw`` is given), cut at ``as_of`` and validate the config's data.

    Short series are kept: the forecaster pads or falls back for them, the backtest scores what it
    can (`Prepared.too_short` says which series fall under which rule).
    """
    raw = load_source(config) if raw is None else raw
    columns = config.data.columns()
    if as_of is not None:
        raw, cut = splits.as_of_split(raw, columns, as_of)
    step = config.backtest.step or config.horizon
    # The forecaster's own treatment (`LSTMForecaster._validate`): the backtest's histories and actuals,
    # the fit and the plots read the same treated frame, and data_report.json counts what was treated.
    vframe = validate_frame(raw, columns, freq=config.data.freq, missing_policy=config.data.missing_policy,
                            outliers=config.data.outliers, outlier_threshold=config.data.outlier_threshold)
    ended = _ended_before(config, vframe, cut) if as_of is not None else []
    return Prepared(config, raw, vframe, seasonal_period(vframe.freq), step, ended)


def _ended_before(config: ModelConfig, vframe: ValidatedFrame, cut: pd.Timestamp) -> list[str]:
    """The series whose last time is more than a horizon before the as-of ``cut``: their forecasts would
    all lie at or before it. Every series: ConfigError (an as-of in 2030 on data ending in 2024, the
    as-of is wrong); some (a series that stopped): their ids, which the job leaves out and names."""
    c = config.data.columns()
    last = vframe.frame.groupby(c.id, sort=True)[c.time].max()
    reach = pd.DatetimeIndex(last) + config.horizon * pd.tseries.frequencies.to_offset(vframe.freq)
    behind = np.asarray(reach < cut)
    if behind.all():
        end = last.max()
        raise ConfigError(f"as-of {cut} is more than the horizon ({config.horizon} steps of {vframe.freq}) after the "
                          f"data's last time {end}: the forecasts would start at {end}, not at the as-of. Give an "
                          f"as-of at most {reach.max()}, or bring the data up to date")
    return [str(i) for i in last.index[behind]]


def check_learnable(prepared: Prepared) -> None:
    """DataError, before a training, when every series is constant: there is nothing to learn, and
    MASE (its scale is 0) is undefined for each, so no version could ever be promoted."""
    c = prepared.columns
    # The histories the fit and MASE read (a masked reading interpolated, not the 0.0 "mask" leaves).
    ids = list(pd.unique(prepared.frame[c.id]))
    histories = series_histories(prepared.frame, c, ids)
    if ids and not any(np.isfinite(h).any() and np.nanmax(h) > np.nanmin(h) for h in histories):
        raise DataError(f"every series is constant ({len(ids)} series): there is nothing to learn, and MASE "
                        f"is undefined for each (its scale is 0); nothing trained or registered",
                        column=c.target, series=[str(i) for i in ids[:5]])


def undefined_scores(result: BacktestResult, columns: Columns, metric: str) -> list[str]:
    """The series whose backtest ``metric`` is undefined (NaN: constant or all-zero histories for MASE),
    which the mean over series leaves out."""
    rows = result.per_series
    if metric not in rows.columns:
        return []
    lstm = rows[rows[MODEL_COLUMN] == LSTM]
    return sorted({str(i) for i in lstm.loc[lstm[metric].isna(), columns.id]})




def make_forecaster(config: ModelConfig, verbose: int = 1) -> LSTMForecaster:
    """An unfitted forecaster with the config's settings."""
    from forecaster.forecaster import LSTMForecaster

    return LSTMForecaster.from_config(config, verbose)
