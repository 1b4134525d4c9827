"""The steps every job is made of, each with explicit inputs and outputs.

    prepare -> fit -> backtest -> log -> register -> promote      (pipelines.train)
    load -> forecast -> write                                     (pipelines.predict)
    prepare -> monitor -> [fit ... promote] -> load -> forecast -> write   (pipelines.run)

A step reads only its arguments and returns what the next one needs; the MLflow run a step logs to is
the active one, started by the job. Model loading (``resolve`` -> ``fetch_verified`` -> ``load``) lives
here too, so batch prediction, promotion and the scheduled job load models one way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import socket
import tempfile
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
from forecaster.calibration import coverage, interval_pairs, pair_key
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
from forecaster.data.io import read_frame
from forecaster.data.schema import Columns
from forecaster.data.validation import ValidatedFrame, parse_times, validate_frame
from forecaster.defaults import expected_seconds
from forecaster.errors import ConfigError, MissingColumnError, ModelError
from forecaster.forecaster import LSTMForecaster
from forecaster.integrity import MODEL_HASHES_TAG, artifact_hashes, changed_files

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
        frame = read_frame(source)
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
        if columns.time not in raw.columns:
            raise MissingColumnError(f"missing column {columns.time!r}; input has {list(raw.columns)}",
                                     column=columns.time)
        times = parse_times(raw[columns.time], columns.time)
        raw = raw[(times <= splits.as_of_timestamp(as_of, times)).to_numpy()]
    step = config.backtest.step or config.horizon
    vframe = validate_frame(raw, columns, freq=config.data.freq, missing_policy=config.data.missing_policy)
    return Prepared(config, raw, vframe, seasonal_period(vframe.freq), step)


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


def fit(config: ModelConfig, frame: pd.DataFrame, verbose: int = 1, prefix: str = "",
        initial: LSTMForecaster | None = None) -> LSTMForecaster:
    """A forecaster fitted on ``frame`` (losses logged to the active run under ``prefix``); ``initial``,
    a fitted forecaster of the same architecture, warm-starts it from its weights."""
    callbacks = [EpochLogger(prefix)] if mlflow.active_run() else []
    return make_forecaster(config, verbose).fit(frame, callbacks=callbacks, initial=initial)


def backtest(prepared: Prepared, verbose: int = 1,
             initial: LSTMForecaster | None = None) -> tuple[LSTMForecaster, BacktestResult]:
    """Fit on the data before the oldest origin (from ``initial``'s weights if given: it must not have
    seen data after that origin), then score it and seasonal naive on every window."""
    c = prepared.config
    n, columns = c.backtest.n_windows, prepared.columns
    log.info("backtest fit on the data before the first of %d origins", n)
    model = fit(c, splits.before_first_origin(prepared.frame, columns, c.horizon, n, prepared.step), verbose,
                prefix="backtest_fit.", initial=initial)
    result = run_backtest(model.predict, prepared.frame, columns, c.horizon, n, prepared.step, prepared.season,
                          model.quantiles_)
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
    for lo, hi in interval_pairs(model.quantiles_):
        key = pair_key(lo, hi)
        if key not in model.calibration_:
            continue
        corrections = model.calibration_[key]
        before = coverage(result.forecasts[~result.forecasts[FALLBACK_COLUMN]], model.columns_, lo, hi)
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


def start_run(experiment_name: str, tags: dict[str, str] | None = None) -> mlflow.ActiveRun:
    """A new MLflow run of ours, tagged with this host and process (see `mark_abandoned_runs`); runs
    that earlier processes of this host left RUNNING are marked FAILED first."""
    experiment_id = tracking.ensure_experiment(experiment_name)
    for run_id in mark_abandoned_runs(MlflowClient(), experiment_id):
        log.warning("run %s was left RUNNING by a process that died: marked FAILED", run_id)
    own = {"forecaster.host": socket.gethostname(), "forecaster.pid": str(os.getpid())}
    return mlflow.start_run(experiment_id=experiment_id, tags=own | (tags or {}))


def log_inputs(prepared: Prepared) -> None:
    """The config, the resolved frequency and season, the data's fingerprint and report, and versions."""
    params = {**prepared.config.to_params(), "data.freq": prepared.vframe.freq, "data.season": prepared.season,
              **prepared.fingerprint()}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.set_tags({f"version.{name}": importlib.metadata.version(name) for name in PINNED}
                    | {"version.forecaster": forecaster.__version__})
    mlflow.log_dict({**prepared.vframe.report, "too_short": prepared.too_short}, "data_report.json")


def log_evaluation(prepared: Prepared, result: BacktestResult, fits: dict[str, dict[str, list[float]]]) -> None:
    """The backtest's per-series table and two plots, under ``evaluation/`` of the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result.per_series.to_csv(out / "backtest_per_series.csv", index=False)
        _plots(out, result, fits, prepared.config)
        for name in ("backtest_per_series.csv", "loss_curves.png", "forecast_vs_actuals.png"):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")


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
    """A new registered version of ``name`` from ``model_uri``; returns its number."""
    return str(mlflow.register_model(model_uri, name).version)


@dataclass
class ChampionComparison:
    """The champion's figure, the challenger's on the same windows, and what those windows are."""

    version: str
    champion: float
    challenger: float
    basis: str


def compare_with_champion(client: MlflowClient, prepared: Prepared,
                          result: BacktestResult) -> ChampionComparison | None:
    """Score the champion where it has not seen the data (see `forecaster.registry`); None if there is none."""
    config = prepared.config
    version = registry.champion_version(client, config.name)
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
        champion = load(f"models:/{config.name}/{version}").pyfunc  # its files checked, as predict does
        wanted = champion.metadata.get_input_schema().input_names()  # not our validation's own columns
        scored = run_backtest(lambda h: champion.predict(h[[c for c in h.columns if c in wanted]]), prepared.frame,
                              columns, config.horizon, len(fresh), prepared.step, prepared.season, name="champion")
        ours = result.per_series[(result.per_series[MODEL_COLUMN] == LSTM)
                                 & result.per_series[WINDOW_COLUMN].isin(fresh)]
        challenger = summary_of(ours, columns)[metric]
        return ChampionComparison(version, float(scored.summary["champion"][metric]), float(challenger),
                                  f"{len(fresh)} backtest window(s) after the champion's training data")
    recorded = champion_run.data.metrics.get(f"backtest.lstm.{metric}")
    if recorded is None:
        return ChampionComparison(version, float("-inf"), float(result.summary[LSTM][metric]),
                                  "the champion has no recorded backtest: not replaced automatically")
    return ChampionComparison(version, float(recorded), float(result.summary[LSTM][metric]),
                              "recorded out-of-sample backtests (no window after the champion's training data)")


def judge(client: MlflowClient, prepared: Prepared, result: BacktestResult) -> registry.PromotionDecision:
    """The rule's decision (`forecaster.registry`) on a model whose backtest is ``result``."""
    config = prepared.config
    metric = config.promotion.metric
    versus = compare_with_champion(client, prepared, result)
    return registry.decide(
        metric, config.promotion.margin, float(result.summary[LSTM][metric]),
        float(result.summary[BASELINE][metric]),
        None if versus is None else versus.champion, None if versus is None else versus.version,
        basis="" if versus is None else versus.basis,
        challenger_on_basis=None if versus is None else versus.challenger)


def promote(client: MlflowClient, name: str, version: str, decision: registry.PromotionDecision) -> None:
    """Tag ``version`` with the decision, then move the aliases it calls for.

    Call `judge`, `register` and this under one `registry.promotion_lock`.
    """
    registry.apply_decision(client, name, version, decision)


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
    pyfunc: Any

    @property
    def forecaster(self) -> Any:
        """The `LSTMForecaster` inside the pyfunc (our own checks replace MLflow's schema enforcement)."""
        return self.pyfunc.unwrap_python_model().forecaster


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


def fetch_verified(uri: str, into: Path) -> str:
    """Download the model at ``uri`` into ``into`` and check every file against the SHA-256 recorded in
    its run when it was logged; returns the local folder to load. ModelError if a file differs, is
    missing or was added. Models logged before hashes were recorded load as they are."""
    run_id = _run_of(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
        recorded = None if run_id is None else MlflowClient().get_run(run_id).data.tags.get(MODEL_HASHES_TAG)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot fetch {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    if recorded is not None:
        changed = changed_files(json.loads(recorded), local)
        if changed:
            raise ModelError(f"{uri}: files {changed[:5]} differ from the SHA-256 recorded in run {run_id} when "
                             f"the model was logged (changed, removed or added): refusing to load it")
    return str(local)


def load(model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` against the configured registry, check its files, and load that version once."""
    tracking.configure()
    name, version, uri = resolve(model_uri)
    try:
        # The checked copy is what loads; the model reads all of it into memory, so it goes afterwards.
        with tempfile.TemporaryDirectory(prefix="forecaster-model-") as tmp:
            pyfunc = mlflow.pyfunc.load_model(uri if version == "local" else fetch_verified(uri, Path(tmp)))
    except ModelError:
        raise
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot load {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    if not hasattr(pyfunc.unwrap_python_model(), "forecaster"):
        raise ModelError(f"{uri} is an MLflow model but not one of ours (no forecaster inside)")
    return LoadedModel(name, version, uri, pyfunc)


# --------------------------------------------------------------------------- forecast


def forecast(model: LoadedModel, history: pd.DataFrame, horizon: int | None = None,
             quantiles: list[float] | None = None) -> pd.DataFrame:
    """The forecast frame for ``history``, with the model name and version on every row."""
    out = model.forecaster.predict(history, horizon=horizon, quantiles=quantiles)
    out[MODEL_NAME_COLUMN] = model.name
    out[MODEL_VERSION_COLUMN] = model.version
    return out


# --------------------------------------------------------------------------- plots


def _plots(out: Path, result: BacktestResult, fits: dict[str, dict[str, list[float]]], config: ModelConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for label, history in fits.items():
        for key, values in history.items():
            ax.plot(np.arange(1, len(values) + 1), values, label=f"{label} {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled)")
    ax.legend()
    fig.savefig(out / "loss_curves.png", dpi=90, bbox_inches="tight")
    plt.close(fig)

    c = config.data
    last = result.forecasts[result.forecasts[WINDOW_COLUMN] == result.forecasts[WINDOW_COLUMN].max()]
    ids = list(pd.unique(last[c.id]))[:6]
    fig, axes = plt.subplots(len(ids), 1, figsize=(9, 2.2 * len(ids)), squeeze=False)
    qs = sorted(config.quantiles)
    for ax, sid in zip(axes[:, 0], ids):
        part = last[last[c.id] == sid]
        ax.plot(part[c.time], part[c.target], color="black", label="actual")
        ax.plot(part[c.time], part[FORECAST_COLUMN], label="forecast")
        ax.plot(part[c.time], part[BASELINE], alpha=0.6, label="seasonal naive")
        if len(qs) >= 2:
            ax.fill_between(part[c.time], part[quantile_name(qs[0])], part[quantile_name(qs[-1])], alpha=0.2,
                            label=f"{quantile_name(qs[0])}-{quantile_name(qs[-1])}")
        ax.set_title(str(sid), fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "forecast_vs_actuals.png", dpi=90)
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
