"""Register and promote: the new version, its comparison with the champion on the same data, the decision,
and runs left RUNNING by killed jobs."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient

from forecaster.contract import (
    BASELINE,
    CUTOFF_COLUMN,
    LSTM,
    MODEL_COLUMN,
    WINDOW_COLUMN,
    input_schema,
)
from forecaster.evaluation.backtest import BacktestResult, run_backtest, summary_of
from forecaster.ops import registry
from pipelines.steps.loading import load, process_alive
from pipelines.steps.prepare import Prepared

log = logging.getLogger("forecaster.steps")


def register(model_uri: str, name: str) -> str:
    """A new registered version of ``name`` from ``model_uri``; returns its number.

    MLflow prints its own lines for this ("Successfully registered model ...", "Created version ...")
    straight to stderr; they are caught and logged in the job's format instead."""
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        version = str(mlflow.register_model(model_uri, name).version)
    for line in said.getvalue().splitlines():
        if line.strip():
            log.info("mlflow: %s", line.strip())
    return version


@dataclass
class ChampionComparison:
    """The champion's figure, the challenger's on the same windows, and what those windows are."""

    version: str
    champion: float
    challenger: float
    basis: str


def compare_with_champion(client: MlflowClient, prepared: Prepared, result: BacktestResult,
                          versus: str | None = registry.CHAMPION) -> ChampionComparison | None:
    """Score the champion where it has not seen the data (see `forecaster.ops.registry`); None if there is none.

    ``versus`` is the version to compare with: the one holding `champion` (the default), a version
    number (the scheduled job's champion for a past as-of: `pipelines.run.usable_version`), or None.
    """
    config = prepared.config
    version = registry.champion_version(client, config.name) if versus == registry.CHAMPION else versus
    if version is None:
        return None
    metric = config.promotion.metric
    champion_run = client.get_run(client.get_model_version(config.name, version).run_id)
    columns = prepared.columns
    fresh: list[int] = []
    try:
        trained_until = pd.Timestamp(champion_run.data.params["data.end"])
        cutoffs = result.per_series.groupby(WINDOW_COLUMN)[CUTOFF_COLUMN].min()
        fresh = [int(k) for k, cutoff in cutoffs.items() if cutoff >= trained_until]
    except (KeyError, TypeError, ValueError):
        fresh = []  # no record of its training data, or incomparable time zones: use the recorded figures
    if fresh:
        champion = load(f"models:/{config.name}/{version}")  # its files checked, as predict does
        wanted = [name for name, _, _ in input_schema(champion.forecaster.columns_)]  # not our validation's own
        scored = run_backtest(lambda h: champion.predict(h[[c for c in h.columns if c in wanted]]), prepared.frame,
                              columns, config.horizon, len(fresh), prepared.step, prepared.season, name="champion")
        ours = result.per_series[(result.per_series[MODEL_COLUMN] == LSTM)
                                 & result.per_series[WINDOW_COLUMN].isin(fresh)]
        challenger = summary_of(ours, columns)[metric]
        return ChampionComparison(version, float(scored.summary["champion"][metric]), float(challenger),
                                  f"{len(fresh)} backtest window(s) after the champion's training data")
    recorded = champion_run.data.metrics.get(f"backtest.{LSTM}.{metric}")
    if recorded is None:
        return ChampionComparison(version, float("-inf"), float(result.summary[LSTM][metric]),
                                  "the champion has no recorded backtest: not replaced automatically")
    return ChampionComparison(version, float(recorded), float(result.summary[LSTM][metric]),
                              "recorded out-of-sample backtests (no window after the champion's training data)")


def judge(client: MlflowClient, prepared: Prepared, result: BacktestResult,
          champion: str | None = registry.CHAMPION) -> registry.PromotionDecision:
    """The rule's decision (`forecaster.ops.registry`) on a model whose backtest is ``result``, against
    ``champion`` (see `compare_with_champion`)."""
    config = prepared.config
    metric = config.promotion.metric
    versus = compare_with_champion(client, prepared, result, champion)
    return registry.decide(
        metric, config.promotion.margin, float(result.summary[LSTM][metric]),
        float(result.summary[BASELINE][metric]),
        None if versus is None else versus.champion, None if versus is None else versus.version,
        basis="" if versus is None else versus.basis,
        challenger_on_basis=None if versus is None else versus.challenger)


def promote(client: MlflowClient, name: str, version: str, decision: registry.PromotionDecision,
            move_aliases: bool = True) -> None:
    """Tag ``version`` with the decision, then move the aliases it calls for (unless ``move_aliases`` is
    False: a version trained for a past as-of, older than the champion's data, takes no alias).

    Call `judge`, `register` and this under one `registry.promotion_lock`.
    """
    registry.apply_decision(client, name, version, decision, move_aliases)


def mark_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Runs of ours left RUNNING by a process of this host that is gone: marked FAILED, and the versions
    they registered without a decision tagged so. Returns their ids."""
    host = socket.gethostname()
    abandoned = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("forecaster.host") != host or not tags.get("forecaster.pid", "").isdigit():
            continue
        if process_alive(int(tags["forecaster.pid"])):
            continue
        client.set_tag(run.info.run_id, "forecaster.abandoned", "its process died before the run ended")
        client.set_terminated(run.info.run_id, status="FAILED")
        abandoned.append(run.info.run_id)
    for run_id in abandoned:
        for mv in client.search_model_versions(f"run_id = '{run_id}'"):
            if "promotion.decision" not in (mv.tags or {}):
                client.set_model_version_tag(mv.name, mv.version, "promotion.decision",
                                             "none: its training died before deciding")
    return abandoned
