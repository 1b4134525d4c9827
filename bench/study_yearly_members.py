"""Ways of combining the statistical members on data without a season, scored at every origin the
development suite's training parts give without reading a test part: the backtest's windows (two
origins, out of sample for the backtest's network) and the validation window (each series' last
horizon of the training part, the final network), from what ``bench_combination_weights.py --combine
auto --keep DIR`` saved per set (issue #27, sixth session).

Rules without a parameter (means, medians, trimmed means of the members, with and without the network)
are honest at every origin; greedy weights are learned on the backtest's windows and scored on the
validation window only. MASE over the series the network forecasts at each origin; on the validation
window also over every series with the fallback's seasonal naive for the short ones (as `predict`).

    PYTHONPATH=. .venv/bin/python bench/study_yearly_members.py /tmp/keep --sets m1_yearly m3_yearly m3_other
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.bench_dev_suite import SETS, wide  # noqa: E402


def rules(points: dict[str, np.ndarray], statistical: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each parameter-free rule's point forecasts from the members' ``points`` (rows, horizon)."""
    s = np.stack([points[m] for m in statistical])
    ns = np.stack([points["lstm"], *s])
    ordered = np.sort(s, axis=0)
    return {"mean_with_network": ns.mean(0), "mean": s.mean(0), "median": np.median(s, 0),
            "median_with_network": np.median(ns, 0), "trimmed_mean": ordered[1:-1].mean(0),
            **{f"alone:{m}": points[m] for m in ("lstm", *statistical)}}


def score(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    keep = np.isfinite(scale) & (scale > 0) & np.isfinite(actual).all(1) & np.isfinite(forecast).all(1)
    return float(np.mean(np.abs(actual[keep] - forecast[keep]) / scale[keep, None]))



def validation_scores(table: dict[str, np.ndarray], y: np.ndarray, short: np.ndarray, naive: np.ndarray,
                      scale: np.ndarray) -> dict[str, dict]:
    """Each rule's forecasts scored on the validation window: on the series the network forecasts, and on
    all of them with the fallback's seasonal naive where the series is too short, as `predict` serves."""
    return {r: {"network_series": score(y[~short], f[~short], scale[~short]),
                "all_series": score(y, np.where(short[:, None], naive, f), scale)} for r, f in table.items()}


def network_on_validation(model, fit_part: pd.DataFrame, val: pd.DataFrame, h: int):
    """The validation window as the studies score it: the series' ids, their training histories, the
    actuals (series x h), the network's own forecasts (the model set to the network alone, uncalibrated)
    and which series the fallback forecasts there (too short for the network)."""
    from forecaster.contract import BASELINE, LSTM

    ids = list(dict.fromkeys(fit_part["unique_id"]))
    histories = [g.to_numpy("float64") for _, g in fit_part.groupby("unique_id", sort=False)["y"]]
    y = wide(val, ids, "y", h)
    model.combine_, model.weights_ = "none", {LSTM: 1.0}
    alone = model.predict(fit_part, calibrated=False)
    short = (alone.groupby("unique_id", sort=False)["model"].first().loc[ids] == BASELINE).to_numpy()
    return ids, histories, y, wide(alone, ids, "forecast", h), short

def study(keep: Path, name: str) -> dict:
    from forecaster.contract import LSTM
    from forecaster.defaults import default_combination
    from forecaster.evaluation.metrics import mase_scale
    from forecaster.forecaster import LSTMForecaster
    from forecaster.models.combination import MEMBERS, greedy_weights, member_forecasts
    from forecaster.models.naive import SeasonalNaive

    spec = SETS[name]
    h, season = spec["h"], spec["season"]
    statistical = MEMBERS[default_combination(season)]
    where = keep / name
    model = LSTMForecaster.load(where / "model")
    members = pd.read_parquet(where / "members.parquet")
    out: dict = {"set": name, "backtest": {}, "validation": {}}
    actual = members["y"].to_numpy("float64").reshape(-1, h)
    scale = members["scale"].to_numpy("float64")[::h]
    windows = members["window"].to_numpy()[::h]
    points = {m: members[m].to_numpy("float64").reshape(-1, h) for m in (LSTM, *statistical)}
    for k in sorted(set(windows)):
        rows = windows == k
        out["backtest"][f"window {k}"] = {"rows": int(rows.sum()), **{
            r: score(actual[rows], f[rows], scale[rows]) for r, f in rules(points, statistical).items()}}
    greedy = greedy_weights(actual, points | {}, scale, start=statistical)[0]
    greedy_s = greedy_weights(actual, {m: points[m] for m in statistical}, scale, start=statistical)[0]
    # the validation window: the final network's forecasts and the members' from each training part
    fit_part, val = pd.read_parquet(where / "fit.parquet"), pd.read_parquet(where / "validation.parquet")
    ids, histories, y, network, short = network_on_validation(model, fit_part, val, h)
    vpoints = {LSTM: network, **member_forecasts(histories, h, season, set(statistical))}
    naive = SeasonalNaive().point(histories, h, season)
    vscale = mase_scale(histories, season)
    table = rules(vpoints, statistical)
    table["greedy_all_from_members"] = sum(w * vpoints[m] for m, w in greedy.items())
    table["greedy_members_from_equal"] = sum(w * vpoints[m] for m, w in greedy_s.items())
    out["validation"].update(validation_scores(table, y, short, naive, vscale))
    out["greedy_weights"] = {"all_from_members": greedy, "members_from_equal": greedy_s}
    out["validation_series"], out["fallback_series"] = len(ids), int(short.sum())
    return out


def run_studies(study, description: str) -> None:
    """The command line both yearly studies share: ``study(keep, name)`` for each set, one JSON line
    each, all of them in ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("keep", type=Path)
    parser.add_argument("--sets", nargs="+", default=["m1_yearly", "m3_yearly", "m3_other"], choices=sorted(SETS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for name in args.sets:
        results.append(study(args.keep, name))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def main() -> None:
    run_studies(study, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
