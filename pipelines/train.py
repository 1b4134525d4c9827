"""The training pipeline: config -> data -> backtest -> final fit -> MLflow run -> registry -> promotion."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
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
from forecaster.forecaster import FORECAST_COLUMN, MODEL_COLUMN, LSTMForecaster
from forecaster.metrics import quantile_name

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
    outputs.append(ColSpec("string", MODEL_COLUMN))
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


def _champion_score(client: MlflowClient, config: ModelConfig, frame: pd.DataFrame, step: int,
                    season: int) -> tuple[float | None, str | None]:
    version = registry.champion_version(client, config.name)
    if version is None:
        return None, None
    champion = mlflow.pyfunc.load_model(f"models:/{config.name}@{registry.CHAMPION}")
    result = run_backtest(lambda h: champion.predict(h), frame, config.data.columns(), config.horizon,
                          config.backtest.n_windows, step, season, name="champion")
    return float(result.summary["champion"][config.promotion.metric]), version


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
    tracking.configure()
    experiment_id = tracking.ensure_experiment(config.name)
    with mlflow.start_run(experiment_id=experiment_id) as run:
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
                code_paths=[str(PACKAGE_DIR)],
                signature=signature(config),
                pip_requirements=pip_requirements(),
            )
        version, decision = None, None
        if register:
            client = MlflowClient()
            champion_value, champion_version = _champion_score(client, config, frame, step, season)
            mv = mlflow.register_model(info.model_uri, config.name)
            version = str(mv.version)
            metric = config.promotion.metric
            decision = registry.decide(metric, config.promotion.margin, float(result.summary["lstm"][metric]),
                                       float(result.summary[BASELINE][metric]), champion_value, champion_version)
            registry.apply_decision(client, config.name, version, decision)
            mlflow.set_tags({"registry.version": version, **decision.tags()})
    return TrainResult(run.info.run_id, config.name, version, decision, result)
