"""Score ensembles of whole runs offline, from the forecasts `bench_dev_suite.py --keep DIR` saved: what
an ensemble of members that differ by setting (input length, scaling, window normalisation, seed) would
give, before it is built as a product option (docs/accuracy.md, "M4 Hourly, fourth session").

Each ``LABEL=DIR`` is one run's kept folder (``DIR/<set>.npz``: the actuals, the histories and the network's
forecast alone). Printed and written (``--out``): MASE, sMAPE and, for M4 Hourly, OWA relative to Naive2
computed on the same target (the validation windows' own, as `bench_m4.py --validate` scores them) of each
run alone, of the mean of every pair, of the mean and the median of all runs, and of each run averaged
with the seasonal state-space exponential smoothing (``+aets``, the runtime's member) when ``--aets``.

    .venv/bin/python bench/bench_dev_suite.py --validate --no-baselines --sets m4_hourly --keep /tmp/keep-a
    .venv/bin/python bench/bench_dev_suite.py --validate --no-baselines --sets m4_hourly --keep /tmp/keep-b \\
        --set training.input_size=336
    .venv/bin/python bench/member_study.py default=/tmp/keep-a input336=/tmp/keep-b [--aets] [--out F]
    .venv/bin/python bench/member_study.py d0=/tmp/keep-a d1=/tmp/keep-b d2=/tmp/keep-c --curve
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench_dev_suite import SETS  # noqa: E402

from forecaster.evaluation.metrics import mase, owa, smape  # noqa: E402
from forecaster.models.baselines import naive2  # noqa: E402


def scorer(y: np.ndarray, histories: list[np.ndarray], season: int, with_owa: bool) -> callable:
    """A function scoring one (series, horizon) forecast against ``y``: MASE, sMAPE and OWA (Naive2 on
    the same target) where ``with_owa``."""
    ref = None
    if with_owa:
        n2 = np.stack([naive2(x, y.shape[1], season) for x in histories])
        ref = (smape(y, n2), mase(y, n2, histories, season))

    def score(forecast: np.ndarray) -> dict[str, float]:
        out = {"mase": float(mase(y, forecast, histories, season)), "smape": float(smape(y, forecast))}
        if ref is not None:
            out["owa"] = float(owa(out["smape"], out["mase"], *ref))
        return out

    return score


def curve(nets: dict[str, np.ndarray], score: callable, key: str) -> dict[str, dict[str, float]]:
    """For each k >= 2: ``key`` (OWA or MASE) of the mean and of the median of every k of ``nets``,
    averaged over those subsets, with the best and worst subset and the count."""
    rows = {}
    labels = list(nets)
    for k in range(2, len(labels) + 1):
        subsets = list(itertools.combinations(labels, k))
        means = [score(np.mean([nets[a] for a in sub], axis=0))[key] for sub in subsets]
        medians = [score(np.median([nets[a] for a in sub], axis=0))[key] for sub in subsets]
        rows[f"curve k={k}"] = {"subsets": len(subsets), f"mean_{key}": float(np.mean(means)),
                                "best_mean": float(np.min(means)), "worst_mean": float(np.max(means)),
                                f"median_{key}": float(np.mean(medians)), "best_median": float(np.min(medians)),
                                "worst_median": float(np.max(medians)),
                                "best_subset": ",".join(subsets[int(np.argmin(means))])}
    return rows


def study(runs: dict[str, Path], name: str, aets: bool, others: dict[str, tuple[str, str]] | None = None,
          with_curve: bool = False) -> dict[str, dict[str, float]]:
    """Each run, pair, the mean and median of all (and each with AETS) on set ``name``, scored;
    ``others`` (label: (pair, member)) adds each pair run's other member; ``with_curve`` the curve."""
    saved = {label: np.load(folder / f"{name}.npz") for label, folder in runs.items()}
    first = next(iter(saved.values()))
    for label, arrays in saved.items():  # the same series, in the same order, on the same target
        if not (np.array_equal(arrays["ids"], first["ids"]) and np.array_equal(arrays["y"], first["y"])):
            raise SystemExit(f"{label}: its kept forecasts are not of the same series and target")
    y, season = first["y"], SETS[name]["season"]
    histories = np.split(first["history"], np.cumsum(first["lengths"])[:-1])
    score = scorer(y, histories, season, name == "m4_hourly")
    nets = {label: arrays["network"] for label, arrays in saved.items()}
    for label, (pair, member) in (others or {}).items():
        nets[label] = 2 * nets[pair] - nets[member]
    rows = {label: score(f) for label, f in nets.items()}
    for a, b in itertools.combinations(nets, 2):
        rows[f"mean({a}, {b})"] = score((nets[a] + nets[b]) / 2)
    if len(nets) > 2:
        rows["mean(all)"] = score(np.mean(list(nets.values()), axis=0))
        rows["median(all)"] = score(np.median(list(nets.values()), axis=0))
    if aets:
        from forecaster.models.combination import member_forecasts

        stat = member_forecasts(histories, y.shape[1], season)["aets"]
        rows["aets"] = score(stat)
        for label, f in nets.items():
            rows[f"{label}+aets"] = score((f + stat) / 2)
            rows[f"{label}+aets/4"] = score(0.75 * f + 0.25 * stat)
    if with_curve:
        pairs = {pair for pair, _ in (others or {}).values()}  # ensembles themselves: their members count
        rows.update(curve({label: f for label, f in nets.items() if label not in pairs},
                          score, "owa" if name == "m4_hourly" else "mase"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="a run's --keep folder, named")
    parser.add_argument("--set", dest="name", default="m4_hourly", choices=list(SETS))
    parser.add_argument("--aets", action="store_true", help="also each run averaged with AETS")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    parser.add_argument("--curve", action="store_true", help="also the ensemble-size curve (k = 2 .. runs)")
    parser.add_argument("--other", action="append", default=[], metavar="LABEL=PAIR-MEMBER",
                        help="a two-member run's other member, 2 PAIR - MEMBER, studied as LABEL")
    args = parser.parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs)
    others = {}
    for item in args.other:
        label, expr = item.split("=", 1)
        pair, member = expr.split("-", 1)
        if pair not in runs or member not in runs:
            raise SystemExit(f"--other {item}: {pair} and {member} must be runs given")
        others[label] = (pair, member)
    rows = study({label: Path(folder) for label, folder in runs.items()}, args.name, args.aets, others,
                 args.curve)
    for label, row in rows.items():
        print(f"{label:40s} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in row.items()))
    if args.out:
        args.out.write_text(json.dumps({"set": args.name, "runs": runs, "scores": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
