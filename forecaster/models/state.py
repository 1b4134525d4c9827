"""The forecaster's fitted state: one frozen dataclass that `save` writes and `load` reads field by field.

Every fitted attribute of `forecaster.forecaster.LSTMForecaster` (the names ending in ``_``) is a field
here and nowhere else. Each field says how it is kept: ``key`` in ``forecaster.json`` with its
``encode``/``decode`` (plain JSON), or its own ``file`` (the network's Keras file, the scaler's JSON).
``default`` gives the value a file saved before the field existed reads as. So a loaded forecaster
holds the fitted one's state, value by value (tests/models/test_fitted_state.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.data.windows import CovariateStats
from forecaster.defaults import Derived
from forecaster.models.keras_file import save_network

NETWORK_FILE = "network.keras"
SCALER_FILE = "scaler.json"


def _same(value: Any) -> Any:
    return value


def _keep(key: str, encode: Callable[[Any], Any] = _same, decode: Callable[[Any], Any] = _same,
          default: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """The metadata of a field kept under ``key`` of ``forecaster.json``."""
    return {"key": key, "encode": encode, "decode": decode, "default": default}


def _calibration(data: dict[str, Any]) -> dict[str, list[float]]:
    out = {str(k): [float(x) for x in v] for k, v in data.items()}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ValueError("calibration holds a value that is not a finite number")
    return out


def _combine(value: str) -> str:
    from forecaster.models.combination import APPLIED

    if value not in APPLIED:
        raise ValueError(f"combine is {value!r}, not one of {APPLIED}")
    return value


def _floats(data: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in data.items()}


def _weights(data: dict[str, Any]) -> dict[str, float]:
    out = _floats(data)
    if not all(np.isfinite(v) and v >= 0 for v in out.values()):
        raise ValueError(f"combination weights must be finite and >= 0, got {out}")
    return out


def _default_weights(meta: dict[str, Any]) -> dict[str, float]:
    from forecaster.models.combination import weights_of

    return weights_of(_combine(meta.get("combine", "none")))


def json_value(value: Any) -> Any:
    """numpy scalars as Python's, for ``json.dumps``."""
    return value.item() if isinstance(value, np.generic) else str(value)


@dataclass(frozen=True)
class FittedState:
    """What a fit learned, and what `calibrate` and a learned combination add.

    ``padded``: whether the network masks left-padding (its training had series shorter than the
    window). ``report``: the training data's validation report. ``weights``: each member's weight in
    the combined point forecast (the network ``lstm``, the statistical methods by name), ``member_scores``
    their MASE on the windows the weights were chosen on (empty for a named combination).
    """

    model: Any = field(metadata={"file": NETWORK_FILE})
    scaler: SeriesScaler = field(metadata={"file": SCALER_FILE})
    stats: CovariateStats = field(metadata=_keep("covariate_stats", lambda s: s.to_dict(), CovariateStats.from_dict))
    freq: str = field(metadata=_keep("freq"))
    columns: Columns = field(metadata=_keep("columns", lambda c: c.to_dict(), Columns.from_dict))
    input_size: int = field(metadata=_keep("input_size", decode=int))
    min_history: int = field(metadata=_keep("min_history", decode=int, default=lambda m: int(m["input_size"])))
    quantiles: tuple[float, ...] = field(metadata=_keep("quantiles", list, lambda q: tuple(float(x) for x in q)))
    resolved: Derived | None = field(metadata=_keep("resolved", lambda r: None if r is None else r.to_dict(),
                                     lambda r: None if r is None else Derived.from_dict(r), default=lambda m: None))
    untrained_series: list[str] = field(metadata=_keep("untrained_series", decode=list, default=lambda m: []))
    padded: bool = field(metadata=_keep("padded", decode=bool, default=lambda m: False))
    history: dict[str, list[float]] = field(metadata=_keep("history", default=lambda m: {}))
    member_histories: list[dict[str, list[float]]] = field(metadata=_keep(
        "member_histories", default=lambda m: [m.get("history", {})]))
    best_epoch: int | None = field(metadata=_keep("best_epoch", default=lambda m: None))
    report: dict[str, Any] = field(metadata=_keep("report", default=lambda m: {}))
    data_end: str | None = field(metadata=_keep("data_end", default=lambda m: None))
    calibration: dict[str, list[float]] = field(metadata=_keep("calibration", decode=_calibration,
                                                               default=lambda m: {}))
    combine: str = field(metadata=_keep("combine", decode=_combine, default=lambda m: "none"))
    combine_scores: dict[str, float] = field(metadata=_keep("combine_scores", decode=_floats, default=lambda m: {}))
    weights: dict[str, float] = field(metadata=_keep("weights", decode=_weights, default=_default_weights))
    member_scores: dict[str, float] = field(metadata=_keep("member_scores", decode=_floats, default=lambda m: {}))

    @classmethod
    def names(cls) -> list[str]:
        """The fields, as the forecaster's attributes are named without their trailing ``_``."""
        return [f.name for f in fields(cls)]

    def to_json(self) -> dict[str, Any]:
        """The fields kept in ``forecaster.json``, as JSON values (round-tripped through ``json``)."""
        out = {f.metadata["key"]: f.metadata["encode"](getattr(self, f.name)) for f in fields(self)
               if "key" in f.metadata}
        return json.loads(json.dumps(out, default=json_value))

    def save_files(self, folder: Path) -> None:
        """The fields kept in files of their own."""
        save_network(self.model, folder / NETWORK_FILE)  # the same bytes for the same weights
        self.scaler.save_json(folder / SCALER_FILE)

    @classmethod
    def decode(cls, meta: dict[str, Any], model: Any, scaler: SeriesScaler) -> FittedState:
        """The state ``meta`` (``forecaster.json``) describes, with the network and scaler read from
        their files; ValueError, KeyError or TypeError where ``meta`` is not such a description."""
        values: dict[str, Any] = {"model": model, "scaler": scaler}
        for f in fields(cls):
            if "key" not in f.metadata:
                continue
            key, default = f.metadata["key"], f.metadata["default"]
            if key in meta:
                values[f.name] = f.metadata["decode"](meta[key])
            elif default is not None:
                values[f.name] = default(meta)
            else:
                raise KeyError(key)
        return cls(**values)
