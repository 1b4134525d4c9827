"""A training run end to end (`pipelines.train.train`: backtest fit, backtest, final fit, logging), this
checkout against another commit, side by side in one session.

The other commit is checked out as a temporary git worktree and run with the same interpreter and
packages; each training runs in a fresh process (imports, graph building and XLA compilation count, as
they do for a user) against its own temporary MLflow store, alternating base and head ``--repeats``
times. Same config, data, seed and epochs on both sides: the ratio of wall times is the ratio of
windows per second (the data's training windows over the run's wall time; a side whose final fit
goes on from the backtest model runs fewer epochs on the same windows). Accuracy: the backtest's
MASE, and, for the packaged M4 Hourly, the final model's MASE on the official test part it never saw.

Also the CPU seconds each training used (user + system, the child process'): the work done on all
cores together, beside the time a user waited. On this project's shared machines both move between
runs of the same commit (the cores' speed varies: a fixed single-threaded numpy loop took 2.9-4.2 s),
which is why the sides alternate in one session and the ratio is what counts.

    .venv/bin/python bench/bench_fit.py --base HEAD~1 [--config models/m4_hourly.toml] [--series 100]
        [--epochs N (default: the config's)] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, os, sys, time
started = time.perf_counter()
from dataclasses import replace
from forecaster.config import load_config
from pipelines.train import train
config = load_config(sys.argv[1])
epochs = int(sys.argv[3]) if sys.argv[3] != "config" else config.training.epochs
config = replace(config, data=replace(config.data, series_limit=int(sys.argv[2])),
                 training=replace(config.training, epochs=epochs))
result = train(config, register=False, verbose=0)
seconds = time.perf_counter() - started
from mlflow import MlflowClient
client = MlflowClient()
backtest_epochs = len(client.get_metric_history(result.run_id, "backtest_fit.loss"))
out = {"seconds": seconds, "mase": result.backtest.summary["lstm"]["mase"],
       "final_epochs": len(result.model.history_["loss"]), "backtest_epochs": backtest_epochs}
if config.data.source == "package:m4_hourly":  # the final model on the official test part it never saw
    import numpy as np
    from forecaster.datasets.m4_hourly import load_m4_hourly
    from forecaster.evaluation.metrics import mase
    from pipelines.steps import prepare
    frame = prepare(config).frame
    ids = list(dict.fromkeys(frame["unique_id"]))
    test = load_m4_hourly(split="test").set_index(["unique_id", "ds"])
    forecasts = result.model.predict(frame).set_index(["unique_id", "ds"])
    h = config.horizon
    truth = test.loc[forecasts.index, "y"].to_numpy().reshape(len(ids), h)
    point = forecasts["forecast"].to_numpy().reshape(len(ids), h)
    history = [g.to_numpy("float64") for _, g in frame.groupby("unique_id", sort=False)["y"]]
    out["test_mase"] = float(mase(truth, point, history, 24))
print(json.dumps(out))
"""


def run_once(checkout: Path, config: Path, series: int, epochs: str, work: Path) -> dict:
    store = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "PYTHONPATH": str(checkout), "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
           "FORECASTER_MLRUNS": str(store), "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", CHILD, str(config), str(series), str(epochs)], cwd=checkout,
                          env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"training at {checkout} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. HEAD~1)")
    parser.add_argument("--config", type=Path, default=ROOT / "models" / "m4_hourly.toml")
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--epochs", default="config", help="epochs a fit (default: the config's)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    head_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        work = Path(tmp)
        base_tree = work / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            config = args.config.resolve()
            runs: dict[str, list[dict]] = {"base": [], "head": []}
            for k in range(args.repeats):
                order = ("base", "head") if k % 2 == 0 else ("head", "base")
                for side in order:
                    checkout = base_tree if side == "base" else ROOT
                    runs[side].append(run_once(checkout, config, args.series, args.epochs, work))
                    print(f"{side} run {k + 1}: {runs[side][-1]}", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False,
                           capture_output=True)
    print(f"command: .venv/bin/python bench/bench_fit.py {' '.join(sys.argv[1:])}")
    print(f"config {args.config.name}, {args.series} series, {args.epochs} epochs a fit, {args.repeats} repeats "
          f"alternating, {os.cpu_count()} CPUs")
    print("| side | commit | wall s (median) | runs | CPU s (median) | epochs (backtest fit, final fit) "
          "| backtest MASE | final model's test MASE |")
    print("|---|---|---|---|---|---|---|---|")
    med, cpu = {}, {}
    for side, rev in (("base", base_rev), ("head", head_rev + (" + working tree" if dirty else ""))):
        r = runs[side]
        med[side] = statistics.median(x["seconds"] for x in r)
        cpu[side] = statistics.median(x["cpu_seconds"] for x in r)
        each = ", ".join(f"{x['seconds']:.1f}" for x in r)
        print(f"| {side} | {rev} | {med[side]:.1f} | {each} | {cpu[side]:.1f} | "
              f"{r[0]['backtest_epochs']}, {r[0]['final_epochs']} | {r[0]['mase']:.4f} | "
              + ", ".join(f"{x['test_mase']:.4f}" for x in r if "test_mase" in x) + " |")
    print(f"\nhead is {med['base'] / med['head']:.2f}x the base's windows per second (same data and config: "
          "the ratio of wall times)")
    print(f"head does {cpu['base'] / cpu['head']:.2f}x less CPU work per window (the ratio of CPU seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
