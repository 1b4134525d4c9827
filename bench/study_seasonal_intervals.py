"""Ways of calibrating the combined forecast's intervals, scored at every origin the development suite's
training parts give without reading a test part, from what ``bench_combination_weights.py --combine auto
--keep DIR`` saved per set (issue #27, seventh session: seasonal data, where the network is kept).

Origins: the backtest's two windows (the backtest's network, uncalibrated there), each calibrated on the
OTHER window (split conformal needs exchangeable windows, not ordered ones: ``w0->w1`` and ``w1->w0``),
and the validation window (each series' last horizon of the training part: the final network,
calibrated on both backtest windows, as a training run does). Rules:

- ``uncalibrated``: the network's quantiles around the combined point, sorted;
- ``width_units``: `calibration.conformal_corrections` / `apply_corrections` (what a run with the
  network kept does);
- ``scale_units``: `calibration.scaled_offsets` / `apply_scaled` (the point plus the errors' quantiles
  in units of each series' MASE scale: what a run with the network dropped does);
- ``width_units_pooled``: the width corrections with every step pooled (one per interval);
- ``cqr_scale``: conformalised quantile regression in scale units, the network's bounds moved out or
  in by the per-step conformal quantile of ``max(lo - y, y - hi) / scale`` (the network's shape kept,
  the correction additive in the series' scale instead of a multiple of the width);
- ``half_width``: the width corrections halved (shrunk toward uncalibrated);
- ``scale_units_centred``: scale units with every offset less the median's (the median at the point:
  the backtest network's bias not carried to another network).

Scores: 80 % coverage, M4's MSIS of the 80 % interval (`forecaster.evaluation.metrics.msis`, scaled by
the history before the window at the set's season) and the mean pinball loss over every quantile in
units of each series' MASE scale. Series the fallback forecasts at an origin are left out of that
origin (they keep their own intervals in every rule). One JSON line per set.

    PYTHONPATH=. .venv/bin/python bench/study_seasonal_intervals.py /tmp/keep6 --sets m3_quarterly m1_monthly
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.bench_dev_suite import SETS, interval_scores, wide  # noqa: E402
from bench.study_yearly_members import run_studies  # noqa: E402


def cqr_offsets(frame: pd.DataFrame, quantiles: tuple[float, ...], h: int) -> dict[str, list[float]]:
    """Per interval, the per-step conformal quantile of ``max(lo - y, y - hi) / scale`` (rows of a
    backtest frame, fallback rows left out by the caller); steps pooled under MIN_PER_STEP rows."""
    from forecaster.contract import quantile_name
    from forecaster.evaluation.calibration import MIN_PER_STEP, _correction
    from forecaster.evaluation.metrics import intervals

    step = frame.groupby(["unique_id", "window"], sort=False).cumcount().to_numpy()
    y, scale = frame["y"].to_numpy("float64"), frame["scale"].to_numpy("float64")
    out = {}
    for interval in intervals(quantiles):
        lo, hi = (frame[quantile_name(q)].to_numpy("float64") for q in (interval.lo, interval.hi))
        ok = np.isfinite(y) & np.isfinite(scale) & (scale > 0)
        s = (np.maximum(lo - y, y - hi) / scale)[ok]
        st = step[ok]
        parts = [s[st == j] for j in range(h)]
        if min(len(p) for p in parts) < MIN_PER_STEP:
            parts = [s] * h
        out[interval.key] = [_correction(p, interval.nominal) for p in parts]
    return out


def apply_cqr(values: np.ndarray, quantiles: tuple[float, ...], offsets: dict[str, list[float]],
              scale: np.ndarray) -> np.ndarray:
    """``values`` (n, H, Q) sorted quantiles, each pair moved by its offset times the series' scale,
    innermost first, a bound never past the next inner quantile (as `apply_corrections`)."""
    from forecaster.evaluation.metrics import intervals

    out = values.copy()
    index = {q: i for i, q in enumerate(quantiles)}
    median = next((i for q, i in index.items() if abs(q - 0.5) < 1e-9), None)
    s = np.where(np.isfinite(scale) & (scale > 0), scale, 0.0)[:, None]
    inner_lo = inner_hi = None
    for interval in sorted(intervals(quantiles), key=lambda pair: -pair.lo):
        i, k = index[interval.lo], index[interval.hi]
        if inner_lo is None:
            inner_lo = inner_hi = values[..., median] if median is not None else (values[..., i] + values[..., k]) / 2
        c = offsets.get(interval.key)
        if c is not None:
            c = np.asarray(c[:values.shape[1]])[None, :]
            out[..., i] = np.minimum(values[..., i] - c * s, inner_lo)
            out[..., k] = np.maximum(values[..., k] + c * s, inner_hi)
        inner_lo, inner_hi = out[..., i], out[..., k]
    return out


def rules(calib: pd.DataFrame, values: np.ndarray, scale: np.ndarray, quantiles: tuple[float, ...],
          h: int) -> dict[str, np.ndarray]:
    """Each rule's quantiles (n, H, Q) for ``values`` (n, H, 1 + Q: point then sorted quantiles) whose
    series have MASE ``scale``, calibrated on the backtest rows ``calib``."""
    from forecaster.data.schema import Columns
    from forecaster.evaluation import calibration as cal

    columns = Columns()
    q = np.sort(values[..., 1:], axis=-1)
    width = cal.conformal_corrections(calib, columns, quantiles, h)
    saved = cal.MIN_PER_STEP
    cal.MIN_PER_STEP = 10**12  # every step pooled
    try:
        pooled = cal.conformal_corrections(calib, columns, quantiles, h)
    finally:
        cal.MIN_PER_STEP = saved
    half = {k: [c / 2 for c in v] for k, v in width.items()}
    offsets = cal.scaled_offsets(calib, columns, quantiles, h)
    middle = np.asarray(offsets.get(f"{cal.SCALED}q0.5", [0.0] * h))
    centred = {k: list(np.asarray(v) - middle) for k, v in offsets.items()}
    sorted_values = values.copy()
    sorted_values[..., 1:] = q
    return {"uncalibrated": q,
            "width_units": cal.apply_corrections(q, quantiles, width),
            "scale_units": cal.apply_scaled(sorted_values, quantiles, offsets, scale)[..., 1:],
            "scale_units_centred": cal.apply_scaled(sorted_values, quantiles, centred, scale)[..., 1:],
            "width_units_pooled": cal.apply_corrections(q, quantiles, pooled),
            "cqr_scale": apply_cqr(q, quantiles, cqr_offsets(calib, quantiles, h), scale),
            "half_width": cal.apply_corrections(q, quantiles, half)}


def floor(q: np.ndarray, insample: list[np.ndarray]) -> np.ndarray:
    """The product's floor at zero for series whose history has no negative value."""
    nonneg = np.array([(x >= 0).all() for x in insample])[:, None, None]
    return np.maximum(q, np.where(nonneg, 0.0, -np.inf))


def study(keep: Path, name: str) -> dict:
    from forecaster.contract import BASELINE, quantile_name
    from forecaster.evaluation.metrics import mase_scale
    from forecaster.forecaster import LSTMForecaster

    spec = SETS[name]
    h, season = spec["h"], spec["season"]
    where = keep / name
    model = LSTMForecaster.load(where / "model")
    quantiles = model.quantiles_
    qn = [quantile_name(q) for q in quantiles]
    fit_part, val = pd.read_parquet(where / "fit.parquet"), pd.read_parquet(where / "validation.parquet")
    backtest = pd.read_parquet(where / "backtest.parquet")
    backtest = backtest[~backtest["fallback"].to_numpy(bool)]
    histories = {k: g for k, g in fit_part.groupby("unique_id", sort=False)}
    out = {"set": name, "combine": model.combine_, "weights": model.weights_, "origins": {}}

    def score(label: str, calib: pd.DataFrame, values: np.ndarray, y: np.ndarray, insample: list[np.ndarray]):
        scale = mase_scale(insample, season)
        out["origins"][label] = {"series": len(insample), "calibration_rows": len(calib)}
        for rule, q in rules(calib, values, scale, quantiles, h).items():
            out["origins"][label][rule] = interval_scores(y, floor(q, insample), quantiles, insample, season)

    for a, b in ((0, 1), (1, 0)):  # calibrate on window a, score window b (the backtest's network)
        target = backtest[backtest["window"] == b]
        ids = list(dict.fromkeys(target["unique_id"]))
        cutoff = target.groupby("unique_id", sort=False)["cutoff"].first().loc[ids]
        insample = [histories[i].loc[histories[i]["ds"] <= c, "y"].to_numpy("float64") for i, c in cutoff.items()]
        values = np.stack([wide(target, ids, c, h) for c in ["forecast", *qn]], axis=-1)
        score(f"w{a}->w{b}", backtest[backtest["window"] == a], values, wide(target, ids, "y", h), insample)
    # the validation window: the final network, calibrated on both windows (what a training run does)
    raw = model.predict(fit_part, calibrated=False)
    ids = [i for i, g in raw.groupby("unique_id", sort=False) if g["model"].iloc[0] != BASELINE]
    values = np.stack([wide(raw, ids, c, h) for c in ["forecast", *qn]], axis=-1)
    insample = [histories[i]["y"].to_numpy("float64") for i in ids]
    score("both->validation", backtest, values, wide(val, ids, "y", h), insample)
    return out


def main() -> None:
    run_studies(study, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
