"""Latency of one /invocations request for 10 series against a real `mlflow models serve` process.

    .venv/bin/python bench/bench_serving.py [--model models:/m4_hourly@champion] [--series 10] [--requests 30]

Uses the tracking store of `forecaster.ops.tracking` (the embedded mlruns/ unless MLFLOW_TRACKING_URI is set);
the history is the last `input_size + 24` hours of M4 Hourly series, sent as `dataframe_split` with params.
Reports median and 90th percentile after 3 warm-up requests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.serve_process import start_server, stop_server
from forecaster.datasets import load_m4_hourly
from forecaster.ops import tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models:/m4_hourly@champion")
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rows", type=int, default=192, help="history rows per series")
    args = parser.parse_args()
    frame = load_m4_hourly(split="train")
    ids = frame["unique_id"].unique()[: args.series]
    history = frame[frame["unique_id"].isin(ids)].groupby("unique_id", sort=False).tail(args.rows)
    history = history.assign(ds=history["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    body = json.dumps({"dataframe_split": history.to_dict(orient="split", index=False),
                       "params": {"horizon": 48}}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(args.model, tracking.tracking_uri(), Path(tmp) / "server.log")
        try:
            times = []
            for k in range(args.requests + 3):
                request = urllib.request.Request(f"{base}/invocations", data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                start = time.perf_counter()
                with urllib.request.urlopen(request, timeout=60) as response:
                    rows = len(json.loads(response.read())["predictions"])
                if k >= 3:
                    times.append((time.perf_counter() - start) * 1e3)
        finally:
            stop_server(proc)
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"model {args.model}: {args.series} series x {args.rows} rows in, {rows} forecast rows out; "
          f"{args.requests} requests after 3 warm-ups: median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms, "
          f"min {times[0]:.1f} ms")


if __name__ == "__main__":
    main()
