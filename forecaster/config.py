"""One TOML file per forecasting model (models/<name>.toml), read into plain dataclasses.

Every section and key has a default, so a config names only what differs; unknown keys are refused
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster.combination import check_combine
from forecaster.data.schema import Columns
from forecaster.distribute import check_name as check_strategy
from forecaster.errors import ConfigError
from forecaster.network_spec import NetworkSpec
from forecaster.params import check_fields, check_not_removed, check_value


@dataclass(frozen=True)
class DataConfig:
    """Where the history comes from and how to read it."""

    source: str = "package:m4_hourly"  # a CSV/Parquet path (relative to the config file) or package:<dataset>
    id: str = "unique_id"
    time: str = "ds"
    target: str = "y"
    freq: str | None = None
    static: tuple[str, ...] = ()
    known_future: tuple[str, ...] = ()
    past_only: tuple[str, ...] = ()
    missing_policy: str = "error"
    series_limit: int | None = None  # take the first N series (quick demos)

    def columns(self) -> Columns:
        return Columns(id=self.id, time=self.time, target=self.target, static=tuple(self.static),
                       known_future=tuple(self.known_future), past_only=tuple(self.past_only))


FINAL_FITS = ("auto", "warm", "full")


@dataclass(frozen=True)
class TrainingConfig:
    """How the network is trained."""

    input_size: int | None = None  # default: derived from the frequency and horizon (forecaster.defaults)
    epochs: int | None = None  # default: derived from the training budget (forecaster.defaults)
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 5
    scaler: str = "standard"
    point_loss: str = "mae"
    max_windows_per_series: int | None = None  # default: derived from the training budget
    seed: int = 0
    ensemble: int = 1  # train this many networks (seeds seed, seed+1000, ...) and average their outputs
    lr_schedule: str = "constant"  # or "cosine": decay from learning_rate to 5 % of it over the epochs
    # Window-epochs one fit may train when epochs or windows per series are derived, never a clock
    # (default: forecaster.defaults.default_budget, 321,428 at a 168-step window; the pipeline fits twice).
    budget_windows: int | None = None
    strategy: str = "none"  # or "mirrored" (GPUs of one machine), "multi_worker" (TF_CONFIG): forecaster.distribute
    # The pipeline's final fit: "warm" (from the backtest model), "full" (from scratch) or "auto" (warm
    # when the backtest held back at most a fifth of the median series: forecaster.defaults.warm_final_fit)
    final_fit: str = "auto"
    final_epochs: int = 3  # epochs of a warm final fit


@dataclass(frozen=True)
class BacktestConfig:
    """Rolling-origin evaluation: ``n_windows`` forecasts whose origins are ``step`` apart."""

    n_windows: int = 2
    step: int | None = None  # default: the horizon
    calibrate: bool = True  # conformal corrections of the intervals from the backtest (forecaster.calibration)
    # Series drawn in evaluation/forecast_vs_actuals.png besides the worst, median and best by MASE.
    plot_series: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromotionConfig:
    """The rule for `champion`: beat the champion and seasonal naive on ``metric`` by ``margin``.

    ``margin`` is relative: 0.02 asks for a value at most 98 % of the other's.
    """

    metric: str = "mase"
    margin: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    """When the scheduled job (`forecaster run`) retrains instead of forecasting with the champion.

    It retrains when no version is registered yet, when the champion was trained on data after the
    as-of, when ``retrain_every`` (a pandas duration such as "7D" or "12h"; empty: never on a cadence)
    has passed since the as-of of the newest decided version's training, or when monitoring finds the
    accuracy degraded (see `MonitorConfig`). ``warm_start`` fine-tunes the
    champion's weights on the new data for ``warm_epochs`` epochs instead of training from scratch.
    """

    retrain_every: str = "7D"
    warm_start: bool = False
    warm_epochs: int = 3
    lock_timeout: float = 0.0  # seconds a run waits for another run of the same job; 0: exit at once


@dataclass(frozen=True)
class OutputConfig:
    """Where the scheduled job writes forecasts: ``path``/as_of=<timestamp>/ (relative to the config
    file's folder; empty: ``forecasts/<model name>`` in the working directory)."""

    path: str = ""


@dataclass(frozen=True)
class MonitorConfig:
    """How the scheduled job judges the champion's forecasts once their actuals have arrived.

    ``metric`` (mase or smape) over the last ``window`` as-of times whose horizon has fully arrived; a
    value above the champion's backtest figure by more than ``degradation`` (relative: 0.25 is 25 %
    worse) triggers a retrain.
    """

    metric: str = "mase"
    degradation: float = 0.25
    window: int = 3


@dataclass(frozen=True)
class ModelConfig:
    """A whole forecasting model: a name, its data, horizon and quantiles, network, training, backtest."""

    name: str
    horizon: int
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    combine: str = "auto"  # averaged with Theta ("theta"), Theta and ETS ("theta+ets"), the optimised Theta
    # models and ETS ("otm+dotm+ets"), alone ("none"), or "otm+dotm+ets" unless the network alone is far better
    # on the fit's holdout ("auto"): forecaster.combination
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkSpec | None = None  # no [network] section: derived from the data (forecaster.defaults)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    base_dir: str = "."

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if self.horizon <= 0:
            raise ConfigError(f"horizon must be a positive integer, got {self.horizon}")
        if any(not 0.0 < q < 1.0 for q in self.quantiles):
            raise ConfigError(f"quantiles must lie strictly between 0 and 1, got {list(self.quantiles)}")
        check_combine(self.combine)
        if self.promotion.metric not in ("mae", "rmse", "smape", "mase", "pinball"):
            raise ConfigError(f"promotion.metric must be one of mae, rmse, smape, mase, pinball, "
                              f"got {self.promotion.metric!r}")
        if self.monitor.metric not in ("mase", "smape"):
            raise ConfigError(f"monitor.metric must be mase or smape, got {self.monitor.metric!r}")
        if self.monitor.window < 1 or self.monitor.degradation < 0:
            raise ConfigError("monitor.window must be >= 1 and monitor.degradation >= 0")
        if self.schedule.warm_epochs < 1 or self.schedule.lock_timeout < 0:
            raise ConfigError("schedule.warm_epochs must be >= 1 and schedule.lock_timeout >= 0")
        if self.schedule.retrain_every:
            _duration("schedule.retrain_every", self.schedule.retrain_every)
        check_strategy(self.training.strategy)
        if self.training.final_fit not in FINAL_FITS:
            raise ConfigError(f"training.final_fit must be one of {', '.join(FINAL_FITS)}, "
                              f"got {self.training.final_fit!r}")
        if self.training.final_epochs < 1:
            raise ConfigError(f"training.final_epochs must be >= 1, got {self.training.final_epochs}")
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
        out: dict[str, Any] = {"name": self.name, "horizon": self.horizon, "quantiles": list(self.quantiles),
                               "combine": self.combine}
        for section in ("data", "network", "training", "backtest", "promotion", "schedule", "monitor"):
            part = getattr(self, section)
            if part is None:  # derived at fit: the run logs the resolved values as resolved.*
                out[section] = "derived"
                continue
            for key, value in asdict(part).items():
                out[f"{section}.{key}"] = value
        return out


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
    values = check_fields(cls, raw, f"[{where}] ")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc


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
    hints = {"name": str, "horizon": int, "quantiles": tuple[float, ...], "combine": str}
    unknown = sorted(set(top) - set(hints))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [model]; known: {', '.join(hints)}")
    for key in ("name", "horizon"):
        if key not in top:
            raise ConfigError(f"[model] needs {key!r}")
    model = {k: check_value("[model] ", k, top[k], hint) for k, hint in hints.items() if k in top}
    return ModelConfig(**model, base_dir=base_dir, **parts)


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
