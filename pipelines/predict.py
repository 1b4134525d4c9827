"""The batch prediction job: load -> forecast -> write; a history file in, a forecast file out.

The model URI is resolved to one version first (``models:/name@champion`` -> ``models:/name/7``) so a
promotion during the run cannot mix two models; the output names that version in every row, and is
written atomically (temporary file, then rename): a reader never sees half a file, and a failed run
leaves the previous file as it was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from forecaster.data.io import check_destination, check_source, read_frame, write_frame_atomic
from forecaster.errors import ConfigError
from pipelines import steps


def predict(model_uri: str, input_path: str | Path, output_path: str | Path, horizon: int | None = None,
            quantiles: list[float] | None = None, engine: str = "local") -> dict[str, Any]:
    """Forecast every series of ``input_path`` into ``output_path`` (CSV or Parquet); returns a summary."""
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be 'local' or 'spark', got {engine!r}")
    started = time.perf_counter()
    check_destination(output_path, source=input_path)
    if engine == "local":  # the Spark engine also reads a folder of Parquet parts, and checks it itself
        check_source(input_path)
    model = steps.load(model_uri)
    if engine == "spark":
        from pipelines.spark_predict import predict_spark

        summary = predict_spark(model, input_path, output_path, horizon=horizon, quantiles=quantiles)
    else:
        history = read_frame(input_path, model.forecaster.columns_.id)
        out = steps.forecast(model, history, horizon=horizon, quantiles=quantiles)
        write_frame_atomic(out, output_path)
        summary = {"rows": len(out), "series": int(out[model.forecaster.columns_.id].nunique()),
                   "fallback_series": int(out.loc[out["model"] != "lstm", model.forecaster.columns_.id].nunique())}
    summary.update({"model": model.uri, "output": str(output_path), "engine": engine,
                    "seconds": round(time.perf_counter() - started, 3)})
    return summary
