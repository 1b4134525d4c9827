"""`forecaster report`: the scheduled job's monitoring history, from its forecast folders and its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import ModelConfig
from forecaster.errors import ConfigError
from forecaster.evaluation.metrics import COVERAGE_PREFIX
from pipelines import run as job


def history(config: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """(per as-of, per horizon step, overall) scores of every forecast the job wrote, against the
    actuals now in its data source; per as-of rows carry the backtest figure the model promised."""
    from forecaster.evaluation import monitoring
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
SHOWN = 5  # as-of rows in the compact report


def check_plot_path(path: Path) -> None:
    """ConfigError, before any work, for a plot path of a type we do not write (matplotlib would fail
    only after the scoring)."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"cannot write the plot {str(path)!r}: unsupported file type {path.suffix!r} "
                          f"(use {', '.join(PLOT_SUFFIXES)})")


def report(config: ModelConfig, plot_path: Path | None = None, full: bool = False) -> str:
    """The history as text: by default a compact summary (the overall scores, the latest as-of times,
    the horizon steps in a few bands); ``full`` the whole tables. The plot is written to ``plot_path``
    (default ``<output>/_report/accuracy.png``)."""
    if plot_path is not None:
        check_plot_path(plot_path)
    by_as_of, by_step, overall = history(config)
    metric = config.monitor.metric
    if by_as_of.empty:
        return f"job {config.name}: no forecast has its actuals yet"
    plot_path = plot_path or config.output_dir() / "_report" / "accuracy.png"
    promise = by_as_of["backtest_" + metric].dropna()
    job.plot(by_as_of, float(promise.iloc[-1]) if len(promise) else None, metric, plot_path)

    def table(frame: pd.DataFrame) -> str:
        return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")

    naive = f"seasonal_naive_{metric}"
    partial = int((~by_as_of["complete"].astype(bool)).sum())
    lines = [f"job {config.name}: {len(by_as_of)} as-of time(s) scored, {partial} partial (actuals still arriving)",
             "overall: " + ", ".join(f"{k} {v:.4f}" for k, v in overall.items())]
    if full:
        shown = ["as_of", "model_version", "n_series", "steps_arrived", "complete", metric, naive,
                 f"backtest_{metric}", *[c for c in by_as_of.columns if c.startswith(COVERAGE_PREFIX)],
                 "worst_series", "worst_series_mase"]
        lines += ["", table(by_as_of[shown]), "", "per horizon step:", table(by_step[["step", metric, naive]])]
    else:
        shown = ["as_of", "model_version", "complete", metric, naive, f"backtest_{metric}", "worst_series"]
        latest = by_as_of[shown].tail(SHOWN)
        lines += ["", f"latest {len(latest)} as-of time(s):", table(latest), "",
                  "per horizon step, in bands:", table(_bands(by_step, [metric, naive])),
                  "(--full: every as-of time and every step)"]
    lines.append(f"plot: {plot_path}")
    return "\n".join(lines)


def _bands(by_step: pd.DataFrame, metrics: list[str], bands: int = 4) -> pd.DataFrame:
    """The per-step scores averaged over up to ``bands`` runs of consecutive steps ("1-12", "13-24"...)."""
    ordered = by_step.sort_values("step")
    parts = np.array_split(np.arange(len(ordered)), min(bands, len(ordered)))
    groups = [ordered.iloc[part] for part in parts if len(part)]
    def label(steps: pd.Series) -> str:
        first, last = int(steps.min()), int(steps.max())
        return str(first) if first == last else f"{first}-{last}"

    return pd.DataFrame([{"steps": label(g["step"]), **g[metrics].mean()} for g in groups])
