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

from forecaster.config import ModelConfig
from forecaster.contract import LSTM
from forecaster.data.io import check_distinct, temporary
from forecaster.data.splits import as_of_timestamp, parse_as_of
from forecaster.data.validation import parse_ids
from forecaster.errors import ConfigError, NoChampionError, summarize
from forecaster.ops import locks

FORECASTS_FILE, MANIFEST_FILE = "forecasts.parquet", "manifest.json"
LOCK_FILE = ".lock"
LABEL_FORMAT = "%Y%m%dT%H%M%S"  # ISO 8601 basic: sortable, and no ':' (which Hadoop paths refuse)
JOB_TAG, AS_OF_TAG = "forecaster.job", "forecaster.as_of"
CONFIG_TAG, DATA_TAG = "forecaster.config_sha256", "forecaster.data_sha256"
FORECAST_REASON_TAG = "forecaster.forecast_reason"  # why that version forecast this as-of


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
    for key in ("schedule.lock_timeout", "backtest.plot_series"):  # how long to wait, what is drawn: no result
        settings.pop(key, None)
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
    check_sink(config)
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


def check_sink(config: ModelConfig) -> None:
    """ConfigError, before any work, if the job's output folder is its data source or holds it."""
    source = config.source_path()
    if not source.startswith("package:"):
        check_distinct(config.output_dir(), source)


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

    from forecaster.ops import registry, tracking
    from pipelines import steps

    # TensorFlow is imported by the training or the model's loading below, not for the stages before.
    prepared = steps.prepare(config, raw=raw, as_of=stamp)
    fp = prepared.fingerprint()
    say(f"prepare: {fp['data.n_series']} series, {fp['data.n_rows']} rows up to {fp['data.end']}")
    tracking.configure()
    client = MlflowClient()
    tags = {JOB_TAG: config.name, AS_OF_TAG: str(stamp), CONFIG_TAG: config_hash(config),
            DATA_TAG: fp["data.sha256"]}
    outcome = Outcome(str(stamp), "done", str(target))
    name = f"run {config.name} {stamp:%Y-%m-%dT%H:%M}"
    with steps.start_run(config.name, tags=tags, kind="run", name=name) as active:
        outcome.run_id = active.info.run_id
        current = registry.champion_version(client, config.name)
        champion, chosen = usable_version(client, config, stamp, current)
        past = current is not None and champion != current  # today's champion saw data after this as-of
        promise = _promise(client, config, champion)
        last = _last_training_as_of(client, config, stamp)
        degraded, why = monitor(config, prepared, stamp, champion, promise, last, say)
        due, reason = _retrain_due(config, stamp, champion, chosen, last, degraded, why)
        mlflow.set_tag("forecaster.retrain", reason)
        if due:
            say(f"retrain: {reason}")
            initial = None
            if config.schedule.warm_start and champion is not None:
                initial = steps.load(f"models:/{config.name}/{champion}").forecaster
                say(f"retrain: warm start from version {champion}, {config.schedule.warm_epochs} epoch(s)")
            steps.check_learnable(prepared)  # validated once, above: the rows known at the as-of
            from pipelines.train import train_in_run

            trained = train_in_run(prepared, register=True, verbose=verbose, initial=initial,
                                   warm_epochs=config.schedule.warm_epochs, say=say, champion=champion,
                                   move_aliases=not past)
            outcome.retrained = True
            if past:
                if trained.decision is not None and trained.decision.promoted:
                    champion, chosen = trained.version, (
                        "trained now on the data up to the as-of and promoted over "
                        + (f"version {champion}" if champion else "seasonal naive")
                        + f"; today's champion (version {current}) was trained on data after the as-of "
                        f"and keeps its alias")
                elif champion is not None:
                    chosen += f"; version {trained.version}, trained now, was not promoted over it"
            else:
                champion = registry.champion_version(client, config.name)
                chosen = ("the champion, trained now" if champion == trained.version
                          else f"the champion; version {trained.version}, trained now, was not promoted over it")
            promise = _promise(client, config, champion)
        else:
            say(f"retrain: not due ({reason})")
            mlflow.log_params({k: str(v)[:500] for k, v in {**config.to_params(), **fp}.items()})
        if champion is None:
            raise NoChampionError(f"model {config.name!r} has no version to forecast as of {stamp} with: its "
                                  f"retrained version was not promoted (its tag promotion.reason says why) and no "
                                  f"version trained on data at or before the as-of was; no forecasts written. "
                                  f"Set the alias by hand, or revisit [promotion] margin")
        from pipelines.predict import forecast_in_chunks

        model = steps.load(f"models:/{config.name}/{champion}")  # the version whose promise was read
        forecasts = forecast_in_chunks(model, current_rows(prepared))  # bounded work memory (pipelines/predict.py)
        say(f"predict: version {model.version} ({chosen}), {len(forecasts)} rows")
        if prepared.ended:
            say(f"predict: {len(prepared.ended)} series left out, their data ended more than the horizon before the "
                f"as-of (their forecasts would all lie at or before it): {summarize(prepared.ended)}")
        mlflow.set_tag(FORECAST_REASON_TAG, chosen[:5000])
        write(config, prepared, stamp, target, forecasts, outcome.run_id, model.version, promise)
        say(f"write: {target}")
        outcome.model_version = model.version
        mlflow.set_tags({"forecaster.output": str(target), "forecaster.model_version": model.version})
        if not outcome.retrained:  # a retraining run is described by train_in_run
            mlflow.set_tag("mlflow.note.content", f"**{config.name}** as of {stamp}: forecast {len(forecasts)} rows "
                                                  f"with version {model.version}; retrain not due ({reason}).")
    return outcome


def _promise(client: Any, config: ModelConfig, version: str | None) -> dict[str, float]:
    """The backtest figures the version's training recorded (what it promised)."""
    if version is None:
        return {}
    run = client.get_run(client.get_model_version(config.name, version).run_id)
    prefix = f"backtest.{LSTM}."
    return {k[len(prefix):]: v for k, v in run.data.metrics.items() if k.startswith(prefix)}


def usable_version(client: Any, config: ModelConfig, stamp: pd.Timestamp,
                   champion: str | None) -> tuple[str | None, str]:
    """The version that may forecast as of ``stamp`` and be compared with a new one, and why it.

    Only a version trained on data at or before the as-of: the champion when it was; else (a past
    as-of, a backfill) the newest version that was promoted when it was trained, on such data; None
    when there is none (then the job trains one).
    """
    if champion is None:
        return None, "no champion registered yet"
    now = utc_wall_clock(stamp)
    until = _trained_until(client, config, champion)
    if until is None or until <= now:
        return champion, "the champion" + ("" if until is None else f", trained on data up to {until}")
    earlier = []
    for v in client.search_model_versions(f"name = '{config.name}'"):
        if (v.tags or {}).get("promotion.decision") != "champion":
            continue
        end = _trained_until(client, config, str(v.version))
        if end is not None and end <= now:
            earlier.append((int(v.version), end))
    seen = (f"the champion (version {champion}) was trained on data up to {until}, after the as-of: its "
            f"forecasts would have seen the future")
    if not earlier:
        return None, f"{seen}, and no promoted version was trained on data at or before the as-of"
    version, end = max(earlier)
    return str(version), (f"{seen}; version {version} is the newest version promoted when it was trained, "
                          f"on data up to {end}")


def _retrain_due(config: ModelConfig, stamp: pd.Timestamp, champion: str | None, chosen: str,
                 last: pd.Timestamp | None, degraded: bool, why: str) -> tuple[bool, str]:
    """(due, why): ``champion`` is the version usable at the as-of (`usable_version`, which said ``chosen``)."""
    if champion is None:
        return True, chosen
    now = utc_wall_clock(stamp)
    if degraded:
        return True, f"accuracy degraded: {why}"
    interval = config.retrain_interval()
    if interval is not None and last is None:
        return True, "cadence: no training of this job recorded"
    if interval is not None and now - last >= interval:
        return True, f"cadence: {now - last} since the last training (as of {last}), every {interval}"
    return False, "within the cadence" + ("" if interval is None else f" of {interval}") + f"; {why}"


def _trained_until(client: Any, config: ModelConfig, version: str) -> pd.Timestamp | None:
    """The newest time in the data the version was trained on (its run's ``data.end``)."""
    text = client.get_run(client.get_model_version(config.name, version).run_id).data.params.get("data.end")
    with contextlib.suppress(ValueError, TypeError):
        return utc_wall_clock(pd.Timestamp(text)) if text else None
    return None


def _last_training_as_of(client: Any, config: ModelConfig, stamp: pd.Timestamp) -> pd.Timestamp | None:
    """The newest as-of (else data end) at or before ``stamp`` of a decided version's training."""
    now, times = utc_wall_clock(stamp), []
    for v in client.search_model_versions(f"name = '{config.name}'"):
        if (v.tags or {}).get("promotion.decision") not in ("champion", "challenger"):
            continue  # versions whose training died before deciding do not count
        data = client.get_run(v.run_id).data
        text = data.tags.get(AS_OF_TAG) or data.params.get("data.end")
        with contextlib.suppress(ValueError, TypeError):
            if text and utc_wall_clock(pd.Timestamp(text)) <= now:
                times.append(utc_wall_clock(pd.Timestamp(text)))
    return max(times, default=None)


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

    from forecaster.evaluation import monitoring

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

    with tempfile.TemporaryDirectory(prefix="forecaster-run-") as tmp, temporary(tmp):
        yield Path(tmp)


def with_breaks(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (sorted by ``as_of``) with an empty row inside each gap over 1.5 times the median spacing
    of its as-of times, so that a plotted line breaks there instead of joining across as-ofs with no data."""
    gaps = table["as_of"].diff()
    usual = gaps.median() if len(table) > 2 else None
    if usual is None or not usual > pd.Timedelta(0):
        return table
    cuts = table.loc[(gaps > 1.5 * usual).to_numpy(), "as_of"] - usual
    return pd.concat([table, pd.DataFrame({"as_of": cuts})]).sort_values("as_of", kind="stable")


def plot(table: pd.DataFrame, promise: float | None, metric: str, path: Path) -> None:
    """Accuracy per as-of (a `forecaster.evaluation.monitoring` table): the model, seasonal naive, the promise.

    Lines join only neighbouring as-of times: where the gap to the next is over 1.5 times the usual
    spacing (as-ofs with no forecast, or none with actuals yet) they break. An as-of whose actuals have
    not all arrived (``complete`` false) is drawn hollow: its figure can still move."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.assign(as_of=pd.to_datetime(table["as_of"])).sort_values("as_of")
    broken = with_breaks(table)
    partial = table[~table["complete"].astype(bool)] if "complete" in table else table.iloc[:0]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for column, style, label in ((metric, dict(marker="o", color="C0"), f"forecasts ({metric})"),
                                 (f"seasonal_naive_{metric}", dict(marker=".", color="C1", alpha=0.7),
                                  "seasonal naive")):
        ax.plot(broken["as_of"], broken[column], label=label, **style)
    if len(partial):
        ax.plot(partial["as_of"], partial[metric], linestyle="none", marker="o", markerfacecolor="white",
                color="C0", label="partial: actuals still arriving")
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


def current_rows(prepared: Any) -> pd.DataFrame:
    """The rows the job forecasts: ``prepared.raw`` less the series whose data ended more than a horizon
    before the as-of (``prepared.ended``: their forecasts would all lie at or before it, "as of" a time
    after them), which the run's line and the manifest name instead."""
    if not prepared.ended:
        return prepared.raw
    ids = parse_ids(prepared.raw[prepared.columns.id], prepared.columns.id)
    return prepared.raw[~ids.isin(prepared.ended).to_numpy()]


def write(config: ModelConfig, prepared: Any, stamp: pd.Timestamp, target: Path, forecasts: pd.DataFrame,
          run_id: str, version: str, promise: dict[str, float]) -> None:
    """The as-of folder, whole or not at all: written beside its name, synced, renamed into place."""
    from forecaster.contract import AS_OF_COLUMN, conform, fallback_series, quantiles_in

    columns = prepared.columns
    out = forecasts.assign(**{AS_OF_COLUMN: as_of_timestamp(stamp, forecasts[columns.time])})
    out = conform(out, columns, quantiles_in(list(forecasts.columns)), as_of=True)
    manifest = {"as_of": str(stamp), "run_id": run_id, "model_name": config.name, "model_version": version,
                "rows": len(out), "series": int(out[columns.id].nunique()),
                "fallback_series": fallback_series(out, columns.id),
                "ended_series": {"count": len(prepared.ended), "series": prepared.ended[:1000]},
                "config_sha256": config_hash(config), "data": prepared.fingerprint(), "backtest": promise}
    staging = target.parent / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    with temporary(staging):
        _publish(staging, target, out, manifest)


def _publish(staging: Path, target: Path, out: pd.DataFrame, manifest: dict[str, Any]) -> None:
    """Write the folder's files into ``staging``, sync them, and rename it to ``target``."""
    from forecaster.data.io import fsync_dir

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
    check_sink(config)
    first, last = parse_as_of(start), parse_as_of(end)
    if (first.tzinfo is None) != (last.tzinfo is None):
        raise ConfigError(f"--from {start!r} and --to {end!r}: give both with a UTC offset or neither (one with "
                          f"and one without cannot be compared)")
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
