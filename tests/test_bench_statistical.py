"""bench/bench_statistical.py's own arithmetic: the copies its time per series is measured on, the sample
it scores large sets on, and the gap its decision reads (the models themselves are measured, not tested)."""

import numpy as np
import pandas as pd

from bench.bench_statistical import CLEARLY, MEAN_NAME, gap_table, replicate, subsample


def _frame(lengths: dict[str, int]) -> pd.DataFrame:
    parts = [pd.DataFrame({"unique_id": sid, "ds": pd.date_range("2020-01-01", periods=n, freq="MS"),
                           "y": np.arange(n, dtype=float) + 100 * k})
             for k, (sid, n) in enumerate(lengths.items())]
    return pd.concat(parts, ignore_index=True)


def test_replicate_repeats_each_series_whole_and_in_order_under_new_ids():
    frame = _frame({"b": 3, "a": 2})
    out = replicate(frame, 5)
    assert list(pd.unique(out["unique_id"])) == ["b~0", "a~1", "b~2", "a~3", "b~4"]
    for sid, group in out.groupby("unique_id", sort=False):
        source = frame[frame["unique_id"] == sid.split("~")[0]]
        assert group["y"].tolist() == source["y"].tolist()
        assert group["ds"].tolist() == source["ds"].tolist()


def test_subsample_keeps_whole_series_evenly_spaced_and_all_of_a_small_set():
    frame = _frame({f"s{i}": 2 + i % 3 for i in range(10)})
    out = subsample(frame, 4)
    assert list(pd.unique(out["unique_id"])) == ["s0", "s3", "s6", "s9"]
    assert out.groupby("unique_id").size().to_dict() == frame.groupby("unique_id").size()[
        ["s0", "s3", "s6", "s9"]].to_dict()
    assert subsample(frame, 10).equals(frame) and subsample(frame, None).equals(frame)


def test_gap_table_marks_and_counts_only_gaps_past_the_threshold():
    ours = {"OTM (ours)": 1.0, "DOTM (ours)": 1.1, "ETS (ours)": 1.0, MEAN_NAME: 1.0}
    theirs = {"AutoTheta": 1.0 - 2 * CLEARLY, "AutoETS": 1.0 - CLEARLY / 2, "AutoARIMA": 1.2, "AutoCES": 0.9,
              "mean(AutoETS, AutoTheta, AutoCES)": 1.0, "mean(AutoETS, AutoARIMA, AutoTheta)": 1.0}
    result = {"set": "s", "scores": {k: {"mase": v} for k, v in {**ours, **theirs}.items()}}
    lines = gap_table([result]).splitlines()
    assert lines[2].startswith("| s | **-4.0 %** | -1.0 % | +20.0 % | **-10.0 %** | +0.0 % | +0.0 % |")
    assert lines[3] == "| clearly better on | 1 of 1 | 0 of 1 | 0 of 1 | 1 of 1 | 0 of 1 | 0 of 1 |"
