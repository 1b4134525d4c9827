"""Conformal calibration of the intervals (forecaster/evaluation/calibration.py): corrections that restore the
nominal coverage on fresh data, per horizon step, and a forecaster that carries them through save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schema import Columns
from forecaster.errors import ModelError
from forecaster.evaluation.backtest import run_backtest
from forecaster.evaluation.calibration import apply_corrections, conformal_corrections
from forecaster.evaluation.metrics import intervals
from forecaster.forecaster import LSTMForecaster
from tests.synthetic import hourly_frame

COLS = Columns()
QUANTILES = (0.1, 0.5, 0.9)


def _forecasts(rng: np.random.Generator, n_series: int, spreads: list[float], half_width: float,
               fallback_every: int = 0) -> pd.DataFrame:
    """Backtest-shaped rows: two windows per series, actual ~ N(0, spread_j) at step j, and the same
    interval [-half_width, half_width] at every step (so its coverage depends on the step)."""
    rows = []
    for s in range(n_series):
        for window in (0, 1):
            for j, spread in enumerate(spreads):
                rows.append({"unique_id": f"S{s}", "ds": pd.Timestamp("2024-01-01") + pd.Timedelta(hours=j),
                             "y": rng.normal(scale=spread), "window": window, "q0.1": -half_width, "q0.5": 0.0,
                             "q0.9": half_width, "fallback": bool(fallback_every and s % fallback_every == 0)})
    return pd.DataFrame(rows)


def _covered(frame: pd.DataFrame, corrections: dict) -> np.ndarray:
    """Per step, the share of fresh actuals inside the corrected interval."""
    h = frame.groupby(["unique_id", "window"]).size().iloc[0]
    values = frame[["q0.1", "q0.5", "q0.9"]].to_numpy().reshape(-1, h, 3)
    fixed = apply_corrections(values, QUANTILES, corrections)
    y = frame["y"].to_numpy().reshape(-1, h)
    return ((y >= fixed[..., 0]) & (y <= fixed[..., 2])).mean(axis=0)


def test_corrections_restore_the_nominal_coverage_per_step_on_fresh_data():
    rng = np.random.default_rng(0)
    spreads = [0.5, 1.0, 3.0]  # the interval [-1, 1] is too wide at step 1 and too narrow at step 3
    calibration = _forecasts(rng, 400, spreads, half_width=1.0)
    corrections = conformal_corrections(calibration, COLS, QUANTILES, horizon=3)
    c = corrections["q0.1-q0.9"]
    assert c[0] < 0 < c[2], "narrowed where too wide, widened where too narrow"
    fresh = _forecasts(np.random.default_rng(1), 2000, spreads, half_width=1.0)
    raw = _covered(fresh, {})
    fixed = _covered(fresh, corrections)
    assert raw[0] > 0.9 and raw[2] < 0.3
    np.testing.assert_allclose(fixed, 0.8, atol=0.025)


def test_few_scores_are_pooled_over_steps_and_fallback_rows_are_left_out():
    rng = np.random.default_rng(2)
    few = _forecasts(rng, 10, [1.0, 1.0], half_width=0.2, fallback_every=3)  # 20 scores a step, < 30
    corrections = conformal_corrections(few, COLS, QUANTILES, horizon=2)["q0.1-q0.9"]
    assert corrections[0] == corrections[1] > 0
    moved = few.copy()
    moved.loc[moved["fallback"], "y"] = 1e6  # fallback rows cannot change the corrections
    assert conformal_corrections(moved, COLS, QUANTILES, horizon=2)["q0.1-q0.9"] == corrections


def test_pairs_are_the_symmetric_quantiles_only():
    """The one owner of intervals (forecaster.evaluation.metrics.intervals), narrowest first, with both names."""
    found = intervals((0.025, 0.1, 0.5, 0.9, 0.975))
    assert [(i.lo, i.hi) for i in found] == [(0.1, 0.9), (0.025, 0.975)]
    assert [(i.key, i.metric) for i in found] == [("q0.1-q0.9", "coverage_80"), ("q0.025-q0.975", "coverage_95")]
    assert intervals((0.1, 0.5, 0.8)) == []


def test_a_calibrated_forecaster_widens_its_intervals_keeps_its_median_and_round_trips(tmp_path):
    frame = hourly_frame(n_series=6, length=240)
    # the network alone: its quantiles are the point's own spread, widened (`calibration.by_scale`)
    model = LSTMForecaster(horizon=12, input_size=48, freq="h", epochs=1, batch_size=64, max_windows_per_series=20,
                           verbose=0, quantiles=QUANTILES, combine="none")
    model.fit(frame)
    result = run_backtest(model.predict, frame, COLS, 12, 2, 12, 24, QUANTILES)
    model.calibrate(result.forecasts)
    c = np.asarray(model.calibration_["q0.1-q0.9"])
    assert c.shape == (12,) and np.isfinite(c).all()
    raw = model.predict(frame, calibrated=False)
    out = model.predict(frame)
    np.testing.assert_allclose(out["forecast"], raw["forecast"])
    np.testing.assert_allclose(out["q0.5"], raw["q0.5"])
    width, raw_width = (out["q0.9"] - out["q0.1"]).to_numpy(), (raw["q0.9"] - raw["q0.1"]).to_numpy()
    np.testing.assert_allclose(width, raw_width * (1 + 2 * np.tile(c, 6)), rtol=1e-4)
    loaded = LSTMForecaster.load(model.save(tmp_path / "calibrated"))
    assert loaded.calibration_ == model.calibration_
    pd.testing.assert_frame_equal(loaded.predict(frame), out, rtol=1e-5)
    meta = json.loads((tmp_path / "calibrated" / "forecaster.json").read_text())
    meta["calibration"]["q0.1-q0.9"][0] = "wide"
    (tmp_path / "calibrated" / "forecaster.json").write_text(json.dumps(meta))
    (tmp_path / "calibrated" / "manifest.json").unlink()  # as if saved before manifests: the content check
    with pytest.raises(ModelError, match=r"forecaster\.json: not a forecaster description"):
        LSTMForecaster.load(tmp_path / "calibrated")
