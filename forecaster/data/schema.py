"""Names of the columns a forecasting frame is made of."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from forecaster.errors import ConfigError

#: Column added by validation: 1.0 where the target was observed, 0.0 where it was filled or masked.
OBSERVED = "observed"


def observed_rows(frame: pd.DataFrame, target: str) -> np.ndarray:
    """Which rows of ``frame`` hold an observed target: its `OBSERVED` column where validation added
    one, else the finite targets."""
    if OBSERVED in frame.columns:
        return frame[OBSERVED].to_numpy() == 1.0
    return np.isfinite(frame[target].to_numpy("float64"))


def observations_only(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame`` with its ``target`` NaN where the row holds no observation (`observed_rows`: a masked
    reading's stored 0.0, a filled or an outlier-treated one): what is scored or drawn as an actual."""
    return frame.assign(**{target: frame[target].where(observed_rows(frame, target))})


@dataclass(frozen=True)
class Columns:
    """Which frame column plays which role.

    ``static`` covariates are constant per series; ``known_future`` covariates are known ahead and must
    cover the forecast horizon at prediction time; ``past_only`` covariates are only known up to now.
    Lists given for the tuple fields are converted to tuples so instances stay hashable.
    """

    id: str = "unique_id"
    time: str = "ds"
    target: str = "y"
    static: tuple[str, ...] = ()
    known_future: tuple[str, ...] = ()
    past_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("static", "known_future", "past_only"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"Columns.{name} must be a sequence of names, not the string {value!r}")
            object.__setattr__(self, name, tuple(value))
        names = [self.id, self.time, self.target, *self.covariates()]
        if not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"column names must be non-empty strings, got {names!r}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"column names used for more than one role: {repeated}")
        if OBSERVED in names:
            raise ConfigError(f"{OBSERVED!r} is reserved for the observed mask added by validation")

    def covariates(self) -> list[str]:
        """All covariate names: static, then known-future, then past-only."""
        return [*self.static, *self.known_future, *self.past_only]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Columns:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError (they are likely typos)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown Columns keys: {unknown}")
        return cls(**data)
