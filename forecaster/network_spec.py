"""The network's architecture hyper-parameters, free of Keras (configs read them without loading it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from forecaster.errors import ConfigError

WINDOW_NORMS = ("none", "level", "standard")


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture hyper-parameters (plain values, logged as MLflow params).

    ``seasonal_skip`` and ``window_norm`` are described in the module doc; ``skip_period`` is the
    season repeated by the skip and used for the window level (0: the frequency's seasonal period),
    or a list of seasons whose repeats the skip blends (the window level then uses the longest).
    ``skip_drift`` adds to that blend the shortest season's repeat plus the window's linear drift
    (seasonal naive with drift), so that the head can weigh repeating against extrapolating.
    """

    units: int = 64
    num_layers: int = 1
    head_units: int = 128
    dropout: float = 0.0
    layer_norm: bool = False
    seasonal_skip: bool = False
    window_norm: str = "none"
    skip_period: int | tuple[int, ...] = 0
    skip_drift: bool = False

    def __post_init__(self) -> None:
        if self.window_norm not in WINDOW_NORMS:
            raise ConfigError(f"network.window_norm must be one of {WINDOW_NORMS}, got {self.window_norm!r}")
        periods = self._listed_periods()
        if not periods or any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in periods):
            raise ConfigError(f"network.skip_period must be an integer >= 0 or a list of them, got {self.skip_period}")
        if len(periods) > 1 and 0 in periods:
            raise ConfigError("network.skip_period: a list of periods cannot use 0 (the default period)")

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
