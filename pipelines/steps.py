"""The steps every job is made of, each with explicit inputs and outputs.

    prepare -> fit -> backtest -> log -> register -> promote      (pipelines.train)
    load -> forecast -> write                                     (pipelines.predict)
    prepare -> monitor -> [fit ... promote] -> load -> forecast -> write   (pipelines.run)

A step reads only its arguments and returns what the next one needs; the MLflow run a step logs to is
the active one, started by the job. Model loading (``resolve`` -> ``fetch_verified`` -> ``load``) lives
here too, so batch prediction, promotion and the scheduled job load models one way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import forecaster
from forecaster import registry, splits, tracking
from forecaster.backtest import BacktestResult, run_backtest, summary_of
from forecaster.combination import LEARNED
from forecaster.config import ModelConfig
from forecaster.contract import (
    BASELINE,
    CUTOFF_COLUMN,
    FALLBACK_COLUMN,
    FORECAST_COLUMN,
    LSTM,
    MODEL_COLUMN,
    MODEL_NAME_COLUMN,
    MODEL_VERSION_COLUMN,
    WINDOW_COLUMN,
    input_schema,
    output_schema,
    quantile_name,
)
from forecaster.data.frequency import seasonal_period
from forecaster.data.io import read_frame, temporary
from forecaster.data.schema import Columns
from forecaster.data.validation import ValidatedFrame, validate_frame
from forecaster.defaults import expected_seconds
from forecaster.errors import ConfigError, DataError, MissingColumnError, ModelError
from forecaster.forecaster import LSTMForecaster
from forecaster.integrity import (
    DOWNLOAD_METADATA,
    MODEL_HASHES_TAG,
    artifact_hashes,
    changed_files,
    read_mlmodel,
    saved_forecaster,
    unlisted_entries,
)
from forecaster.metrics import coverage, intervals

log = logging.getLogger("forecaster.steps")
PINNED = ("tensorflow", "keras", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")
PACKAGE_DIR = Path(forecaster.__file__).resolve().parent


# --------------------------------------------------------------------------- prepare


@dataclass
class Prepared:
    """A config's data, validated: what fit, backtest, promotion and monitoring read."""

    config: ModelConfig
    raw: pd.DataFrame  # the input rows used (cut at the as-of, if any): what a forecast reads
    vframe: ValidatedFrame
    season: int
    step: int  # the backtest's origin spacing

    @property
    def frame(self) -> pd.DataFrame:
        return self.vframe.frame

    @property
    def columns(self) -> Columns:
        return self.config.data.columns()

    @cached_property
    def too_short(self) -> dict[str, Any]:
        """Which series are too short for what, by the rules the forecaster and the backtest apply
        (counts, and up to 1,000 ids of each): written to ``data_report.json`` and printed; computed once."""
        c, h = self.columns, self.config.horizon
        model = make_forecaster(self.config, verbose=0)
        size = self.frame.groupby(c.id, sort=True).size()
        rules = model.series_rules(self.vframe.freq, size.to_numpy())
        need, window, lengths = rules.min_history, rules.input_size, size.to_numpy()
        rules = {
            "fallback": (~rules.forecast_by_network(lengths),
                         f"fewer than min_history = {need} steps: seasonal naive at prediction"),
            "not_trained": (~rules.trainable(lengths), f"fewer than min_history + horizon = {need + h} steps: no "
                                                      "training window"),
            "not_backtested": (~splits.has_cutoff(lengths, h), f"fewer than horizon + 1 = {h + 1} steps: "
                                                               "cannot be scored"),
            "padded": (rules.padded(lengths), f"shorter than input_size + 2 horizons = {window + 2 * h} steps: "
                                              "trained on left-padded, masked windows"),
        }
        out: dict[str, Any] = {"min_history": need, "input_size": window, "n_series": len(size)}
        for key, (mask, rule) in rules.items():
            ids = [str(i) for i in size.index[mask]]
            out[key] = {"count": len(ids), "rule": rule, "series": ids[:1000]}
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Series count, rows, time range and a content hash of the data used."""
        c, frame = self.columns, self.frame
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        return {"data.n_series": int(frame[c.id].nunique()), "data.n_rows": len(frame),
                "data.start": str(frame[c.time].min()), "data.end": str(frame[c.time].max()),
                "data.sha256": digest[:16]}


def load_source(config: ModelConfig) -> pd.DataFrame:
    """The config's raw data: ``package:m4_hourly`` (ships with the package) or a CSV/Parquet path."""
    source = config.source_path()
    if source == "package:m4_hourly":
        from forecaster.datasets import load_m4_hourly

        frame = load_m4_hourly(split="train")
    elif source.startswith("package:"):
        raise ConfigError(f"unknown packaged dataset {source!r}; available: package:m4_hourly")
    else:
        frame = read_frame(source, config.data.id)
    limit = config.data.series_limit
    if limit:
        if config.data.id not in frame.columns:
            raise MissingColumnError(f"missing column {config.data.id!r}; input has {list(frame.columns)}",
                                     column=config.data.id)
        keep = pd.unique(frame[config.data.id])[:limit]
        frame = frame[frame[config.data.id].isin(keep)]
    return frame


def prepare(config: ModelConfig, raw: pd.DataFrame | None = None,
            as_of: str | pd.Timestamp | None = None) -> Prepared:
    """Read (unless ``raw`` is given), cut at ``as_of`` and validate the config's data.

    Short series are kept: the forecaster pads or falls back for them, the backtest scores what it
    can (`Prepared.too_short` says which series fall under which rule).
    """
    raw = load_source(config) if raw is None else raw
    columns = config.data.columns()
    if as_of is not None:
        raw, cut = splits.as_of_split(raw, columns, as_of)
    step = config.backtest.step or config.horizon
    vframe = validate_frame(raw, columns, freq=config.data.freq, missing_policy=config.data.missing_policy)
    if as_of is not None:
        _check_as_of_near_end(config, vframe, cut)
    return Prepared(config, raw, vframe, seasonal_period(vframe.freq), step)


def _check_as_of_near_end(config: ModelConfig, vframe: ValidatedFrame, cut: pd.Timestamp) -> None:
    """ConfigError when the as-of is more than a horizon after the data's last time: the forecasts would
    start after the data's end, not after the as-of (an as-of in 2030 on data ending in 2024)."""
    end = vframe.frame[config.data.columns().time].max()
    reach = end + config.horizon * pd.tseries.frequencies.to_offset(vframe.freq)
    if cut > reach:
        raise ConfigError(f"as-of {cut} is more than the horizon ({config.horizon} steps of {vframe.freq}) after the "
                          f"data's last time {end}: the forecasts would start at {end}, not at the as-of. Give an "
                          f"as-of at most {reach}, or bring the data up to date")


def check_learnable(prepared: Prepared) -> None:
    """DataError, before a training, when every series is constant: there is nothing to learn, and
    MASE (its scale is 0) is undefined for each, so no version could ever be promoted."""
    c = prepared.columns
    spread = prepared.frame.groupby(c.id, sort=False)[c.target].agg(lambda y: np.nanmax(y) - np.nanmin(y))
    if len(spread) and not (spread > 0).any():
        raise DataError(f"every series is constant ({len(spread)} series): there is nothing to learn, and MASE "
                        f"is undefined for each (its scale is 0); nothing trained or registered",
                        column=c.target, series=list(spread.index[:5]))


def undefined_scores(result: BacktestResult, columns: Columns, metric: str) -> list[str]:
    """The series whose backtest ``metric`` is undefined (NaN: constant or all-zero histories for MASE),
    which the mean over series leaves out."""
    rows = result.per_series
    if metric not in rows.columns:
        return []
    lstm = rows[rows[MODEL_COLUMN] == LSTM]
    return sorted({str(i) for i in lstm.loc[lstm[metric].isna(), columns.id]})


# --------------------------------------------------------------------------- fit and backtest


def make_forecaster(config: ModelConfig, verbose: int = 1) -> LSTMForecaster:
    """An unfitted forecaster with the config's settings."""
    return LSTMForecaster.from_config(config, verbose)


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's losses to the active MLflow run (``prefix`` tells fits apart)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=epoch)


class EpochLines(keras.callbacks.Callback):
    """One log line per epoch, in the job's own format and labelled with its fit ("final fit: epoch 2/3:
    loss 0.41, val_loss 0.44, 5.1 s"): what Keras' ``verbose=2`` prints, without the label, otherwise."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        losses = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if "loss" in k)
        log.info("%s: epoch %d/%d: %s, %.1f s", self.label, epoch + 1, self.params.get("epochs", 0), losses,
                 time.monotonic() - self._started)


def fit(config: ModelConfig, frame: pd.DataFrame, verbose: int = 1, prefix: str = "",
        initial: LSTMForecaster | None = None, label: str = "fit") -> LSTMForecaster:
    """A forecaster fitted on ``frame`` (losses logged to the active run under ``prefix``); ``initial``,
    a fitted forecaster of the same architecture, warm-starts it from its weights.

    ``verbose`` 2 (a log, not a terminal) gives one `EpochLines` line per epoch labelled ``label``
    instead of Keras' unlabelled ones; 1 keeps Keras' progress bar, 0 says nothing.
    """
    callbacks: list[keras.callbacks.Callback] = [EpochLogger(prefix)] if mlflow.active_run() else []
    if verbose == 2:
        callbacks.append(EpochLines(label))
        verbose = 0
    return make_forecaster(config, verbose).fit(frame, callbacks=callbacks, initial=initial)


def backtest(prepared: Prepared, verbose: int = 1,
             initial: LSTMForecaster | None = None) -> tuple[LSTMForecaster, BacktestResult]:
    """Fit on the data before the oldest origin (from ``initial``'s weights if given: it must not have
    seen data after that origin), then score it and seasonal naive on every window."""
    c = prepared.config
    n, columns = c.backtest.n_windows, prepared.columns
    log.info("backtest fit on the data before the first of %d origins%s", n,
             "" if initial is None else " (warm start)")
    model = fit(c, splits.before_first_origin(prepared.frame, columns, c.horizon, n, prepared.step), verbose,
                prefix="backtest_fit.", initial=initial, label="backtest fit")
    members = None
    if model.combine == LEARNED:  # weighed on the backtest's windows, then scored there with those weights
        members = model.cross_validation(prepared.frame, n, prepared.step)
        model.learn_combination(members)
    result = run_backtest(model.predict, prepared.frame, columns, c.horizon, n, prepared.step, prepared.season,
                          model.quantiles_)
    result.members = members
    if mlflow.active_run():
        for name, metrics in result.summary.items():
            mlflow.log_metrics({f"backtest.{name}.{k}": float(v) for k, v in metrics.items() if np.isfinite(v)})
    return model, result


def calibrate(model: LSTMForecaster, result: BacktestResult) -> str | None:
    """Set ``model``'s conformal interval corrections from the backtest's forecasts; log them, with
    each interval's backtest coverage, to the active run. A line saying what changed, or None."""
    model.calibrate(result.forecasts)
    if not model.calibration_:
        return None
    parts = []
    scored = result.forecasts[~result.forecasts[FALLBACK_COLUMN]]
    for interval in intervals(model.quantiles_):
        key, lo, hi = interval.key, interval.lo, interval.hi
        if key not in model.calibration_:
            continue
        corrections = model.calibration_[key]
        before = coverage(scored[model.columns_.target], scored[quantile_name(lo)], scored[quantile_name(hi)])
        mean = float(np.mean(corrections))
        parts.append(f"{key} covered {before:.3f} of the backtest (nominal {hi - lo:.2f}), width x{1 + 2 * mean:.2f}")
        if mlflow.active_run():
            mlflow.log_metrics({f"calibration.{key}.backtest_coverage": before,
                                f"calibration.{key}.mean_correction": mean})
    if mlflow.active_run():
        mlflow.log_dict(model.calibration_, "calibration.json")
    return "; ".join(parts)


# --------------------------------------------------------------------------- log the model


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (inference of requirements is slow and was wrong)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]


def signature(config: ModelConfig) -> ModelSignature:
    """The pyfunc contract: the input columns in, `forecaster.contract.output_schema` out; params
    horizon and quantiles."""
    columns = config.data.columns()
    inputs = [ColSpec(kind, name, required=required) for name, kind, required in input_schema(columns)]
    outputs = [ColSpec(kind, name) for name, kind in output_schema(columns, config.quantiles)]
    params = ParamSchema([ParamSpec("horizon", "long", config.horizon),
                          ParamSpec("quantiles", "double", [float(q) for q in sorted(config.quantiles)], (-1,))])
    return ModelSignature(Schema(inputs), Schema(outputs), params)


KIND_TAG = "forecaster.kind"  # "train" (forecaster train) or "run" (the scheduled job): the UI's filter


def start_run(experiment_name: str, tags: dict[str, str] | None = None, kind: str = "train",
              name: str | None = None) -> mlflow.ActiveRun:
    """A new MLflow run of ours named for what it is (``name``, default ``"<kind> <experiment>"``),
    tagged with its kind and with this host and process (see `mark_abandoned_runs`); runs that earlier
    processes of this host left RUNNING are marked FAILED first."""
    experiment_id = tracking.ensure_experiment(experiment_name)
    for run_id in mark_abandoned_runs(MlflowClient(), experiment_id):
        log.warning("run %s was left RUNNING by a process that died: marked FAILED", run_id)
    own = {"forecaster.host": socket.gethostname(), "forecaster.pid": str(os.getpid()), KIND_TAG: kind}
    return mlflow.start_run(experiment_id=experiment_id, run_name=name or f"{kind} {experiment_name}",
                            tags=own | (tags or {}))


def log_inputs(prepared: Prepared) -> None:
    """The config, the resolved frequency and season, the data's fingerprint and report, and versions."""
    params = {**prepared.config.to_params(), "data.freq": prepared.vframe.freq, "data.season": prepared.season,
              **prepared.fingerprint()}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.set_tags({f"version.{name}": importlib.metadata.version(name) for name in PINNED}
                    | {"version.forecaster": forecaster.__version__})
    mlflow.log_dict({**prepared.vframe.report, "too_short": prepared.too_short}, "data_report.json")
    log_dataset(prepared)


def log_dataset(prepared: Prepared, context: str = "training") -> None:
    """The data as an MLflow dataset input of the active run (the UI's "Datasets"): its source, schema,
    size and, as digest, the content hash of `Prepared.fingerprint`; the rows themselves are not copied."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import from_pandas

    source = prepared.config.source_path()
    resolved = None
    if not source.startswith("package:"):
        with warnings.catch_warnings():  # a local path matches MLflow's "" and "file" schemes alike: it says so
            warnings.simplefilter("ignore", UserWarning)
            try:
                resolved = resolve_dataset_source(source)
            except mlflow.exceptions.MlflowException:
                resolved = None
    dataset = from_pandas(prepared.raw, source=resolved or CodeDatasetSource({"forecaster.source": source}),
                          name=prepared.config.name, targets=prepared.columns.target,
                          digest=prepared.fingerprint()["data.sha256"])
    mlflow.log_input(dataset, context=context)


def log_evaluation(prepared: Prepared, result: BacktestResult, fits: dict[str, dict[str, list[float]]],
                   continues: bool = True) -> None:
    """The backtest's per-series table and two plots, under ``evaluation/`` of the active run.

    ``fits`` are the losses of each fit in order; ``continues``: the last one went on from the one
    before (a warm start), so its epochs are numbered on after them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result.per_series.to_csv(out / "backtest_per_series.csv", index=False)
        plot_losses(fits, out / "loss_curves.png", continues)
        plot_forecasts(prepared, result, out / "forecast_vs_actuals.png")
        for name in ("backtest_per_series.csv", "loss_curves.png", "forecast_vs_actuals.png"):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")


def log_headline(prepared: Prepared, result: BacktestResult) -> None:
    """The promotion metric of the backtest, the network's and seasonal naive's, as top-level metrics
    (``mase``, ``seasonal_naive_mase``): the first columns a run list can show, beside the full
    ``backtest.<model>.<metric>`` set."""
    metric = prepared.config.promotion.metric
    figures = {metric: result.summary[LSTM][metric], f"seasonal_naive_{metric}": result.summary[BASELINE][metric]}
    mlflow.log_metrics({k: float(v) for k, v in figures.items() if np.isfinite(v)})


def describe_run(prepared: Prepared, result: BacktestResult, version: str | None,
                 decision: registry.PromotionDecision | None) -> None:
    """The active run's description (the UI's "Description", tag ``mlflow.note.content``): the data,
    the backtest's headline figures and the registry's decision, in a few lines of Markdown."""
    c, fp = prepared.config, prepared.fingerprint()
    metric = c.promotion.metric
    lines = [f"**{c.name}**: {fp['data.n_series']} series, {fp['data.n_rows']} rows from {fp['data.start']} "
             f"to {fp['data.end']} (digest {fp['data.sha256']}).",
             f"Backtest on {c.backtest.n_windows} window(s) of {c.horizon} steps: {metric} "
             f"**{result.summary[LSTM][metric]:.4f}**, seasonal naive {result.summary[BASELINE][metric]:.4f}."]
    if version is not None and decision is not None:
        lines.append(f"Version {version}: **{'champion' if decision.promoted else 'challenger'}** ({decision.reason}).")
    else:
        lines.append("Not registered.")
    mlflow.set_tag("mlflow.note.content", "\n\n".join(lines))
def log_model(config: ModelConfig, model: LSTMForecaster) -> str:
    """Log ``model`` as the active run's pyfunc model, with the SHA-256 of every file as a run tag;
    returns its URI."""
    run = mlflow.active_run()
    with tempfile.TemporaryDirectory() as tmp:
        saved = model.save(Path(tmp) / "forecaster")
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PACKAGE_DIR / "mlflow_model.py"),
            artifacts={"forecaster": str(saved)},
            signature=signature(config),
            model_config={"model_name": config.name, "run_id": run.info.run_id},
            pip_requirements=pip_requirements(),
        )
        logged = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(Path(tmp) / "logged")))
        mlflow.set_tag(MODEL_HASHES_TAG, json.dumps(artifact_hashes(logged), sort_keys=True))
    return info.model_uri


# --------------------------------------------------------------------------- register and promote


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
    """Score the champion where it has not seen the data (see `forecaster.registry`); None if there is none.

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
    """The rule's decision (`forecaster.registry`) on a model whose backtest is ``result``, against
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


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- load a model


_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
URI_FORMS = ("models:/<name>@<alias>", "models:/<name>/<version>", "models:/<name>/latest",
             "models:/<name>/<stage>", "runs:/<run_id>/<path>", "a local model folder")


@dataclass
class LoadedModel:
    """A model resolved to one registry version (or one run, or one folder), loaded once.

    ``name`` and ``version`` go on every forecast row: the registered name and version number, or for
    a run the run's model path and ``run:<run_id>``, or for a folder its path and ``local``.
    """

    name: str
    version: str
    uri: str
    forecaster: LSTMForecaster

    def predict(self, history: pd.DataFrame, horizon: int | None = None,
                quantiles: list[float] | None = None) -> pd.DataFrame:
        """The forecast frame for ``history``, with the model name and version on every row."""
        out = self.forecaster.predict(history, horizon=horizon, quantiles=quantiles)
        out[MODEL_NAME_COLUMN] = self.name
        out[MODEL_VERSION_COLUMN] = self.version
        return out


def _registered_version(client: MlflowClient, name: str, ref: str) -> str:
    """The version number that ``models:/<name>/<ref>`` names: a number, ``latest`` or a stage."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"cannot read registered model {name!r}: {exc.message}") from None
    if not versions:
        raise ConfigError(f"no registered model named {name!r} (or it has no versions)")
    numbers = sorted(int(v.version) for v in versions)
    if ref.isdigit():
        if int(ref) not in numbers:
            raise ConfigError(f"model {name!r} has no version {ref}; its versions: {numbers}")
        return ref
    if ref.lower() == "latest":
        return str(numbers[-1])
    staged = [int(v.version) for v in versions if (v.current_stage or "").lower() == ref.lower()]
    if not staged:
        raise ConfigError(f"model {name!r} has no version in stage {ref!r} (and {ref!r} is not a version number)")
    return str(max(staged))


def resolve(model_uri: str) -> tuple[str, str, str]:
    """(name, version, the URI to load) of any model URI that `mlflow.pyfunc.load_model` takes here."""
    registry_match = _REGISTRY_URI.match(model_uri)
    if registry_match:
        name, client = registry_match["name"], MlflowClient()
        if registry_match["alias"]:
            try:
                version = str(client.get_model_version_by_alias(name, registry_match["alias"]).version)
            except mlflow.exceptions.MlflowException as exc:
                raise ConfigError(f"no version of model {name!r} holds alias {registry_match['alias']!r}: "
                                  f"{exc.message}") from None
        else:
            version = _registered_version(client, name, registry_match["ref"])
        return name, version, f"models:/{name}/{version}"
    run_match = _RUN_URI.match(model_uri)
    if run_match:
        try:
            MlflowClient().get_run(run_match["run"])
        except mlflow.exceptions.MlflowException:
            raise ConfigError(f"no run {run_match['run']!r} in the tracking store ({model_uri})") from None
        return run_match["path"], f"run:{run_match['run']}", model_uri
    local = Path(model_uri.removeprefix("file://"))
    if "://" not in model_uri.removeprefix("file://") and local.is_dir():
        if not (local / "MLmodel").is_file():
            raise ConfigError(f"{local} is a folder but not an MLflow model (no MLmodel file in it)")
        return str(local), "local", str(local.resolve())
    raise ConfigError(f"cannot resolve model {model_uri!r}; give one of: {', '.join(URI_FORMS)}")


def _run_of(uri: str) -> str | None:
    """The run that logged the model ``uri`` (a resolved ``models:/name/N`` or ``runs:/``), else None."""
    if uri.startswith("runs:/"):
        return uri.split("/")[1]
    match = _REGISTRY_URI.match(uri)
    if match and match["ref"]:
        return MlflowClient().get_model_version(match["name"], match["ref"]).run_id
    return None


def _local_folder(uri: str) -> Path | None:
    """The folder a resolved local-folder URI names (see `resolve`), else None."""
    return None if "://" in uri or uri.startswith(("models:/", "runs:/")) else Path(uri)


def _recorded_hashes(run_id: object) -> dict[str, str] | None:
    """The SHA-256 record of the model files that run ``run_id`` logged, None if it has none here."""
    try:
        recorded = None if run_id is None else MlflowClient().get_run(str(run_id)).data.tags.get(MODEL_HASHES_TAG)
    except mlflow.exceptions.MlflowException:
        recorded = None
    return None if recorded is None else json.loads(recorded)


def _refuse_changed(uri: str, run_id: object, changed: list[str]) -> None:
    if changed:
        raise ModelError(f"{uri}: files {changed[:5]} differ from the SHA-256 recorded in run {run_id} when "
                         f"the model was logged (changed, removed or added): refusing to load it")


def fetch_verified(uri: str, into: Path) -> str:
    """Copy the model at ``uri`` into ``into`` (a download, or a copy of a local folder), check that loading
    it runs only our code (`integrity.saved_forecaster`) and every file against the SHA-256 recorded in
    its run when it was logged; returns the local folder to load. ModelError if a file differs, is
    missing or was added, or a check fails. Registry and run models logged before hashes were recorded
    load as they are; a local folder must have a record (its MLmodel's run, in the tracking store), or
    it is refused: a folder on its own vouches for nothing.
    """
    folder = _local_folder(uri)
    run_id = recorded = None
    if folder is not None:
        # The folder as found, from its listing and MLmodel alone: why it is not ours, and any file its
        # record lacks, before a byte of it is copied or hashed. The copy is then checked in full.
        saved_forecaster(folder, uri)
        run_id = read_mlmodel(folder, uri).get("run_id")
        recorded = _recorded_hashes(run_id)
        if recorded is None:
            raise ModelError(f"{uri}: no SHA-256 record of its files: its MLmodel names run {run_id!r}, which has "
                             f"none in the tracking store {mlflow.get_tracking_uri()}; point MLFLOW_TRACKING_URI at "
                             f"the store that logged it, or load it from there (models:/<name>/<version>)")
        _refuse_changed(uri, run_id, unlisted_entries(recorded, folder))
    try:
        if folder is not None:
            # MLflow's download metadata is in no record and read by nothing here: not copied either.
            shutil.copytree(folder, into, symlinks=True, dirs_exist_ok=True,
                            ignore=lambda at, ns: [n for n in ns if Path(at) == folder and n in DOWNLOAD_METADATA])
            local = into
        else:
            local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
    except (OSError, mlflow.exceptions.MlflowException) as exc:
        message = exc.message if isinstance(exc, mlflow.exceptions.MlflowException) else str(exc)
        raise ModelError(f"cannot fetch {uri}: {(message.strip().splitlines() or [''])[0][:300]}") from None
    saved_forecaster(local, uri)  # before any hash: says why a folder is not ours
    if folder is None:
        run_id = _run_of(uri)
        recorded = _recorded_hashes(run_id)
    if recorded is not None:
        _refuse_changed(uri, run_id, changed_files(recorded, local))
    return str(local)


MODEL_COPY_PREFIX = "forecaster-model-"  # + pid + "-": the checked copies `load` makes in $TMPDIR


def _clear_stale_model_copies() -> None:
    """Remove the checked copies that processes no longer alive left (a SIGKILL skips every cleanup)."""
    for path in Path(tempfile.gettempdir()).glob(f"{MODEL_COPY_PREFIX}*-*"):
        pid = path.name[len(MODEL_COPY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def load(model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` against the configured registry, check its files, and load that version once.

    The checked copy is what loads, and only its data is read: the network in Keras' safe mode and
    JSON, by the installed package. No file of the model is imported or unpickled (MLflow's loader,
    which would import the model's own copy of its code, is not used here).
    """
    tracking.configure()
    name, version, uri = resolve(model_uri)
    try:
        # The checked copy is what loads; the model reads all of its files into memory, so it goes afterwards
        # (recorded as this process's temporary, so a signal removes it too, and a killed run's is cleared).
        _clear_stale_model_copies()
        with tempfile.TemporaryDirectory(prefix=f"{MODEL_COPY_PREFIX}{os.getpid()}-") as tmp, temporary(tmp):
            model = LSTMForecaster.load(saved_forecaster(fetch_verified(uri, Path(tmp) / "model"), uri))
    except ModelError:
        raise
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot load {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    return LoadedModel(name, version, uri, model)


# --------------------------------------------------------------------------- forecast


def forecast(model: LoadedModel, history: pd.DataFrame, horizon: int | None = None,
             quantiles: list[float] | None = None) -> pd.DataFrame:
    """The forecast frame for ``history``, with the model name and version on every row."""
    return model.predict(history, horizon=horizon, quantiles=quantiles)


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def epoch_numbers(fits: dict[str, dict[str, list[float]]]) -> dict[str, np.ndarray]:
    """The epoch numbers `plot_losses` gives each fit: one after another, so a later fit's epochs are
    numbered on after the earlier ones' (a warm-started final fit continues the backtest fit's curve)."""
    numbers, first = {}, 0
    for label, history in fits.items():
        epochs = max((len(v) for v in history.values()), default=0)
        numbers[label] = np.arange(first + 1, first + epochs + 1)
        first += epochs
    return numbers


def plot_losses(fits: dict[str, dict[str, list[float]]], path: Path, continues: bool = True) -> None:
    """Each fit's losses per epoch, numbered on across fits (`epoch_numbers`), with a line where each
    later fit starts saying whether it went on from the one before (``continues``) or from scratch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    colours: dict[str, str] = {}
    numbers = epoch_numbers(fits)
    for n, (label, history) in enumerate(fits.items()):
        x = numbers[label]
        if n > 0 and len(x):
            ax.axvline(x[0] - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f" {label}" + (" (warm start)" if continues else " (from scratch)"), (x[0] - 0.5, 0.98),
                        xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top", color="grey")
        for key, values in history.items():
            colour = colours.setdefault(key, f"C{len(colours)}")
            ax.plot(x[:len(values)], values, color=colour, marker=".",
                    linestyle="-" if n == len(fits) - 1 else "--", label=f"{label} {key}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("loss (scaled)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def check_plot_series(prepared: Prepared) -> None:
    """ConfigError naming the series of ``[backtest] plot_series`` that are not in the data (checked
    before training, so a typo costs no fit)."""
    known = set(prepared.frame[prepared.columns.id].astype(str))
    missing = [s for s in prepared.config.backtest.plot_series if str(s) not in known]
    if missing:
        raise ConfigError(f"[backtest] plot_series names series not in the data: {missing[:5]}")


def plotted_series(prepared: Prepared, result: BacktestResult) -> dict[str, str]:
    """The series `plot_forecasts` draws, each with why: the worst, median and best by the network's
    backtest MASE, then those ``[backtest] plot_series`` names (see `check_plot_series`)."""
    id_col = prepared.columns.id
    check_plot_series(prepared)
    table = result.per_series[result.per_series[MODEL_COLUMN] == LSTM]
    scores = table.groupby(table[id_col].astype(str))["mase"].mean().dropna().sort_values(kind="stable")
    chosen: dict[str, str] = {}
    if len(scores):
        for why, at in (("worst", len(scores) - 1), ("median", (len(scores) - 1) // 2), ("best", 0)):
            chosen.setdefault(str(scores.index[at]), f"{why} MASE")
    for sid in prepared.config.backtest.plot_series:
        chosen.setdefault(str(sid), "named in [backtest] plot_series")
    return chosen


def plot_forecasts(prepared: Prepared, result: BacktestResult, path: Path) -> None:
    """Forecasts against actuals for the series of `plotted_series`: three horizons of history before the
    first backtest origin, every window's forecast with its outer quantile band and seasonal naive, and
    each series' scores over the windows in its title."""
    plt = _pyplot()
    config, c = prepared.config, prepared.columns
    chosen = plotted_series(prepared, result)
    forecasts = result.forecasts.assign(_id=result.forecasts[c.id].astype(str))
    frame = prepared.frame.assign(_id=prepared.frame[c.id].astype(str))
    table = result.per_series.assign(_id=result.per_series[c.id].astype(str))
    qs = sorted(config.quantiles)
    band = (quantile_name(qs[0]), quantile_name(qs[-1])) if len(qs) >= 2 else None
    fig, axes = plt.subplots(max(len(chosen), 1), 1, figsize=(10, 2.6 * max(len(chosen), 1)), squeeze=False)
    for ax, (sid, why) in zip(axes[:, 0], chosen.items()):
        part = forecasts[forecasts["_id"] == sid]
        series = frame[frame["_id"] == sid]
        if len(part):
            first = part[CUTOFF_COLUMN].min()
            before = series[series[c.time] <= first].tail(3 * config.horizon)
            series = pd.concat([before, series[series[c.time] > first]])
        else:
            series = series.tail(3 * config.horizon)
        ax.plot(series[c.time], series[c.target], color="black", linewidth=1, label="actual")
        for n, (_, window) in enumerate(part.groupby(WINDOW_COLUMN, sort=True)):
            ax.plot(window[c.time], window[FORECAST_COLUMN], color="C0", label="forecast" if n == 0 else None)
            ax.plot(window[c.time], window[BASELINE], color="C1", alpha=0.6, linestyle="--",
                    label="seasonal naive" if n == 0 else None)
            if band is not None and band[0] in window and band[1] in window:
                ax.fill_between(window[c.time], window[band[0]], window[band[1]], color="C0", alpha=0.2,
                                label=f"{band[0]}-{band[1]}" if n == 0 else None)
            ax.axvline(window[CUTOFF_COLUMN].iloc[0], color="grey", linestyle=":", linewidth=1)
        scores = table[table["_id"] == sid].groupby(MODEL_COLUMN)[["mase", "smape"]].mean()
        figures = ", ".join(f"{'forecast' if m == LSTM else 'seasonal naive'} MASE {scores.loc[m, 'mase']:.3f}"
                            for m in (LSTM, BASELINE) if m in scores.index)
        ax.set_title(f"{sid} ({why})" + (f": {figures}" if figures else ": not backtested (too short)"),
                     fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def describe_short(lengths: dict[str, Any], shown: int = 5) -> str | None:
    """One line on the short series of `Prepared.too_short`, or None when there are none."""
    parts = []
    for key, what in (("padded", "trained on padded windows"), ("not_trained", "too short to train on"),
                      ("fallback", "forecast by seasonal naive"), ("not_backtested", "too short to score")):
        entry = lengths[key]
        if entry["count"]:
            names = ", ".join(entry["series"][:shown]) + (", ..." if entry["count"] > shown else "")
            parts.append(f"{entry['count']} {what} ({names})")
    if not parts:
        return None
    return (f"short series (of {lengths['n_series']}; min_history {lengths['min_history']}, input_size "
            f"{lengths['input_size']}): " + "; ".join(parts))


def describe_resolved(model: LSTMForecaster) -> str:
    """The settings a fit used, in one line (`forecaster.defaults`)."""
    r = model.resolved_
    n = r.network
    skip = f"seasonal skip {n.skip_period}" if n.seasonal_skip else "no seasonal skip"
    budget = ""
    if {"epochs", "max_windows_per_series"} & set(r.derived) and r.budget_windows:
        budget = (f" (budget {r.budget_windows} window-epochs a fit, about "
                  f"{expected_seconds(r.budget_windows, r.input_size):.0f} s on 2 cores)")
    return (f"input_size {r.input_size}, {skip}, window_norm {n.window_norm}, "
            f"{r.max_windows_per_series} windows per series, up to {r.epochs} epochs{budget}")
