"""Wall time of statistical members (`forecaster.models.combination.member_forecasts`) on two synthetic
shapes: M4 Hourly's (414 series of 700 values, season 24, horizon 48) and many short yearly series
(10,000 of 40 values, horizon 6); the best of three runs each. Run it under ``flock /tmp/bench.lock``
with one BLAS/OpenMP thread and record ``uptime`` beside it (issue #27, seventh session: what CES adds).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/time_members.py otm aets ces
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from forecaster.models.combination import member_forecasts


def best_of(runs: int, histories: list[np.ndarray], horizon: int, season: int, name: str) -> float:
    """The least wall time in seconds of ``runs`` forecasts of ``histories`` by member ``name``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        member_forecasts(histories, horizon, season, {name})
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    names = sys.argv[1:] or ["otm", "aets", "ces"]
    rng = np.random.default_rng(0)
    hourly = [100 + 10 * np.sin(np.arange(700) * 2 * np.pi / 24) + rng.normal(0, 1, 700).cumsum() for _ in range(414)]
    yearly = [rng.normal(0, 1, 40).cumsum() + 50 for _ in range(10000)]
    for label, histories, horizon, season in (("414 hourly series of 700 values", hourly, 48, 24),
                                              ("10,000 yearly series of 40 values", yearly, 6, 1)):
        for name in names:
            seconds = best_of(3, histories, horizon, season, name)
            print(f"{label}: {name} {seconds:.2f} s ({1000 * seconds / len(histories):.3f} ms a series)", flush=True)


if __name__ == "__main__":
    main()
