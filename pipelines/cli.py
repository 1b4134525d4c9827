"""The `forecaster` command: train, predict, run the scheduled job, report on it.

Exit codes (the README lists them too):
  0  done
  1  failure (anything unexpected)
  2  bad configuration or usage (a config, a flag, a model URI, an output path, unusable model files)
  3  bad input data
  75 another live run of the same job holds its lock (EX_TEMPFAIL: try again later)
  99 nothing to do: this as-of was done already (Airflow's BashOperator marks 99 as skipped)
Each error prints one line on stderr, never a traceback (FORECASTER_DEBUG=1 shows one for a failure).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from forecaster.errors import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DATA, EXIT_LOCKED, EXIT_NOTHING_TO_DO = 0, 1, 2, 3, 75, 99


def _parser() -> argparse.ArgumentParser:
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
    train.add_argument("--horizon", type=int, help="steps to forecast (with --data)")
    train.add_argument("--freq", help="pandas frequency alias such as h, D, W-MON, MS (default: inferred)")
    train.add_argument("--name", help="model name (with --data; default: the file's stem)")
    train.add_argument("--epochs", type=int, help="override training.epochs")
    train.add_argument("--budget-windows", type=int,
                       help="override training.budget_windows: window-epochs a fit may train when epochs or windows "
                            "per series are derived (docs/accuracy.md)")
    train.add_argument("--strategy", choices=("none", "mirrored", "multi_worker"),
                       help="override training.strategy: 'multi_worker' trains across the workers TF_CONFIG lists "
                            "(docs/scale-out.md)")
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
    return parser


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from forecaster import tracking
    from forecaster.config import load_config, model_config_from_dict
    from forecaster.params import check_value
    from pipelines.train import train

    if (args.config is None) == (args.data is None):
        raise ConfigError("give either a config file or --data FILE --horizon H")
    if args.config is not None:
        config = load_config(args.config)
    else:
        if args.horizon is None:
            raise ConfigError("--data needs --horizon")
        data = {"source": str(Path(args.data).resolve())}
        if args.freq:
            data["freq"] = args.freq
        config = model_config_from_dict({"model": {"name": args.name or Path(args.data).stem,
                                                   "horizon": args.horizon}, "data": data})
    if args.epochs is not None:
        check_value("--", "epochs", args.epochs, int)
        config = replace(config, training=replace(config.training, epochs=args.epochs))
    if args.budget_windows is not None:
        check_value("--", "budget_windows", args.budget_windows, int)
        config = replace(config, training=replace(config.training, budget_windows=args.budget_windows))
    if args.strategy is not None:
        config = replace(config, training=replace(config.training, strategy=args.strategy))
    result = train(config, register=not args.no_register, verbose=_verbose(args.quiet))
    if result.run_id is None:
        from forecaster import distribute

        workers = distribute.cluster()
        print(f"worker {workers.index} of {len(workers.workers)}: trained in lockstep with worker 0, "
              f"which logs the run and registers the model")
        return EXIT_OK
    if result.short:
        print(result.short)
    print(f"run {result.run_id}: backtest {config.promotion.metric} "
          f"lstm {result.backtest.summary['lstm'][config.promotion.metric]:.4f}, "
          f"seasonal naive {result.backtest.summary['seasonal_naive'][config.promotion.metric]:.4f}")
    if result.version is not None:
        d = result.decision
        print(f"registered {result.model_name} version {result.version}: "
              f"{'champion' if d.promoted else 'challenger'} ({d.reason})")
    print(f"look at it: {tracking.ui_command()}")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from pipelines.predict import predict

    summary = predict(args.model, args.input, args.output, horizon=args.horizon, quantiles=args.quantiles,
                      engine=args.engine)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from forecaster.config import load_config
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

    print(report(load_config(args.config), args.plot))
    return EXIT_OK


def _verbose(quiet: bool) -> int:
    """A progress bar on a terminal; one line per epoch in a scheduler's log."""
    return 0 if quiet else (1 if sys.stdout.isatty() else 2)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `forecaster` command."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # tf.distribute logs each all-reduce at INFO
    from forecaster import errors

    # Our errors, most specific first: (class, what the line says, exit code).
    failures = ((errors.LockHeldError, "locked", EXIT_LOCKED), (errors.NoChampionError, "no champion", EXIT_ERROR),
                (errors.WorkerLostError, "worker lost", EXIT_ERROR),
                (ConfigError, "configuration error", EXIT_CONFIG), (errors.ModelError, "model error", EXIT_CONFIG),
                (errors.DataError, "data error", EXIT_DATA))
    commands = {"train": _train, "predict": _predict, "run": _run, "report": _report}
    try:
        return commands[args.command](args)
    except Exception as exc:
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

if __name__ == "__main__":
    sys.exit(main())
