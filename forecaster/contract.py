"""The output contract: the columns of every forecast frame we produce, and their one schema.

Batch prediction (pandas and Spark), the served model (its MLflow signature) and the scheduled job's
files all write the same columns, built here and nowhere else:

    <id> string, <time> datetime, forecast double, q<level> double (one per quantile, ascending),
    model string, model_name string, model_version string [, as_of datetime]

``forecast`` is the point forecast trained on the configured point loss (the mean-like value for
"mse", the median-like for "mae"); ``q0.5`` is the separately trained median quantile, so the two
may differ. ``model`` says which model made a row: ``lstm`` (the forecaster's combination, also one
without the network, whose quantiles keep its spread), or ``seasonal_naive`` for a series the
network cannot forecast. Quantile columns are named ``quantile_name(q)`` ("q0.1", "q0.975").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from forecaster.data.schema import Columns

FORECAST_COLUMN = "forecast"
MODEL_COLUMN = "model"
MODEL_NAME_COLUMN = "model_name"
MODEL_VERSION_COLUMN = "model_version"
AS_OF_COLUMN = "as_of"
#: Backtests: the last timestamp of each series' history at a forecast origin, and the window number.
CUTOFF_COLUMN = "cutoff"
WINDOW_COLUMN = "window"
#: Backtests: whether the model's forecast of that series came from its seasonal-naive fallback.
FALLBACK_COLUMN = "fallback"

#: Values of the ``model`` column.
LSTM = "lstm"
BASELINE = "seasonal_naive"

#: Column types, in the vocabulary the MLflow signature, pandas and Spark schemas are built from.
STRING, DATETIME, DOUBLE = "string", "datetime", "double"


def quantile_name(q: float) -> str:
    """Column name of the ``q`` quantile: ``"q"`` + the shortest repr of the float ("q0.1", "q0.025").

    One canonical spelling per quantile keeps column names comparable across the project.
    """
    value = float(q)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"a quantile must lie strictly between 0 and 1, got {q!r}")
    return f"q{value!r}"


def parse_quantile_name(name: str) -> float:
    """Inverse of `quantile_name`: ``"q0.975"`` -> ``0.975``.

    Only canonical names are accepted ("q0.10" or "q .1" raise), so that one quantile cannot hide
    under two column names.
    """
    if not isinstance(name, str) or not name.startswith("q"):
        raise ValueError(f"not a quantile column name: {name!r}")
    try:
        value = float(name[1:])
    except ValueError:
        raise ValueError(f"not a quantile column name: {name!r}") from None
    if not (math.isfinite(value) and 0.0 < value < 1.0) or quantile_name(value) != name:
        raise ValueError(f"not a canonical quantile column name: {name!r} (expected e.g. 'q0.1')")
    return value


def quantiles_in(names: Sequence[str]) -> list[float]:
    """The quantile levels whose columns are among ``names``, ascending."""
    levels = []
    for name in names:
        try:
            levels.append(parse_quantile_name(name))
        except ValueError:
            continue
    return sorted(levels)


def fallback_series(forecasts: pd.DataFrame, id_column: str) -> int:
    """How many series of a forecast frame the network did not forecast (their ``model`` is not `LSTM`)."""
    return int(forecasts.loc[forecasts[MODEL_COLUMN] != LSTM, id_column].nunique())


def output_schema(columns: Columns, quantiles: Sequence[float], as_of: bool = False) -> list[tuple[str, str]]:
    """(name, type) of every output column, in order: the one schema of pandas, Spark and MLflow outputs."""
    out = [(columns.id, STRING), (columns.time, DATETIME), (FORECAST_COLUMN, DOUBLE)]
    out += [(quantile_name(q), DOUBLE) for q in sorted(quantiles)]
    out += [(MODEL_COLUMN, STRING), (MODEL_NAME_COLUMN, STRING), (MODEL_VERSION_COLUMN, STRING)]
    if as_of:
        out.append((AS_OF_COLUMN, DATETIME))
    return out


def input_schema(columns: Columns) -> list[tuple[str, str, bool]]:
    """(name, type, required) of every input column a model takes: id, time, target, covariates."""
    out = [(columns.id, STRING, True), (columns.time, DATETIME, True), (columns.target, DOUBLE, False)]
    return out + [(name, DOUBLE, True) for name in columns.covariates()]


def conform(frame: pd.DataFrame, columns: Columns, quantiles: Sequence[float], as_of: bool = False) -> pd.DataFrame:
    """``frame`` with exactly the contract's columns, in order and with its types (pandas side)."""
    schema = output_schema(columns, quantiles, as_of)
    missing = [name for name, _ in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"forecast frame lacks contract columns {missing}")
    out = frame[[name for name, _ in schema]].copy()
    for name, kind in schema:
        if kind == STRING:
            out[name] = out[name].astype(str)
        elif kind == DOUBLE:
            out[name] = out[name].astype("float64")
    return out
