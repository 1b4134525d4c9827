"""The one check of every estimator and config value: its type, from the annotation, and its range.

A config file, a CLI flag and the Python API all reach the same parameters; each is checked here before
any work starts (no MLflow run, no data read), and a wrong one is a `ConfigError` that names the key,
what it must be and what it got, so that `epochs = "ten"` or `--epochs -3` never reach TensorFlow.
"""

from __future__ import annotations

import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

from forecaster.errors import ConfigError

# key -> (test, what it must be); keys are unique across the config's sections.
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {}


def _rule(description: str, test: Callable[[Any], bool], *keys: str) -> None:
    for key in keys:
        _RANGES[key] = (test, description)


_rule("a positive integer", lambda v: v >= 1, "horizon", "epochs", "batch_size", "units", "num_layers",
      "head_units", "ensemble", "n_windows", "step", "input_size", "max_windows_per_series", "series_limit",
      "budget_windows")
_rule("an integer >= 0", lambda v: v >= 0, "patience", "seed")
_rule("a number > 0", lambda v: v > 0, "learning_rate")
_rule("a number in [0, 1)", lambda v: 0 <= v < 1, "dropout")
_rule("a list of numbers strictly between 0 and 1", lambda v: all(0 < q < 1 for q in v), "quantiles")


# Keys that were replaced: a config or flag that still names one gets a ConfigError saying what to use.
REMOVED: dict[str, str] = {
    "time_budget": "training.time_budget (seconds, judged by the clock, so a loaded machine trained a different "
                   "model) was replaced by training.budget_windows: window-epochs, the windows seen in training "
                   "summed over epochs, decided before training (default 54,000,000 / input_size: 321,428 at a "
                   "168-step window, about 135 s of epochs on 2 cores, what 150 s bought; docs/accuracy.md); "
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
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    return value


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")


def check_value(where: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` of ``where.key`` checked against its annotation ``hint`` and its range; returned conformed."""
    given = value
    try:
        value = _conform(value, hint)
    except TypeError:
        raise ConfigError(f"{where}{key} must be {_type_name(hint)}, got {given!r}") from None
    rule = _RANGES.get(key)
    if rule is not None and value is not None and not isinstance(value, str):
        test, description = rule
        if not test(value):
            raise ConfigError(f"{where}{key} must be {description}, got {given!r}")
    return value


def check_fields(cls: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Every value in ``values`` checked against the annotation of ``cls``'s field of that name."""
    hints = typing.get_type_hints(cls)
    return {k: check_value(where, k, v, hints[k]) if k in hints else v for k, v in values.items()}
