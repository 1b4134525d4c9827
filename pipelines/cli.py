"""The `forecaster` command: train, predict, run the scheduled job, report on it.

Exit codes (the README lists them too):
  0  done
  1  failure (anything unexpected)
  2  bad configuration or usage (a config, a flag, a model URI, an output path, unusable model files)
  3  bad input data
  75 another live run of the same job holds its lock (EX_TEMPFAIL: try again later)
  99 nothing to do: this as-of was done already (Airflow's BashOperator marks 99 as skipped)
  130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM, what Airflow and Kubernetes send)
Each error prints one line on stderr, never a traceback (FORECASTER_DEBUG=1 shows one for a failure).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Only the standard library here: `main` installs the signal handlers before anything heavy is imported
# (numpy, pandas, the parameter table), so a SIGTERM in the process's first second gets its line and code.
if TYPE_CHECKING:
    from forecaster.params import Param

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DATA, EXIT_LOCKED, EXIT_NOTHING_TO_DO = 0, 1, 2, 3, 75, 99
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM
#: How long a stopping process waits for the tracking store to take its run's end.
_STOP_TIMEOUT = 10.0


def _stop(signum: int, frame: object) -> None:
    """SIGTERM or SIGINT: end the active MLflow run as KILLED, remove this process's temporary files and
    folders, say so in one line and exit 143 or 130 at once.

    Not by raising into the running code: an exception unwinding through a TensorFlow fit in progress
    can corrupt its runtime's heap as its objects go (seen: ``free(): invalid next size``, SIGABRT, before
    any line of ours), and its threads cannot be stopped cleanly; ``os._exit`` leaves them be. Outputs are
    written to temporary names and renamed whole, so none is half replaced.
    """
    import threading

    name = signal.Signals(signum).name
    mlflow = sys.modules.get("mlflow")
    # Per thread: read here, in the main one. A signal during mlflow's own import finds it half made, without
    # `active_run` (an AttributeError from here went into that import: the command ran on, exit 0); no run
    # can have begun through it.
    try:
        run = mlflow.active_run() if hasattr(mlflow, "active_run") else None
    except Exception:  # its fluent module half made too: nothing to end that can be found
        run = None
    outcome: list[bool] = []
    ended = threading.Thread(target=lambda: outcome.append(_end_run(None if run is None else run.info.run_id)),
                             daemon=True)
    ended.start()
    ended.join(_STOP_TIMEOUT)
    # Nothing may raise out of here: an exception goes into the code the signal stopped (an import, say),
    # which may catch it and run on.
    # Not imported here: it imports pandas, maybe half imported by the code the signal stopped. Where it is
    # not loaded yet, no temporary file was recorded.
    io = sys.modules.get("forecaster.data.io")
    with contextlib.suppress(Exception):
        if hasattr(io, "remove_temporaries"):
            io.remove_temporaries()
    with contextlib.suppress(Exception):
        _remove_autograph_files()
    said = "its MLflow run (if one began) is marked KILLED" if outcome == [True] else \
        "its MLflow run could not be ended (the next training on this host marks it FAILED)"
    from forecaster import quiet

    # A flush raises where the reader of stdout has gone (BrokenPipeError) or where the signal came in the
    # middle of a write to that stream (RuntimeError, reentrant call): raised from here, it went into the
    # stopped code and the process ran on without its line or its exit code.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # Not print(): during TensorFlow's import descriptor 2 is captured (`forecaster.quiet`), and the line went
    # there, never to be written back.
    with contextlib.suppress(OSError):
        os.write(quiet.stderr_fd(), f"forecaster: stopped by {name}: {said}, temporary files are removed, and "
                                    f"no output was replaced\n".encode())
    os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)


def _remove_autograph_files() -> None:
    """The source files TensorFlow's autograph wrote for this process's functions (it removes them at a
    normal exit, which `_stop` skips): each is the ``__file__`` of a module it put in ``sys.modules``."""
    import tempfile

    folder = os.path.realpath(tempfile.gettempdir())
    for module in list(sys.modules.values()):
        # From the module's own namespace: getattr on a lazily loaded module (keras' visualization,
        # `forecaster.quiet`) loads it, here in a signal's handler and maybe in the middle of an import it needs
        # (matplotlib's: an ImportError that went into that import, and a training ran on to exit 0).
        try:
            path = object.__getattribute__(module, "__dict__").get("__file__") or ""
        except (AttributeError, TypeError):  # not a module
            continue
        if not isinstance(path, str):
            continue
        if os.path.basename(path).startswith("__autograph_generated_file") and \
                os.path.realpath(os.path.dirname(path)) == folder:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _end_run(run_id: str | None) -> bool:
    """Mark MLflow run ``run_id`` KILLED; whether that was done (or there was no run). Best effort: a store
    that cannot be reached keeps it RUNNING, and the next training on this host marks it FAILED
    (`pipelines.steps.mark_abandoned_runs`)."""
    if run_id is None:
        return True
    try:
        sys.modules["mlflow"].MlflowClient().set_terminated(run_id, status="KILLED")
    except Exception:  # the store is gone or busy: see the docstring
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    from forecaster.params import FLAGS, param

    parser = argparse.ArgumentParser(
        prog="forecaster",
        description="Time-series forecasting around an LSTM cell written here, tracked in MLflow.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a forecasting model, backtest it, log it to MLflow and register it",
        description=(
            "Train a global LSTM forecaster from a config (models/<name>.toml) or straight from a data file; "
            "backtest it beside seasonal naive, log the run to MLflow (the embedded store under mlruns/ unless "
            "MLFLOW_TRACKING_URI is set), register a new version as 'challenger' and promote it to 'champion' "
            "if it beats the champion and seasonal naive."
        ),
    )
    train.add_argument("config", nargs="?", type=Path, help="models/<name>.toml")
    train.add_argument("--data", help="a CSV or Parquet long frame (unique_id, ds, y) instead of a config")
    train.add_argument("--horizon", type=int, help=f"{param('model', 'horizon').help} (with --data)")
    train.add_argument("--freq", help=f"{param('data', 'freq').help} (with --data)")
    train.add_argument("--name", help="model name (with --data; default: the file's stem)")
    for p in FLAGS:  # the override flags: one per parameter the table marks, its help and choices from there
        train.add_argument(p.flag_name, type=_flag_type(p), choices=p.choices,
                           help=f"override {p.section}.{p.name}: {p.help}".replace("%", "%%"))
    train.add_argument("--no-register", action="store_true", help="log the run but do not register the model")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    predict = sub.add_parser(
        "predict",
        help="forecast a history file with a registered model, written atomically",
        description=(
            "Load a registered model (by alias or version), forecast every series of the input file and write "
            "the long forecast frame (id, time, forecast, quantile columns, model, model_name, model_version) "
            "to the output file, CSV or Parquet, atomically: a reader never sees half a file and a failed run "
            "leaves the previous file intact. Series too short for the model get seasonal naive, marked in "
            "the 'model' column."
        ),
    )
    predict.add_argument("--model", required=True,
                         help="models:/<name>@<alias>, models:/<name>/<version>, models:/<name>/latest, "
                              "runs:/<run_id>/<path> or a local model folder")
    predict.add_argument("--input", required=True, help="history (plus known-future covariates), CSV or Parquet")
    predict.add_argument("--output", required=True, help="where to write the forecasts, .csv or .parquet")
    predict.add_argument("--horizon", type=int, help="steps to forecast (at most the trained horizon)")
    predict.add_argument("--quantiles", type=float, nargs="+", help="quantiles to output (among the trained ones)")
    predict.add_argument("--engine", choices=("local", "spark"), default="local",
                         help="local pandas (default) or Spark (series grouped into buckets of ids, applyInPandas)")
    predict.add_argument("--chunk-series", type=int, default=None, metavar="N",
                         help="series the local engine reads and forecasts at a time (default 8192); its memory "
                              "grows with N, not with the input")

    run = sub.add_parser(
        "run",
        help="the scheduled job: one idempotent run per as-of time (monitor, retrain when due, forecast, write)",
        description=(
            "With the data known at the as-of time (rows at or before it): score earlier forecasts against the "
            "actuals that arrived, retrain when due ([schedule] retrain_every, degraded accuracy, or no version "
            "yet), promote by the rule, forecast with the champion and write <output>/as_of=<time>/ whole. "
            "A done as-of exits 99 (nothing to do) unless --force; a second run of the same job exits 75. "
            "--from/--to/--every backfill each as-of in order, skipping done ones."
        ),
    )
    run.add_argument("config", type=Path, help="models/<name>.toml")
    run.add_argument("--as-of", help="the as-of time, e.g. 2026-11-26T00:00 (an offset is taken in UTC)")
    run.add_argument("--from", dest="start", help="backfill: first as-of")
    run.add_argument("--to", dest="end", help="backfill: last as-of (inclusive)")
    run.add_argument("--every", help="backfill: spacing, e.g. 1D, 6h")
    run.add_argument("--force", action="store_true", help="redo as-of times that are done")
    run.add_argument("--wait", type=float, help="seconds to wait for another run's lock (default: "
                                                "[schedule] lock_timeout, 0)")

    report = sub.add_parser(
        "report",
        help="print the monitoring history of a scheduled job and write its plot",
        description="Score every forecast the job wrote against the actuals in its data source, per as-of "
                    "and per horizon step, beside seasonal naive and the backtest's promise.",
    )
    report.add_argument("config", type=Path, help="models/<name>.toml")
    report.add_argument("--plot", type=Path, help="where to write the PNG (default: <output>/_report/accuracy.png)")
    report.add_argument("--full", action="store_true", help="every as-of time and every horizon step, not a summary")
    return parser


def _flag_type(p: Param) -> type:
    """What argparse reads a flag's text as: the parameter's type, without its ``None``."""
    return int if p.type in (int, int | None) else float if p.type in (float, float | None) else str


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from forecaster.config import load_config, model_config_from_dict
    from forecaster.errors import ConfigError
    from forecaster.params import FLAGS

    if (args.config is None) == (args.data is None):
        raise ConfigError("give either a config file or --data FILE --horizon H")
    if args.config is not None:
        given = [flag for flag, value in (("--horizon", args.horizon), ("--freq", args.freq), ("--name", args.name))
                 if value is not None]
        if given:  # the config's own values would silently win
            raise ConfigError(f"{' and '.join(given)} only go with --data; with a config file, set them in its "
                              "[model] and [data] tables")
        config = load_config(args.config)
    else:
        if args.horizon is None:
            raise ConfigError("--data needs --horizon")
        data = {"source": str(Path(args.data).resolve())}
        if args.freq:
            data["freq"] = args.freq
        config = model_config_from_dict({"model": {"name": args.name or Path(args.data).stem,
                                                   "horizon": args.horizon}, "data": data})
    for p in FLAGS:
        value = getattr(args, p.name)
        if value is not None:
            value = p.check_flag(value)
            config = replace(config, **{p.section: replace(getattr(config, p.section), **{p.name: value})})
    from forecaster.models import distribute

    # A wrong TF_CONFIG is refused before TensorFlow and MLflow are imported (seconds of the process).
    distribute.is_chief(config.training.strategy)
    from pipelines.train import train  # TensorFlow and MLflow: imported once the arguments are checked

    result = train(config, register=not args.no_register, verbose=_verbose(args.quiet))
    if result.run_id is None:
        workers = distribute.cluster()
        print(f"worker {workers.index} of {len(workers.workers)}: trained in lockstep with worker 0, "
              f"which logs the run and registers the model")
        return EXIT_OK
    if result.short:
        print(result.short)
    if result.outliers:
        print(result.outliers)
    from forecaster.contract import BASELINE, LSTM

    metric, summary = config.promotion.metric, result.backtest.summary
    print(f"run {result.run_id}: backtest {metric} {LSTM} {summary[LSTM][metric]:.4f}, "
          f"seasonal naive {summary[BASELINE][metric]:.4f}")
    if result.version is not None:
        d = result.decision
        print(f"registered {result.model_name} version {result.version}: "
              f"{'champion' if d.promoted else 'challenger'} ({d.reason})")
    from forecaster.ops import tracking

    print(f"look at it: {tracking.ui_command()}")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from forecaster.data.io import check_destination

    check_destination(args.output, source=args.input)  # before TensorFlow and MLflow are even imported
    from pipelines.predict import predict

    chunk = {} if args.chunk_series is None else {"chunk_series": args.chunk_series}
    summary = predict(args.model, args.input, args.output, horizon=args.horizon, quantiles=args.quantiles,
                      engine=args.engine, **chunk)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from forecaster.config import load_config
    from forecaster.errors import ConfigError
    from pipelines import run as job

    config = load_config(args.config)
    if args.wait is not None:
        if args.wait < 0:
            raise ConfigError("--wait must be >= 0 seconds")
        config = replace(config, schedule=replace(config.schedule, lock_timeout=args.wait))
    backfill = (args.start, args.end, args.every)
    if args.as_of is not None and any(backfill):
        raise ConfigError("give either --as-of T or --from T1 --to T2 --every D, not both")
    if args.as_of is not None:
        outcomes = [job.run(config, args.as_of, force=args.force)]
    elif all(backfill):
        outcomes = job.backfill(config, args.start, args.end, args.every, force=args.force)
    else:
        raise ConfigError("forecaster run needs --as-of T, or --from T1 --to T2 --every D")
    for o in outcomes:
        if o.status == "done":
            print(f"done {o.as_of}: version {o.model_version}{' (retrained)' if o.retrained else ''}, "
                  f"{o.folder}, run {o.run_id}, {o.seconds:.1f} s")
    return EXIT_NOTHING_TO_DO if all(o.status == "nothing to do" for o in outcomes) else EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from forecaster.config import load_config
    from pipelines.report import report

    print(report(load_config(args.config), args.plot, full=args.full))
    return EXIT_OK


def _verbose(quiet: bool) -> int:
    """A progress bar on a terminal; one line per epoch in a scheduler's log."""
    return 0 if quiet else (1 if sys.stdout.isatty() else 2)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `forecaster` command."""
    # First of all: a scheduler's SIGTERM may come while the rest is imported (a second or more). Unblocked
    # too, where the process was started with them blocked: a signal sent before this line is taken here.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_UNBLOCK, previous)
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    """`main` once its signal handlers are in place."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # MLflow's loggers would get a handler and a format of their own: they go through ours instead.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # tf.distribute logs each all-reduce at INFO
    logging.getLogger("alembic").setLevel(logging.WARNING)  # MLflow's schema migrations, step by step
    # "No artifacts found to download ..." before our error line for a version whose files are gone.
    logging.getLogger("mlflow.store.artifact.artifact_repo").setLevel(logging.WARNING)
    if not os.environ.get("FORECASTER_DEBUG"):
        # MLflow logs each database error with its whole traceback, then raises it: our one line says it.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    from forecaster import errors
    from forecaster.errors import ConfigError

    # Our errors, most specific first: (class, what the line says, exit code).
    failures = ((errors.LockHeldError, "locked", EXIT_LOCKED), (errors.NoChampionError, "no champion", EXIT_ERROR),
                (errors.WorkerLostError, "worker lost", EXIT_ERROR),
                (ConfigError, "configuration error", EXIT_CONFIG), (errors.ModelError, "model error", EXIT_CONFIG),
                (errors.DataError, "data error", EXIT_DATA))
    commands = {"train": _train, "predict": _predict, "run": _run, "report": _report}
    try:
        return commands[args.command](args)
    except Exception as exc:
        full = _disk_full(exc)
        if full is not None:
            print(f"forecaster: disk full: no space left on the device holding {full}; {_fail_open_run()}; "
                  f"free space and run again", file=sys.stderr)
            return EXIT_ERROR
        for cls, what, code in failures:
            if isinstance(exc, cls):
                print(f"forecaster: {what}: {exc}", file=sys.stderr)
                if isinstance(exc, errors.WorkerLostError):
                    # TensorFlow's runtime lost a peer and cannot shut down cleanly: the finalizers of its
                    # pools would print tracebacks after our line. The run is already closed as failed.
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
                return code
        if os.environ.get("FORECASTER_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        print(f"forecaster: failed: {type(exc).__name__}: {first} (FORECASTER_DEBUG=1 shows the traceback)",
              file=sys.stderr)
    return EXIT_ERROR


def _fail_open_run() -> str:
    """Mark FAILED the MLflow run that a failure left open (its end could not be written), and say how it
    stands: a store whose disk is full cannot take it, and the next training on this host marks it."""
    mlflow = sys.modules.get("mlflow")
    try:  # the run this process began last, as the store has it (MLflow forgets it even when its end failed)
        run = mlflow.last_active_run() if mlflow is not None else None
    except Exception:
        run = None
    if run is None or run.info.status != "RUNNING":
        return "its MLflow run (if one began) is marked FAILED"
    try:
        mlflow.MlflowClient().set_terminated(run.info.run_id, status="FAILED")
    except Exception:  # the store is on the full disk
        return (f"its MLflow run {run.info.run_id} is left RUNNING (the store cannot take its end): the next "
                f"training of this model on this host marks it FAILED")
    return "its MLflow run is marked FAILED"


def _disk_full(exc: BaseException) -> str | None:
    """The file (or "the store") of an ENOSPC anywhere in ``exc``'s chain of causes, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return str(current.filename) if current.filename else "the output or the MLflow store"
        if "No space left on device" in str(current) or "database or disk is full" in str(current):
            return "the MLflow store"
        current = current.__cause__ or current.__context__
    return None

if __name__ == "__main__":
    sys.exit(main())
