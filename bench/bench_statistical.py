"""Our statistical methods beside statsforecast's, on the development suite's validation windows, and their
time per series at 10k and 100k series (issue #27).

Ours (`forecaster.models.baselines`, run in this process through `forecaster.models.combination.member_forecasts`, the
path a fitted forecaster takes): seasonal naive, the Theta method, the optimised Theta model with a static
(OTM) and a dynamic (DOTM) trend line, exponential smoothing (ETS), the state-space exponential smoothing
with seasonal states (AETS, `forecaster.models.ets`), and the equal-weight means of OTM, DOTM and ETS (the
former default combination's statistical half), of OTM, DOTM and AETS (the default's since 2026-12-06)
and of all four. statsforecast's (in .venv-baselines, made by
bench/setup-baselines.sh, as a subprocess reading the same training part from a file): SeasonalNaive,
AutoETS, AutoARIMA, AutoTheta, AutoCES and, on hourly data, MSTL with daily and weekly periods (24, 168).

Each set is split as ``bench_dev_suite.py --validate`` splits it (`validation_split`: each series' last
horizon of the official training part is the target; the test part is never read). MASE (the in-sample
seasonal-naive scale at the set's season) and sMAPE (M4's) of the point forecasts; the wall time is fit +
predict of all the set's series on one core (statsforecast with ``n_jobs=1``, after each model forecast
two series untimed; ours with one BLAS/OpenMP thread). ``--max-series N`` scores an evenly spaced sample
of N series of a larger set, the same for every model (AutoARIMA takes seconds a series). Besides each
model: means of statsforecast's (`THEIR_MEANS`), and the gap of each against the ours it would stand in
for (`PAIRS`; "clearly better": more than `CLEARLY` lower MASE). ``--keep DIR`` saves every forecast.

``--ours-only``: our methods alone, without statsforecast (no .venv-baselines needed), to score a
change of ours beside statsforecast's figures recorded before (merge the JSON files' ``scores``).

``--scale SET``: the time per series at ``--sizes`` (10,000 and 100,000) series, made by repeating SET's
validation training parts. Each model first forecasts a ``--sample`` of 2,000 series (statsforecast's:
``--their-sample`` where given); a size it would
take longer than ``--budget`` seconds for at that rate is not run but extrapolated (linearly: each
series is fitted on its own by statsforecast and in fixed-size chunks by ours) and marked so.

    bench/setup-baselines.sh
    PYTHONPATH=. .venv/bin/python bench/bench_statistical.py [--sets m3_yearly ...] [--scale m3_monthly]
        [--max-series 300] [--keep DIR] [--out results.json]
    PYTHONPATH=. .venv/bin/python bench/bench_statistical.py --tables results.json ...   # tables only
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one core each, as statsforecast's n_jobs=1

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dev_suite import BASELINES_PYTHON, SETS, load_set, scores, validation_split, wide  # noqa: E402
from forecaster.models.baselines import seasonal_naive_batch  # noqa: E402
from forecaster.models.combination import member_forecasts  # noqa: E402


def _member(method: str) -> Callable[[list[np.ndarray], int, int], np.ndarray]:
    """Our statistical method ``method`` (a `forecaster.models.combination.MEMBERS` name) as a fitted forecaster
    runs it."""
    return lambda histories, h, m: member_forecasts(histories, h, m, {method})[method]


#: Ours, by the names the tables use: each maps (histories, horizon, season) to forecasts (n, horizon).
OURS: dict[str, Callable[[list[np.ndarray], int, int], np.ndarray]] = {
    "SeasonalNaive (ours)": seasonal_naive_batch,
    **{f"{label} (ours)": _member(method)
       for label, method in (("Theta", "theta"), ("OTM", "otm"), ("DOTM", "dotm"), ("ETS", "ets"),
                             ("AETS", "aets"), ("RTrend", "rtrend"), ("RTrend8", "rtrend8"),
                             ("CES", "ces"))},
}
#: The statistical half of the product's former default combination ("otm+dotm+ets").
MEAN = ("OTM (ours)", "DOTM (ours)", "ETS (ours)")
MEAN_NAME = "mean(OTM, DOTM, ETS) (ours)"
#: Our other means scored beside it: the statistical half of the default on seasonal data since 2026-12-06
#: (`forecaster.models.combination.AUTO`, "otm+dotm+aets") first, then that of the default on data
#: without a season since 2026-12-06's third session ("otm+dotm+aets+rtrend+rtrend8",
#: `forecaster.defaults.default_combination`), and the same without AETS (that session's first choice).
OUR_MEANS = (("OTM (ours)", "DOTM (ours)", "AETS (ours)"), ("OTM (ours)", "DOTM (ours)", "ETS (ours)", "AETS (ours)"),
             ("OTM (ours)", "DOTM (ours)", "AETS (ours)", "RTrend (ours)", "RTrend8 (ours)"),
             ("OTM (ours)", "DOTM (ours)", "RTrend (ours)", "RTrend8 (ours)"))
THEIRS = ("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta", "AutoCES")
#: Equal-weight means of statsforecast's models: what could stand in for `MEAN` in the combination.
THEIR_MEANS = (("AutoETS", "AutoTheta", "AutoCES"), ("AutoETS", "AutoARIMA", "AutoTheta"),
               ("AutoETS", "AutoARIMA", "AutoTheta", "AutoCES"))
SUITE = ("m3_yearly", "m3_quarterly", "m3_monthly", "m3_other", "m1_yearly", "m1_quarterly", "m1_monthly",
         "m4_hourly")


def theirs_for(name: str) -> tuple[str, ...]:
    """statsforecast's models for set ``name``: MSTL only where there are several seasonalities (hourly)."""
    return (*THEIRS, "MSTL") if SETS[name]["freq"] == "h" else THEIRS


def histories_of(train: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """(ids, each series' values) in the frame's order."""
    groups = train.groupby("unique_id", sort=False)["y"]
    return [str(i) for i in groups.groups], [g.to_numpy("float64") for _, g in groups]


def run_ours(histories: list[np.ndarray], h: int, season: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each of our methods' forecasts and its wall time in seconds (the mean's: its members' sum)."""
    forecasts, seconds = {}, {}
    for label, method in OURS.items():
        started = time.perf_counter()
        forecasts[label] = method(histories, h, season)
        seconds[label] = time.perf_counter() - started
    for members in (MEAN, *OUR_MEANS):
        label = f"mean({', '.join(m.removesuffix(' (ours)') for m in members)}) (ours)"
        forecasts[label] = np.mean([forecasts[m] for m in members], axis=0)
        seconds[label] = sum(seconds[m] for m in members)
    return forecasts, seconds


def run_theirs(train: pd.DataFrame, models: tuple[str, ...], h: int, season: int, freq: str,
               work: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """statsforecast's forecasts of ``train`` (long frame) on one core, and each model's wall time."""
    data, out = work / "train.parquet", work / "theirs.parquet"
    train.to_parquet(data, index=False)
    done = subprocess.run([str(BASELINES_PYTHON), str(ROOT / "bench" / "dev_suite_baselines.py"), "--train",
                           str(data), "--horizon", str(h), "--season", str(season), "--freq", freq,
                           "--out", str(out), "--models", ",".join(models), "--cores", "1", "--level", "0",
                           "--warm-up"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"statsforecast failed:\n{done.stderr[-3000:]}")
    base = pd.read_parquet(out)
    base["unique_id"] = base["unique_id"].astype(str)
    return base, json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def subsample(frame: pd.DataFrame, most: int | None) -> pd.DataFrame:
    """``frame``'s rows of at most ``most`` series, evenly spaced in its order (all where None or fewer):
    the same series for every model, so that a model too slow for a whole set is compared like for like."""
    ids = pd.unique(frame["unique_id"])
    if most is None or len(ids) <= most:
        return frame
    chosen = ids[np.unique(np.linspace(0, len(ids) - 1, most).round().astype(int))]
    return frame[frame["unique_id"].isin(chosen)].reset_index(drop=True)


def accuracy(name: str, work: Path, most: int | None = None, keep: Path | None = None,
             theirs: bool = True) -> dict:
    """Every model's MASE, sMAPE and wall time on set ``name``'s validation windows (of at most ``most``
    of its series, `subsample`); with ``keep``, the forecasts as ``keep/{name}.npz``; without
    ``theirs``, ours alone (no statsforecast, no .venv-baselines needed)."""
    spec = SETS[name]
    h, season, freq = spec["h"], spec["season"], spec["freq"]
    whole = load_set(name)[0]
    train, target = validation_split(subsample(whole, most), h)
    ids, histories = histories_of(train)
    y = wide(target, ids, "y", h)
    rows = {}
    forecasts, seconds = run_ours(histories, h, season)
    for label, point in forecasts.items():
        rows[label] = {**scores(y, point, histories, season), "seconds": seconds[label]}
    models = theirs_for(name) if theirs else ()
    base, their_seconds = run_theirs(train, models, h, season, freq, work) if models else (None, {})
    points = {label: wide(base, ids, label, h) for label in models}
    for label in models:
        rows[label] = {**scores(y, points[label], histories, season), "seconds": their_seconds[label]}
    for members in THEIR_MEANS if models else ():
        rows[f"mean({', '.join(members)})"] = {
            **scores(y, np.mean([points[m] for m in members], axis=0), histories, season),
            "seconds": sum(their_seconds[m] for m in members)}
    if keep is not None:  # every model's forecasts, to study means and choices without running again
        keep.mkdir(parents=True, exist_ok=True)
        np.savez(keep / f"{name}.npz", ids=np.array(ids), y=y, history=np.concatenate(histories),
                 lengths=np.array([len(x) for x in histories]), **forecasts, **points)
    for row in rows.values():
        row["ms_per_series"] = 1000 * row["seconds"] / len(ids)
    return {"set": name, "series": len(ids), "of_series": whole["unique_id"].nunique(),
            "horizon": h, "season": season, "scored_on": "validation",
            "scores": rows}


def replicate(train: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` series made by repeating ``train``'s (ids suffixed ``~k``), in order."""
    codes, ids = pd.factorize(train["unique_id"])
    order = np.argsort(codes, kind="stable")
    lengths = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    source = np.arange(n) % len(ids)
    rows = np.concatenate([order[starts[i] : starts[i] + lengths[i]] for i in source])
    names = np.repeat([f"{ids[i]}~{k}" for k, i in enumerate(source)], lengths[source])
    out = train.iloc[rows].reset_index(drop=True)
    out["unique_id"] = names
    return out


def scaling(name: str, sizes: list[int], sample: int, budget: float, work: Path,
            their_sample: int | None = None, theirs: bool = True) -> dict:
    """Seconds per series of every model at ``sizes`` series made from set ``name`` (measured where the
    ``sample``'s rate says a size fits in ``budget`` seconds, else extrapolated from the sample; for
    statsforecast's models the sample is ``their_sample`` series where given)."""
    spec = SETS[name]
    h, season, freq = spec["h"], spec["season"], spec["freq"]
    train, _ = validation_split(load_set(name)[0], h)
    out: dict[str, dict] = {}
    frames = {n: None for n in sorted({sample, their_sample or sample, *sizes})}

    def frame(n: int) -> pd.DataFrame:
        if frames[n] is None:
            frames[n] = replicate(train, n)
        return frames[n]

    def record(label: str, n: int, seconds: float, measured: bool) -> None:
        out.setdefault(label, {})[str(n)] = {"seconds": seconds, "ms_per_series": 1000 * seconds / n,
                                             "measured": measured}
        print(f"  {label} at {n:,}: {seconds:.1f} s ({'measured' if measured else 'extrapolated'})",
              file=sys.stderr)

    for label, method in OURS.items():
        for n in sorted({sample, *sizes}):
            rate = out[label][str(sample)]["seconds"] / sample if label in out else 0.0
            if n != sample and rate * n > budget:
                record(label, n, rate * n, False)
                continue
            _, histories = histories_of(frame(n))
            started = time.perf_counter()
            method(histories, h, season)
            record(label, n, time.perf_counter() - started, True)
    sample = their_sample or sample
    for label in theirs_for(name) if theirs else ():
        for n in sorted({sample, *sizes}):
            rate = out[label][str(sample)]["seconds"] / sample if label in out else 0.0
            if n != sample and rate * n > budget:
                record(label, n, rate * n, False)
                continue
            _, seconds = run_theirs(frame(n), (label,), h, season, freq, work)
            record(label, n, seconds[label], True)
    return {"set": name, "sample": sample, "budget_s": budget, "models": out}


def accuracy_table(results: list[dict]) -> str:
    lines = ["| set | series (scored of all) | model | MASE | sMAPE | wall s (1 core) | ms per series |",
             "|---" * 7 + "|"]
    for r in results:
        best = min(row["mase"] for row in r["scores"].values())
        for label, row in sorted(r["scores"].items(), key=lambda item: item[1]["mase"]):
            mase = f"**{row['mase']:.3f}**" if row["mase"] == best else f"{row['mase']:.3f}"
            lines.append(f"| {r['set']} | {r['series']:,} of {r['of_series']:,} | {label} | {mase} | "
                         f"{row['smape']:.2f} | {row['seconds']:.1f} | {row['ms_per_series']:.2f} |")
    return "\n".join(lines)


def _short(label: str) -> str:
    """A model's name in a table's header: ``*`` ours, ``A.X`` statsforecast's AutoX, ``m(...)`` a mean."""
    return label.replace(" (ours)", "*").replace("mean(", "m(").replace("Auto", "A.")


def wide_table(results: list[dict], column: str = "mase") -> str:
    """One row per set, one column per model: ``column`` (mase, smape or ms_per_series); the set's best
    MASE in bold."""
    models = list(dict.fromkeys(label for r in results for label in r["scores"]))
    short = {label: _short(label) for label in models}
    lines = ["| set | series | " + " | ".join(short[m] for m in models) + " |", "|---" * (len(models) + 2) + "|"]
    for r in results:
        best = min(row["mase"] for row in r["scores"].values())
        cells = []
        for label in models:
            row = r["scores"].get(label)
            if row is None:
                cells.append("")
                continue
            text = f"{row[column]:.3f}" if column != "ms_per_series" else f"{row[column]:.2f}"
            cells.append(f"**{text}**" if column == "mase" and row["mase"] == best else text)
        lines.append(f"| {r['set']} | {r['series']:,} of {r['of_series']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n\\* ours; A. AutoX (statsforecast); m(...) the equal-weight mean"


#: A statsforecast model is "clearly better" than ours where its MASE is this much below (relative).
CLEARLY = 0.02
#: The pairs the decision compares: (statsforecast's, ours) that would stand in for each other.
PAIRS = (("AutoTheta", ("OTM (ours)", "DOTM (ours)")), ("AutoETS", ("ETS (ours)",)),
         ("AutoARIMA", MEAN), ("AutoCES", MEAN),
         ("mean(AutoETS, AutoTheta, AutoCES)", (MEAN_NAME,)), ("mean(AutoETS, AutoARIMA, AutoTheta)", (MEAN_NAME,)))


def summary_table(results: list[dict]) -> str:
    """Per set and pair of `PAIRS`: statsforecast's MASE against the better of ours, the relative gap
    (negative: theirs lower) and whether it is `CLEARLY` better; then the count of sets per pair."""
    lines = ["| set | statsforecast | MASE | ours (best of) | MASE | gap | theirs clearly better |",
             "|---" * 7 + "|"]
    wins: dict[str, list[bool]] = {}
    for r in results:
        rows = r["scores"]
        for theirs, ours in PAIRS:
            if theirs not in rows:
                continue
            best = min(ours, key=lambda label: rows[label]["mase"])
            gap = rows[theirs]["mase"] / rows[best]["mase"] - 1
            clearly = gap < -CLEARLY
            wins.setdefault(theirs, []).append(clearly)
            lines.append(f"| {r['set']} | {theirs} | {rows[theirs]['mase']:.3f} | {best} | {rows[best]['mase']:.3f} | "
                         f"{100 * gap:+.1f} % | {'yes' if clearly else 'no'} |")
    lines += ["", "| statsforecast | sets where clearly better (MASE > 2 % below ours) |", "|---|---|"]
    lines += [f"| {theirs} | {sum(flags)} of {len(flags)} |" for theirs, flags in wins.items()]
    return "\n".join(lines)


def gap_table(results: list[dict]) -> str:
    """`summary_table` in one row per set: each pair's relative MASE gap (bold where theirs is `CLEARLY`
    better), and the count of such sets per pair."""
    pairs = [(theirs, ours) for theirs, ours in PAIRS if any(theirs in r["scores"] for r in results)]
    heads = [f"{_short(t)} vs {'/'.join(map(_short, o)) if len(o) < 3 else 'best*'}" for t, o in pairs]
    lines = ["| set | " + " | ".join(heads) + " |",
             "|---" * (len(pairs) + 1) + "|"]
    counts = [0] * len(pairs)
    for r in results:
        cells = []
        for k, (theirs, ours) in enumerate(pairs):
            rows = r["scores"]
            best = min(rows[label]["mase"] for label in ours)
            gap = rows[theirs]["mase"] / best - 1
            counts[k] += gap < -CLEARLY
            cells.append(f"**{100 * gap:+.1f} %**" if gap < -CLEARLY else f"{100 * gap:+.1f} %")
        lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    lines.append("| clearly better on | " + " | ".join(f"{c} of {len(results)}" for c in counts) + " |")
    return "\n".join(lines)


def scaling_table(result: dict) -> str:
    sizes = sorted({int(n) for runs in result["models"].values() for n in runs})
    lines = []
    lines += ["| model | " + " | ".join(f"{n:,} series: s (ms/series)" for n in sizes) + " |",
              "|---" * (len(sizes) + 1) + "|"]
    for label, runs in result["models"].items():
        cells = []
        for n in sizes:
            run = runs.get(str(n))
            if run is None:
                cells.append("")
                continue
            mark = "" if run["measured"] else " *"
            cells.append(f"{run['seconds']:.1f} ({run['ms_per_series']:.2f}){mark}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n\\* extrapolated from the sample's rate (over the budget)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", choices=list(SETS), default=list(SUITE))
    parser.add_argument("--scale", choices=list(SETS), help="time per series on copies of this set's series")
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--their-sample", type=int, help="statsforecast's sample when smaller than --sample")
    parser.add_argument("--max-series", type=int, help="score at most this many series of a set (evenly spaced)")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds a measured size may take")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", type=Path, help="save each set's forecasts here (npz)")
    parser.add_argument("--ours-only", action="store_true",
                        help="run our methods alone (no statsforecast; .venv-baselines not needed)")
    parser.add_argument("--tables", type=Path, nargs="+", metavar="JSON",
                        help="print the tables of earlier --out files (accuracy parts in order) and exit")
    args = parser.parse_args(argv)
    if args.tables:
        loaded = [json.loads(path.read_text()) for path in args.tables]
        accuracy_results = [r for part in loaded for r in part["accuracy"]]
        print(accuracy_table(accuracy_results) + "\n\n" + summary_table(accuracy_results))
        print("\n" + gap_table(accuracy_results))
        for column in ("mase", "smape", "ms_per_series"):
            print(f"\n{column}\n" + wide_table(accuracy_results, column))
        for part in loaded:
            if part["scaling"]:
                print("\n" + scaling_table(part["scaling"]))
        return 0
    results: dict = {"accuracy": [], "scaling": None}
    with tempfile.TemporaryDirectory(prefix="bench-statistical-") as tmp:
        for name in args.sets:
            work = Path(tmp) / name
            work.mkdir()
            results["accuracy"].append(accuracy(name, work, args.max_series, args.keep, not args.ours_only))
            print(accuracy_table(results["accuracy"][-1:]), file=sys.stderr)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2))
        if args.scale:
            work = Path(tmp) / "scale"
            work.mkdir()
            results["scaling"] = scaling(args.scale, args.sizes, args.sample, args.budget, work, args.their_sample,
                                         not args.ours_only)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2))
    if results["accuracy"]:
        print(accuracy_table(results["accuracy"]))
        print(summary_table(results["accuracy"]))
    if results["scaling"]:
        print(scaling_table(results["scaling"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
