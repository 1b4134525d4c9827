"""The steps every job is made of, each with explicit inputs and outputs.

    prepare -> fit -> backtest -> log -> register -> promote      (pipelines.train)
    load -> forecast -> write                                     (pipelines.predict)
    prepare -> monitor -> [fit ... promote] -> load -> forecast -> write   (pipelines.run)

A step reads only its arguments and returns what the next one needs; the MLflow run a step logs to is
the active one, started by the job. Model loading (``resolve`` -> ``fetch_verified`` -> ``load``) lives
here too, so batch prediction, promotion and the scheduled job load models one way.

The steps are imported when first used (``steps.fit`` imports `pipelines.steps.fitting`): those that fit,
load or log models import TensorFlow and MLflow, and a command that only prepares data and scores
forecasts (`forecaster report`, a scheduled run until it retrains or forecasts) does not pay for them.
`prepare` is imported at once: its name is also its module's, which an import of the module would bind
here in place of the function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipelines.steps.prepare import Prepared, check_learnable, load_source, make_forecaster, prepare, undefined_scores

#: Each lazily imported step's module.
_OWNERS = {
    "describe": ("describe_combination", "describe_outliers", "describe_resolved", "describe_short"),
    "fitting": ("EpochLines", "EpochLogger", "backtest", "calibrate", "fit"),
    "loading": ("MODEL_COPY_PREFIX", "URI_FORMS", "LoadedModel", "fetch_verified", "forecast", "load",
                "process_alive", "resolve"),
    "plots": ("check_plot_series", "epoch_numbers", "plot_forecasts", "plot_losses", "plotted_series"),
    "promotion": ("ChampionComparison", "compare_with_champion", "judge", "mark_abandoned_runs", "promote",
                  "register"),
    "run_logging": ("KIND_TAG", "describe_run", "log_dataset", "log_evaluation", "log_headline", "log_inputs",
                    "log_model", "pip_requirements", "signature", "start_run"),
}
_MODULE_OF = {name: module for module, names in _OWNERS.items() for name in names}


def __getattr__(name: str) -> Any:
    """A step from its module, imported on first use."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from pipelines.steps.describe import describe_combination, describe_outliers, describe_resolved, describe_short
    from pipelines.steps.fitting import EpochLines, EpochLogger, backtest, calibrate, fit
    from pipelines.steps.loading import (
        MODEL_COPY_PREFIX,
        URI_FORMS,
        LoadedModel,
        fetch_verified,
        forecast,
        load,
        process_alive,
        resolve,
    )
    from pipelines.steps.plots import check_plot_series, epoch_numbers, plot_forecasts, plot_losses, plotted_series
    from pipelines.steps.promotion import (
        ChampionComparison,
        compare_with_champion,
        judge,
        mark_abandoned_runs,
        promote,
        register,
    )
    from pipelines.steps.run_logging import (
        KIND_TAG,
        describe_run,
        log_dataset,
        log_evaluation,
        log_headline,
        log_inputs,
        log_model,
        pip_requirements,
        signature,
        start_run,
    )

__all__ = [
    "KIND_TAG",
    "MODEL_COPY_PREFIX",
    "URI_FORMS",
    "ChampionComparison",
    "EpochLines",
    "EpochLogger",
    "LoadedModel",
    "Prepared",
    "backtest",
    "calibrate",
    "check_learnable",
    "check_plot_series",
    "compare_with_champion",
    "describe_combination",
    "describe_outliers",
    "describe_resolved",
    "describe_run",
    "describe_short",
    "epoch_numbers",
    "fetch_verified",
    "fit",
    "forecast",
    "judge",
    "load",
    "load_source",
    "log_dataset",
    "log_evaluation",
    "log_headline",
    "log_inputs",
    "log_model",
    "make_forecaster",
    "mark_abandoned_runs",
    "pip_requirements",
    "plot_forecasts",
    "plot_losses",
    "plotted_series",
    "prepare",
    "process_alive",
    "promote",
    "register",
    "resolve",
    "signature",
    "start_run",
    "undefined_scores",
]
