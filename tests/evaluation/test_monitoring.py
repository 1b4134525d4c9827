"""Monitoring's scores by hand: MASE scaled at each forecast's as-of, sMAPE, coverage, the worst series,
rows still waiting for their actuals, and the degradation rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.schema import Columns
from forecaster.evaluation import monitoring


def _frame() -> pd.DataFrame:
    ds = pd.date_range("2026-01-01", periods=8, freq="h")
    a = pd.DataFrame({"unique_id": "a", "ds": ds, "y": [1.0, 3, 2, 4, 3, 5, 4, 6]})
    b = pd.DataFrame({"unique_id": "b", "ds": ds, "y": [10.0, 11, 13, 12, 14, 13, 15, 16]})
    return pd.concat([a, b], ignore_index=True)


def _forecasts(as_of: str, times: list[str], a: list[float], b: list[float], version: str = "1") -> pd.DataFrame:
    ds = pd.to_datetime(times)
    rows = []
    for sid, values in (("a", a), ("b", b)):
        v = np.asarray(values, float)
        rows.append(pd.DataFrame({"unique_id": sid, "ds": ds, "forecast": v, "q0.1": v - 1.0, "q0.9": v + 1.0,
                                  "model": "lstm", "model_name": "m", "model_version": version,
                                  "as_of": pd.Timestamp(as_of)}))
    return pd.concat(rows, ignore_index=True)


def test_scores_by_hand_and_rows_still_waiting():
    # As of 03:00, forecasts for 04:00 and 05:00 (both arrived) and 08:00 (not yet: the data ends at 07:00).
    f = _forecasts("2026-01-01 03:00", ["2026-01-01 04:00", "2026-01-01 05:00", "2026-01-01 08:00"],
                   a=[4.0, 4.0, 9.0], b=[10.0, 12.0, 9.0])
    scored = monitoring.score(f, _frame(), Columns(), season=2)
    assert scored.rows_scored == 4 and scored.rows_waiting == 2
    # Scales from the history up to 03:00, season 2: a 1,3,2,4 -> mean(|2-1|, |4-3|) = 1;
    # b 10,11,13,12 -> mean(3, 1) = 2. Errors: a |3-4|, |5-4| -> MASE 1; b |14-10|, |13-12| -> 1.25.
    row = scored.by_as_of.iloc[0]
    assert np.isclose(row["mase"], (1.0 + 1.25) / 2)
    assert row["worst_series"] == "b" and np.isclose(row["worst_series_mase"], 1.25)
    assert row["steps_arrived"] == 2 and not row["complete"] and row["n_series"] == 2
    step1 = scored.by_step.set_index("step").loc[1]
    assert np.isclose(step1["smape"], np.mean([200 * 1 / 7, 200 * 4 / 24]))
    assert np.isclose(step1["mase"], np.mean([1 / 1, 4 / 2]))
    # 80 % pair [f-1, f+1]: a's 3 and 5 inside; b's 14 outside [9, 11], 13 inside [11, 13].
    assert np.isclose(row["coverage_80"], np.mean([1.0, 0.5]))


def test_seasonal_naive_is_made_from_the_same_history():
    # Seasonal naive with season 2 as of 03:00 repeats the last two values: a 2, 4; b 13, 12.
    f = _forecasts("2026-01-01 03:00", ["2026-01-01 04:00", "2026-01-01 05:00"], a=[2.0, 4.0], b=[13.0, 12.0])
    scored = monitoring.score(f, _frame(), Columns(), season=2)
    assert np.isclose(scored.overall["mase"], scored.overall["seasonal_naive_mase"], equal_nan=True)


def test_a_masked_reading_in_the_history_is_read_as_predict_reads_it():
    """MASE's scale and seasonal naive from the history as `predict` reads it: a masked reading (0.0 in
    the target, ``observed`` 0, missing_policy "mask") interpolated as "fill" has it, not a fall to 0."""
    from forecaster.data.validation import validate_frame

    raw = _frame()
    raw.loc[(raw["unique_id"] == "b") & (raw["ds"] == pd.Timestamp("2026-01-01 01:00")), "y"] = np.nan
    f = _forecasts("2026-01-01 03:00", ["2026-01-01 04:00", "2026-01-01 05:00"], a=[4.0, 4.0], b=[10.0, 12.0])
    scored = {policy: monitoring.score(f, validate_frame(raw, Columns(), freq="h", missing_policy=policy).frame,
                                       Columns(), season=2)
              for policy in ("fill", "mask")}
    for key in ("mase", "seasonal_naive_mase"):
        assert scored["mask"].overall[key] == pytest.approx(scored["fill"].overall[key])
    # b as of 03:00, 1:00 filled between 10 and 13 (11.5): 10, 11.5, 13, 12 -> scale mean(3, 0.5) = 1.75
    assert scored["mask"].by_as_of.iloc[0]["mase"] == pytest.approx((1.0 + (4.0 + 1.0) / 2 / 1.75) / 2)


@pytest.mark.parametrize(("observed", "verdict"), [(1.2, False), (1.3, True)])
def test_degradation_compares_complete_as_ofs_of_the_champion_with_its_promise(observed, verdict):
    table = pd.DataFrame({"as_of": pd.date_range("2026-01-01", periods=4, freq="D"),
                          "model_version": ["1", "2", "2", "2"], "complete": [True, True, True, False],
                          "mase": [9.0, observed, observed, 50.0]})
    scored = monitoring.Monitoring(table, pd.DataFrame(), {}, 1, 0)
    degraded, why = monitoring.degraded(scored, "mase", promise=1.0, version="2", window=3, tolerance=0.25)
    assert degraded is verdict
    assert "2 complete" in why  # version 1's as-of and the incomplete one are not judged
    assert monitoring.degraded(scored, "mase", None, "2", 3, 0.25)[0] is False
