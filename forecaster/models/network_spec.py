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

    def member_windows(self, ensemble: int, input_size: int) -> tuple[int, ...]:
        """The steps of the window that each member of the ensemble reads, one entry a member:
        ``member_inputs`` where given (``ensemble`` must then be 1 or their number; each at most
        ``input_size``), else the whole window for each of ``ensemble`` seeds. ConfigError naming the key."""
        if not self.member_inputs:
            return (int(input_size),) * int(ensemble)
        if int(ensemble) not in (1, len(self.member_inputs)):
            raise ConfigError(f"[network] member_inputs lists {len(self.member_inputs)} members but "
                              f"[training] ensemble is {ensemble}: set ensemble = 1 (the list makes the ensemble)")
        too_long = [n for n in self.member_inputs if n > input_size]
        if too_long:
            raise ConfigError(f"[network] member_inputs {list(self.member_inputs)}: {too_long[0]} is longer than "
                              f"the window, input_size {input_size}")
        return tuple(int(n) for n in self.member_inputs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkSpec:
        """Inverse of `to_dict` (JSON gives a list of periods back as a list)."""
        spec = dict(data)
        for key in ("skip_period", "member_inputs"):
            if isinstance(spec.get(key), list):
                spec[key] = tuple(spec[key])
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
    ``member_inputs`` makes an ensemble whose members differ by how much of the window they read
    (`member_windows`): diverse members, where seeds alone add little (docs/accuracy.md, M4 Hourly).
    """)
