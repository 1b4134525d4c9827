"""One TOML file per forecasting model (models/<name>.toml), read into plain dataclasses.

Every section and key has a default, so a config names only what differs; unknown keys are refused
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.data.schema import Columns
from forecaster.errors import ConfigError
from forecaster.models.network_spec import NetworkSpec
from forecaster.params import FINAL_FITS, PARAMS, check_not_removed, section_class

__all__ = ["FINAL_FITS", "BacktestConfig", "DataConfig", "ModelConfig", "MonitorConfig", "OutputConfig",
           "PromotionConfig", "ScheduleConfig", "TrainingConfig", "check_model_name", "load_config",
           "model_config_from_dict"]

# Each section is a frozen dataclass made from its rows of `forecaster.params.PARAMS` (keys, types,
# defaults, ranges and help are written there once); the classes below hold what is not a parameter.


class _Data:
    def columns(self) -> Columns:
        """The frame's column names and covariate roles."""
        return Columns(id=self.id, time=self.time, target=self.target, static=tuple(self.static),
                       known_future=tuple(self.known_future), past_only=tuple(self.past_only))


class _Section:
    """A config section without behaviour of its own."""


DataConfig = section_class("DataConfig", "data", _Data, "Where the history comes from and how to read it.")
TrainingConfig = section_class("TrainingConfig", "training", _Section, "How the network is trained.")
BacktestConfig = section_class(
    "BacktestConfig", "backtest", _Section,
    "Rolling-origin evaluation: ``n_windows`` forecasts whose origins are ``step`` apart.")
PromotionConfig = section_class(
    "PromotionConfig", "promotion", _Section,
    "The rule for `champion`: beat the champion and seasonal naive on ``metric`` by ``margin``.\n\n"
    "``margin`` is relative: 0.02 asks for a value at most 98 % of the other's.")
ScheduleConfig = section_class(
    "ScheduleConfig", "schedule", _Section,
    "When the scheduled job (`forecaster run`) retrains instead of forecasting with the champion.\n\n"
    "It retrains when no version is registered yet, when the champion was trained on data after the as-of, "
    "when ``retrain_every`` (a pandas duration such as \"7D\" or \"12h\"; empty: never on a cadence) has passed "
    "since the as-of of the newest decided version's training, or when monitoring finds the accuracy degraded "
    "(see `MonitorConfig`). ``warm_start`` fine-tunes the champion's weights on the new data for "
    "``warm_epochs`` epochs instead of training from scratch.")
OutputConfig = section_class(
    "OutputConfig", "output", _Section,
    "Where the scheduled job writes forecasts: ``path``/as_of=<timestamp>/ (relative to the config file's "
    "folder; empty: ``forecasts/<model name>`` in the working directory).")
MonitorConfig = section_class(
    "MonitorConfig", "monitor", _Section,
    "How the scheduled job judges the champion's forecasts once their actuals have arrived.\n\n"
    "``metric`` (mase or smape) over the last ``window`` as-of times whose horizon has fully arrived; a value "
    "above the champion's backtest figure by more than ``degradation`` (relative: 0.25 is 25 % worse) "
    "triggers a retrain.")


class _Model:
    """What a whole model's config does beyond its parameters."""

    def _check(self) -> None:
        """What involves more than one key, or more than a range."""
        check_model_name(self.name)
        if self.schedule.retrain_every:
            _duration("schedule.retrain_every", self.schedule.retrain_every)
        if self.schedule.warm_start and self.training.ensemble > 1:
            raise ConfigError("schedule.warm_start needs training.ensemble = 1 (an ensemble's averaged network "
                              "cannot seed its members)")

    def source_path(self) -> str:
        """The data source, a path resolved against the config file's folder (or package:<name>)."""
        src = self.data.source
        if src.startswith("package:") or Path(src).is_absolute():
            return src
        return str(Path(self.base_dir) / src)

    def output_dir(self) -> Path:
        """The scheduled job's forecast folder (see `OutputConfig`)."""
        if not self.output.path:
            return Path("forecasts", self.name).resolve()
        path = Path(self.output.path)
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    def retrain_interval(self) -> pd.Timedelta | None:
        """``schedule.retrain_every`` as a duration, None when there is no cadence."""
        return _duration("schedule.retrain_every", self.schedule.retrain_every) if self.schedule.retrain_every \
            else None

    def to_params(self) -> dict[str, Any]:
        """Flat ``section.key`` params for MLflow."""
        out: dict[str, Any] = {p.name: getattr(self, p.name) for p in PARAMS if p.section == "model"}
        out["quantiles"] = list(self.quantiles)
        for section in ("data", "network", "training", "backtest", "promotion", "schedule", "monitor"):
            part = getattr(self, section)
            if part is None:  # derived at fit: the run logs the resolved values as resolved.*
                out[section] = "derived"
                continue
            for key, value in asdict(part).items():
                out[f"{section}.{key}"] = value
        return out


ModelConfig = section_class(
    "ModelConfig", "model", _Model,
    "A whole forecasting model: a name, its data, horizon and quantiles, network, training, backtest.\n\n"
    "``network`` None (no [network] section): derived from the data (forecaster.defaults).",
    extra=[("data", DataConfig, field(default_factory=DataConfig)),
           ("network", NetworkSpec | None, field(default=None)),
           ("training", TrainingConfig, field(default_factory=TrainingConfig)),
           ("backtest", BacktestConfig, field(default_factory=BacktestConfig)),
           ("promotion", PromotionConfig, field(default_factory=PromotionConfig)),
           ("schedule", ScheduleConfig, field(default_factory=ScheduleConfig)),
           ("output", OutputConfig, field(default_factory=OutputConfig)),
           ("monitor", MonitorConfig, field(default_factory=MonitorConfig)),
           ("base_dir", str, field(default="."))])


#: Characters a registered model's name cannot hold: MLflow's own refusals ('/' and ':'), '@', which
#: `models:/<name>@<alias>` reads as the alias, and the quote that would end the name in a registry search.
_NAME_FORBIDDEN = ("/", ":", "@", "'", "\\")


def check_model_name(name: str) -> str:
    """Refuse, before any work, a model name the registry cannot use: ConfigError naming the key.

    MLflow registers a name only when it holds no '/' or ':' and is not changed by path normalisation
    (`mlflow.utils.validation._validate_model_name`, not imported here: it costs seconds of start-up);
    a name with '@' registers but no `models:/<name>@<alias>` can ever load it. The test suite checks
    that every name accepted here MLflow accepts too.
    """
    bad = [c for c in _NAME_FORBIDDEN if c in name]
    if not name.strip() or bad or any(not c.isprintable() for c in name):
        why = f"it holds {', '.join(repr(c) for c in bad)}" if bad else "it is empty or holds unprintable characters"
        raise ConfigError(f"[model] name {name!r} cannot be a registered model's name: {why} (use letters, digits, "
                          f"'-', '_', '.', e.g. {_suggest(name)!r})")
    if name.strip() != name or name in (".", "..") or name.startswith("."):
        raise ConfigError(f"[model] name {name!r} cannot be a registered model's name: it must not begin with '.' "
                          f"or begin or end with a space (e.g. {_suggest(name)!r})")
    return name


def _suggest(name: str) -> str:
    """A usable spelling of ``name``: every other character than letters, digits, '-', '_' and '.' as '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip()).lstrip(".") or "model"


def _duration(key: str, text: str) -> pd.Timedelta:
    try:
        value = pd.Timedelta(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a duration such as '7D' or '12h', got {text!r}") from None
    if value <= pd.Timedelta(0):
        raise ConfigError(f"{key} must be a positive duration, got {text!r}")
    return value


def _section(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table of keys, got {raw!r}")
    check_not_removed(f"[{where}] ", raw)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{where}]; known: {sorted(known)}")
    return cls(**raw)  # every value checked by the section's class (forecaster.params)


def model_config_from_dict(raw: dict[str, Any], base_dir: str = ".") -> ModelConfig:
    """Build a `ModelConfig` from the parsed TOML mapping (also used for --data quick starts)."""
    raw = dict(raw)
    sections = {"data": DataConfig, "network": NetworkSpec, "training": TrainingConfig,
                "backtest": BacktestConfig, "promotion": PromotionConfig, "schedule": ScheduleConfig,
                "output": OutputConfig, "monitor": MonitorConfig}
    parts = {name: _section(cls, raw.pop(name, {}), name) for name, cls in sections.items()
             if name in raw or name != "network"}
    top = raw.pop("model", raw)
    if not isinstance(top, dict):
        raise ConfigError(f"[model] must be a table of keys, got {top!r}")
    keys = [f.name for f in fields(ModelConfig) if f.name not in (*sections, "base_dir")]
    unknown = sorted(set(top) - set(keys))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [model]; known: {', '.join(keys)}")
    for key in ("name", "horizon"):
        if key not in top:
            raise ConfigError(f"[model] needs {key!r}")
    return ModelConfig(**top, base_dir=base_dir, **parts)


def load_config(path: str | Path) -> ModelConfig:
    """Read ``models/<name>.toml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return model_config_from_dict(raw, base_dir=str(path.resolve().parent))
