"""Score combinations of the network's forecasts with the statistical methods', offline, from the
forecasts `bench_dev_suite.py --keep DIR` saved (no training): the study behind `[model] combine`.

For each set: MASE of the network alone (N), of each statistical method alone as the runtime computes
it (`combination.member_forecasts`: T the Theta method, O and D the optimised Theta model with a
static and a dynamic trend line, E exponential smoothing, A the seasonal state-space one, R and R8 the
robust trends of the whole series and of its last 8 values), of every combination the runtime
applies (named as in `[model] combine`, built from `combination.MEMBERS`), of a few means without the
network (T+E, O+D+E, O+D+A) and N+E, two other pools of the members "auto" combines on the set
(`forecaster.defaults.default_combination`; their median; the mean and the median with T added), and
statsforecast's AutoETS / AutoTheta where the run had baselines. Run it on ``--validate`` forecasts to
choose; a test run's forecasts only report.

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

from forecaster.defaults import default_combination  # noqa: E402
from forecaster.evaluation.metrics import mase  # noqa: E402
from forecaster.models.combination import MEMBERS, member_forecasts  # noqa: E402

_SHORT = {"T": "theta", "O": "otm", "D": "dotm", "E": "ets", "A": "aets", "R": "rtrend", "R8": "rtrend8"}


def study(path: Path, season: int) -> dict[str, float]:
    saved = np.load(path)
    y, network = saved["y"], saved["network"]
    histories = np.split(saved["history"], np.cumsum(saved["lengths"])[:-1])
    h = y.shape[1]
    members = member_forecasts(histories, h, season)
    forecasts = {"N": network, **{short: members[name] for short, name in _SHORT.items()}}
    for method, names in MEMBERS.items():
        if names:
            forecasts[method] = np.mean([network, *(members[name] for name in names)], axis=0)
    for label, names in {"N+E": ("ets",), "T+E": ("theta", "ets"), "O+D+E": ("otm", "dotm", "ets"),
                         "O+D+A": ("otm", "dotm", "aets")}.items():
        forecasts[label] = np.mean([network] * label.startswith("N") + [members[n] for n in names], axis=0)
    # Other pools of what "auto" combines (issue #11, fourth session): their median, and Theta added.
    default = default_combination(season)  # what "auto" combines on this data
    shipped = [network, *(members[name] for name in MEMBERS[default])]
    letters = [next(k for k, v in _SHORT.items() if v == name) for name in MEMBERS[default]]
    forecasts[f"median(N,{','.join(letters)})"] = np.median(shipped, axis=0)
    forecasts[f"N+T+{'+'.join(letters)}"] = np.mean([*shipped, members["theta"]], axis=0)
    forecasts[f"median(N,T,{','.join(letters)})"] = np.median([*shipped, members["theta"]], axis=0)
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
