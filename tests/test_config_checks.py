"""Wrong-typed and out-of-range parameters: one `ConfigError` naming the key, before any work starts."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from forecaster.config import load_config, model_config_from_dict
from forecaster.errors import ConfigError
from forecaster.forecaster import LSTMForecaster
from forecaster.models.network_spec import NetworkSpec
from forecaster.params import PARAMS, REQUIRED, param
from pipelines.cli import EXIT_CONFIG, main
from tests.synthetic import hourly_frame


def _config(**sections) -> dict:
    raw = {"model": {"name": "m", "horizon": 6}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
    return raw


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"training": {"epochs": "ten"}}, "[training] epochs must be an integer or none, got 'ten'"),
        ({"model": {"horizon": "twenty"}}, "[model] horizon must be an integer, got 'twenty'"),
        ({"training": {"learning_rate": "fast"}}, "[training] learning_rate must be a number, got 'fast'"),
        ({"network": {"units": -4}}, "[network] units must be a positive integer, got -4"),
        ({"training": 5}, "[training] must be a table of keys, got 5"),
        ({"model": 5}, "[model] must be a table of keys, got 5"),
        ({"training": {"epochs": 0}}, "[training] epochs must be a positive integer, got 0"),
        ({"training": {"epochs": 2.5}}, "[training] epochs must be an integer or none, got 2.5"),
        ({"training": {"learning_rate": 0}}, "[training] learning_rate must be a number > 0, got 0"),
        ({"training": {"patience": -1}}, "[training] patience must be an integer >= 0, got -1"),
        ({"network": {"dropout": 1.0}}, "[network] dropout must be a number in [0, 1), got 1.0"),
        ({"network": {"layer_norm": "yes"}}, "[network] layer_norm must be true or false, got 'yes'"),
        ({"data": {"static": "store"}}, "[data] static must be a list of strings, got 'store'"),
        ({"backtest": {"n_windows": 0}}, "[backtest] n_windows must be a positive integer, got 0"),
        ({"backtest": {"step": 0}}, "[backtest] step must be a positive integer, got 0"),
        ({"promotion": {"margin": "high"}}, "[promotion] margin must be a number, got 'high'"),
        ({"training": {"final_fit": "hot"}}, "[training] final_fit must be one of auto, warm, full, got 'hot'"),
        ({"training": {"final_epochs": 0}}, "[training] final_epochs must be a positive integer, got 0"),
    ],
)
def test_each_wrong_value_names_its_key_and_what_it_must_be(sections, message):
    raw = _config(**{k: v for k, v in sections.items() if k != "model"})
    if "model" in sections:
        raw["model"] = sections["model"] if not isinstance(sections["model"], dict) else {
            **raw["model"], **sections["model"]}
    with pytest.raises(ConfigError) as caught:
        model_config_from_dict(raw)
    assert str(caught.value) == message


def test_quantiles_outside_zero_one_are_refused_in_the_config_and_the_python_api():
    with pytest.raises(ConfigError, match=r"quantiles must be a list of numbers strictly between 0 and 1"):
        model_config_from_dict({"model": {"name": "m", "horizon": 6, "quantiles": [0.0, 1.5]}})
    with pytest.raises(ConfigError, match=r"quantiles .* got \(0.0, 1.5\)"):
        LSTMForecaster(horizon=6, quantiles=(0.0, 1.5)).fit(hourly_frame(n_series=2, length=100))


@pytest.mark.parametrize(("sections", "message"), [
    ({"model": {"quantiles": [0.5, 0.1, 0.5]}}, "[model] quantiles must be a list of numbers strictly between 0 and 1, "
                                                "each once, got [0.5, 0.1, 0.5]"),
    ({"training": {"learning_rate": float("inf")}}, "[training] learning_rate must be a number > 0, got inf"),
    ({"promotion": {"margin": float("nan")}}, "[promotion] margin must be a finite number below 1, got nan"),
    ({"promotion": {"margin": 1.0}}, "[promotion] margin must be a finite number below 1, got 1.0"),
])
def test_duplicated_quantiles_and_non_finite_numbers_are_refused_naming_the_key(sections, message):
    # A quantile twice made two output columns of one name; an infinite learning rate trained a network of
    # NaN; a NaN margin never promoted (every comparison with NaN is false), without a word.
    with pytest.raises(ConfigError) as caught:
        model_config_from_dict(_config(**sections))
    assert str(caught.value) == message


@pytest.mark.parametrize(("param", "value", "message"), [
    ("quantiles", (0.5, 0.5), "quantiles must be a list of numbers strictly between 0 and 1, each once"),
    ("learning_rate", float("inf"), "learning_rate must be a number > 0, got inf"),
    ("network", {"units": 4}, "network must be a NetworkSpec or None, got {'units': 4}"),
    ("columns", "y", "columns must be a Columns or None, got 'y'"),
])
def test_the_python_api_refuses_duplicates_infinities_and_wrong_sections_before_reading_the_data(param, value,
                                                                                                 message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        LSTMForecaster(horizon=6, **{param: value}).fit("not even a frame")


@pytest.mark.parametrize(("param", "value"), [("epochs", -3), ("epochs", 0), ("batch_size", "big"),
                                              ("learning_rate", -1.0), ("horizon", 0)])
def test_the_python_api_refuses_bad_parameters_before_reading_the_data(param, value):
    forecaster = LSTMForecaster(**{"horizon": 6, param: value})
    with pytest.raises(ConfigError, match=param):
        forecaster.fit("not even a frame")  # the parameters are checked first


def test_integers_where_numbers_are_asked_are_taken_as_numbers():
    config = model_config_from_dict(_config(training={"learning_rate": 1}, promotion={"margin": 0}))
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)


@pytest.mark.parametrize("key", ["learning_rate", "weight_average"])
def test_an_integer_beyond_any_float_is_refused_naming_the_key(key):
    """TOML's integers (tomllib's) and Python's have no bound: float(10**400) raised OverflowError, a
    traceback and exit 1 instead of the key's line and exit 2."""
    with pytest.raises(ConfigError, match=rf"\[training\] {key} must be a (finite )?number"):
        model_config_from_dict(_config(training={key: 10**400}))
    with pytest.raises(ConfigError, match=key):
        LSTMForecaster(horizon=6, freq="h", **{key: -10**400}).fit(hourly_frame(n_series=2, length=100))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--epochs", "-3"], "--epochs must be a positive integer, got -3"),
        (["--horizon", "0"], "[model] horizon must be a positive integer, got 0"),
        (["--budget-windows", "0"], "--budget-windows must be a positive integer, got 0"),
    ],
)
def test_cli_flags_out_of_range_exit_2_and_touch_no_store(argv, message, tmp_path, monkeypatch, capsys):
    store = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    data = tmp_path / "shop.csv"
    hourly_frame(n_series=2, length=100).to_csv(data, index=False)
    args = ["train", "--data", str(data), "--quiet"]
    args += argv if "--horizon" in argv else ["--horizon", "6", *argv]
    assert main(args) == EXIT_CONFIG
    assert message in capsys.readouterr().err
    assert not store.exists(), "a refused configuration must not create the MLflow store"


def test_data_only_flags_beside_a_config_file_exit_2_instead_of_being_ignored(tmp_path, monkeypatch, capsys):
    # The config's horizon used to win without a word: `train models/x.toml --horizon 48` trained 6 steps.
    store = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    path = tmp_path / "m.toml"
    path.write_text('[model]\nname = "m"\nhorizon = 6\n[data]\nsource = "absent.csv"\n')
    assert main(["train", str(path), "--horizon", "48", "--name", "x", "--quiet"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--horizon and --name only go with --data" in err and "Traceback" not in err
    assert not store.exists()


def test_a_config_file_with_a_wrong_type_exits_2_before_any_run(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    path = tmp_path / "m.toml"
    path.write_text('[model]\nname = "m"\nhorizon = 6\n[training]\nepochs = "ten"\n')
    with pytest.raises(ConfigError, match="epochs"):
        load_config(path)
    assert main(["train", str(path), "--quiet"]) == EXIT_CONFIG
    assert "[training] epochs must be an integer or none, got 'ten'" in capsys.readouterr().err
    assert not store.exists()


def test_the_former_time_budget_in_a_config_file_exits_2_saying_what_to_use(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    path = tmp_path / "m.toml"
    path.write_text('[model]\nname = "m"\nhorizon = 6\n[training]\ntime_budget = 150\n')
    assert main(["train", str(path), "--quiet"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "[training] time_budget is no longer a parameter" in err and "set budget_windows" in err
    assert "Traceback" not in err and not store.exists()


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("training", "point_loss", "huber", "point_loss must be one of mae, mse, got 'huber'"),
    ("training", "scaler", "zscore",
     "scaler must be one of standard, robust, minmax, mean_abs, mase, none, got 'zscore'"),
    ("training", "lr_schedule", "linear", "lr_schedule must be one of constant, cosine, got 'linear'"),
    ("network", "units", -4, "units must be a positive integer, got -4"),
    ("network", "head_units", 0, "head_units must be a positive integer, got 0"),
])
def test_choices_and_network_sizes_exit_2_naming_the_key_before_any_run(section, key, value, message, tmp_path,
                                                                        monkeypatch, capsys):
    """Once checked only when the network compiled (a ValueError, exit 1, its MLflow run begun) or when
    the scaler was built after validation: now the config refuses them, as the Python API does."""
    store = tmp_path / "store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    path = tmp_path / "m.toml"
    path.write_text(f'[model]\nname = "m"\nhorizon = 6\n[data]\nsource = "absent.csv"\n'
                    f'[{section}]\n{key} = {value!r}\n'.replace("'", '"'))
    assert main(["train", str(path), "--quiet"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"configuration error: [{section}] {message}" in err and "Traceback" not in err
    assert not store.exists(), "refused before the store is opened (and before absent.csv is read)"


@pytest.mark.parametrize(("param", "value", "message"), [
    ("point_loss", "huber", "point_loss must be one of mae, mse, got 'huber'"),
    ("scaler", "zscore", "scaler must be one of standard, robust"),
    ("lr_schedule", "linear", "lr_schedule must be one of constant, cosine, got 'linear'"),
    ("combine", "median", "combine must be one of auto, "),
    ("missing_policy", "drop", "missing_policy must be one of error, fill, mask, got 'drop'"),
    ("verbose", 3, "verbose must be one of 0, 1, 2, got 3"),
])
def test_the_python_api_refuses_bad_choices_before_reading_the_data(param, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        LSTMForecaster(horizon=6, **{param: value}).fit("not even a frame")


def test_a_network_spec_with_a_wrong_size_is_refused_when_built_from_python():
    with pytest.raises(ConfigError, match=re.escape("[network] units must be a positive integer, got -4")):
        NetworkSpec(units=-4)
    with pytest.raises(ConfigError, match=re.escape("[network] dropout must be a number in [0, 1), got 1.5")):
        replace(NetworkSpec(), dropout=1.5)  # a replaced value is checked too
    assert NetworkSpec(units=np.int64(8)).units == 8 and type(NetworkSpec(units=np.int64(8)).units) is int


def test_every_section_default_is_the_tables_and_each_default_passes_its_own_check():
    config = model_config_from_dict(_config())
    for p in PARAMS:
        if p.section in ("model", "estimator") or p.default is REQUIRED:
            continue
        section = NetworkSpec() if p.section == "network" else getattr(config, p.section)
        assert getattr(section, p.name) == p.default, f"{p.section}.{p.name}"
        assert p.check(p.default) == p.default
    assert config.quantiles == param("model", "quantiles").default
    assert config.combine == param("model", "combine").default
