"""Short series never stop training: padded and masked windows, the fallback below the minimum, and
the backtest scoring every series it can, fallback ones marked.

Hourly data, horizon 12, input 48: ``min_history`` = max(season 24, horizon 12) = 24 steps, so a series
trains the network from 36 steps (one window and its targets), is forecast by it from 24, and is
scored by the backtest from 13 (horizon + 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecaster.errors import ShortHistoryError
from forecaster.forecaster import LSTMForecaster
from tests import stores
from tests.synthetic import hourly_frame

HORIZON = 12
LENGTHS = {"S0": 200, "S1": 200, "S2": 200, "S3": 60, "S4": 30, "S5": 10}


def _mixed() -> pd.DataFrame:
    frame = hourly_frame(n_series=len(LENGTHS), length=200)
    keep = frame.groupby("unique_id").cumcount(ascending=False) < frame["unique_id"].map(LENGTHS)
    return frame[keep].reset_index(drop=True)


def _forecaster(**options) -> LSTMForecaster:
    return LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", epochs=1, batch_size=64,
                          max_windows_per_series=30, verbose=0, network=None, **options)


def test_short_series_train_on_padded_masked_windows_and_fall_back_below_the_minimum(tmp_path):
    frame = _mixed()
    model = _forecaster().fit(frame)
    assert model.min_history_ == 24
    assert model.untrained_series_ == ["S4", "S5"]  # 30 and 10 steps: fewer than 24 + 12
    assert model.padded_ and "padding_mask" in [layer.name for layer in model.model_.layers]
    out = model.predict(frame)
    kinds = out.groupby("unique_id")["model"].first().to_dict()
    assert kinds == {"S0": "lstm", "S1": "lstm", "S2": "lstm", "S3": "lstm", "S4": "lstm", "S5": "seasonal_naive"}
    assert out.groupby("unique_id").size().eq(HORIZON).all() and np.isfinite(out["forecast"]).all()
    loaded = LSTMForecaster.load(model.save(tmp_path / "short"))
    assert loaded.min_history_ == 24 and loaded.untrained_series_ == ["S4", "S5"]
    pd.testing.assert_frame_equal(loaded.predict(frame), out, rtol=1e-5)


def test_the_encoder_skips_the_padding():
    """The masked encoder's state after a left-padded window equals its state after the real steps alone."""
    from forecaster.data.validation import validate_frame
    from forecaster.data.windows import build_feature_arrays, last_windows

    model = _forecaster().fit(_mixed())
    short = _mixed()[lambda f: f["unique_id"] == "S4"]  # 30 steps in a 48-step window
    vframe = validate_frame(short, model.columns_, freq="h")
    scaler = model.scaler_
    scaler.fit_missing(vframe.frame, model.columns_)  # S4 was too short to train on: scaled on its history
    arrays = build_feature_arrays(vframe, scaler, HORIZON, stats=model.stats_)
    inputs, _ = last_windows(arrays, model.input_size_, HORIZON)
    past = inputs["past"]
    assert np.all(past[0, :18] == 0) and np.all(past[0, 18:, 1] == 1), "18 padded steps, then 30 observed"
    encoder, mask = model.model_.get_layer("encoder_0"), model.model_.get_layer("padding_mask")
    np.testing.assert_allclose(np.asarray(encoder(mask(past))), np.asarray(encoder(past[:, 18:])),
                               rtol=1e-5, atol=1e-6)
    # With 3 real steps after 45 padded ones the unmasked state has not forgotten the padding: the
    # mask is what makes the two agree.
    few = np.concatenate([np.zeros_like(past[:, :45]), past[:, -3:]], axis=1)
    alone = np.asarray(encoder(past[:, -3:]))
    np.testing.assert_allclose(np.asarray(encoder(mask(few))), alone, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(encoder(few)) - alone).max() > 1e-3


def test_a_frame_without_any_usable_series_is_refused_naming_the_rule():
    frame = hourly_frame(n_series=2, length=30)
    with pytest.raises(ShortHistoryError, match=r"each needs 36 steps \(min_history 24 \+ horizon 12\)"):
        _forecaster().fit(frame)


@pytest.mark.slow
def test_the_cli_trains_on_a_frame_with_short_series_and_reports_them(tmp_path):
    data = tmp_path / "mixed.csv"
    _mixed().to_csv(data, index=False)
    store = f"sqlite:///{stores.seed(tmp_path / 'mlflow.db')}"
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", "--data", str(data), "--horizon", "12",
                           "--epochs", "1", "--quiet", "--no-register"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store})
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("short series"))
    assert "too short to train on (S4, S5)" in line and "forecast by seasonal naive (S5)" in line
    assert "too short to score (S5)" in line
    client = MlflowClient(store)
    run, = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    local = client.download_artifacts(run.info.run_id, "data_report.json", str(tmp_path))
    report = json.loads(Path(local).read_text())["too_short"]
    assert report["not_trained"]["series"] == ["S4", "S5"] and report["fallback"]["series"] == ["S5"]
    assert report["not_backtested"] == {"count": 1, "rule": report["not_backtested"]["rule"], "series": ["S5"]}
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "evaluation/backtest_per_series.csv",
                                                  str(tmp_path)))
    ours = table[table["model"] == "lstm"]
    assert set(ours["unique_id"]) == {"S0", "S1", "S2", "S3", "S4"}, "every series with 13+ steps is scored"
    assert "S5" not in set(table["unique_id"])
    # S4 (30 steps) has 6 steps before the oldest origin and 18 before the newest: the fallback answers.
    assert ours[ours["unique_id"] == "S4"]["fallback"].all()
    assert not ours[ours["unique_id"].isin(["S0", "S1", "S2"])]["fallback"].any()
    assert not table[table["model"] == "seasonal_naive"]["fallback"].any()


def test_a_long_grid_of_blanks_is_forecast_by_the_fallback_counting_readings_not_rows():
    """S1: 100 hourly rows of which 80 are blanks (40 missing values, 40 missing rows) holds 20 readings,
    fewer than min_history 24: the fallback forecasts it (the network did, from 80 masked zeros, before).
    S2: 100 rows of which 70 are blanks holds 30 readings: the network's."""
    from tests.synthetic import tiny_fit

    frame = hourly_frame(n_series=3, length=100)
    model = tiny_fit(frame, freq="h", horizon=HORIZON, input_size=48, missing_policy="mask")
    assert model.min_history_ == 24
    step = frame.groupby("unique_id").cumcount()
    s1, s2 = frame["unique_id"].eq("S1"), frame["unique_id"].eq("S2")
    frame.loc[s1 & step.between(10, 49), "y"] = np.nan
    frame.loc[s2 & step.between(10, 79), "y"] = np.nan
    frame = frame[~(s1 & step.between(50, 89))]
    kinds = model.predict(frame).groupby("unique_id")["model"].first().to_dict()
    assert kinds == {"S0": "lstm", "S1": "seasonal_naive", "S2": "lstm"}
    # The training run's report (data_report.json, the "short series" line) counts the same way.
    from forecaster.config import model_config_from_dict
    from pipelines import steps

    config = model_config_from_dict({"model": {"name": "blanks", "horizon": HORIZON},
                                     "data": {"source": "unused.csv", "freq": "h", "missing_policy": "mask"},
                                     "training": {"input_size": 48}})
    report = steps.prepare(config, raw=frame).too_short
    assert report["fallback"]["series"] == ["S1"] and "observed readings" in report["fallback"]["rule"]
    assert report["not_trained"]["count"] == 0  # windows are cut from the grid: S1 still trains on its readings


def test_a_constant_history_is_forecast_as_its_value_at_every_quantile_and_counted():
    """An all-zero series (a dead product) was forecast 0.0014 with q0.9 ~0.03 by the network; a series
    of 5.0 with blanks (masked) likewise near 5. Every statistical method answers the value itself: so
    does the fallback, named and counted like the short series' fallback."""
    from forecaster.config import model_config_from_dict
    from pipelines import steps
    from tests.synthetic import tiny_fit

    frame = hourly_frame(n_series=4, length=100)
    frame.loc[frame["unique_id"].eq("S1"), "y"] = 0.0
    frame.loc[frame["unique_id"].eq("S2"), "y"] = 5.0
    frame.loc[frame["unique_id"].eq("S2") & frame.groupby("unique_id").cumcount().isin([3, 50, 99]), "y"] = np.nan
    model = tiny_fit(frame, freq="h", horizon=HORIZON, input_size=48, missing_policy="mask")
    out = model.predict(frame).set_index("unique_id")
    values = ["forecast", *[c for c in out.columns if c.startswith("q")]]
    assert len(values) > 1
    assert (out.loc["S1", values].to_numpy() == 0.0).all() and (out.loc["S2", values].to_numpy() == 5.0).all()
    kinds = out.groupby(level=0)["model"].first().to_dict()
    assert kinds == {"S0": "lstm", "S1": "seasonal_naive", "S2": "seasonal_naive", "S3": "lstm"}
    config = model_config_from_dict({"model": {"name": "flat", "horizon": HORIZON},
                                     "data": {"source": "unused.csv", "freq": "h", "missing_policy": "mask"},
                                     "training": {"input_size": 48}})
    report = steps.prepare(config, raw=frame).too_short
    assert report["constant"]["series"] == ["S1", "S2"] and report["fallback"]["count"] == 0
    assert "2 constant, forecast as their value by seasonal naive (S1, S2)" in steps.describe_short(report)


def test_a_short_constant_series_is_counted_once_in_the_short_series_line():
    """S1 holds 10 readings, all 5.0: the fallback's because it is short, and it was counted again as
    constant, so the line said two series went to seasonal naive where one did. S2 (100 readings of 0.0)
    is the fallback's for its one value alone."""
    from forecaster.config import model_config_from_dict
    from pipelines import steps

    frame = hourly_frame(n_series=4, length=100)
    step = frame.groupby("unique_id").cumcount()
    s1 = frame["unique_id"].eq("S1")
    frame.loc[s1, "y"] = np.where(step[s1] < 90, np.nan, 5.0)
    frame.loc[frame["unique_id"].eq("S2"), "y"] = 0.0
    config = model_config_from_dict({"model": {"name": "flat", "horizon": HORIZON},
                                     "data": {"source": "unused.csv", "freq": "h", "missing_policy": "mask"},
                                     "training": {"input_size": 48}})
    report = steps.prepare(config, raw=frame).too_short
    assert report["fallback"]["series"] == ["S1"] and report["constant"]["series"] == ["S2"]
    line = steps.describe_short(report)
    assert "1 forecast by seasonal naive (S1)" in line and "1 constant, forecast as their value" in line
    assert line.count("S1") == 1, line
