"""Complex exponential smoothing (`baselines.ces_batch`, member ``"ces"``) as a sixth member of the
combination on data without a season, scored at every origin the development suite's training parts
give without reading a test part: the backtest's two windows (out of sample for the backtest's network;
each row's history is the training part up to its cutoff) and the validation window (each series' last
horizon of the training part, the final network), from what ``bench_combination_weights.py --combine
auto --keep DIR`` saved per set (issue #27, seventh session).

Per origin, MASE of: the default as the product applies it (the network and the five members, or the
five alone where the network review drops it), the same with CES added (and the review decided again on
the backtest's windows for the new set of members), CES in place of AETS, CES alone, and the members'
means without the network with and without CES; greedy weights among the statistical members (with CES)
learned on one backtest window and scored on the other (cross-fitted), and learned on both and scored on
the validation window. MASE over the series the network forecasts at each origin; on the validation
window also over every series with the fallback's seasonal naive for the short ones (as `predict`).
Each comparison's relative difference comes with the 5 % and 95 % points of a bootstrap over its rows,
at each origin and over the rows of every origin pooled; greedy weights are out of sample at every
origin (learned on the other backtest window, or on both for the validation window). The ARIMA(0,1,1)
with drift is this study's own (`arima011_drift`), to see whether AutoARIMA's usual yearly choice adds
to the members before writing it into the product.

    PYTHONPATH=. .venv/bin/python bench/study_yearly_ces.py /tmp/keep --sets m1_yearly m3_yearly m3_other
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.bench_dev_suite import SETS, relative_interval  # noqa: E402
from bench.study_yearly_members import network_on_validation, run_studies, score, validation_scores  # noqa: E402

CES = "ces"
ARIMA = "arima011_drift"  # this study's own, not a product member
#: The MA coefficients the ARIMA(0,1,1) with drift is fitted over (conditional least squares).
MA_GRID = np.linspace(-0.95, 0.95, 39)
WITH_CES = "otm+dotm+aets+rtrend+rtrend8+ces"


def window_histories(fit_part: pd.DataFrame, members: pd.DataFrame, h: int) -> list[np.ndarray]:
    """Each backtest row's history (one row: a series at an origin): its training part up to the cutoff."""
    by_id = {str(sid): g for sid, g in fit_part.groupby("unique_id", sort=False)}
    firsts = members.iloc[::h]
    return [by_id[str(sid)].loc[by_id[str(sid)]["ds"] <= cutoff, "y"].to_numpy("float64")
            for sid, cutoff in zip(firsts["unique_id"], firsts["cutoff"])]


def arima011_drift(histories: list[np.ndarray], h: int) -> np.ndarray:
    """ARIMA(0,1,1) with a drift, what AutoARIMA mostly picks on yearly data, by conditional least
    squares (errors from 0 before the first difference): for each MA coefficient on `MA_GRID` the drift
    has a closed form; the pair of least squared error forecasts y_n + h mu + theta e_n. Fewer than 4
    values: naive. Vectorised over the series of one length (a study's candidate, not a product member)."""
    out = np.empty((len(histories), h))
    for size in sorted({len(x) for x in histories}):
        rows = np.array([i for i, x in enumerate(histories) if len(x) == size])
        x = np.stack([histories[i] for i in rows])
        if size < 4:
            out[rows] = x[:, -1:]
            continue
        d, th = np.diff(x, axis=1), MA_GRID[None, :]
        r, g = np.zeros((len(rows), MA_GRID.size)), np.zeros((len(rows), MA_GRID.size))
        srr, srg, sgg = np.zeros_like(r), np.zeros_like(r), np.zeros_like(r)
        for t in range(d.shape[1]):  # e_t = d_t - mu - theta e_(t-1) = r_t - mu g_t
            r, g = d[:, t : t + 1] - th * r, 1.0 - th * g
            srr, srg, sgg = srr + r * r, srg + r * g, sgg + g * g
        mu = srg / sgg
        k = np.argmin(srr - mu * srg, axis=1)
        i = np.arange(len(rows))
        last_error = r[i, k] - mu[i, k] * g[i, k]
        out[rows] = x[:, -1:] + mu[i, k][:, None] * np.arange(1, h + 1)[None, :] + (MA_GRID[k] * last_error)[:, None]
    return out


def variants(points: dict[str, np.ndarray], statistical: tuple[str, ...], drop: bool,
             drop_with_ces: bool) -> dict[str, np.ndarray]:
    """Each way of combining from the members' ``points`` (rows, horizon); ``drop``/``drop_with_ces``:
    whether the network review drops the network for the members without / with CES."""
    five = np.mean([points[m] for m in statistical], axis=0)
    six = np.mean([points[m] for m in (*statistical, CES)], axis=0)
    swap = np.mean([points[CES] if m == "aets" else points[m] for m in statistical], axis=0)
    with_network = np.mean([points[m] for m in ("lstm", *statistical)], axis=0)
    with_network_ces = np.mean([points[m] for m in ("lstm", *statistical, CES)], axis=0)
    with_network_swap = np.mean([points[CES] if m == "aets" else points[m] for m in ("lstm", *statistical)], axis=0)
    return {"default": five if drop else with_network,
            "default_plus_ces": six if drop_with_ces else with_network_ces,
            "default_ces_for_aets": swap if drop else with_network_swap,
            "members_mean": five, "members_mean_plus_ces": six, "with_network": with_network,
            "with_network_plus_ces": with_network_ces,
            "default_plus_theta": np.mean([points[m] for m in (*statistical, "theta")], axis=0) if drop else
            np.mean([points[m] for m in ("lstm", *statistical, "theta")], axis=0),
            "default_plus_arima": np.mean([points[m] for m in (*statistical, ARIMA)], axis=0) if drop else
            np.mean([points[m] for m in ("lstm", *statistical, ARIMA)], axis=0),
            "alone:ces": points[CES], "alone:theta": points["theta"], "alone:arima": points[ARIMA],
            "alone:lstm": points["lstm"]}


def study(keep: Path, name: str) -> dict:
    from forecaster.contract import LSTM
    from forecaster.defaults import NETWORK_REVIEW_MARGIN, default_combination
    from forecaster.evaluation.metrics import mase_scale
    from forecaster.forecaster import LSTMForecaster
    from forecaster.models.combination import MEMBERS, greedy_weights, member_forecasts, without_network
    from forecaster.models.naive import SeasonalNaive

    spec = SETS[name]
    h, season = spec["h"], spec["season"]
    default = default_combination(season)
    statistical = MEMBERS[default]
    assert MEMBERS[WITH_CES] == (*statistical, CES)
    where = keep / name
    model = LSTMForecaster.load(where / "model")
    members = pd.read_parquet(where / "members.parquet")
    fit_part, val = pd.read_parquet(where / "fit.parquet"), pd.read_parquet(where / "validation.parquet")
    actual = members["y"].to_numpy("float64").reshape(-1, h)
    scale = members["scale"].to_numpy("float64")[::h]
    windows = members["window"].to_numpy()[::h]
    points = {m: members[m].to_numpy("float64").reshape(-1, h) for m in (LSTM, *statistical, "theta")}
    histories = window_histories(fit_part, members, h)
    start = time.perf_counter()
    points[CES] = member_forecasts(histories, h, season, {CES})[CES]
    ces_seconds = time.perf_counter() - start
    points[ARIMA] = arima011_drift(histories, h)
    # the network review on the backtest's windows, as the product decides it, for 5 and 6 members
    review = {"five": without_network(actual, points, scale, default, NETWORK_REVIEW_MARGIN),
              "six": without_network(actual, points, scale, WITH_CES, NETWORK_REVIEW_MARGIN)}
    drop, drop_ces = review["five"][0] is not None, review["six"][0] is not None
    out: dict = {"set": name, "network_dropped": {"five": drop, "six": drop_ces},
                 "review_scores": {k: v[1] for k, v in review.items()}, "backtest": {}, "validation": {},
                 "ces_seconds_backtest_rows": ces_seconds, "backtest_rows": len(histories)}
    table = variants(points, statistical, drop, drop_ces)
    for k in sorted(set(windows)):
        rows = windows == k
        out["backtest"][f"window {k}"] = {"rows": int(rows.sum()), **{
            r: score(actual[rows], f[rows], scale[rows]) for r, f in table.items()}}
    # greedy among the statistical members with CES: learned on one window, scored on the other
    pool = (*statistical, CES)
    intervals: dict = {}
    pooled: dict[str, list[tuple[np.ndarray, ...]]] = {}  # each comparison's rows at every origin

    def compare(origin: str, label: str, y: np.ndarray, f: np.ndarray, b: np.ndarray, s: np.ndarray) -> None:
        intervals.setdefault(origin, {})[label] = relative_interval(y, f, b, s)
        pooled.setdefault(label, []).append((y, f, b, s))

    def compare_rows(origin: str, y: np.ndarray, t: dict, rows: np.ndarray, s: np.ndarray) -> None:
        for r in ("default_plus_ces", "default_ces_for_aets", "default_plus_theta", "default_plus_arima"):
            compare(origin, f"{r}_vs_default", y[rows], t[r][rows], t["default"][rows], s[rows])
    for k in sorted(set(windows)):
        learn, test = windows != k, windows == k
        if learn.any() and test.any():
            w = greedy_weights(actual[learn], {m: points[m][learn] for m in pool}, scale[learn], start=pool)[0]
            w5 = greedy_weights(actual[learn], {m: points[m][learn] for m in statistical}, scale[learn],
                                start=statistical)[0]
            six = sum(v * points[m][test] for m, v in w.items())
            five = sum(v * points[m][test] for m, v in w5.items())
            out["backtest"][f"window {k}"]["greedy_six_crossfit"] = score(actual[test], six, scale[test])
            out["backtest"][f"window {k}"]["greedy_five_crossfit"] = score(actual[test], five, scale[test])
            base = table["members_mean"][test]
            compare(f"window {k}", "greedy_five_vs_members_mean", actual[test], five, base, scale[test])
            compare(f"window {k}", "greedy_six_vs_members_mean", actual[test], six, base, scale[test])
        compare_rows(f"window {k}", actual, table, windows == k, scale)
    greedy6 = greedy_weights(actual, {m: points[m] for m in pool}, scale, start=pool)[0]
    greedy5 = greedy_weights(actual, {m: points[m] for m in statistical}, scale, start=statistical)[0]
    # the validation window: the final network's forecasts and the members' from each training part
    ids, vhist, y, network, short = network_on_validation(model, fit_part, val, h)
    vpoints = {LSTM: network,
               **member_forecasts(vhist, h, season, {*statistical, CES, "theta"}), ARIMA: arima011_drift(vhist, h)}
    naive = SeasonalNaive().point(vhist, h, season)
    vscale = mase_scale(vhist, season)
    table = variants(vpoints, statistical, drop, drop_ces)
    net = ~short
    compare_rows("validation", y, table, net, vscale)
    table["greedy_five"] = sum(w * vpoints[m] for m, w in greedy5.items())
    table["greedy_six"] = sum(w * vpoints[m] for m, w in greedy6.items())
    out["validation"].update(validation_scores(table, y, short, naive, vscale))
    for r, w in (("greedy_five", "members_mean"), ("greedy_six", "members_mean")):
        compare("validation", f"{r}_vs_{w}", y[net], table[r][net], table[w][net], vscale[net])
    intervals["all origins pooled"] = {label: relative_interval(*(np.concatenate(p) for p in zip(*parts)))
                                       for label, parts in pooled.items()}
    out["relative_with_90pct_bootstrap"] = intervals
    out["greedy_weights"] = {"five": greedy5, "six": greedy6}
    out["validation_series"], out["fallback_series"] = len(ids), int(short.sum())
    return out


def main() -> None:
    run_studies(study, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
