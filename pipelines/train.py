"""The training pipeline: config -> data -> backtest -> final fit -> MLflow run -> registry -> promotion."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import socket
import tempfile
import warnings
from dataclasses import dataclass
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
from forecaster import registry, tracking
from forecaster.backtest import BASELINE, BacktestResult, first_origin_frame, run_backtest
from forecaster.config import ModelConfig
from forecaster.data.frequency import seasonal_period
from forecaster.data.io import read_frame
from forecaster.data.validation import validate_frame
from forecaster.errors import ConfigError
from forecaster.forecaster import (
    FORECAST_COLUMN,
    MODEL_COLUMN,
    MODEL_NAME_COLUMN,
    MODEL_VERSION_COLUMN,
    LSTMForecaster,
)
from forecaster.integrity import MODEL_HASHES_TAG, artifact_hashes
from forecaster.metrics import quantile_name, summarize
from pipelines.predict import load as load_model

log = logging.getLogger("forecaster.train")
PINNED = ("tensorflow", "keras", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")
PACKAGE_DIR = Path(forecaster.__file__).resolve().parent


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    model_name: str
    version: str | None
    decision: registry.PromotionDecision | None
    backtest: BacktestResult


def load_source(config: ModelConfig) -> pd.DataFrame:
    """The config's data: ``package:m4_hourly`` (ships with the package) or a CSV/Parquet path."""
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
        keep = pd.unique(frame[config.data.id])[:limit]
        frame = frame[frame[config.data.id].isin(keep)]
    return frame


def make_forecaster(config: ModelConfig, verbose: int = 1) -> LSTMForecaster:
    """An unfitted forecaster with the config's settings."""
    t = config.training
    return LSTMForecaster(
        horizon=config.horizon, input_size=t.input_size, freq=config.data.freq, columns=config.data.columns(),
        quantiles=config.quantiles, network=config.network, epochs=t.epochs, batch_size=t.batch_size,
        learning_rate=t.learning_rate, patience=t.patience, scaler=t.scaler, point_loss=t.point_loss,
        missing_policy=config.data.missing_policy, max_windows_per_series=t.max_windows_per_series, seed=t.seed,
        verbose=verbose, ensemble=t.ensemble, lr_schedule=t.lr_schedule,
    )


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's losses to the active MLflow run (``prefix`` tells the two fits apart)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        mlflow.log_metrics({f"{self.prefix}{k}": float(v) for k, v in (logs or {}).items()}, step=epoch)


def fingerprint(frame: pd.DataFrame, config: ModelConfig) -> dict[str, Any]:
    """Series count, rows, time range and a content hash of the data used."""
    c = config.data
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    return {"data.n_series": int(frame[c.id].nunique()), "data.n_rows": len(frame),
            "data.start": str(frame[c.time].min()), "data.end": str(frame[c.time].max()),
            "data.sha256": digest[:16]}


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (inference of requirements is slow and was wrong)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]


def signature(config: ModelConfig) -> ModelSignature:
    """The pyfunc contract: a long frame in, the long forecast frame out; params horizon and quantiles."""
    c = config.data
    inputs = [ColSpec("string", c.id), ColSpec("datetime", c.time), ColSpec("double", c.target, required=False)]
    inputs += [ColSpec("double", name) for name in (*c.static, *c.known_future, *c.past_only)]
    outputs = [ColSpec("string", c.id), ColSpec("datetime", c.time), ColSpec("double", FORECAST_COLUMN)]
    outputs += [ColSpec("double", quantile_name(q)) for q in sorted(config.quantiles)]
    outputs += [ColSpec("string", name) for name in (MODEL_COLUMN, MODEL_NAME_COLUMN, MODEL_VERSION_COLUMN)]
    params = ParamSchema([ParamSpec("horizon", "long", config.horizon),
                          ParamSpec("quantiles", "double", [float(q) for q in sorted(config.quantiles)], (-1,))])
    return ModelSignature(Schema(inputs), Schema(outputs), params)


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
    last = result.forecasts[result.forecasts["window"] == result.forecasts["window"].max()]
    ids = list(pd.unique(last[c.id]))[:6]
    fig, axes = plt.subplots(len(ids), 1, figsize=(9, 2.2 * len(ids)), squeeze=False)
    qs = sorted(config.quantiles)
    for ax, sid in zip(axes[:, 0], ids):
        part = last[last[c.id] == sid]
        ax.plot(part[c.time], part[c.target], color="black", label="actual")
        ax.plot(part[c.time], part["forecast"], label="forecast")
        ax.plot(part[c.time], part[BASELINE], alpha=0.6, label="seasonal naive")
        if len(qs) >= 2:
            ax.fill_between(part[c.time], part[quantile_name(qs[0])], part[quantile_name(qs[-1])], alpha=0.2,
                            label=f"{quantile_name(qs[0])}-{quantile_name(qs[-1])}")
        ax.set_title(str(sid), fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "forecast_vs_actuals.png", dpi=90)
    plt.close(fig)


@dataclass
class ChampionComparison:
    """The champion's figure, the challenger's on the same windows, and what those windows are."""

    version: str
    champion: float
    challenger: float
    basis: str


def _compare_with_champion(client: MlflowClient, config: ModelConfig, frame: pd.DataFrame,
                           result: BacktestResult, step: int, season: int) -> ChampionComparison | None:
    """Score the champion where it has not seen the data (see `forecaster.registry`); None if there is none."""
    version = registry.champion_version(client, config.name)
    if version is None:
        return None
    metric = config.promotion.metric
    champion_run = client.get_run(client.get_model_version(config.name, version).run_id)
    columns = config.data.columns()
    fresh: list[int] = []
    try:
        trained_until = pd.Timestamp(champion_run.data.params["data.end"])
        starts = result.forecasts.groupby("window")[columns.time].min()
        fresh = [int(k) for k, start in starts.items() if start > trained_until]
    except (KeyError, TypeError, ValueError):
        fresh = []  # no record of its training data, or incomparable time zones: use the recorded figures
    if fresh:
        champion = load_model(f"models:/{config.name}/{version}").pyfunc  # its files checked, as predict does
        wanted = champion.metadata.get_input_schema().input_names()  # not our validation's own columns
        scored = run_backtest(lambda h: champion.predict(h[[c for c in h.columns if c in wanted]]), frame,
                              columns, config.horizon, len(fresh), step, season, name="champion")
        ours = result.per_series[(result.per_series["model"] == "lstm") & result.per_series["window"].isin(fresh)]
        challenger = summarize(ours.drop(columns=["window", "model", columns.id]))[metric]
        return ChampionComparison(version, float(scored.summary["champion"][metric]), float(challenger),
                                  f"{len(fresh)} backtest window(s) after the champion's training data")
    recorded = champion_run.data.metrics.get(f"backtest.lstm.{metric}")
    if recorded is None:
        return ChampionComparison(version, float("-inf"), float(result.summary["lstm"][metric]),
                                  "the champion has no recorded backtest: not replaced automatically")
    return ChampionComparison(version, float(recorded), float(result.summary["lstm"][metric]),
                              "recorded out-of-sample backtests (no window after the champion's training data)")


def mark_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Runs of ours left RUNNING by a process of this host that is gone: marked FAILED, and the versions
    they registered without a decision tagged so. Returns their ids."""
    host = socket.gethostname()
    abandoned = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("forecaster.host") != host or not tags.get("forecaster.pid", "").isdigit():
            continue
        if _alive(int(tags["forecaster.pid"])):
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train(config: ModelConfig, register: bool = True, verbose: int = 1) -> TrainResult:
    """Run the whole training pipeline for ``config``; returns the run, version and promotion decision."""
    raw = load_source(config)
    columns = config.data.columns()
    step = config.backtest.step or config.horizon
    vframe = validate_frame(raw, columns, freq=config.data.freq, missing_policy=config.data.missing_policy,
                            min_length=config.horizon * 2 + (config.backtest.n_windows - 1) * step + 1)
    frame = vframe.frame
    season = seasonal_period(vframe.freq)
    # The store is touched only once the data has passed its checks: bad data leaves nothing behind.
    uri = tracking.configure()
    experiment_id = tracking.ensure_experiment(config.name)
    for run_id in mark_abandoned_runs(MlflowClient(), experiment_id):
        log.warning("run %s was left RUNNING by a process that died: marked FAILED", run_id)
    with mlflow.start_run(experiment_id=experiment_id,
                          tags={"forecaster.host": socket.gethostname(), "forecaster.pid": str(os.getpid())}) as run:
        params = {**config.to_params(), "data.freq": vframe.freq, "data.season": season, **fingerprint(frame, config)}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({f"version.{name}": importlib.metadata.version(name) for name in PINNED}
                        | {"version.forecaster": forecaster.__version__})
        mlflow.log_dict(vframe.report, "data_report.json")

        log.info("backtest fit on the data before the first of %d origins", config.backtest.n_windows)
        bt_model = make_forecaster(config, verbose).fit(
            first_origin_frame(frame, columns, config.horizon, config.backtest.n_windows, step),
            callbacks=[EpochLogger("backtest_fit.")])
        result = run_backtest(bt_model.predict, frame, columns, config.horizon, config.backtest.n_windows, step,
                              season, bt_model.quantiles_)
        for model, metrics in result.summary.items():
            mlflow.log_metrics({f"backtest.{model}.{k}": float(v) for k, v in metrics.items() if np.isfinite(v)})

        log.info("final fit on all the data")
        final = make_forecaster(config, verbose).fit(frame, callbacks=[EpochLogger("")])
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            result.per_series.to_csv(tmp_path / "backtest_per_series.csv", index=False)
            _plots(tmp_path, result, {"backtest fit": bt_model.history_, "final fit": final.history_}, config)
            for name in ("backtest_per_series.csv", "loss_curves.png", "forecast_vs_actuals.png"):
                mlflow.log_artifact(str(tmp_path / name), artifact_path="evaluation")
            saved = final.save(tmp_path / "forecaster")
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PACKAGE_DIR / "mlflow_model.py"),
                artifacts={"forecaster": str(saved)},
                signature=signature(config),
                model_config={"model_name": config.name, "run_id": run.info.run_id},
                pip_requirements=pip_requirements(),
            )
            logged = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "logged")))
            mlflow.set_tag(MODEL_HASHES_TAG, json.dumps(artifact_hashes(logged), sort_keys=True))
        version, decision = None, None
        if register:
            client = MlflowClient()
            metric = config.promotion.metric
            # Read the champion, decide, register and move the aliases as one step per model.
            with registry.promotion_lock(uri, config.name):
                versus = _compare_with_champion(client, config, frame, result, step, season)
                decision = registry.decide(
                    metric, config.promotion.margin, float(result.summary["lstm"][metric]),
                    float(result.summary[BASELINE][metric]),
                    None if versus is None else versus.champion, None if versus is None else versus.version,
                    basis="" if versus is None else versus.basis,
                    challenger_on_basis=None if versus is None else versus.challenger)
                mv = mlflow.register_model(info.model_uri, config.name)
                version = str(mv.version)
                registry.apply_decision(client, config.name, version, decision)
            mlflow.set_tags({"registry.version": version, **decision.tags()})
    return TrainResult(run.info.run_id, config.name, version, decision, result)
