"""The scheduled job: one idempotent run per as-of time, made of the same steps as training and prediction.

    prepare -> monitor -> [retrain when due: backtest -> fit -> log -> register -> promote]
            -> load the champion -> forecast -> write ``<output>/as_of=<label>/``

With the data known at the as-of (rows at or before it). Monitoring comes first because its figures
decide whether to retrain. A run holds the job's lock (an OS lock on ``<output>/.lock``: a killed run
releases it) and is one MLflow run tagged ``forecaster.job``, ``forecaster.as_of``,
``forecaster.config_sha256`` and ``forecaster.data_sha256``. The forecast folder is written beside
its final name and renamed into place: it appears whole or not at all, and its existence is what
makes an as-of *done* (checked before anything heavy is imported, so a re-run costs about a second).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster import locks
from forecaster.config import ModelConfig
from forecaster.errors import ConfigError, NoChampionError
from forecaster.splits import as_of_timestamp, parse_as_of

FORECASTS_FILE, MANIFEST_FILE = "forecasts.parquet", "manifest.json"
LOCK_FILE = ".lock"
LABEL_FORMAT = "%Y%m%dT%H%M%S"  # ISO 8601 basic: sortable, and no ':' (which Hadoop paths refuse)
JOB_TAG, AS_OF_TAG = "forecaster.job", "forecaster.as_of"
CONFIG_TAG, DATA_TAG = "forecaster.config_sha256", "forecaster.data_sha256"


@dataclass
class Outcome:
    """What one as-of run did: ``status`` is "done" or "nothing to do"."""

    as_of: str
    status: str
    folder: str
    run_id: str | None = None
    model_version: str | None = None
    retrained: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def utc_wall_clock(stamp: pd.Timestamp) -> pd.Timestamp:
    """A naive timestamp: an aware one converted to UTC, a naive one as it is (naive data is UTC)."""
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def folder_for(config: ModelConfig, as_of: pd.Timestamp) -> Path:
    """``<output>/as_of=<YYYYmmddTHHMMSS>``, in UTC for an as-of given with an offset."""
    return config.output_dir() / f"as_of={utc_wall_clock(as_of).strftime(LABEL_FORMAT)}"


def config_hash(config: ModelConfig) -> str:
    """SHA-256 of the config's settings (not of the file's layout or comments)."""
    settings = {**config.to_params(), "output": str(config.output_dir())}
    settings.pop("schedule.lock_timeout", None)  # how long to wait for the lock changes no result
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def done_as_ofs(config: ModelConfig) -> list[pd.Timestamp]:
    """The as-of times whose forecast folder exists, oldest first."""
    root = config.output_dir()
    if not root.is_dir():
        return []
    stamps = []
    for path in root.glob("as_of=*"):
        with contextlib.suppress(ValueError):
            stamps.append(pd.Timestamp(pd.to_datetime(path.name[len("as_of="):], format=LABEL_FORMAT)))
    return sorted(stamps)


def run(config: ModelConfig, as_of: str | pd.Timestamp, force: bool = False, raw: pd.DataFrame | None = None,
        verbose: int = 0, say: Callable[[str], None] = print) -> Outcome:
    """One scheduled run at ``as_of`` (see the module doc); ``raw`` is the source frame when the caller
    has read it already (a backfill reads it once)."""
    started = time.perf_counter()
    if config.training.strategy == "multi_worker":
        raise ConfigError("training.strategy = 'multi_worker' is for `forecaster train` started on every worker; "
                          "the scheduled job trains in one process (use 'none' or 'mirrored')")
    stamp = parse_as_of(as_of)
    target = folder_for(config, stamp)
    label = target.name[len("as_of="):]
    if target.is_dir() and not force:
        say(f"[{label}] nothing to do: {target} exists (use --force to redo it)")
        return Outcome(str(stamp), "nothing to do", str(target), seconds=time.perf_counter() - started)
    root = config.output_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"cannot write into the output folder {root}: permission denied")
    with locks.hold(root / LOCK_FILE, config.schedule.lock_timeout, f"job {config.name!r} ({root})"):
        if target.is_dir() and not force:  # done by the run that held the lock before us
            say(f"[{label}] nothing to do: {target} exists (use --force to redo it)")
            return Outcome(str(stamp), "nothing to do", str(target), seconds=time.perf_counter() - started)
        _clear_stale(root)
        outcome = _run_locked(config, stamp, target, raw, verbose, lambda line: say(f"[{label}] {line}"))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _clear_stale(root: Path) -> None:
    """What killed runs left (we hold the lock: nobody else is writing): a folder a `--force` run had
    moved aside goes back if its replacement never arrived; half-written folders go."""
    for aside in root.glob(".as_of=*.old.*"):
        target = root / aside.name[1:].split(".old.")[0]
        if not target.exists():
            os.rename(aside, target)
    for path in root.glob(".as_of=*"):
        shutil.rmtree(path, ignore_errors=True)


def _run_locked(config: ModelConfig, stamp: pd.Timestamp, target: Path, raw: pd.DataFrame | None, verbose: int,
                say: Callable[[str], None]) -> Outcome:
    import mlflow
    from mlflow import MlflowClient

    from forecaster import registry, tracking
    from pipelines import steps
    from pipelines.predict import forecast_in_chunks
    from pipelines.train import train_in_run

    prepared = steps.prepare(config, raw=raw, as_of=stamp)
    fp = prepared.fingerprint()
    say(f"prepare: {fp['data.n_series']} series, {fp['data.n_rows']} rows up to {fp['data.end']}")
    tracking.configure()
    client = MlflowClient()
    tags = {JOB_TAG: config.name, AS_OF_TAG: str(stamp), CONFIG_TAG: config_hash(config),
            DATA_TAG: fp["data.sha256"]}
    outcome = Outcome(str(stamp), "done", str(target))
    with steps.start_run(config.name, tags=tags) as active:
        outcome.run_id = active.info.run_id
        champion = registry.champion_version(client, config.name)
        promise = _promise(client, config, champion)
        last = _last_training_as_of(client, config)
        degraded, why = monitor(config, prepared, stamp, champion, promise, last, say)
        due, reason, seen_future = _retrain_due(client, config, stamp, champion, last, degraded, why)
        mlflow.set_tag("forecaster.retrain", reason)
        if due:
            say(f"retrain: {reason}")
            initial = None
            if config.schedule.warm_start and champion is not None and not seen_future:
                initial = steps.load(f"models:/{config.name}/{champion}").forecaster
                say(f"retrain: warm start from version {champion}, {config.schedule.warm_epochs} epoch(s)")
            # Training needs the backtest's length of every series: checked now, on the same rows.
            to_fit = steps.prepare(config, raw=prepared.raw)
            train_in_run(to_fit, register=True, verbose=verbose, initial=initial,
                         warm_epochs=config.schedule.warm_epochs, say=say)
            outcome.retrained = True
            champion = registry.champion_version(client, config.name)
            promise = _promise(client, config, champion)
        else:
            say(f"retrain: not due ({reason})")
            mlflow.log_params({k: str(v)[:500] for k, v in {**config.to_params(), **fp}.items()})
        if champion is None:
            raise NoChampionError(f"model {config.name!r} has no champion to forecast with: its retrained version "
                                  f"was not promoted (its tag promotion.reason says why); no forecasts written. "
                                  f"Set the alias by hand, or revisit [promotion] margin")
        model = steps.load(f"models:/{config.name}/{champion}")  # the version whose promise was read
        forecasts = forecast_in_chunks(model, prepared.raw)  # bounded work memory (pipelines/predict.py)
        say(f"predict: version {model.version}, {len(forecasts)} rows")
        write(config, prepared, stamp, target, forecasts, outcome.run_id, model.version, promise)
        say(f"write: {target}")
        outcome.model_version = model.version
        mlflow.set_tags({"forecaster.output": str(target), "forecaster.model_version": model.version})
    return outcome


def _promise(client: Any, config: ModelConfig, version: str | None) -> dict[str, float]:
    """The backtest figures the version's training recorded (what it promised)."""
    if version is None:
        return {}
    run = client.get_run(client.get_model_version(config.name, version).run_id)
    prefix = "backtest.lstm."
    return {k[len(prefix):]: v for k, v in run.data.metrics.items() if k.startswith(prefix)}


def _retrain_due(client: Any, config: ModelConfig, stamp: pd.Timestamp, champion: str | None,
                 last: pd.Timestamp | None, degraded: bool, why: str) -> tuple[bool, str, bool]:
    """(due, why, whether the champion was trained on data after the as-of)."""
    if champion is None:
        return True, "no champion registered yet", False
    trained_until = _trained_until(client, config, champion)
    now = utc_wall_clock(stamp)
    if trained_until is not None and trained_until > now:
        return True, (f"the champion (version {champion}) was trained on data up to {trained_until}, after the "
                      f"as-of: its forecasts would have seen the future"), True
    if degraded:
        return True, f"accuracy degraded: {why}", False
    interval = config.retrain_interval()
    if interval is not None and last is None:
        return True, "cadence: no training of this job recorded", False
    if interval is not None and now - last >= interval:
        return True, f"cadence: {now - last} since the last training (as of {last}), every {interval}", False
    return False, "within the cadence" + ("" if interval is None else f" of {interval}") + f"; {why}", False


def _trained_until(client: Any, config: ModelConfig, version: str) -> pd.Timestamp | None:
    """The newest time in the data the version was trained on (its run's ``data.end``)."""
    text = client.get_run(client.get_model_version(config.name, version).run_id).data.params.get("data.end")
    with contextlib.suppress(ValueError, TypeError):
        return utc_wall_clock(pd.Timestamp(text)) if text else None
    return None


def _last_training_as_of(client: Any, config: ModelConfig) -> pd.Timestamp | None:
    """The as-of (else the data end) of the newest decided version's training."""
    decided = [v for v in client.search_model_versions(f"name = '{config.name}'")
               if (v.tags or {}).get("promotion.decision") in ("champion", "challenger")]
    if not decided:  # versions whose training died before deciding do not count
        return None
    newest = max(decided, key=lambda v: int(v.version))
    data = client.get_run(newest.run_id).data
    text = data.tags.get(AS_OF_TAG) or data.params.get("data.end")
    if not text:
        return None
    with contextlib.suppress(ValueError, TypeError):
        return utc_wall_clock(pd.Timestamp(text))
    return None


def earlier_forecasts(config: ModelConfig, before: pd.Timestamp) -> pd.DataFrame:
    """Every forecast the job wrote at as-of times before ``before``, in one frame."""
    frames = [pd.read_parquet(folder_for(config, s) / FORECASTS_FILE) for s in done_as_ofs(config)
              if s < utc_wall_clock(before)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def monitor(config: ModelConfig, prepared: Any, stamp: pd.Timestamp, champion: str | None,
            promise: dict[str, float], last_training: pd.Timestamp | None,
            say: Callable[[str], None]) -> tuple[bool, str]:
    """Score earlier forecasts against the actuals known now, log them, and judge degradation."""
    import mlflow

    from forecaster import monitoring

    earlier = earlier_forecasts(config, stamp)
    if earlier.empty:
        say("monitor: no earlier forecasts yet")
        return False, "no earlier forecasts"
    scored = monitoring.score(earlier, prepared.frame, prepared.columns, prepared.season)
    if not scored.rows_scored:
        say(f"monitor: none of {scored.rows_waiting} earlier forecast rows has its actual yet")
        return False, "no actuals yet"
    metric = config.monitor.metric
    latest = scored.by_as_of.iloc[-1]
    mlflow.log_metrics({f"monitor.{k}": v for k, v in scored.overall.items()})
    mlflow.log_metrics({f"monitor.latest.{k}": float(latest[k]) for k in scored.overall})
    for _, row in scored.by_step.iterrows():
        mlflow.log_metrics({f"monitor.by_step.{k}": float(row[k]) for k in scored.overall}, step=int(row["step"]))
    mlflow.log_text(scored.by_as_of.to_csv(index=False), "monitoring/by_as_of.csv")
    mlflow.log_text(scored.by_step.to_csv(index=False), "monitoring/by_step.csv")
    with _tempdir() as tmp:
        plot(scored.by_as_of, promise.get(metric), metric, tmp / "accuracy_over_time.png")
        mlflow.log_artifact(str(tmp / "accuracy_over_time.png"), "monitoring")
    verdict, why = monitoring.degraded(scored, metric, promise.get(metric), champion or "",
                                       config.monitor.window, config.monitor.degradation, since=last_training)
    say(f"monitor: {len(scored.by_as_of)} earlier as-of(s), latest {latest['as_of']}: {metric} "
        f"{latest[metric]:.4f} (seasonal naive {latest['seasonal_naive_' + metric]:.4f}); {why}")
    return verdict, why


@contextlib.contextmanager
def _tempdir() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="forecaster-run-") as tmp:
        yield Path(tmp)


def plot(table: pd.DataFrame, promise: float | None, metric: str, path: Path) -> None:
    """Accuracy per as-of (a `forecaster.monitoring` table): the model, seasonal naive, the promise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(table["as_of"], table[metric], marker="o", label=f"forecasts ({metric})")
    ax.plot(table["as_of"], table[f"seasonal_naive_{metric}"], marker=".", alpha=0.7, label="seasonal naive")
    if promise is not None:
        ax.axhline(promise, color="grey", linestyle="--", label=f"backtest promise {promise:.3f}")
    ax.set_xlabel("as-of")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(config: ModelConfig, prepared: Any, stamp: pd.Timestamp, target: Path, forecasts: pd.DataFrame,
          run_id: str, version: str, promise: dict[str, float]) -> None:
    """The as-of folder, whole or not at all: written beside its name, synced, renamed into place."""
    from forecaster.contract import AS_OF_COLUMN, MODEL_COLUMN, conform, quantiles_in
    from forecaster.data.io import fsync_dir

    columns = prepared.columns
    out = forecasts.assign(**{AS_OF_COLUMN: as_of_timestamp(stamp, forecasts[columns.time])})
    out = conform(out, columns, quantiles_in(list(forecasts.columns)), as_of=True)
    manifest = {"as_of": str(stamp), "run_id": run_id, "model_name": config.name, "model_version": version,
                "rows": len(out), "series": int(out[columns.id].nunique()),
                "fallback_series": int(out.loc[out[MODEL_COLUMN] != "lstm", columns.id].nunique()),
                "config_sha256": config_hash(config), "data": prepared.fingerprint(), "backtest": promise}
    staging = target.parent / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        out.to_parquet(staging / FORECASTS_FILE, index=False)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        for name in (FORECASTS_FILE, MANIFEST_FILE):
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(staging)
        if target.exists():  # --force: the old folder goes aside, the new one in, then the old one away
            aside = target.parent / f".{target.name}.old.{os.getpid()}"
            os.rename(target, aside)
            os.rename(staging, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(staging, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def backfill(config: ModelConfig, start: str, end: str, every: str, force: bool = False, verbose: int = 0,
             say: Callable[[str], None] = print) -> list[Outcome]:
    """Each as-of from ``start`` to ``end`` (inclusive) ``every`` apart, oldest first; done ones are
    skipped, and the first failure stops the backfill (raised), so a re-run resumes where it stopped."""
    first, last = parse_as_of(start), parse_as_of(end)
    try:
        step = pd.Timedelta(every)
    except (TypeError, ValueError):
        raise ConfigError(f"--every must be a duration such as 1D or 6h, got {every!r}") from None
    if step <= pd.Timedelta(0) or last < first:
        raise ConfigError(f"backfill needs --from <= --to and a positive --every (got {first}, {last}, {every})")
    stamps = list(pd.date_range(first, last, freq=step))
    say(f"backfill: {len(stamps)} as-of time(s) from {first} to {last} every {step}")
    pending = [s for s in stamps if force or not folder_for(config, s).is_dir()]
    raw = None
    if pending:
        from pipelines import steps

        raw = steps.load_source(config)  # read once for every as-of
    return [run(config, s, force=force, raw=raw, verbose=verbose, say=say) for s in stamps]
