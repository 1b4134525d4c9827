"""The training job: prepare -> backtest -> fit -> log -> register -> promote, one MLflow run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from forecaster.config import ModelConfig
from forecaster.contract import BASELINE, LSTM
from forecaster.data import splits
from forecaster.defaults import warm_final_fit
from forecaster.evaluation.backtest import BacktestResult
from forecaster.forecaster import LSTMForecaster
from forecaster.models import distribute
from forecaster.ops import registry, tracking
from pipelines import steps

log = logging.getLogger("forecaster.train")
# How the final fit started (logged as resolved.final_fit), and what the CLI line adds for it.
_STARTS = {"full": "", "warm": " (warm start from the backtest model)", "champion": " (warm start from the champion)"}


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str | None  # None on a multi-worker task other than the chief, which logs nothing
    model_name: str
    version: str | None
    decision: registry.PromotionDecision | None
    backtest: BacktestResult
    model: LSTMForecaster | None = None
    short: str | None = None  # a line on the short series (steps.describe_short), None if there are none
    outliers: str | None = None  # a line on the readings treated as outliers (steps.describe_outliers), or None


def train_in_run(prepared: steps.Prepared, register: bool = True, verbose: int = 1,
                 initial: LSTMForecaster | None = None, warm_epochs: int | None = None,
                 say: Callable[[str], None] = log.info, champion: str | None = registry.CHAMPION,
                 move_aliases: bool = True) -> TrainResult:
    """The training steps inside the active MLflow run (the scheduled job calls this within its own run).

    ``initial`` warm-starts the final fit from a fitted forecaster's weights for ``warm_epochs`` epochs
    (default: the config's), and the backtest fit too when that forecaster's training data ended before
    the backtest's first origin (else the backtest would score it on data it has seen; it is then fitted
    from scratch, with the config's epochs). ``say`` hears one line as each step ends. ``champion`` is
    the version the new one is compared with (`steps.judge`) and ``move_aliases`` whether the decision
    moves the aliases: the scheduled job's past as-of compares with the version that was champion then
    and leaves today's champion where it is.
    """
    config = prepared.config
    warm = config if warm_epochs is None else replace(config, training=replace(config.training, epochs=warm_epochs))
    run = mlflow.active_run()
    steps.check_plot_series(prepared)
    steps.log_inputs(prepared)
    short = steps.describe_short(prepared.too_short)
    if short:
        say(short)
    bt_initial = initial if initial is not None and _trained_before_first_origin(initial, prepared) else None
    bt_prepared = prepared if bt_initial is None else replace(prepared, config=warm)
    bt_model, result = steps.backtest(bt_prepared, verbose, initial=bt_initial)
    steps.log_headline(prepared, result)
    metric = config.promotion.metric
    say(f"backtest: {LSTM} {metric} {result.summary[LSTM][metric]:.4f}, seasonal naive "
        f"{result.summary[BASELINE][metric]:.4f}" + (" (warm start)" if bt_initial is not None else ""))
    undefined = steps.undefined_scores(result, prepared.columns, metric)
    if undefined:
        say(f"backtest: {metric} undefined for {len(undefined)} series (constant or all-zero history: its "
            f"scale is 0), left out of the mean the promotion compares: {', '.join(undefined[:5])}"
            + (", ..." if len(undefined) > 5 else ""))
        if run is not None:
            mlflow.log_metric(f"backtest.undefined_{metric}_series", len(undefined))
    final, start = _final_fit(prepared, bt_model, verbose, initial, warm, say)
    say(f"final fit: done, {len(final.history_.get('loss', []))} epoch(s) on all the data" + _STARTS[start])
    if final.resolved_.derived:
        say(f"derived settings ({', '.join(final.resolved_.derived)}): {steps.describe_resolved(final)}")
    if result.members is not None:  # what the backtest decided on its windows, for the final fit too
        final.combine_on_windows(result.members)
    for line in steps.describe_combination(final):
        say(line)
    if mlflow.active_run():
        mlflow.log_params({**{k: str(v)[:500] for k, v in final.resolved_.params().items()},
                           "resolved.final_fit": start, "resolved.combine": final.combine_,
                           **{f"combine.weight.{k}": f"{v:.4f}" for k, v in final.weights_.items()}})
        mlflow.log_metrics({f"combine.member_mase.{k}": v for k, v in final.member_scores_.items()
                            if np.isfinite(v)})
    if config.backtest.calibrate:
        calibration = steps.calibrate(final, result)
        if calibration:
            say(f"calibrate: {calibration}")
    steps.log_evaluation(prepared, result, {"backtest fit": bt_model.history_, "final fit": final.history_},
                         continues=start != "full")
    model_uri = steps.log_model(config, final)
    say(f"log: {model_uri}")
    version, decision = None, None
    if register:
        client = MlflowClient()
        # Judge against the champion, register and move the aliases: one step per model at a time, and
        # judged first, so that a failure to judge leaves no version without a decision.
        with registry.promotion_lock(tracking.tracking_uri(), config.name):
            decision = steps.judge(client, prepared, result, champion)
            version = steps.register(model_uri, config.name)
            say(f"register: version {version}")
            steps.promote(client, config.name, version, decision, move_aliases)
            say(f"promote: version {version} {'champion' if decision.promoted else 'challenger'} "
                f"({decision.reason})" + ("" if move_aliases else "; aliases left as they are (a past as-of)"))
        mlflow.set_tags({"registry.version": version, **decision.tags()})
    steps.describe_run(prepared, result, version, decision)
    return TrainResult(run.info.run_id, config.name, version, decision, result, final, short,
                       steps.describe_outliers(prepared.vframe.report))


def _trained_before_first_origin(model: LSTMForecaster, prepared: steps.Prepared) -> bool:
    """Whether every series ``model`` saw ended at or before the backtest's oldest cutoff."""
    c = prepared.config
    seen_until = getattr(model, "data_end_", None)
    if seen_until is None:
        return False
    cutoffs = splits.holdout_cutoffs(prepared.frame, prepared.columns,
                                     splits.origin_offset(c.horizon, c.backtest.n_windows, prepared.step, 0))
    try:
        return bool(len(cutoffs)) and pd.Timestamp(seen_until) <= cutoffs.min()
    except TypeError:  # time zones that do not compare
        return False


def train(config: ModelConfig, register: bool = True, verbose: int = 1) -> TrainResult:
    """Run the whole training pipeline for ``config``; returns the run, version and promotion decision.

    Under ``training.strategy = "multi_worker"`` every worker runs this with its own ``TF_CONFIG``:
    the chief (worker 0) as below, the others the same fits in lockstep without touching the store.
    """
    name = config.training.strategy
    distribute.strategy(name)  # made before TensorFlow runs anything; checks TF_CONFIG
    prepared = steps.prepare(config)
    steps.check_plot_series(prepared)
    steps.check_learnable(prepared)
    if not distribute.is_chief(name):
        return _train_beside_the_chief(prepared, verbose)
    # The store is touched only once the data has passed its checks: bad data leaves nothing behind.
    tracking.configure()
    with steps.start_run(config.name):
        return train_in_run(prepared, register, verbose)


def _final_fit(prepared: steps.Prepared, bt_model: LSTMForecaster, verbose: int,
               initial: LSTMForecaster | None = None, warm: ModelConfig | None = None,
               say: Callable[[str], None] = log.info) -> tuple[LSTMForecaster, str]:
    """The forecaster fitted on all the data, and what it started from (a key of `_STARTS`).

    From ``initial`` (the champion) with ``warm``'s epochs when given; else, when ``[training]
    final_fit`` says so (`forecaster.defaults.warm_final_fit`), from the backtest model for
    ``final_epochs`` epochs: it has learnt all but the steps the backtest held back, so a few epochs on
    everything replace a second fit from scratch (never more epochs than ``epochs``, when that is set).
    ``say`` hears which, before the fit's epoch lines.
    """
    config = prepared.config

    def final_fit(with_config: ModelConfig, start: str, model: LSTMForecaster | None = None) -> LSTMForecaster:
        epochs = with_config.training.epochs
        count = "up to the derived number of epochs" if epochs is None else f"{epochs} epoch(s)"
        say(f"final fit: on all the data, {count}" + _STARTS[start])
        return steps.fit(with_config, prepared.frame, verbose, initial=model, label="final fit")

    if initial is not None:
        return final_fit(warm or config, "champion", initial), "champion"
    held_back = config.backtest.n_windows * prepared.step
    lengths = prepared.frame.groupby(prepared.columns.id, sort=False).size().to_numpy()
    if warm_final_fit(config.training.final_fit, held_back, lengths):
        t = config.training
        epochs = t.final_epochs if t.epochs is None else min(t.final_epochs, t.epochs)
        warm = replace(config, training=replace(t, epochs=epochs))
        return final_fit(warm, "warm", bt_model), "warm"
    return final_fit(config, "full"), "full"


def _train_beside_the_chief(prepared: steps.Prepared, verbose: int) -> TrainResult:
    """A multi-worker task other than the chief: `train_in_run`'s fits, in the same order, logging nothing."""
    bt_model, result = steps.backtest(prepared, verbose)
    final, _ = _final_fit(prepared, bt_model, verbose)
    return TrainResult(None, prepared.config.name, None, None, result, final)
