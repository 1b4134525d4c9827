"""Peak memory and time of combining many series' forecasts with the statistical methods, in parts of
`combination.CHUNK` series against one part: what prediction on a large frame pays for the
combination (`[model] combine`). Each setting runs in a fresh process (peak RSS is per process).

    .venv/bin/python bench/bench_combine_memory.py [--series 100000] [--length 40] [--method otm+dotm+ets]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def _one(chunk: int, series: int, length: int, method: str) -> dict[str, float]:
    import resource

    from forecaster.models import combination

    rng = np.random.default_rng(0)
    histories = [100.0 + np.cumsum(rng.normal(0.5, 2.0, length)) for _ in range(series)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    combination.CHUNK = chunk
    start = time.perf_counter()
    combination.combine(np.zeros((series, 6, 3)), histories, method, 1)
    return {"chunk": chunk, "seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": before / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--method", default="otm+dotm+ets")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_one(args.child, args.series, args.length, args.method)))
        return 0
    from forecaster.models.combination import CHUNK

    print(f"{args.series} series of {args.length} values, horizon 6, combine {args.method!r}")
    print("| series per part | seconds | peak RSS MB (before the combination) |\n|---|---|---|")
    for chunk in (CHUNK, args.series):
        out = subprocess.run([sys.executable, __file__, "--child", str(chunk), "--series", str(args.series),
                              "--length", str(args.length), "--method", args.method],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {chunk:,} | {row['seconds']:.1f} | {row['peak_rss_mb']:.0f} ({row['rss_before_mb']:.0f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
