"""The network's architecture hyper-parameters, free of Keras (configs read them without loading it)."""

from __future__ import annotations

from dataclasses import asdict

from forecaster.errors import ConfigError
from forecaster.params import WINDOW_NORMS, section_class

__all__ = ["WINDOW_NORMS", "NetworkSpec"]


class _Network:
    def _check(self) -> None:
        """The skip's periods: each an integer >= 0, a list of them not holding 0 (ranges and types of
        the other keys are checked from `forecaster.params.PARAMS`)."""
        periods = self._listed_periods()
        if not periods or any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in periods):
            raise ConfigError(f"[network] skip_period must be an integer >= 0 or a list of them, "
                              f"got {self.skip_period}")
        if len(periods) > 1 and 0 in periods:
            raise ConfigError("[network] skip_period: a list of periods cannot use 0 (the default period)")

    def _listed_periods(self) -> tuple:
        return tuple(self.skip_period) if isinstance(self.skip_period, tuple | list) else (self.skip_period,)

    def periods(self, season: int) -> tuple[int, ...]:
        """The skip's periods, with 0 standing for the data's seasonal period ``season``."""
        return tuple(int(p or season) for p in self._listed_periods())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkSpec:
        """Inverse of `to_dict` (JSON gives a list of periods back as a list)."""
        spec = dict(data)
        if isinstance(spec.get("skip_period"), list):
            spec["skip_period"] = tuple(spec["skip_period"])
        return cls(**spec)


NetworkSpec = section_class(
    "NetworkSpec", "network", _Network,
    """Architecture hyper-parameters (plain values, logged as MLflow params; `forecaster.params` defines
    each, and constructing one checks them: ``NetworkSpec(units=-4)`` is a ConfigError).

    ``seasonal_skip`` and ``window_norm`` are described in `forecaster.models.keras_network`'s module doc;
    ``skip_period`` is the season repeated by the skip and used for the window level (0: the frequency's
    seasonal period), or a list of seasons whose repeats the skip blends (the window level then uses the
    longest). ``skip_drift`` adds to that blend the shortest season's repeat plus the window's linear drift
    (seasonal naive with drift), so that the head can weigh repeating against extrapolating.
    """)
