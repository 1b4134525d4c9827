"""The combination's rule against weights learned on the backtest windows, on the development suite's
VALIDATION windows (each series' last horizon of the training part; the test part is never read).

Per set: a random subset of ``--series`` series, trained once with ``[model] combine = "learned"`` as
``forecaster train --data`` would (defaults otherwise; in-process, a temporary MLflow store, nothing
registered). The backtest chooses the weights on its windows (greedy ensemble selection) and the final
fit carries them; the same final fit also scored the named combinations on its holdout, so the rule
(`combination.choose`, what "auto" does) is applied to the very same network: the two differ only in
how the members are weighed. Prints one JSON line per set: MASE on the validation windows of the
learned weights, the rule's choice, every named combination and each member alone, the weights and
the members' backtest MASE; and the ways of dropping or down-weighting the network decided on the same
backtest windows (`network_weight_variants`, the statistical members weighed among themselves), with
the backtest MASE they were decided on (issue #27, fourth session). ``--out`` writes them as one JSON.

    .venv/bin/python bench/bench_combination_weights.py --sets m3_yearly m3_quarterly --series 300
    .venv/bin/python bench/bench_combination_weights.py --sets m1_yearly m3_other m3_yearly --series 0 --out v.json

``--combine auto`` trains with the defaults instead and reports the model as trained (no variants);
``--keep DIR`` saves each set's model, training and validation parts, backtest forecasts and
cross-validation frame under DIR/SET for `study_yearly_members.py` and `study_yearly_intervals.py`
(issue #27, sixth session).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.bench_dev_suite import SETS, load_set, scores, validation_split, wide  # noqa: E402


def run_set(name: str, series: int, seed: int = 0, combine: str = "learned", keep: Path | None = None) -> dict:
    from forecaster.config import model_config_from_dict
    from forecaster.contract import LSTM
    from forecaster.defaults import default_combination
    from forecaster.models.combination import LEARNED, MEMBERS, choose, greedy_weights, weights_of
    from pipelines.train import train

    spec = SETS[name]
    h, season, freq = spec["h"], spec["season"], spec["freq"]
    full, _ = load_set(name)
    fit_part, val = validation_split(full, h)
    ids = list(dict.fromkeys(fit_part["unique_id"]))
    if series and series < len(ids):
        ids = sorted(np.random.default_rng(seed).choice(ids, series, replace=False).tolist())
        fit_part = fit_part[fit_part["unique_id"].isin(ids)].reset_index(drop=True)
        val = val[val["unique_id"].isin(ids)].reset_index(drop=True)
    ids = list(dict.fromkeys(fit_part["unique_id"]))
    insample = [g.to_numpy("float64") for _, g in fit_part.groupby("unique_id", sort=False)["y"]]
    y = wide(val, ids, "y", h)
    with tempfile.TemporaryDirectory() as work:
        os.environ["FORECASTER_MLRUNS"] = work
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        data = Path(work) / f"{name}.csv"
        fit_part.to_csv(data, index=False)
        config = model_config_from_dict({"model": {"name": name, "horizon": h, "combine": combine},
                                         "data": {"source": str(data), "freq": freq}})
        result = train(config, register=False, verbose=0)
        model = result.model
    if keep is not None:  # what later studies read without training again (the validation part included)
        where = keep / name
        where.mkdir(parents=True, exist_ok=True)
        model.save(where / "model")
        fit_part.to_parquet(where / "fit.parquet")
        val.to_parquet(where / "validation.parquet")
        result.backtest.forecasts.to_parquet(where / "backtest.parquet")
        if result.backtest.members is not None:
            result.backtest.members.to_parquet(where / "members.parquet")

    def mase_of(combine: str, weights: dict[str, float] | None = None) -> float:
        model.combine_ = combine
        if weights is not None:
            model.weights_ = weights
        out = model.predict(fit_part, calibrated=False)
        return scores(y, wide(out, ids, "forecast", h), insample, season)["mase"]

    learned = dict(model.weights_)
    members = dict(model.member_scores_)
    rows = {"learned": mase_of(model.combine_ if combine != LEARNED else LEARNED, learned)}
    # Other ways of weighing the same backtest forecasts (result.members), applied to the same network.
    if combine != LEARNED:  # the model as trained (the variants below weigh a learned run's members)
        return {"set": name, "series": len(ids), "combine": model.combine_, "weights": learned,
                "backtest_member_mase": members, "validation_mase": {"model": rows[LEARNED]}}
    cv = result.backtest.members
    actual = cv["y"].to_numpy("float64").reshape(-1, h)
    points = {m: cv[m].to_numpy("float64").reshape(-1, h) for m in members if m in cv.columns}
    scale = cv["scale"].to_numpy("float64")[::h]
    default = default_combination(season)  # what "auto" combines on this data
    variants = {"greedy_from_auto": greedy_weights(actual, points, scale, start=(LSTM, *MEMBERS[default]))[0],
                "greedy_from_auto_10": greedy_weights(actual, points, scale, rounds=10,
                                                      start=(LSTM, *MEMBERS[default]))[0]}
    named = {c: float(np.mean(np.abs(actual - sum(w * points[m] for m, w in weights_of(c).items()))
                              / scale[:, None])) for c in MEMBERS}
    variants["best_named_on_backtest"] = weights_of(min(named, key=named.get))
    network_study = network_weight_variants(actual, points, scale, MEMBERS[default])
    variants.update(network_study.pop("weights"))
    # Where the network is dropped, the statistical members weighed among themselves on the same windows
    # (greedy selection from their equal mean), instead of equally.
    statistical = {m: points[m] for m in MEMBERS[default]}
    among = greedy_weights(actual, statistical, scale, start=MEMBERS[default])[0]
    variants["members_greedy_from_equal"] = among
    dropped = variants["drop_if_backtest_says_2pct"]
    variants["drop_2pct_then_members_greedy"] = among if LSTM not in dropped else dropped
    for variant, weights in variants.items():
        rows[variant] = mase_of(LEARNED, weights)
    rule = choose(model.combine_scores_, default)
    rows["rule"] = mase_of(rule)
    rows.update({f"named:{c}": mase_of(c) for c in MEMBERS})
    for member in points:  # each member alone, through the same weights path
        rows[f"alone:{member}"] = mase_of(LEARNED, {member: 1.0})
    return {"set": name, "series": len(ids), "horizon": h, "rule_chose": rule, "weights": learned,
            "variant_weights": variants, "backtest_member_mase": members, "backtest": network_study,
            "validation_mase": rows}


def network_weight_variants(actual: np.ndarray, points: dict[str, np.ndarray], scale: np.ndarray,
                            statistical: tuple[str, ...]) -> dict:
    """Ways of dropping or down-weighting the network in the default combination (the network and
    ``statistical`` with equal weights), decided on the backtest windows (``actual``, ``points`` and
    ``scale`` as `greedy_weights` takes them: out-of-sample for the backtest's network, a window early
    stopping never watched). Returns the backtest MASE of the default, of its statistical members'
    mean without the network and of the network alone, the rows scored, and ``weights``: each variant's
    weights, by name (issue #27, fourth session: is the network the weak member on short yearly data)."""
    from forecaster.contract import LSTM

    keep = np.isfinite(scale) & (scale > 0) & np.isfinite(actual).all(axis=1)

    def score(weights: dict[str, float]) -> float:
        total = sum(weights.values())
        mean = sum(w * points[m][keep] for m, w in weights.items()) / total
        return float(np.mean(np.abs(actual[keep] - mean) / scale[keep, None]))

    equal = {m: 1.0 for m in (LSTM, *statistical)}
    without = {m: 1.0 for m in statistical}
    s_default, s_without, s_network = score(equal), score(without), score({LSTM: 1.0})
    s_members = {m: score({m: 1.0}) for m in statistical}
    weights = {
        # the network dropped where the mean without it is lower on the backtest windows (any margin)
        "drop_if_backtest_says": without if s_without < s_default else equal,
        "drop_if_backtest_says_2pct": without if s_without < 0.98 * s_default else equal,
        # the network's weight shrunk by how much worse than the statistical mean it scored
        "shrink_by_ratio": {**without, LSTM: min(1.0, s_without / s_network)},
        "shrink_by_ratio_sq": {**without, LSTM: min(1.0, s_without / s_network) ** 2},
        # every member weighed by its inverse backtest MASE
        "inverse_mase": {m: 1.0 / s for m, s in {LSTM: s_network, **s_members}.items()},
        "without_network": without,
    }
    return {"rows": int(keep.sum()), "default": s_default, "without_network": s_without, "network": s_network,
            "members": s_members, "weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["m3_yearly", "m3_quarterly"], choices=sorted(SETS))
    parser.add_argument("--series", type=int, default=300, help="a random subset of this many (0: all)")
    parser.add_argument("--out", type=Path, help="also write the results as a JSON list here")
    parser.add_argument("--combine", default="learned", help='the [model] combine trained with ("auto": the defaults)')
    parser.add_argument("--keep", type=Path, help="save each set's model, backtest and validation part under DIR/SET")
    args = parser.parse_args()
    results = []
    for name in args.sets:
        results.append(run_set(name, args.series, combine=args.combine, keep=args.keep))
        print(json.dumps(results[-1]), flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
