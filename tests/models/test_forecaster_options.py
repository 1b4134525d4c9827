"""The accuracy options of the forecaster: seasonal skip, window normalisation, ensembles, cosine rate.

Each option is trained for real on tiny synthetic hourly data, saved and loaded back (JSON + .keras),
and checked for what it should change.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from forecaster.config import model_config_from_dict
from forecaster.contract import quantile_name
from forecaster.errors import ConfigError
from forecaster.forecaster import LSTMForecaster
from forecaster.models.baselines import seasonal_naive
from forecaster.models.keras_network import NetworkSpec, build_network
from pipelines.steps import make_forecaster
from tests.synthetic import hourly_frame

HORIZON = 12
QUANTILES = (0.1, 0.5, 0.9)


def _fit(network: NetworkSpec, **kwargs) -> LSTMForecaster:
    # The network's own forecasts (these tests look at the network; the combination has its own below).
    options = {"epochs": 1, "batch_size": 64, "max_windows_per_series": 30, "verbose": 0, "combine": "none",
               **kwargs}
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", quantiles=QUANTILES, network=network,
                           **options)
    return model.fit(hourly_frame(n_series=4, length=200))


def _zero_head(model) -> None:
    for layer in model._flatten_layers():
        if layer.name in ("point", "quantile_offsets"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, "float32"))


def _seasonal_naive_per_series(frame) -> dict[str, np.ndarray]:
    return {sid: seasonal_naive(part["y"].to_numpy(), HORIZON, 24) for sid, part in frame.groupby("unique_id")}


@pytest.mark.parametrize("window_norm", ["none", "level", "standard"])
def test_seasonal_skip_with_a_zero_head_forecasts_seasonal_naive(window_norm, tmp_path):
    model = _fit(NetworkSpec(units=8, head_units=16, seasonal_skip=True, window_norm=window_norm))
    _zero_head(model.model_)
    model._predict_fn = None
    history = hourly_frame(n_series=4, length=200)
    out = model.predict(history)
    expected = _seasonal_naive_per_series(history)
    for sid, part in out.groupby("unique_id"):
        for column in ("forecast", *(quantile_name(q) for q in QUANTILES)):
            np.testing.assert_allclose(part[column].to_numpy(), expected[sid], rtol=1e-4)
    # the option is in the saved network: a loaded copy forecasts the same
    loaded = LSTMForecaster.load(model.save(tmp_path / "skip"))
    np.testing.assert_allclose(loaded.predict(history)["forecast"], out["forecast"], rtol=1e-5)


def test_without_the_skip_a_zero_head_forecasts_the_series_mean():
    model = _fit(NetworkSpec(units=8, head_units=16))
    _zero_head(model.model_)
    model._predict_fn = None
    history = hourly_frame(n_series=4, length=200)
    out = model.predict(history)
    naive = _seasonal_naive_per_series(history)
    part = out[out["unique_id"] == "S0"]["forecast"].to_numpy()
    assert np.ptp(part) < 1e-6 * abs(part[0])  # flat: scaled zero is the series' mean
    assert not np.allclose(part, naive["S0"], rtol=1e-2)


@pytest.mark.parametrize(("mode", "gain"), [("level", 1.0), ("standard", 3.0)])
def test_window_norm_makes_the_network_follow_the_window_level_and_spread(mode, gain):
    spec = NetworkSpec(units=8, head_units=16, window_norm=mode)
    net = build_network(spec, input_size=48, horizon=HORIZON, n_past=6, n_future=4, n_static=0, n_quantiles=3,
                        season=24)
    rng = np.random.default_rng(0)
    past = rng.normal(size=(5, 48, 6)).astype("float32")
    past[..., 1] = 1.0  # all observed
    inputs = {"past": past, "future": rng.normal(size=(5, HORIZON, 4)).astype("float32"),
              "static": np.zeros((5, 0), "float32")}
    shifted = {**inputs, "past": past.copy()}
    shifted["past"][..., 0] = gain * past[..., 0] + 7.0
    base = np.asarray(net(inputs))
    moved = np.asarray(net(shifted))
    np.testing.assert_allclose(moved, gain * base + 7.0, rtol=1e-4, atol=1e-4)


def test_without_window_norm_a_level_shift_is_not_passed_through():
    net = build_network(NetworkSpec(units=8, head_units=16), input_size=48, horizon=HORIZON, n_past=6,
                        n_future=4, n_static=0, n_quantiles=3, season=24)
    past = np.random.default_rng(1).normal(size=(2, 48, 6)).astype("float32")
    inputs = {"past": past, "future": np.zeros((2, HORIZON, 4), "float32"), "static": np.zeros((2, 0), "float32")}
    shifted = {**inputs, "past": past.copy()}
    shifted["past"][..., 0] += 7.0
    assert not np.allclose(np.asarray(net(shifted)), np.asarray(net(inputs)) + 7.0, atol=1e-2)


def test_ensemble_averages_its_members_and_round_trips(tmp_path):
    spec = NetworkSpec(units=8, head_units=16, seasonal_skip=True, window_norm="standard")
    model = _fit(spec, ensemble=2)
    members = [layer for layer in model.model_.layers if layer.name.startswith("member_")]
    assert [m.name for m in members] == ["member_0", "member_1"]
    assert len(model.member_histories_) == 2
    history = hourly_frame(n_series=4, length=200)
    out = model.predict(history)
    single = _fit(spec)  # the first member is trained exactly as a forecaster with ensemble = 1
    assert not np.allclose(out["forecast"], single.predict(history)["forecast"], rtol=1e-6)
    rng = np.random.default_rng(2)
    probe = {"past": rng.normal(size=(3, 48, 6)).astype("float32"),
             "future": rng.normal(size=(3, HORIZON, 4)).astype("float32"),
             "static": np.zeros((3, 0), "float32")}
    probe["past"][..., 1] = 1.0
    mean = np.mean([np.asarray(m(probe)) for m in members], axis=0)
    np.testing.assert_allclose(np.asarray(model.model_(probe)), mean, rtol=1e-5, atol=1e-6)
    loaded = LSTMForecaster.load(model.save(tmp_path / "ensemble"))
    assert loaded.ensemble == 2
    assert sorted(p.name for p in (tmp_path / "ensemble").iterdir()) == [
        "forecaster.json", "manifest.json", "network.keras", "scaler.json"]
    np.testing.assert_allclose(loaded.predict(history)["forecast"], out["forecast"], rtol=1e-5)


def test_cosine_schedule_decays_the_learning_rate():
    model = _fit(NetworkSpec(units=8, head_units=16), lr_schedule="cosine", epochs=2, learning_rate=0.01)
    optimizer = model.model_.optimizer
    steps = int(optimizer.iterations.numpy())
    assert steps > 0
    assert float(optimizer.learning_rate) < 0.01
    assert float(optimizer.learning_rate) == pytest.approx(
        float(optimizer._learning_rate(steps)), rel=1e-6)
    constant = _fit(NetworkSpec(units=8, head_units=16), learning_rate=0.01)
    assert float(constant.model_.optimizer.learning_rate) == pytest.approx(0.01)


def test_bad_option_values_are_refused():
    with pytest.raises(ConfigError, match="window_norm"):
        NetworkSpec(window_norm="mean")
    with pytest.raises(ConfigError, match="lr_schedule"):
        _fit(NetworkSpec(units=8, head_units=16), lr_schedule="step")
    with pytest.raises(ConfigError, match="ensemble"):
        _fit(NetworkSpec(units=8, head_units=16), ensemble=0)
    with pytest.raises(ConfigError, match="period"):
        build_network(NetworkSpec(seasonal_skip=True, skip_period=60), 48, HORIZON, 6, 4, 0, 3, season=24)


def test_config_keys_reach_the_forecaster_and_old_configs_keep_their_defaults():
    base = {"model": {"name": "opts", "horizon": HORIZON}, "data": {"freq": "h"}}
    old = make_forecaster(model_config_from_dict(base))
    assert old.ensemble == 1 and old.lr_schedule == "constant"
    assert old.network is None, "no [network] section: derived from the data at fit (tests/models/test_defaults.py)"
    plain = make_forecaster(model_config_from_dict({**base, "network": {"units": 8}}))
    assert not plain.network.seasonal_skip and plain.network.window_norm == "none", \
        "a [network] section is taken as written, NetworkSpec's defaults filling its missing keys"
    new = make_forecaster(model_config_from_dict({
        **base,
        "network": {"seasonal_skip": True, "window_norm": "standard", "skip_period": 24},
        "training": {"ensemble": 3, "lr_schedule": "cosine"},
    }))
    assert new.ensemble == 3 and new.lr_schedule == "cosine"
    assert new.network.seasonal_skip and new.network.window_norm == "standard" and new.network.skip_period == 24
    with pytest.raises(ConfigError, match="window_norm"):
        model_config_from_dict({**base, "network": {"window_norm": "bogus"}})


def _probe(batch: int, input_size: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    past = rng.normal(size=(batch, input_size, 6)).astype("float32")
    past[..., 1] = 1.0  # all observed
    return {"past": past, "future": rng.normal(size=(batch, HORIZON, 4)).astype("float32"),
            "static": np.zeros((batch, 0), "float32")}


def test_blended_skip_is_the_mean_of_the_repeats_at_first_and_follows_the_blend_logits(tmp_path):
    spec = NetworkSpec(units=8, head_units=16, seasonal_skip=True, skip_period=(4, 24))
    net = build_network(spec, input_size=48, horizon=HORIZON, n_past=6, n_future=4, n_static=0,
                        n_quantiles=3, season=24)
    _zero_head(net)
    probe = _probe(5, 48)
    y = probe["past"][..., 0]
    repeats = [np.tile(y[:, -p:], (1, -(-HORIZON // p)))[:, :HORIZON] for p in (4, 24)]
    out = np.asarray(net(probe))
    for column in range(out.shape[-1]):  # point and every quantile sit on the same base
        np.testing.assert_allclose(out[..., column], (repeats[0] + repeats[1]) / 2, rtol=1e-5, atol=1e-5)
    bias = net.get_layer("blend_logits").bias
    logits = np.zeros(bias.shape, "float32")
    logits[1::2] = 30.0  # the day's repeat for every horizon step
    bias.assign(logits)
    np.testing.assert_allclose(np.asarray(net(probe))[..., 0], repeats[1], rtol=1e-5, atol=1e-5)
    # the blend is in the saved network
    net.save(tmp_path / "blend.keras")
    loaded = keras.saving.load_model(tmp_path / "blend.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(probe)), np.asarray(net(probe)), rtol=1e-6)


def test_drift_extends_the_window_line_from_its_first_observed_step_and_is_half_the_base_at_first(tmp_path):
    """``skip_drift``: a window on a line (here left-padded by 5 steps) is continued along it; with one
    period the base starts as the mean of the last value and that line (a damped drift)."""
    spec = NetworkSpec(units=8, head_units=16, seasonal_skip=True, skip_drift=True, skip_period=1)
    net = build_network(spec, input_size=20, horizon=HORIZON, n_past=6, n_future=4, n_static=0,
                        n_quantiles=3, season=1)
    _zero_head(net)
    probe = _probe(2, 20)
    line = 3.0 + 0.5 * np.arange(20, dtype="float32")
    probe["past"][:, :, 0] = line
    probe["past"][1, :5, :] = 0.0  # padding: not observed, all zero
    ahead = line[-1] + 0.5 * np.arange(1, HORIZON + 1, dtype="float32")
    drift = np.asarray(net.get_layer("drift_repeat")(probe["past"]))
    np.testing.assert_allclose(drift, np.stack([ahead, ahead]), rtol=1e-5)
    out = np.asarray(net(probe))
    for column in range(out.shape[-1]):
        np.testing.assert_allclose(out[..., column], np.stack([(ahead + line[-1]) / 2] * 2), rtol=1e-5)
    net.save(tmp_path / "drift.keras")
    loaded = keras.saving.load_model(tmp_path / "drift.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(probe)), out, rtol=1e-6)


def test_blended_skip_trains_saves_and_loads(tmp_path):
    model = _fit(NetworkSpec(units=8, head_units=16, seasonal_skip=True, window_norm="standard",
                             skip_period=(1, 24)))
    history = hourly_frame(n_series=4, length=200)
    out = model.predict(history)
    assert np.isfinite(out["forecast"]).all()
    loaded = LSTMForecaster.load(model.save(tmp_path / "blend"))
    assert "season_blend" in {layer.name for layer in loaded.model_._flatten_layers()}
    np.testing.assert_allclose(loaded.predict(history)["forecast"], out["forecast"], rtol=1e-5)


def test_skip_period_lists_come_from_toml_and_bad_ones_are_refused():
    base = {"model": {"name": "opts", "horizon": HORIZON}, "data": {"freq": "h"}}
    config = model_config_from_dict({**base, "network": {"seasonal_skip": True, "skip_period": [24, 168]}})
    assert config.network.skip_period == (24, 168) and config.network.periods(24) == (24, 168)
    assert NetworkSpec().periods(24) == (24,) and NetworkSpec(skip_period=12).periods(24) == (12,)
    for bad in ([0, 24], [-1], [], 2.5):
        with pytest.raises(ConfigError, match="skip_period"):
            model_config_from_dict({**base, "network": {"skip_period": bad}})
    with pytest.raises(ConfigError, match="period"):
        build_network(NetworkSpec(seasonal_skip=True, skip_period=(24, 168)), 48, HORIZON, 6, 4, 0, 3, season=24)


def test_warm_start_begins_from_the_initial_weights_and_refuses_another_network(tmp_path):
    spec = NetworkSpec(units=8, head_units=16)
    champion = LSTMForecaster.load(_fit(spec).save(tmp_path / "champion"))  # as the job loads it
    assert champion.data_end_ is not None

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(w) for w in self.model.get_weights()]

    seen = FirstWeights()
    warm = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", quantiles=QUANTILES, network=spec, epochs=1,
                          seed=5, verbose=0)
    warm.fit(hourly_frame(n_series=4, length=200, seed=1), callbacks=[seen], initial=champion)
    for got, expected in zip(seen.weights, champion.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    wider = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", quantiles=QUANTILES,
                           network=NetworkSpec(units=16, head_units=16),
                           epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="cannot warm-start"):
        wider.fit(hourly_frame(n_series=4, length=200), initial=champion)


def test_warm_start_keeps_a_derived_network_and_seeds_each_ensemble_member_from_its_own(tmp_path):
    """Left to be derived, the window and network come from the initial forecaster (a longer frame
    would derive another window, and the weights would not fit); an ensemble's member k starts from
    the initial ensemble's member k."""
    short = hourly_frame(n_series=3, length=130, seed=2)
    initial = LSTMForecaster(horizon=HORIZON, freq="h", quantiles=QUANTILES, epochs=1, ensemble=2,
                             max_windows_per_series=8, verbose=0).fit(short)
    longer = hourly_frame(n_series=3, length=600, seed=2)
    assert LSTMForecaster(horizon=HORIZON, freq="h").series_rules("h", np.array([600] * 3)).input_size \
        != initial.input_size_

    class FirstWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_train_begin(self, logs=None):
            self.weights.append([np.array(w) for w in self.model.get_weights()])

    seen = FirstWeights()
    warm = LSTMForecaster(horizon=HORIZON, freq="h", quantiles=QUANTILES, epochs=1, ensemble=2,
                          max_windows_per_series=8, verbose=0).fit(longer, callbacks=[seen], initial=initial)
    assert warm.input_size_ == initial.input_size_ and warm.resolved_.network == initial.resolved_.network
    assert {"input_size", "network"} <= set(warm.resolved_.derived)
    for k, weights in enumerate(seen.weights):
        expected = initial.model_.get_layer(f"member_{k}").get_weights()
        for got, want in zip(weights, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    single = LSTMForecaster(horizon=HORIZON, freq="h", quantiles=QUANTILES, epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="cannot warm-start"):
        single.fit(longer, initial=initial)


def test_every_parameter_round_trips_through_save_and_load_and_clone_works(tmp_path):
    """A loaded forecaster reports every parameter it was trained with (not the defaults), and
    scikit-learn's `clone` makes an unfitted twin with the same parameters."""
    from sklearn.base import clone

    network = NetworkSpec(units=8, head_units=16, seasonal_skip=True, window_norm="standard", skip_period=(24, 12))
    model = _fit(network, epochs=2, learning_rate=0.003, patience=1, scaler="robust", point_loss="mse",
                 lr_schedule="cosine", seed=5, batch_size=32)
    params = model.get_params()
    assert params["network"] == network and params["scaler"] == "robust" and params["epochs"] == 2
    assert params["lr_schedule"] == "cosine" and params["point_loss"] == "mse" and params["seed"] == 5
    loaded = LSTMForecaster.load(model.save(tmp_path / "every"))
    assert loaded.get_params() == params
    assert loaded.input_size_ == 48 and loaded.quantiles_ == QUANTILES
    twin = clone(loaded)
    assert twin.get_params() == params and not hasattr(twin, "model_")
    assert model.set_params(epochs=3) is model and model.epochs == 3
    with pytest.raises(ConfigError, match=r"no parameters \['epoch'\]"):
        model.set_params(epoch=3)


def test_the_config_builds_the_estimator_with_every_training_key():
    config = model_config_from_dict({
        "model": {"name": "m", "horizon": 6, "quantiles": [0.2, 0.8]},
        "data": {"source": "package:m4_hourly", "freq": "h"},
        "network": {"units": 4, "window_norm": "level"},
        "training": {"epochs": 4, "scaler": "robust", "lr_schedule": "cosine", "ensemble": 2,
                     "max_windows_per_series": 9, "strategy": "mirrored", "point_loss": "mse",
                     "budget_windows": 5000}})
    params = LSTMForecaster.from_config(config, verbose=0).get_params()
    training = config.to_params()
    for key, value in params.items():
        if f"training.{key}" in training:
            assert value == training[f"training.{key}"], key
    assert params["network"] == config.network and params["quantiles"] == (0.2, 0.8) and params["horizon"] == 6
    assert params["budget_windows"] == training["training.budget_windows"] == 5000
    assert make_forecaster(config, verbose=0).get_params() == params


def test_theta_combination_is_the_mean_of_the_two_forecasts_and_moves_the_intervals_with_it(tmp_path):
    from forecaster.models.baselines import theta_batch

    frame = hourly_frame(n_series=4, length=200)
    model = _fit(NetworkSpec(units=8, head_units=16), combine="theta")
    combined = model.predict(frame)
    model.combine_ = "none"  # the same network alone
    alone = model.predict(frame)
    ids = list(alone["unique_id"].unique())
    histories = [frame.loc[frame["unique_id"] == sid, "y"].to_numpy("float64") for sid in ids]
    theta = theta_batch(histories, HORIZON, 24).reshape(-1)
    np.testing.assert_allclose(combined["forecast"], 0.5 * (alone["forecast"] + theta), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(combined["q0.9"] - combined["q0.1"], alone["q0.9"] - alone["q0.1"], atol=1e-5)
    model.combine_ = "theta"
    loaded = LSTMForecaster.load(model.save(tmp_path / "combined"))
    assert loaded.combine_ == "theta" and loaded.get_params()["combine"] == "theta"
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], combined["forecast"], rtol=1e-6)


def test_theta_and_ets_combinations_are_the_means_and_round_trip(tmp_path):
    from forecaster.models.baselines import ets_batch, optimised_theta_batch, theta_batch

    frame = hourly_frame(n_series=4, length=200)
    model = _fit(NetworkSpec(units=8, head_units=16), combine="theta+ets")
    assert model.combine_ == "theta+ets"
    combined = model.predict(frame)
    model.combine_ = "none"
    alone = model.predict(frame)
    ids = list(alone["unique_id"].unique())
    histories = [frame.loc[frame["unique_id"] == sid, "y"].to_numpy("float64") for sid in ids]
    others = theta_batch(histories, HORIZON, 24) + ets_batch(histories, HORIZON, 24)
    np.testing.assert_allclose(combined["forecast"], (alone["forecast"] + others.reshape(-1)) / 3,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(combined["q0.9"] - combined["q0.1"], alone["q0.9"] - alone["q0.1"], atol=1e-5)
    model.combine_ = "theta+ets"
    loaded = LSTMForecaster.load(model.save(tmp_path / "three"))
    assert loaded.combine_ == "theta+ets"
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], combined["forecast"], rtol=1e-6)

    model.combine_ = "otm+dotm+ets"  # the optimised Theta model, static and dynamic, and ETS: a mean of four
    four = model.predict(frame)
    others = (optimised_theta_batch(histories, HORIZON, 24) + ets_batch(histories, HORIZON, 24)
              + optimised_theta_batch(histories, HORIZON, 24, dynamic=True))
    np.testing.assert_allclose(four["forecast"], (alone["forecast"] + others.reshape(-1)) / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four["q0.9"] - four["q0.1"], alone["q0.9"] - alone["q0.1"], atol=1e-5)
    loaded = LSTMForecaster.load(model.save(tmp_path / "four"))
    assert loaded.combine_ == "otm+dotm+ets"
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], four["forecast"], rtol=1e-6)


def test_masked_targets_reach_the_theta_method_interpolated():
    from forecaster.data.schema import Columns
    from forecaster.data.validation import validate_frame
    from forecaster.models.combination import series_histories

    frame = hourly_frame(n_series=2, length=60)
    sid = frame["unique_id"].iloc[0]
    rows = frame.index[frame["unique_id"] == sid]
    frame.loc[rows[[0, 10, 11]], "y"] = np.nan
    vframe = validate_frame(frame, Columns(), freq="h", missing_policy="mask")
    history = series_histories(vframe.frame, Columns(), [sid])[0]
    y = frame.loc[rows, "y"].to_numpy()
    assert history[0] == y[1], "a masked first value takes the nearest observed one"
    np.testing.assert_allclose(history[10:12], y[9] + (y[12] - y[9]) * np.array([1, 2]) / 3)


def test_combine_is_checked_in_the_config_the_estimator_and_the_saved_file(tmp_path):
    import json

    from forecaster.errors import ModelError
    from forecaster.ops.integrity import sha256

    base = {"model": {"name": "c", "horizon": HORIZON}, "data": {"freq": "h"}}
    config = model_config_from_dict({**base, "model": {**base["model"], "combine": "theta"}})
    assert make_forecaster(config).combine == "theta" and config.to_params()["combine"] == "theta"
    with pytest.raises(ConfigError, match="combine"):
        model_config_from_dict({**base, "model": {**base["model"], "combine": "ets"}})
    with pytest.raises(ConfigError, match="combine"):
        _fit(NetworkSpec(units=8, head_units=16), combine="mean")
    path = _fit(NetworkSpec(units=8, head_units=16)).save(tmp_path / "old")
    meta = json.loads((path / "forecaster.json").read_text())

    def rewrite(meta):
        (path / "forecaster.json").write_text(json.dumps(meta))
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["forecaster.json"] = sha256(path / "forecaster.json")
        (path / "manifest.json").write_text(json.dumps(manifest))

    rewrite({k: v for k, v in meta.items() if k != "combine"})
    assert LSTMForecaster.load(path).combine_ == "none", "saved before combinations: the network alone"
    rewrite({**meta, "combine": "bogus"})
    with pytest.raises(ModelError, match="combine"):
        LSTMForecaster.load(path)


def test_auto_keeps_the_combination_unless_the_network_alone_is_far_better_on_the_fits_holdout():
    from forecaster.evaluation.metrics import mase
    from forecaster.models.baselines import ces_batch, ets_batch, optimised_theta_batch, robust_trend_batch, theta_batch
    from forecaster.models.combination import AUTO, choose
    from forecaster.models.ets import aets_batch

    model = _fit(NetworkSpec(units=8, head_units=16), combine="auto")
    scores = model.combine_scores_
    assert set(scores) == {"none", "theta", "theta+ets", "otm+dotm+ets", "otm+dotm+aets",
                           "otm+dotm+aets+rtrend+rtrend8", "otm+dotm+aets+rtrend+rtrend8+ces"}
    assert model.combine_ == choose(scores, AUTO)
    frame = hourly_frame(n_series=4, length=200)
    held_out = frame.groupby("unique_id").cumcount(ascending=False) < HORIZON
    history, actual = frame[~held_out], frame[held_out]
    chosen = model.combine_
    model.combine_ = "none"
    network = model.predict(history, calibrated=False)["forecast"].to_numpy().reshape(4, HORIZON)
    model.combine_ = chosen
    y = actual["y"].to_numpy().reshape(4, HORIZON)
    insample = [part["y"].to_numpy("float64") for _, part in history.groupby("unique_id", sort=False)]
    assert scores["none"] == pytest.approx(mase(y, network, insample, 24), rel=1e-9)
    theta, ets = theta_batch(insample, HORIZON, 24), ets_batch(insample, HORIZON, 24)
    otm = optimised_theta_batch(insample, HORIZON, 24)
    dotm = optimised_theta_batch(insample, HORIZON, 24, dynamic=True)
    assert scores["theta"] == pytest.approx(mase(y, (network + theta) / 2, insample, 24), rel=1e-9)
    assert scores["theta+ets"] == pytest.approx(mase(y, (network + theta + ets) / 3, insample, 24), rel=1e-9)
    assert scores["otm+dotm+ets"] == pytest.approx(mase(y, (network + otm + dotm + ets) / 4, insample, 24), rel=1e-9)
    aets = aets_batch(insample, HORIZON, 24)
    assert scores["otm+dotm+aets"] == pytest.approx(mase(y, (network + otm + dotm + aets) / 4, insample, 24),
                                                    rel=1e-9)
    rtrend, rtrend8 = robust_trend_batch(insample, HORIZON, 24), robust_trend_batch(insample, HORIZON, 24, last=8)
    assert scores["otm+dotm+aets+rtrend+rtrend8"] == pytest.approx(
        mase(y, (network + otm + dotm + aets + rtrend + rtrend8) / 6, insample, 24), rel=1e-9)
    ces = ces_batch(insample, HORIZON, 24)
    assert scores["otm+dotm+aets+rtrend+rtrend8+ces"] == pytest.approx(
        mase(y, (network + otm + dotm + aets + rtrend + rtrend8 + ces) / 7, insample, 24), rel=1e-9)
    assert AUTO == "otm+dotm+aets"
    assert choose({"none": 1.0, "theta": 1.1, AUTO: 1.19}, AUTO) == AUTO, "the benefit of the doubt"
    assert choose({"none": 1.0, "theta": 0.9, AUTO: 0.95}, AUTO) == AUTO, "one window picks no partner"
    assert choose({"none": 1.0, "theta": 1.1, AUTO: 1.21}, AUTO) == "none", "unless the network is far ahead"
    assert choose({"none": float("nan"), "theta": 2.0, AUTO: 2.5}, AUTO) == AUTO
    assert choose({"none": 2.0, "theta": float("nan")}, AUTO) == "none" and choose({}, AUTO) == "none"


def test_the_mase_scaler_measures_each_series_in_its_hourly_seasonal_naive_error(tmp_path):
    """``scaler = "mase"`` takes its season from the data's frequency (hourly: 24) and is fitted on
    the rows before the holdout; a loaded copy forecasts the same."""
    import json

    model = _fit(NetworkSpec(units=4, head_units=8), scaler="mase")
    saved = json.loads((model.save(tmp_path / "mase") / "scaler.json").read_text())
    assert saved["method"] == "mase" and saved["season"] == 24
    frame = hourly_frame(n_series=4, length=200)
    for sid, part in frame.groupby("unique_id"):
        history = part["y"].to_numpy()[:-HORIZON]  # the holdout's last horizon is unseen by the scaler
        expected = np.mean(np.abs(history[24:] - history[:-24]))
        assert saved["series"][sid] == [0.0, pytest.approx(expected, rel=1e-12)]
    loaded = LSTMForecaster.load(tmp_path / "mase")
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], model.predict(frame)["forecast"], rtol=1e-5)
