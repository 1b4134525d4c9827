"""Score combinations of the network's forecasts with the statistical methods', offline, from the
forecasts `bench_dev_suite.py --keep DIR` saved (no training): the study behind `[model] combine`.

For each set: MASE of the network alone (N), the Theta method (T), the optimised Theta model with a
static (O) and a dynamic (D) trend line, and exponential smoothing (E), as the runtime computes them
(`forecaster.baselines`), their equal-weight means, and statsforecast's
AutoETS / AutoTheta where the run had baselines. Run it on ``--validate`` forecasts to choose; a
test run's forecasts only report.

    .venv/bin/python bench/bench_dev_suite.py --validate --set 'model.combine="none"' --keep /tmp/keep
    .venv/bin/python bench/combination_study.py /tmp/keep [--out study.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench_dev_suite import SETS  # noqa: E402

from forecaster.baselines import ets_batch, optimised_theta_batch, theta_batch  # noqa: E402
from forecaster.metrics import mase  # noqa: E402


def study(path: Path, season: int) -> dict[str, float]:
    saved = np.load(path)
    y, network = saved["y"], saved["network"]
    histories = np.split(saved["history"], np.cumsum(saved["lengths"])[:-1])
    h = y.shape[1]
    theta, ets = theta_batch(histories, h, season), ets_batch(histories, h, season)
    otm = optimised_theta_batch(histories, h, season)
    dotm = optimised_theta_batch(histories, h, season, dynamic=True)
    forecasts = {"N": network, "T": theta, "O": otm, "D": dotm, "E": ets, "N+T": (network + theta) / 2,
                 "N+E": (network + ets) / 2, "N+T+E": (network + theta + ets) / 3, "T+E": (theta + ets) / 2,
                 "N+O+D+E": (network + otm + dotm + ets) / 4, "O+D+E": (otm + dotm + ets) / 3}
    for name in ("AutoETS", "AutoTheta"):
        if name in saved:
            forecasts[name] = saved[name]
    return {k: float(mase(y, v, histories, season)) for k, v in forecasts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("keep", type=Path, help="the folder bench_dev_suite.py --keep wrote")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    results = {path.stem: study(path, SETS[path.stem]["season"]) for path in sorted(args.keep.glob("*.npz"))
               if path.stem in SETS}
    columns = list(dict.fromkeys(k for row in results.values() for k in row))
    print("| set | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c in row else "" for c in columns) + " |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
