"""Every parameter of a forecasting model, defined once: its name, type, range, default and help.

`PARAMS` is the one table. The config's sections (`forecaster.config`, `NetworkSpec`) are made from it
(`section_class`), the estimator's signature takes its defaults from it (`estimator_default`), the
command line's override flags and their help come from it (`FLAGS`), and `check_value` is the one
check of a value: its type, from the table, and its range or choices. A config file, a CLI flag and
the Python API all reach the same parameters; each is checked before any work starts (no MLflow run,
no data read), and a wrong one is a `ConfigError` that names the key, what it must be and what it got,
so that `epochs = "ten"`, `--epochs -3` or `point_loss = "huber"` never reach TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from forecaster.data.outliers import DEFAULT_THRESHOLD as OUTLIER_THRESHOLD
from forecaster.data.outliers import TREATMENTS as OUTLIER_TREATMENTS
from forecaster.data.scaling import METHODS as SCALERS
from forecaster.data.schema import Columns
from forecaster.data.validation import POLICIES
from forecaster.errors import ConfigError
from forecaster.models.base import SIGN_RULES
from forecaster.models.combination import COMBINES

#: A range: the test a conformed value passes, and what it must be, in words.
Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (lambda v: v >= 1, "a positive integer")
NON_NEGATIVE: Rule = (lambda v: v >= 0, "an integer >= 0")
NON_NEGATIVE_NUMBER: Rule = (lambda v: v >= 0, "a number >= 0")
ABOVE_ZERO: Rule = (lambda v: 0 < v < math.inf, "a number > 0")  # not inf: training would turn to NaN
SHARE: Rule = (lambda v: 0 <= v < 1, "a number in [0, 1)")
# Distinct: each quantile is a column of the output, named by its value (`forecaster.contract.quantile_name`).
QUANTILES: Rule = (lambda v: all(0 < q < 1 for q in v) and len(set(v)) == len(v),
                   "a list of numbers strictly between 0 and 1, each once")
FINITE_NON_NEGATIVE: Rule = (lambda v: 0 <= v < math.inf, "a finite number >= 0")
FINITE_BELOW_ONE: Rule = (lambda v: -math.inf < v < 1, "a finite number below 1")

#: Names the sections' choices hold (their owners: the modules that implement them, imported above).
POINT_LOSSES = ("mae", "mse")
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("none", "mirrored", "multi_worker")  # forecaster.models.distribute makes them
WINDOW_NORMS = ("none", "level", "standard")
FINAL_FITS = ("auto", "warm", "full")
PROMOTION_METRICS = ("mae", "rmse", "smape", "mase", "pinball")
MONITOR_METRICS = ("mase", "smape")
VERBOSITIES = (0, 1, 2)

#: A parameter without a default: it must be given.
REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Param:
    """One parameter: ``section`` (the config file's table; "estimator" for the estimator's own) and
    ``name`` (the key there), its ``type`` (a type hint), ``default``, ``help`` and its ``rule`` (a
    range) or ``choices``. ``estimator``: the `LSTMForecaster` parameter it is (None: none); ``flag``:
    whether `forecaster train` has an override flag for it."""

    section: str
    name: str
    type: Any
    default: Any
    help: str
    rule: Rule | None = None
    choices: tuple | None = None
    estimator: str | None = None
    flag: bool = False

    @property
    def flag_name(self) -> str:
        """The override flag of `forecaster train` (``--budget-windows`` for ``budget_windows``)."""
        return f"--{self.name.replace('_', '-')}"

    def check(self, value: Any, where: str | None = None) -> Any:
        """``value`` checked against the type and range; returned conformed (ConfigError naming the key)."""
        return check_value(f"[{self.section}] " if where is None else where, self.name, value, self.type, self)

    def check_flag(self, value: Any) -> Any:
        """``value`` given as the override flag, checked as `check` does; a ConfigError names the flag."""
        return check_value("", self.flag_name, value, self.type, self)


def _p(section: str, name: str, type_: Any, default: Any, help_: str, rule: Rule | None = None,
       choices: tuple | None = None, estimator: bool | str = False, flag: bool = False) -> Param:
    return Param(section, name, type_, default, help_, rule, choices,
                 (name if estimator is True else estimator or None), flag)


_OPT_INT = int | None
PARAMS: tuple[Param, ...] = (
    # [model]
    _p("model", "name", str, REQUIRED, "the model's name, as registered (letters, digits, '-', '_', '.')"),
    _p("model", "horizon", int, REQUIRED, "steps to forecast", POSITIVE, estimator=True),
    _p("model", "quantiles", tuple[float, ...], (0.1, 0.5, 0.9), "the quantiles forecast beside the point",
       QUANTILES, estimator=True),
    _p("model", "combine", str, "auto", "what the network's forecasts are averaged with "
       "(forecaster.models.combination): 'none', 'theta', 'theta+ets', 'otm+dotm+ets', 'otm+dotm+aets', "
       "'otm+dotm+aets+rtrend+rtrend8', 'otm+dotm+aets+rtrend+rtrend8+ces', "
       "'auto' (the data's default one, by its season: forecaster.defaults, "
       "unless the network alone is far better on the fit's holdout) or 'learned' (weights chosen on the "
       "backtest windows)",
       choices=COMBINES, estimator=True),
    _p("model", "nonnegative", str, "auto", "'auto': a series whose history holds no negative value is forecast "
       "at or above 0, its point and quantiles alike (forecaster.models.base.floor_at_zero); 'never': forecasts "
       "as the models give them", choices=SIGN_RULES, estimator=True),
    # [data]
    _p("data", "source", str, "package:m4_hourly", "a CSV/Parquet path (relative to the config file) or "
       "package:<dataset>"),
    _p("data", "id", str, "unique_id", "the series id column"),
    _p("data", "time", str, "ds", "the time column"),
    _p("data", "target", str, "y", "the target column"),
    _p("data", "freq", str | None, None, "pandas frequency alias such as h, D, W-MON, MS (default: inferred)",
       estimator=True),
    _p("data", "static", tuple[str, ...], (), "static covariate columns"),
    _p("data", "known_future", tuple[str, ...], (), "covariates known ahead (given in the forecast's future rows)"),
    _p("data", "past_only", tuple[str, ...], (), "covariates known only up to the present"),
    _p("data", "missing_policy", str, "error", "missing targets and gaps: refuse, fill or mask them",
       choices=POLICIES, estimator=True),
    _p("data", "outliers", str, "interpolate", "readings far outside their series' robust range "
       "(forecaster.data.outliers): 'interpolate' treats them as unobserved and interpolates them, at fit and "
       "at predict alike; 'keep' keeps every reading as given", choices=OUTLIER_TREATMENTS, estimator=True),
    _p("data", "outlier_threshold", float, OUTLIER_THRESHOLD, "how far beyond its series' quartiles a reading "
       "is an outlier, in interquartile ranges", ABOVE_ZERO, estimator=True),
    _p("data", "series_limit", _OPT_INT, None, "take the first N series (quick demos)", POSITIVE),
    # [network]: forecaster.models.network_spec.NetworkSpec
    _p("network", "units", int, 64, "LSTM units per layer", POSITIVE),
    _p("network", "num_layers", int, 1, "stacked LSTM layers", POSITIVE),
    _p("network", "head_units", int, 128, "units of the horizon head's hidden layer", POSITIVE),
    _p("network", "dropout", float, 0.0, "dropout between layers", SHARE),
    _p("network", "layer_norm", bool, False, "layer normalisation in the LSTM cell"),
    _p("network", "seasonal_skip", bool, False, "add the seasonal repeat of the window to the head's output"),
    _p("network", "window_norm", str, "none", "per-window normalisation", choices=WINDOW_NORMS),
    _p("network", "skip_period", int | tuple[int, ...], 0, "the season(s) the skip repeats (0: the frequency's)"),
    _p("network", "skip_drift", bool, False, "blend in the shortest season's repeat plus the window's drift"),
    # [training]
    _p("training", "input_size", _OPT_INT, None, "steps of history per window (default: derived from the "
       "frequency and horizon: forecaster.defaults)", POSITIVE, estimator=True),
    _p("training", "epochs", _OPT_INT, None, "training epochs (default: derived from the training budget)",
       POSITIVE, estimator=True, flag=True),
    _p("training", "batch_size", int, 256, "windows per gradient step", POSITIVE, estimator=True),
    _p("training", "learning_rate", float, 1e-3, "Adam's learning rate", ABOVE_ZERO, estimator=True),
    _p("training", "patience", int, 5, "epochs without a better validation loss before early stopping",
       NON_NEGATIVE, estimator=True),
    _p("training", "scaler", str, "standard", "per-series scaling (forecaster.data.scaling)", choices=SCALERS,
       estimator=True),
    _p("training", "point_loss", str, "mae", "the point forecast's loss", choices=POINT_LOSSES, estimator=True),
    _p("training", "max_windows_per_series", _OPT_INT, None, "training windows per series (default: derived "
       "from the training budget)", POSITIVE, estimator=True),
    _p("training", "seed", int, 0, "the random seed", NON_NEGATIVE, estimator=True),
    _p("training", "ensemble", int, 1, "networks trained (seeds seed, seed+1000, ...), their outputs averaged",
       POSITIVE, estimator=True),
    _p("training", "lr_schedule", str, "constant", "'constant', or 'cosine': decay from learning_rate to 5 % of "
       "it over the epochs", choices=LR_SCHEDULES, estimator=True),
    _p("training", "budget_windows", _OPT_INT, None, "window-epochs a fit may train when epochs or windows per "
       "series are derived (default: forecaster.defaults.default_budget; docs/accuracy.md)", POSITIVE,
       estimator=True, flag=True),
    _p("training", "weight_average", float | None, None, "the span, in epochs, of the moving average of the "
       "training steps' weights that each epoch is scored on and the fit keeps; 0 keeps the last step's "
       "weights (default: derived, forecaster.defaults; docs/accuracy.md)", FINITE_NON_NEGATIVE, estimator=True),
    _p("training", "strategy", str, "none", "'mirrored' trains on the GPUs of one machine, 'multi_worker' across "
       "the workers TF_CONFIG lists (docs/scale-out.md)", choices=STRATEGIES, estimator=True, flag=True),
    _p("training", "final_fit", str, "auto", "the pipeline's final fit: 'warm' (from the backtest model), 'full' "
       "(from scratch) or 'auto' (warm when the backtest held back at most a fifth of the median series)",
       choices=FINAL_FITS),
    _p("training", "final_epochs", int, 3, "epochs of a warm final fit", POSITIVE),
    # [backtest]
    _p("backtest", "n_windows", int, 2, "rolling-origin forecasts", POSITIVE),
    _p("backtest", "step", _OPT_INT, None, "steps between the origins (default: the horizon)", POSITIVE),
    _p("backtest", "calibrate", bool, True, "conformal corrections of the intervals from the backtest"),
    _p("backtest", "plot_series", tuple[str, ...], (), "series drawn besides the worst, median and best by MASE"),
    # [promotion]
    _p("promotion", "metric", str, "mase", "the metric a new version must win on", choices=PROMOTION_METRICS),
    _p("promotion", "margin", float, 0.0, "relative margin: 0.02 asks for at most 98 % of the other's value",
       FINITE_BELOW_ONE),
    # [schedule]
    _p("schedule", "retrain_every", str, "7D", "retrain cadence, a pandas duration such as '7D' (empty: never)"),
    _p("schedule", "warm_start", bool, False, "fine-tune the champion's weights instead of training afresh"),
    _p("schedule", "warm_epochs", int, 3, "epochs of a warm start", POSITIVE),
    _p("schedule", "lock_timeout", float, 0.0, "seconds a run waits for another run of the same job",
       NON_NEGATIVE_NUMBER),
    # [output]
    _p("output", "path", str, "", "the forecasts' folder (empty: forecasts/<model name>)"),
    # [monitor]
    _p("monitor", "metric", str, "mase", "the metric earlier forecasts are judged on", choices=MONITOR_METRICS),
    _p("monitor", "degradation", float, 0.25, "how much worse than the backtest (relative) triggers a retrain",
       NON_NEGATIVE_NUMBER),
    _p("monitor", "window", int, 3, "as-of times whose horizon has fully arrived that are judged", POSITIVE),
    # the estimator's own
    _p("estimator", "verbose", int, 2, "Keras' fit verbosity: 2 a line per epoch, 1 a progress bar, 0 nothing",
       choices=VERBOSITIES, estimator=True),
)

_BY_KEY: dict[tuple[str, str], Param] = {(p.section, p.name): p for p in PARAMS}
#: The estimator's parameters that the table defines, by their name in its signature.
ESTIMATOR: dict[str, Param] = {p.estimator: p for p in PARAMS if p.estimator}
#: The override flags of `forecaster train` (``--budget-windows`` for ``budget_windows``).
FLAGS: tuple[Param, ...] = tuple(p for p in PARAMS if p.flag)


def param(section: str, name: str) -> Param:
    """The parameter ``name`` of ``section``."""
    return _BY_KEY[(section, name)]


def estimator_default(name: str) -> Any:
    """The default of the estimator's parameter ``name`` (its signature's default)."""
    return ESTIMATOR[name].default


def section_params(section: str) -> tuple[Param, ...]:
    """The parameters of ``section``, in the table's order."""
    return tuple(p for p in PARAMS if p.section == section)


def _unique(name: str) -> Param | None:
    found = [p for p in PARAMS if p.name == name]
    return found[0] if len(found) == 1 else None


def check_section(instance: Any, section: str) -> None:
    """Check and conform every field of a section's dataclass ``instance`` (its ``__post_init__``)."""
    for p in section_params(section):
        object.__setattr__(instance, p.name, p.check(getattr(instance, p.name)))


#: The dataclass `section_class` made for each section (``"network"``: `NetworkSpec`).
_SECTIONS: dict[str, type] = {}


def section_class(cls_name: str, section: str, base: type, doc: str,
                  extra: Iterable[tuple] = ()) -> type:
    """The frozen dataclass of ``section``: a field per parameter of the table (its type and default),
    then ``extra`` fields; on construction (and `dataclasses.replace`) every value is checked, then
    ``base._check()`` (where it has one) checks what involves several fields."""

    def post_init(self: Any) -> None:
        check_section(self, section)
        if hasattr(base, "_check"):
            self._check()

    fields: list[tuple] = []
    for p in section_params(section):
        fields.append((p.name, p.type) if p.default is REQUIRED else
                      (p.name, p.type, dataclasses.field(default=p.default)))
    cls = dataclasses.make_dataclass(cls_name, [*fields, *extra], bases=(base,), frozen=True,
                                     namespace={"__post_init__": post_init, "__doc__": doc})
    cls.__module__ = base.__module__  # pickles and reprs as the module that names it
    _SECTIONS[section] = cls
    return cls


# Keys that were replaced: a config or flag that still names one gets a ConfigError saying what to use.
REMOVED: dict[str, str] = {
    "time_budget": "training.time_budget (seconds, judged by the clock, so a loaded machine trained a different "
                   "model) was replaced by training.budget_windows: window-epochs, the windows seen in training "
                   "summed over epochs, decided before training (default 108,000,000 / input_size: 642,857 at a "
                   "168-step window, about 270 s of epochs on 2 cores, twice what 150 s bought; docs/accuracy.md); "
                   "remove time_budget, or set budget_windows",
}


def check_not_removed(where: str, keys: Any) -> None:
    """ConfigError for the first of ``keys`` that names a replaced parameter (`REMOVED`)."""
    for key in keys:
        if key in REMOVED:
            raise ConfigError(f"{where}{key} is no longer a parameter: {REMOVED[key]}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0]).split(' ', 1)[-1]}s"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "none"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _conform(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` asks (an int where a float is asked becomes a float); TypeError if it can't."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _conform(value, arm)
            except TypeError:
                continue
        raise TypeError
    if origin is tuple:
        if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:  # a numpy array
            value = value.tolist()
        if not isinstance(value, list | tuple):
            raise TypeError
        return tuple(_conform(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        if value is not None:
            raise TypeError
        return None
    # numpy's scalars (np.int64(12), np.float32(0.1), np.bool_(True)) are what users pass: accepted, and
    # returned as Python's own types; a bool is not taken for a number.
    if hint is bool:
        if type(value).__name__ not in ("bool", "bool_"):
            raise TypeError
        return bool(value)
    if hint is int:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            raise TypeError
        return int(value)
    if hint is float:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise TypeError
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float (10**400): infinite, for the key's range to refuse
            return math.inf if value > 0 else -math.inf
    if hint is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    return value


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")


def check_value(where: str, key: str, value: Any, hint: Any = None, spec: Param | None = None) -> Any:
    """``value`` of ``where.key`` checked against the type ``hint`` (default: the table's) and the
    key's range or choices in the table (``spec``, else the one parameter named ``key``); returned
    conformed (np.int64(12) becomes 12, a list of quantiles a tuple)."""
    spec = spec or _unique(key)
    hint = spec.type if hint is None and spec is not None else hint
    given = value
    try:
        value = _conform(value, hint)
    except TypeError:
        raise ConfigError(f"{where}{key} must be {_type_name(hint)}, got {given!r}") from None
    if spec is None or value is None:
        return value
    if spec.choices is not None:
        if value not in spec.choices:
            raise ConfigError(f"{where}{key} must be one of {', '.join(map(str, spec.choices))}, got {given!r}")
    elif spec.rule is not None and not isinstance(value, str):
        test, description = spec.rule
        if not test(value):
            raise ConfigError(f"{where}{key} must be {description}, got {given!r}")
    return value


def requested_horizon(trained: int, horizon: Any = None) -> int:
    """The horizon a prediction asks for (the trained one when ``horizon`` is None): an integer from 1
    to the trained horizon, else ConfigError. The one check of a request's horizon, wherever the request
    comes from (the Python API, the CLI, Spark's driver, the served model)."""
    if horizon is None:
        return trained
    horizon = check_value("", "horizon", horizon, int)
    if not 1 <= horizon <= trained:
        raise ConfigError(f"horizon must be between 1 and the trained horizon {trained}, got {horizon}")
    return horizon


def check_estimator(estimator: Any) -> dict[str, Any]:
    """Every parameter of ``estimator`` (an `LSTMForecaster`) that the table defines, checked and
    conformed; the estimator's ``fit`` calls it first, before the data is read."""
    check_not_removed(f"{type(estimator).__name__}.", vars(estimator))
    # The two parameters that are sections of their own: an instance of theirs (which checked its fields).
    for name, kind in (("network", _SECTIONS["network"]), ("columns", Columns)):
        value = getattr(estimator, name, None)
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{name} must be a {kind.__name__} or None, got {value!r}"[:300])
    return {name: p.check(getattr(estimator, name), where="") for name, p in ESTIMATOR.items()}
