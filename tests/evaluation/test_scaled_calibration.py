"""Intervals of a combination that dropped the network, from the backtest's errors in units of each
series' MASE scale (`calibration.scaled_offsets`, `apply_scaled`): near nominal coverage on fresh data
whatever the series' size, and nothing from rows that cannot say it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schema import Columns
from forecaster.evaluation.calibration import SCALE_COLUMN, apply_scaled, scaled_in, scaled_offsets

QUANTILES = (0.1, 0.5, 0.9)
H = 3


def _backtest(rng: np.random.Generator, n_series: int, bias: float = 0.0, spreads=(1.0, 2.0, 4.0)) -> pd.DataFrame:
    """Backtest-shaped rows, two windows per series: series of scales 1 to 1e6, the point 0 and the
    actual ``scale * N(bias, spread_j)`` at step j."""
    rows = []
    for s in range(n_series):
        scale = 10.0 ** (s % 7)
        for window in (0, 1):
            for j, spread in enumerate(spreads):
                rows.append({"unique_id": f"S{s}", "ds": pd.Timestamp("2000-01-01") + pd.DateOffset(years=j),
                             "y": scale * rng.normal(bias, spread), "window": window, "forecast": 0.0,
                             "fallback": False, SCALE_COLUMN: scale})
    return pd.DataFrame(rows)


def _coverage(fresh: pd.DataFrame, offsets: dict) -> np.ndarray:
    point = np.zeros((len(fresh) // H, H, 1 + len(QUANTILES)))
    scale = fresh[SCALE_COLUMN].to_numpy()[::H]
    values = apply_scaled(point, QUANTILES, offsets, scale)
    y = fresh["y"].to_numpy().reshape(-1, H)
    return ((y >= values[..., 1]) & (y <= values[..., 3])).mean(axis=0)


def test_offsets_give_the_nominal_coverage_per_step_at_any_scale_and_follow_a_bias():
    rng = np.random.default_rng(0)
    offsets = scaled_offsets(_backtest(rng, 300, bias=1.0), Columns(), QUANTILES, H)
    assert set(offsets) == {"scaled.q0.1", "scaled.q0.5", "scaled.q0.9"} and scaled_in(offsets)
    lo, hi = np.array(offsets["scaled.q0.1"]), np.array(offsets["scaled.q0.9"])
    np.testing.assert_allclose(offsets["scaled.q0.5"], 1.0, atol=0.35)  # the median follows the bias too
    # N(1, s): its 10 % and 90 % quantiles 1 -+ 1.28 s, wider with the step as the errors are
    np.testing.assert_allclose(lo, 1.0 - 1.2816 * np.array([1.0, 2.0, 4.0]), atol=0.35)
    np.testing.assert_allclose(hi, 1.0 + 1.2816 * np.array([1.0, 2.0, 4.0]), atol=0.35)
    covered = _coverage(_backtest(np.random.default_rng(1), 300, bias=1.0), offsets)
    assert np.all(np.abs(covered - 0.8) < 0.05), covered


def test_rows_that_cannot_say_are_left_out_and_few_rows_are_pooled():
    rng = np.random.default_rng(2)
    frame = _backtest(rng, 300)
    bad = frame.copy()
    bad.loc[:29, "y"] = 1e12  # fallback rows: their misses are not the combination's
    bad.loc[:29, "fallback"] = True
    bad.loc[30:59, SCALE_COLUMN] = 0.0  # a constant history: no scale
    bad.loc[60:89, SCALE_COLUMN] = np.nan
    bad.loc[90:95, "y"] = np.nan
    clean = frame.drop(index=range(96))
    assert scaled_offsets(bad, Columns(), QUANTILES, H) == scaled_offsets(clean, Columns(), QUANTILES, H)
    few = scaled_offsets(_backtest(rng, 5), Columns(), QUANTILES, H)  # 10 rows a step: one pooled offset
    assert all(len(set(v)) == 1 for v in few.values())
    assert scaled_offsets(frame.drop(columns=[SCALE_COLUMN]), Columns(), QUANTILES, H) == {}
    assert scaled_offsets(frame.iloc[:0], Columns(), QUANTILES, H) == {}
    assert not scaled_in({"q0.1-q0.9": [0.1] * H})


def test_series_without_a_scale_keep_their_quantiles_and_the_quantiles_stay_in_order():
    values = np.array([[[10.0, 8.0, 10.0, 12.0]] * H, [[5.0, 4.0, 5.0, 6.0]] * H])
    offsets = {"scaled.q0.1": [-1.0] * H, "scaled.q0.9": [3.0] * H}
    out = apply_scaled(values, QUANTILES, offsets, np.array([2.0, np.nan]))
    np.testing.assert_array_equal(out[0, :, 1:], [[8.0, 10.0, 16.0]] * H)
    np.testing.assert_array_equal(out[1], values[1])
    crossed = apply_scaled(values, QUANTILES, {"scaled.q0.1": [5.0] * H, "scaled.q0.9": [-5.0] * H}, np.ones(2))
    assert np.all(np.diff(crossed[..., 1:], axis=-1) >= 0)


@pytest.mark.parametrize("n", [1, 2])
def test_a_single_row_or_two_give_finite_offsets(n):
    frame = _backtest(np.random.default_rng(3), 1).iloc[: n * H]
    offsets = scaled_offsets(frame, Columns(), QUANTILES, H)
    assert offsets and np.isfinite(np.concatenate(list(offsets.values()))).all()


def test_every_quantile_asked_for_gets_its_offsets_a_lone_one_and_the_median_included():
    """Not only each symmetric pair: (0.1, 0.5, 0.8) has no pair for 0.8, which the width correction
    leaves as the network made it; in scale units it is the errors' 80 % quantile like any other."""
    frame = _backtest(np.random.default_rng(4), 300)
    offsets = scaled_offsets(frame, Columns(), (0.1, 0.5, 0.8), H)
    assert set(offsets) == {"scaled.q0.1", "scaled.q0.5", "scaled.q0.8"}
    np.testing.assert_allclose(offsets["scaled.q0.8"], 0.8416 * np.array([1.0, 2.0, 4.0]), atol=0.35)
    point = np.zeros((1, H, 4))
    out = apply_scaled(point, (0.1, 0.5, 0.8), offsets, np.array([10.0]))
    np.testing.assert_allclose(out[0, :, 2], 10.0 * np.array(offsets["scaled.q0.5"]))
    np.testing.assert_allclose(out[0, :, 3], 10.0 * np.array(offsets["scaled.q0.8"]))


def test_centred_offsets_keep_the_errors_spread_and_leave_their_bias_out():
    """``centred`` (seasonal data with the network in the point, `calibration.method`): each step's
    errors less their median, so a backtest network's bias is not carried to the final network."""
    frame = _backtest(np.random.default_rng(5), 300, bias=1.0)
    offsets = scaled_offsets(frame, Columns(), QUANTILES, H, centred=True)
    biased = scaled_offsets(frame, Columns(), QUANTILES, H)
    np.testing.assert_allclose(offsets["scaled.q0.5"], 0.0, atol=1e-12)
    for q in ("scaled.q0.1", "scaled.q0.9"):
        np.testing.assert_allclose(offsets[q], np.array(biased[q]) - np.array(biased["scaled.q0.5"]))
    np.testing.assert_allclose(offsets["scaled.q0.9"], 1.2816 * np.array([1.0, 2.0, 4.0]), atol=0.35)
    covered = _coverage(_backtest(np.random.default_rng(6), 300, bias=0.0), offsets)  # a final network unbiased
    assert np.all(np.abs(covered - 0.8) < 0.05), covered


def test_centred_median_is_the_point_exactly():
    """Centred, the median's offset is 0 to the last bit, so that ``q0.5`` is ``forecast`` (README):
    subtracting an even count's median from the errors and taking the median again left a rounding
    (-5.6e-17 here), which a series' large scale carried to a point near zero."""
    frame = _backtest(np.random.default_rng(9), 40, bias=1.0)  # 80 errors a step: an even count
    offsets = scaled_offsets(frame, Columns(), QUANTILES, H, centred=True)
    assert offsets["scaled.q0.5"] == [0.0] * H
    point = np.full((1, H, 1 + len(QUANTILES)), 0.3)
    out = apply_scaled(point, QUANTILES, offsets, np.array([1e6]))
    np.testing.assert_array_equal(out[0, :, 2], out[0, :, 0])
    assert np.all(out[0, :, 1] < out[0, :, 2]) and np.all(out[0, :, 2] < out[0, :, 3])
