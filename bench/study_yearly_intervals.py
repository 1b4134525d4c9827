"""The combined forecast's intervals on the development suite's VALIDATION windows (each series' last
horizon of the training part; the test part is never read), from what
``bench_combination_weights.py --combine auto --keep DIR`` saved per set: the trained model, its
backtest's forecasts and the cross-validation's members (issue #27, sixth session).

Per set, 80 % coverage, M4's MSIS of the 80 % interval and the mean pinball loss (scaled by the
series' MASE scale) of: the quantiles uncalibrated; calibrated in units of the interval's own width
(`calibration.conformal_corrections`, what a training run did); set from the backtest's errors in
units of the series' MASE scale (`calibration.scaled_offsets` / `apply_scaled`). The series too short
for the network keep their seasonal-naive intervals in every variant. Prints one JSON line per set.

    PYTHONPATH=. .venv/bin/python bench/study_yearly_intervals.py /tmp/keep --sets m1_yearly m3_yearly m3_other
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


def study(keep: Path, name: str) -> dict:
    from forecaster.contract import BASELINE, quantile_name
    from forecaster.data.schema import Columns
    from forecaster.evaluation.calibration import SCALE_COLUMN, apply_scaled, conformal_corrections, scaled_offsets
    from forecaster.evaluation.metrics import mase_scale
    from forecaster.forecaster import LSTMForecaster

    spec = SETS[name]
    h, season = spec["h"], spec["season"]
    where = keep / name
    model = LSTMForecaster.load(where / "model")
    fit_part, val = pd.read_parquet(where / "fit.parquet"), pd.read_parquet(where / "validation.parquet")
    backtest = pd.read_parquet(where / "backtest.parquet")
    if SCALE_COLUMN not in backtest.columns:  # saved before run_backtest kept it: the members frame's
        members = pd.read_parquet(where / "members.parquet")
        scale = members.groupby(["unique_id", "window"])["scale"].first()
        backtest[SCALE_COLUMN] = scale.reindex(pd.MultiIndex.from_frame(backtest[["unique_id", "window"]])).to_numpy()
    ids = list(dict.fromkeys(fit_part["unique_id"]))
    insample = [g.to_numpy("float64") for _, g in fit_part.groupby("unique_id", sort=False)["y"]]
    y = wide(val, ids, "y", h)
    quantiles = model.quantiles_
    qn = [quantile_name(q) for q in quantiles]
    raw = model.predict(fit_part, calibrated=False)
    short = (raw.groupby("unique_id", sort=False)["model"].first().loc[ids] == BASELINE).to_numpy()
    values = np.stack([wide(raw, ids, c, h) for c in ["forecast", *qn]], axis=-1)
    columns = Columns()
    width = conformal_corrections(backtest, columns, quantiles, h)
    offsets = scaled_offsets(backtest, columns, quantiles, h)
    model.calibration_ = width
    widened = model.predict(fit_part)
    w_values = np.stack([wide(widened, ids, c, h) for c in ["forecast", *qn]], axis=-1)
    s_values = values.copy()
    s_values[~short] = apply_scaled(values[~short], quantiles, offsets, mase_scale(
        [x for x, s in zip(insample, short) if not s], season))
    s_values[..., 1:] = np.maximum(s_values[..., 1:], np.where(
        np.array([(x >= 0).all() for x in insample])[:, None, None], 0.0, -np.inf))  # the floor at zero
    out = {"set": name, "series": len(ids), "fallback_series": int(short.sum()), "combine": model.combine_,
           "weights": model.weights_, "width_corrections": width, "scaled_offsets": offsets}
    for label, v in (("uncalibrated", values), ("width_units", w_values), ("scale_units", s_values)):
        out[label] = interval_scores(y, v[..., 1:], quantiles, insample, season)
    return out


def main() -> None:
    run_studies(study, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
