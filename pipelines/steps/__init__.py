"""The steps every job is made of, each with explicit inputs and outputs.

    prepare -> fit -> backtest -> log -> register -> promote      (pipelines.train)
    load -> forecast -> write                                     (pipelines.predict)
    prepare -> monitor -> [fit ... promote] -> load -> forecast -> write   (pipelines.run)

A step reads only its arguments and returns what the next one needs; the MLflow run a step logs to is
the active one, started by the job. Model loading (``resolve`` -> ``fetch_verified`` -> ``load``) lives
here too, so batch prediction, promotion and the scheduled job load models one way.
"""

from pipelines.steps.describe import describe_outliers, describe_resolved, describe_short
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
from pipelines.steps.prepare import Prepared, check_learnable, load_source, make_forecaster, prepare, undefined_scores
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
