"""`forecaster report`: the scheduled job's monitoring history, from its forecast folders and its data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from forecaster.config import ModelConfig
from forecaster.errors import ConfigError
from pipelines import run as job


def history(config: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """(per as-of, per horizon step, overall) scores of every forecast the job wrote, against the
    actuals now in its data source; per as-of rows carry the backtest figure the model promised."""
    from forecaster import monitoring
    from pipelines import steps

    stamps = job.done_as_ofs(config)
    if not stamps:
        raise ConfigError(f"no forecasts of job {config.name!r} under {config.output_dir()} yet")
    prepared = steps.prepare(config)
    forecasts = job.earlier_forecasts(config, stamps[-1] + pd.Timedelta(1, "ns"))
    scored = monitoring.score(forecasts, prepared.frame, prepared.columns, prepared.season)
    metric = config.monitor.metric
    promises = {}
    for stamp in stamps:
        manifest = json.loads((job.folder_for(config, stamp) / job.MANIFEST_FILE).read_text())
        promises[pd.Timestamp(manifest["as_of"])] = manifest.get("backtest", {}).get(metric)
    table = scored.by_as_of
    if not table.empty:
        table["backtest_" + metric] = [promises.get(pd.Timestamp(t)) for t in table["as_of"]]
    return table, scored.by_step, scored.overall


#: What `--plot` may be: the image types the plot is written as (by its suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_path(path: Path) -> None:
    """ConfigError, before any work, for a plot path of a type we do not write (matplotlib would fail
    only after the scoring)."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"cannot write the plot {str(path)!r}: unsupported file type {path.suffix!r} "
                          f"(use {', '.join(PLOT_SUFFIXES)})")


def report(config: ModelConfig, plot_path: Path | None = None) -> str:
    """The history as text; the plot is written to ``plot_path`` (default ``<output>/_report/accuracy.png``)."""
    if plot_path is not None:
        check_plot_path(plot_path)
    by_as_of, by_step, overall = history(config)
    metric = config.monitor.metric
    if by_as_of.empty:
        return f"job {config.name}: no forecast has its actuals yet"
    plot_path = plot_path or config.output_dir() / "_report" / "accuracy.png"
    promise = by_as_of["backtest_" + metric].dropna()
    job.plot(by_as_of, float(promise.iloc[-1]) if len(promise) else None, metric, plot_path)
    shown = ["as_of", "model_version", "n_series", "steps_arrived", metric, f"seasonal_naive_{metric}",
             f"backtest_{metric}", *[c for c in by_as_of.columns if c.startswith("coverage_")],
             "worst_series", "worst_series_mase"]
    lines = [f"job {config.name}: {len(by_as_of)} as-of time(s) scored", by_as_of[shown].to_string(
        index=False, float_format=lambda v: f"{v:.4f}"), "", "per horizon step:",
        by_step[["step", metric, f"seasonal_naive_{metric}"]].to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        "", "overall: " + ", ".join(f"{k} {v:.4f}" for k, v in overall.items()), f"plot: {plot_path}"]
    return "\n".join(lines)
