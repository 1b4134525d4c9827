"""Settings derived from the data when a config is silent (forecaster/defaults.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.config import model_config_from_dict
from forecaster.data.scaling import SeriesScaler
from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.data.windows import build_feature_arrays, window_index
from forecaster.defaults import (
    MAX_EPOCHS,
    MIN_EPOCHS,
    WARM_FINAL_MAX_SHARE,
    WEIGHT_AVERAGE_EPOCHS,
    default_budget,
    derive,
    expected_seconds,
    warm_final_fit,
    windows_available,
)
from forecaster.errors import ConfigError
from forecaster.forecaster import MANIFEST, LSTMForecaster
from forecaster.models.network_spec import NetworkSpec
from forecaster.ops.integrity import sha256
from tests.synthetic import hourly_frame


def _derive(freq, horizon, lengths, **given):
    options = {"network": None, "input_size": None, "max_windows_per_series": None, "epochs": None, **given}
    return derive(freq, horizon, np.asarray(lengths), min(horizon, 24), **options)


@pytest.mark.parametrize("freq, horizon, input_size, skip", [
    ("h", 48, 168, (24, 168)),   # M4 Hourly: a day and a week, blended
    ("MS", 18, 36, 12),          # monthly: a year
    ("QS", 8, 16, 4),            # quarterly: a year
    ("YS", 6, 12, 1),            # yearly: the last value
    ("D", 14, 28, 7),            # daily: a week
    ("15min", 8, 288, 96),       # a day (the week, 672 steps, is too long a window)
])
def test_the_network_and_window_follow_the_frequency_and_horizon(freq, horizon, input_size, skip):
    got = _derive(freq, horizon, [500] * 10)
    assert got.input_size == input_size
    assert got.network == NetworkSpec(seasonal_skip=True, window_norm="standard", skip_period=skip)
    assert set(got.derived) == {"input_size", "network", "weight_average", "max_windows_per_series", "epochs"}
    assert got.weight_average == WEIGHT_AVERAGE_EPOCHS > 0


def test_periods_longer_than_a_given_window_are_dropped():
    got = _derive("h", 12, [500] * 10, input_size=48)
    assert got.network.skip_period == 24 and "input_size" not in got.derived


def test_short_series_make_short_windows():
    assert _derive("h", 12, [120] * 10).input_size == 96  # 120 - 2 x 12: the week no longer fits
    assert _derive("h", 12, [120] * 10).network.skip_period == 24
    assert _derive("YS", 6, [20] * 10).input_size == 8  # M3 Yearly-like: 20 - 12
    assert _derive("MS", 18, [40] * 10).input_size == 24  # never below two seasons


def test_the_budget_in_window_epochs_sets_windows_and_epochs():
    small = _derive("MS", 18, [120] * 100)  # 100 series x 49 windows: everything, and more epochs
    assert small.max_windows_per_series == 120 - 2 * 18 - 36 + 1 and small.epochs == MAX_EPOCHS
    big = _derive("h", 48, [1000] * 414)  # M4 Hourly: the cap on windows binds at the minimum epochs
    assert big.epochs == MIN_EPOCHS and 100 <= big.max_windows_per_series <= 240
    assert big.budget_windows == default_budget(168) == 642_857
    assert big.epochs * big.max_windows_per_series * 414 <= big.budget_windows
    assert 240 <= expected_seconds(big.budget_windows, 168) <= 300  # twice what the former 150 s a fit bought
    more = _derive("h", 48, [1000] * 414, budget_windows=2 * big.budget_windows)
    assert more.max_windows_per_series > big.max_windows_per_series
    members = _derive("h", 48, [1000] * 414, budget_windows=2 * big.budget_windows, ensemble=2)
    assert members.max_windows_per_series == big.max_windows_per_series, "an ensemble's members share it"


def test_the_windows_counted_for_the_budget_are_the_ones_the_window_index_makes():
    """Full windows only where a series has room for one; left-padded ones only in shorter series (the
    count once added the padded windows of long series too: 120 too many a series on M4 Hourly)."""
    horizon, input_size, min_context = 12, 48, 24
    lengths = [300, 120, 72, 60, 48]  # full windows; full; one full window; left-padded; one left-padded
    frame = pd.concat([hourly_frame(n_series=1, length=n, seed=i).assign(unique_id=f"S{i}")
                       for i, n in enumerate(lengths)], ignore_index=True)
    vframe = validate_frame(frame, Columns(), freq="h")
    arrays = build_feature_arrays(vframe, SeriesScaler("standard").fit(vframe.frame, Columns()), horizon)
    cutoff = {sid: n - horizon - 1 for sid, n in zip(arrays.ids, arrays.lengths)}  # fit's holdout
    table = window_index(arrays, input_size, horizon, cutoff=cutoff, min_context=min_context)
    made = np.bincount(table[:, 2], minlength=len(lengths))
    counted = windows_available(arrays.lengths, input_size, horizon, min_context)
    assert made.tolist() == counted.tolist() == [300 - 24 - 47, 120 - 24 - 47, 72 - 24 - 47, 60 - 24 - 23, 48 - 24 - 23]


def test_given_settings_are_kept():
    network = NetworkSpec(units=8)
    got = _derive("h", 24, [500] * 5, network=network, input_size=72, max_windows_per_series=7, epochs=3,
                  weight_average=0.5)
    assert (got.network, got.input_size, got.max_windows_per_series, got.epochs, got.weight_average,
            got.derived) == (network, 72, 7, 3, 0.5, ())


def test_a_config_without_a_network_section_leaves_it_to_the_data():
    silent = model_config_from_dict({"model": {"name": "m", "horizon": 6}, "data": {"source": "x.csv"}})
    assert silent.network is None and silent.training.epochs is None
    assert silent.to_params()["network"] == "derived"
    given = model_config_from_dict({"model": {"name": "m", "horizon": 6}, "data": {"source": "x.csv"},
                                    "network": {"units": 8}})
    assert given.network == NetworkSpec(units=8)


def test_a_fit_uses_and_reports_the_derived_settings_within_its_budget(tmp_path):
    frame = hourly_frame(n_series=3, length=300)
    model = LSTMForecaster(horizon=12, freq="h", verbose=0, budget_windows=30).fit(frame)
    resolved = model.resolved_
    assert resolved.derived == ("input_size", "network", "weight_average", "max_windows_per_series", "epochs")
    assert resolved.weight_average == WEIGHT_AVERAGE_EPOCHS
    assert model.input_size_ == resolved.input_size == 168 and resolved.network.skip_period == (24, 168)
    assert [layer.name for layer in model.model_.layers if layer.name in ("window_norm", "seasonal_skip")] == [
        "window_norm", "seasonal_skip"]
    assert (resolved.budget_windows, resolved.max_windows_per_series, resolved.epochs) == (30, 1, MIN_EPOCHS)
    assert 1 <= len(model.history_["loss"]) <= MIN_EPOCHS
    assert LSTMForecaster.load(model.save(tmp_path / "derived")).resolved_ == resolved
    params = resolved.params()
    assert params["resolved.epochs"] == resolved.epochs and params["resolved.network.window_norm"] == "standard"
    assert params["resolved.budget_windows"] == 30
    given = LSTMForecaster(horizon=12, freq="h", verbose=0, epochs=2, budget_windows=1, input_size=48,
                           network=NetworkSpec(units=8), max_windows_per_series=5, patience=5).fit(frame)
    assert len(given.history_["loss"]) == 2, "given epochs and windows are taken as written"


def test_the_former_time_budget_is_refused_saying_what_to_use(tmp_path):
    with pytest.raises(ConfigError, match=r"\[training\] time_budget is no longer a parameter.*budget_windows"):
        model_config_from_dict({"model": {"name": "m", "horizon": 6}, "training": {"time_budget": 150.0}})
    with pytest.raises(ConfigError, match="budget_windows must be a positive integer"):
        model_config_from_dict({"model": {"name": "m", "horizon": 6}, "training": {"budget_windows": 0}})
    with pytest.raises(ConfigError, match="time_budget is no longer a parameter"):
        LSTMForecaster(horizon=6).set_params(time_budget=150.0)
    # A model saved before the change still loads: its time_budget played no part in prediction.
    model = LSTMForecaster(horizon=12, freq="h", verbose=0, epochs=1, input_size=48, network=NetworkSpec(units=8),
                           max_windows_per_series=2).fit(hourly_frame(n_series=2, length=120))
    path = model.save(tmp_path / "old")
    meta = json.loads((path / "forecaster.json").read_text())
    meta["params"]["time_budget"] = 150.0
    (path / "forecaster.json").write_text(json.dumps(meta))
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "forecaster.json": sha256(path / "forecaster.json")}))
    assert LSTMForecaster.load(path).get_params()["budget_windows"] is None


def test_the_final_fit_goes_on_from_the_backtest_model_only_where_that_saw_most_of_each_series():
    """``auto``: warm when the backtest held back at most a fifth of the median series (hourly data
    with 96 of 960 hours held back), a refit for short yearly series (12 of 19 years held back)."""
    assert WARM_FINAL_MAX_SHARE == 0.2
    hourly, yearly = np.array([700, 960, 960]), np.array([20, 28, 41])
    assert warm_final_fit("auto", 96, hourly) and not warm_final_fit("auto", 12, yearly)
    assert warm_final_fit("auto", 192, hourly) and not warm_final_fit("auto", 193, hourly)  # 20 % of 960
    assert warm_final_fit("warm", 12, yearly) and not warm_final_fit("full", 96, hourly)
    assert not warm_final_fit("auto", 1, np.array([], dtype=int))
