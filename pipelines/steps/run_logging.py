"""What a run logs to MLflow: its name, tags, inputs, evaluation, headline figures, description and the model
with its pinned requirements."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import forecaster
from forecaster.config import ModelConfig
from forecaster.contract import (
    BASELINE,
    LSTM,
    output_schema,
)
from forecaster.evaluation.backtest import BacktestResult
from forecaster.ops import registry, tracking
from forecaster.ops.integrity import (
    MODEL_HASHES_TAG,
    artifact_hashes,
)
from pipelines.steps.plots import plot_forecasts, plot_losses
from pipelines.steps.prepare import Prepared
from pipelines.steps.promotion import mark_abandoned_runs

if TYPE_CHECKING:  # TensorFlow: imported where a model is loaded or fitted, not by the steps around it
    from forecaster.forecaster import LSTMForecaster

log = logging.getLogger("forecaster.steps")
PINNED = ("tensorflow", "keras", "numpy", "pandas", "pyarrow", "scikit-learn", "mlflow")
PACKAGE_DIR = Path(forecaster.__file__).resolve().parent


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (inference of requirements is slow and was wrong)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]


def signature(config: ModelConfig) -> ModelSignature:
    """The pyfunc contract: `forecaster.contract.output_schema` out, params horizon and quantiles, and no
    input schema.

    The input frame is checked by the model's own validation alone, as `forecaster predict` checks it.
    MLflow enforces a signature's input types before the model runs, and its types cannot say what the
    model takes: a ``double`` target refused integer counts (int64), a ``datetime`` time column refused
    times with a UTC offset, both with "Failed to enforce schema of data '<the client's frame>'"; and
    JSON's ``true``/``false`` were turned into 1.0/0.0 and forecast (HTTP 200), where validation refuses
    a boolean target. Without an input schema every request reaches `validate_frame` as sent, and a bad
    one gets its typed error naming the column, series or rows (HTTP 400 in `mlflow models serve`)."""
    columns = config.data.columns()
    outputs = [ColSpec(kind, name) for name, kind in output_schema(columns, config.quantiles)]
    params = ParamSchema([ParamSpec("horizon", "long", config.horizon),
                          ParamSpec("quantiles", "double", [float(q) for q in sorted(config.quantiles)], (-1,))])
    return ModelSignature(None, Schema(outputs), params)


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
    """The config, the resolved frequency and season, the data's fingerprint and report (the count of
    readings treated as outliers as metric ``data.outlier_readings``), and versions."""
    params = {**prepared.config.to_params(), "data.freq": prepared.vframe.freq, "data.season": prepared.season,
              **prepared.fingerprint()}
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.set_tags({f"version.{name}": importlib.metadata.version(name) for name in PINNED}
                    | {"version.forecaster": forecaster.__version__})
    mlflow.log_dict({**prepared.vframe.report, "too_short": prepared.too_short}, "data_report.json")
    mlflow.log_metric("data.outlier_readings", prepared.vframe.report["outlier_readings"])
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
            python_model=str(PACKAGE_DIR / "ops" / "mlflow_model.py"),
            artifacts={"forecaster": str(saved)},
            signature=signature(config),
            model_config={"model_name": config.name, "run_id": run.info.run_id},
            pip_requirements=pip_requirements(),
        )
        logged = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(Path(tmp) / "logged")))
        mlflow.set_tag(MODEL_HASHES_TAG, json.dumps(artifact_hashes(logged), sort_keys=True))
    return info.model_uri
