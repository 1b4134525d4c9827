"""Batch prediction end to end (load model, read input, predict, write output), in series per second.

Input: ``N`` series of hourly history, ``input_size`` rows each (what the model reads), made from the
real M4 Hourly series (their last ``input_size`` values) replicated under new ids, copy ``k`` scaled by
``1 + k/1000`` so no two series are equal; written as Parquet before timing. Output: Parquet, horizon 48.

Each (engine, size) runs in a fresh subprocess, so no warm cache carries over and its peak memory is
its own: ``VmHWM`` of that process (``/proc/self/status``, the high-water mark of its own address space).
Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's peak into a child across fork/exec,
so every child would report at least this benchmark's own peak. For Spark, the driver's Python process
is the row's peak; the JVM and the Python workers are other processes, and the sum of their own peaks
(measured before the session stops) is printed below the table.

Times: ``import`` (Python imports, TensorFlow's included; not in the total), ``load`` (resolve and
load the registry model), ``read``, ``predict``, ``write`` (a whole-frame local engine; the streaming
local engine, like Spark, reads, predicts and writes as one job, shown under ``predict``) and
``total`` = load + read + predict + write; ``process`` the fresh process' wall time from its start to its
exit, as the parent sees it: end to end, the interpreter's start and the imports included; ``CPU s``:
the CPU time (user + system, all its threads) the
process spent over the same span, which a machine shared with other work inflates less than the wall
clock (the work is the same; the wait for a core is not counted).

``--base DIR``: also run the local engine of another checkout (``git archive <commit> | tar -x -C DIR``)
on the same inputs, first, in the same run and by this same harness (the child imports ``DIR``'s code);
the rows read ``local (base)``, and this checkout's output must equal the base's row for row (printed). Spark's
session start is paid once per application: shown apart, not in the total.

Without ``--model``, a model is trained first with ``models/m4_hourly.toml`` but ``--epochs`` epochs,
into a temporary MLflow store (about a minute on 2 cores).

    .venv/bin/python bench/bench_predict.py [--sizes 1000 10000 100000] [--engines local spark]
        [--model models:/m4_hourly/1] [--epochs 1] [--local-limit 10000] [--profile 10000]
        [--check-sample 1000] [--base DIR] [--base-limit N] [--chunk-series N] [--repeat N]

Equality: after each Spark row, ``--check-sample K`` series drawn at random (seed 0) from that input are
forecast by the local engine in a fresh process, and Spark's rows for them must equal those (same
columns, types, ids and times; values to 1e-5 relative): the line printed below the table. Per-worker
memory: each process Spark started (the JVM and every Python worker) is listed with its own peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
HORIZON = 48


# --------------------------------------------------------------------------- parent


def train_model(store: Path, epochs: int) -> str:
    """Train ``models/m4_hourly.toml`` with ``epochs`` epochs into ``store``; returns its version URI."""
    from forecaster.config import load_config
    from pipelines.train import train

    config = load_config(ROOT / "models" / "m4_hourly.toml")
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, epochs=epochs))
    result = train(config, verbose=0)
    return f"models:/{result.model_name}/{result.version}"


def model_input_size(model_uri: str) -> int:
    from pipelines.steps import load

    return int(load(model_uri).forecaster.input_size_)


def make_input(n_series: int, input_size: int, path: Path, block: int = 50_000) -> None:
    """``n_series`` M4 Hourly series (last ``input_size`` values), replicated with new ids, as Parquet
    (written ``block`` series at a time, so a million series need not be one frame here)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forecaster.datasets import ANCHOR, load_m4_hourly_arrays

    arrays = load_m4_hourly_arrays()
    base = np.stack([series[-input_size:] for series in arrays.train if len(series) >= input_size])
    times = pd.date_range(end=ANCHOR - pd.Timedelta(hours=1), periods=input_size, freq="h")
    writer = None
    for first in range(0, n_series, block):
        k = np.arange(first, min(first + block, n_series))
        values = base[k % len(base)] * (1.0 + (k // len(base))[:, None] / 1000.0)
        ids = np.array([f"B{i:06d}" for i in k], dtype=object)
        frame = pd.DataFrame({"unique_id": np.repeat(ids, input_size), "ds": np.tile(times.to_numpy(), len(k)),
                              "y": values.reshape(-1)})
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema))
    if writer is not None:
        writer.close()


def peak_rss_mb(pid: str = "self") -> float:
    """``VmHWM`` (peak resident set) of a process, in MB; 0 if unreadable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child_pid in children.get(todo.pop(), []):
            found.append(child_pid)
            todo.append(child_pid)
    return found


def _argv(pid: int) -> list[str]:
    try:
        return [a.decode("utf-8", "replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def process_kind(pid: int) -> str:
    """What a process below the bench is: the JVM, PySpark's daemon, a Python worker (forked by the
    daemon, so with the daemon's command line), or its command's name."""
    words = _argv(pid)
    if words and words[0].endswith("java"):
        return "JVM"
    if "pyspark.daemon" in words:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            parent = 0
        return "Python worker" if "pyspark.daemon" in _argv(parent) else "PySpark daemon"
    return Path(words[0]).name if words else "gone"


def run_child(args: list[str], env: dict[str, str], tree: Path = ROOT) -> dict:
    """One measured run in a fresh process (this script), importing the code of ``tree`` (this checkout, or
    ``--base``): both measured by the same harness."""
    env = {**env, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args], cwd=tree,
                          env=env, capture_output=True, text=True)
    process = time.perf_counter() - started  # the fresh process, start to exit: end to end, imports included
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr[-4000:]}")
    if "--profile-out" in args:
        print(proc.stdout)
    return {**json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1]), "process": process}


def check_sample(spark_out: Path, source: Path, k: int, work: Path, model_uri: str, env: dict[str, str]) -> str:
    """Spark's forecasts of ``k`` random series equal the local engine's for them; a line saying so."""
    import numpy as np
    import pandas as pd

    history = pd.read_parquet(source)
    ids = history["unique_id"].unique()
    chosen = set(np.random.default_rng(0).choice(ids, size=min(k, len(ids)), replace=False))
    sample_in, sample_out = work / "sample-in.parquet", work / "sample-out.parquet"
    history[history["unique_id"].isin(chosen)].to_parquet(sample_in, index=False)
    run_child(["--engine", "local", "--input", str(sample_in), "--output", str(sample_out), "--model", model_uri],
              env)
    local = pd.read_parquet(sample_out).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    spark = pd.read_parquet(spark_out)
    spark = spark[spark["unique_id"].isin(chosen)].sort_values(["unique_id", "ds"]).reset_index(drop=True)
    # Spark keeps microseconds (its timestamp type), the local engine nanoseconds: the same instants.
    kinds = [(str(t) if t.kind != "M" else "datetime64") for t in spark.dtypes]
    if list(spark.columns) != list(local.columns) or kinds != [
            (str(t) if t.kind != "M" else "datetime64") for t in local.dtypes]:
        raise AssertionError(f"columns differ: spark {dict(spark.dtypes)} local {dict(local.dtypes)}")
    spark["ds"] = spark["ds"].astype(local["ds"].dtype)
    if len(spark) != len(local) or not (spark["unique_id"] == local["unique_id"]).all() \
            or not (spark["ds"] == local["ds"]).all():
        raise AssertionError(f"rows differ: spark {len(spark)} local {len(local)}")
    numeric = [c for c in local.columns if c == "forecast" or c.startswith("q")]
    worst = max(float(np.max(np.abs(spark[c] - local[c]) / np.maximum(np.abs(local[c]), 1e-9))) for c in numeric)
    if worst > 1e-5:
        raise AssertionError(f"values differ: worst relative difference {worst:.2e}")
    same = [c for c in local.columns if c not in numeric and c not in ("unique_id", "ds")]
    for c in same:
        if not (spark[c].astype(str) == local[c].astype(str)).all():
            raise AssertionError(f"column {c} differs")
    return (f"{len(chosen):,} random series of {len(ids):,}: Spark's {len(spark):,} rows equal the local "
            f"engine's (columns and types, ids and times, {', '.join(same)} equal; {', '.join(numeric)} "
            f"worst relative difference {worst:.1e})")


def cpu_model() -> str:
    """The CPU's model name (lscpu's), for the record."""
    from forecaster.layers.cpu_kernel import cpu_info

    return cpu_info("model name") or "unknown"


def table(rows: list[dict]) -> str:
    head = ("| engine | series | input rows | import s | load s | read s | predict s | write s | total s "
            "| process s | CPU s | series/s | peak RSS MB | spark start s |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['engine']} | {r['series']:,} | | | | | | | not run ({r['skipped']}) | | | | | |")
            continue
        spark = f"{r['session']:.1f}" if r.get("session") is not None else "-"
        lines.append(f"| {r['engine']} | {r['series']:,} | {r['rows_in']:,} | {r['import']:.2f} | {r['load']:.2f} | "
                     f"{r['read']:.2f} | "
                     f"{r['predict']:.2f} | {r['write']:.2f} | {r['total']:.2f} | {r['process']:.2f} | "
                     f"{r['cpu']:.2f} | "
                     f"{r['series'] / r['total']:,.0f} | "
                     f"{r['maxrss_mb']:,.0f} | {spark} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--engines", nargs="+", choices=("local", "spark"), default=["local", "spark"])
    parser.add_argument("--model", help="an existing models:/<name>/<version> (default: train one)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs when training the model here")
    parser.add_argument("--local-limit", type=int, metavar="N", help="skip the local engine above N series")
    parser.add_argument("--profile", type=int, metavar="N", help="also cProfile the local engine on N series")
    parser.add_argument("--base", type=Path, metavar="DIR",
                        help="also run the local engine of another checkout (e.g. `git archive` of the previous "
                             "commit) on the same inputs, in the same run: rows 'local (base)'")
    parser.add_argument("--base-limit", type=int, metavar="N", help="skip the --base engine above N series")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each size's engines N times, alternating (rows numbered #1..#N)")
    parser.add_argument("--chunk-series", type=int, metavar="N", help="the local engine's chunk (default: its own)")
    parser.add_argument("--check-sample", type=int, default=1000, metavar="K",
                        help="compare Spark's output with the local engine's on K random series (0: no check)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    command = " ".join([".venv/bin/python", "bench/bench_predict.py",
                         *[shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]])
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        if args.model:
            model_uri = args.model
        else:
            (work / "store").mkdir()
            env["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'store' / 'mlflow.db'}"
            env["FORECASTER_MLRUNS"] = os.environ["FORECASTER_MLRUNS"] = str(work / "store")
            started = time.perf_counter()
            model_uri = train_model(work / "store", args.epochs)
            print(f"trained {model_uri} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        input_size = model_input_size(model_uri)
        rows = []
        for n in args.sizes:
            source = work / f"in-{n}.parquet"
            make_input(n, input_size, source)
            runs = [(engine, ROOT) for engine in args.engines]
            if args.base:
                runs.insert(0, ("local (base)", args.base.resolve()))
            # --repeat: base and this checkout alternate, round after round (a shared machine's load moves)
            for round_, (engine, tree) in enumerate(runs * args.repeat):
                limit = args.base_limit if tree != ROOT else args.local_limit if engine == "local" else None
                if limit and n > limit:
                    rows.append({"engine": engine, "series": n, "skipped": f"over {limit:,} series"})
                    continue
                out = work / f"out-{n}-{engine.split()[0]}{'-base' if tree != ROOT else ''}.parquet"
                chunk = ["--chunk-series", str(args.chunk_series)] if args.chunk_series and tree == ROOT else []
                result = run_child(["--engine", engine.split()[0], "--input", str(source), "--output", str(out),
                                    "--model", model_uri, *chunk], env, tree)
                result["engine"] = engine + (f" #{round_ // len(runs) + 1}" if args.repeat > 1 else "")
                rows.append(result)
                print(f"{engine} {n}: {result['total']:.2f} s, peak {result['maxrss_mb']:,.0f} MB", file=sys.stderr)
                if tree != ROOT:
                    continue
                base_out = work / f"out-{n}-local-base.parquet"
                if engine == "local" and base_out.exists():
                    import pandas as pd

                    same = pd.read_parquet(out).equals(pd.read_parquet(base_out))
                    result["equal"] = f"output {'equals' if same else 'DIFFERS FROM'} the base's, row for row"
                    print(result["equal"], file=sys.stderr)
                    base_out.unlink()
                if engine == "spark" and args.check_sample:
                    result["equal"] = check_sample(out, source, args.check_sample, work, model_uri, env)
                    print(result["equal"], file=sys.stderr)
        if args.profile:
            source = work / f"in-{args.profile}.parquet"
            if not source.exists():
                make_input(args.profile, input_size, source)
            run_child(["--engine", "local", "--input", str(source), "--output", str(work / "profiled.parquet"),
                       "--model", model_uri, "--profile-out", str(work / "profile.out")], env)
    print(table(rows))
    print(f"\nmodel input_size {input_size}, horizon {HORIZON}, {os.cpu_count()} CPUs; command:\n\n    {command}")
    print(f"CPU: {cpu_model()}")
    for r in rows:
        if r["engine"].startswith("local") and "base" not in r["engine"] and r.get("equal"):
            print(f"local, {r['series']:,} series: {r['equal']}")
        if r["engine"] != "spark" or r.get("skipped"):
            continue
        each = ", ".join(f"{p['kind']} {p['mb']:,.0f} MB" for p in r["others"])
        print(f"\nSpark, {r['series']:,} series: peak RSS of each process Spark started: {each} "
              f"({sum(p['mb'] for p in r['others']):,.0f} MB in all)")
        if r.get("equal"):
            print(f"Spark, {r['series']:,} series, equality: {r['equal']}")
    return 0


# --------------------------------------------------------------------------- child


def child(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    import pyarrow.parquet as pq

    import forecaster.forecaster  # noqa: F401  (Keras/TensorFlow: in "import", for both engines alike)
    from forecaster.data.io import read_frame, write_frame_atomic
    from pipelines.steps import forecast as forecast_frame
    from pipelines.steps import load

    try:  # the streaming engine; a --base checkout from before it reads, forecasts and writes whole frames
        from pipelines.predict import predict_streaming as streaming
    except ImportError:
        streaming = None

    result: dict = {"engine": args.engine, "import": time.perf_counter() - started, "session": None}
    session = None
    if args.engine == "spark":
        from pipelines.spark_predict import _session, predict_spark

        t = time.perf_counter()
        session = _session(None)
        result["session"] = time.perf_counter() - t
    result["rows_in"] = pq.ParquetFile(args.input).metadata.num_rows  # from the footer: no rows in memory

    def run() -> None:
        t = time.perf_counter()
        result["cpu_start"] = sum(os.times()[:2])
        model = load(args.model)
        result["load"] = time.perf_counter() - t
        if args.engine == "spark":
            t = time.perf_counter()
            summary = predict_spark(model, args.input, args.output, horizon=HORIZON)
            result.update(read=0.0, predict=time.perf_counter() - t, write=0.0, series=summary["series"])
            return
        if streaming is not None:  # this checkout's local engine: read, predict and write chunk by chunk
            t = time.perf_counter()
            chunk = {"chunk_series": args.chunk_series} if args.chunk_series else {}
            summary = streaming(model, args.input, args.output, horizon=HORIZON, **chunk)
            result.update(read=0.0, predict=time.perf_counter() - t, write=0.0, series=summary["series"])
            return
        t = time.perf_counter()
        history = read_frame(args.input)
        result["read"] = time.perf_counter() - t
        t = time.perf_counter()
        out = forecast_frame(model, history, horizon=HORIZON)
        result["predict"] = time.perf_counter() - t
        t = time.perf_counter()
        write_frame_atomic(out, args.output)
        result["write"] = time.perf_counter() - t
        result["series"] = int(out["unique_id"].nunique())

    if args.profile_out:
        import cProfile
        import pstats

        cProfile.runctx("run()", globals(), {"run": run}, args.profile_out)
        stats = pstats.Stats(args.profile_out)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(20)
    else:
        run()
    result["total"] = result["load"] + result["read"] + result["predict"] + result["write"]
    result["cpu"] = sum(os.times()[:2]) - result.pop("cpu_start")
    result["others"] = [{"pid": pid, "kind": process_kind(pid), "mb": peak_rss_mb(str(pid))}
                        for pid in descendants(os.getpid())]
    if session is not None:
        session.stop()
    result["maxrss_mb"] = peak_rss_mb()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
