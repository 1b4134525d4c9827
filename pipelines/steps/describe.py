"""One-line descriptions for logs: short series, treated outliers, the settings a fit resolved and the
combination it forecasts with."""

from __future__ import annotations

import logging
from typing import Any

from forecaster.defaults import expected_seconds
from forecaster.forecaster import LSTMForecaster
from forecaster.models.combination import LEARNED

log = logging.getLogger("forecaster.steps")


def describe_short(lengths: dict[str, Any], shown: int = 5) -> str | None:
    """One line on the short series of `Prepared.too_short` (and the constant ones, which the fallback
    forecasts too), or None when there are none."""
    parts = []
    for key, what in (("padded", "trained on padded windows"), ("not_trained", "too short to train on"),
                      ("fallback", "forecast by seasonal naive"), ("not_backtested", "too short to score"),
                      ("constant", "constant, forecast as their value by seasonal naive")):
        entry = lengths.get(key, {"count": 0})
        if entry["count"]:
            names = ", ".join(entry["series"][:shown]) + (", ..." if entry["count"] > shown else "")
            parts.append(f"{entry['count']} {what} ({names})")
    if not parts:
        return None
    return (f"short series (of {lengths['n_series']}; min_history {lengths['min_history']}, input_size "
            f"{lengths['input_size']}): " + "; ".join(parts))


def describe_outliers(report: dict[str, Any], shown: int = 5) -> str | None:
    """One line on the readings validation treated as outliers (`forecaster.data.outliers`; its report
    ``report``), or None when there are none."""
    count = int(report.get("outlier_readings", 0))
    if not count:
        return None
    per_series = report.get("outlier_series", {})
    names = ", ".join(f"{sid} ({n})" for sid, n in list(per_series.items())[:shown])
    return (f"outliers: {count} reading(s) more than {report['outlier_threshold']:g} interquartile ranges beyond "
            f"their series' quartiles, treated as unobserved and interpolated, in {len(per_series)} series ("
            f"{names}{', ...' if len(per_series) > shown else ''}); [data] outliers = \"keep\" keeps them")


def describe_resolved(model: LSTMForecaster) -> str:
    """The settings a fit used, in one line (`forecaster.defaults`)."""
    r = model.resolved_
    n = r.network
    skip = f"seasonal skip {n.skip_period}" if n.seasonal_skip else "no seasonal skip"
    budget = ""
    if {"epochs", "max_windows_per_series"} & set(r.derived) and r.budget_windows:
        budget = (f" (budget {r.budget_windows} window-epochs a fit, about "
                  f"{expected_seconds(r.budget_windows, r.input_size):.0f} s on 2 cores)")
    average = (f", the weights' moving average over {r.weight_average:g} epoch(s) kept" if r.weight_average
               else ", the last step's weights kept")
    return (f"input_size {r.input_size}, {skip}, window_norm {n.window_norm}, "
            f"{r.max_windows_per_series} windows per series, up to {r.epochs} epochs{budget}{average}")


def describe_combination(model: LSTMForecaster) -> list[str]:
    """The lines a training run says on the combination ``model`` forecasts with and why: learned weights
    or the network dropped (scores on the backtest's windows), or the holdout's choice, and where "auto"
    asked the backtest's windows and they kept the network, that too (`LSTMForecaster.combine_on_windows`)."""
    reviewed = model.member_scores_ or {}
    if model.combine_ == LEARNED and model.combine != LEARNED:  # "auto" dropped the network there
        return ["combine: " + "+".join(model.weights_) + ", the network dropped (MASE on the backtest windows: "
                f"with it {reviewed['with_network']:.4f}, without {reviewed['without_network']:.4f})"]
    if model.combine_ == LEARNED:
        return ["combine: learned weights " + ", ".join(f"{k} {v:.2f}" for k, v in model.weights_.items())
                + " (MASE on the backtest windows: " + ", ".join(f"{k} {v:.4f}" for k, v in reviewed.items()) + ")"]
    lines = []
    if model.combine_scores_:
        lines.append(f"combine: {model.combine_} (MASE on the final fit's holdout: "
                     + ", ".join(f"{k} {v:.4f}" for k, v in model.combine_scores_.items()) + ")")
    if "with_network" in reviewed:
        lines.append(f"combine: the network kept on the backtest windows (MASE with it "
                     f"{reviewed['with_network']:.4f}, without {reviewed['without_network']:.4f})")
    return lines
