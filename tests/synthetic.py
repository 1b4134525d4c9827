"""Pipeline test support: small hourly series with a daily cycle, trend and noise; yearly series as users send
them; a tiny model config; a registry holding a trained tiny model; the `forecaster` command as installed."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd


def hourly_frame(n_series: int = 6, length: int = 240, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """A long frame (unique_id, ds, y) of ``n_series`` hourly series of ``length`` points."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    parts = []
    for s in range(n_series):
        level = rng.uniform(50, 500)
        daily = level * 0.3 * np.sin(2 * np.pi * (t + rng.integers(24)) / 24)
        y = level + daily + level * 0.001 * t + rng.normal(scale=level * 0.03, size=length)
        parts.append(pd.DataFrame({"unique_id": f"S{s}", "ds": pd.date_range(start, periods=length, freq="h"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True)


def ugly_yearly_frame() -> pd.DataFrame:
    """Yearly series as users send them: ids "001" and "NA" (strings that look like a number and a
    missing value), a falling series that crosses zero, one with zeros, one with a 1e9 spike, a 5-value
    series too short for the network at the last origin (the fallback's there), a 3-value one (too short
    to be backtested) and a 2-value one (too short for the network)."""
    rng = np.random.default_rng(3)
    n = 20
    ds = pd.date_range("1990-01-01", periods=n, freq="YS")
    series = {
        "001": 100.0 + 4.0 * np.arange(n) + rng.normal(0, 2, n),
        "NA": 50.0 + rng.normal(0, 5, n).cumsum(),
        "down": 30.0 - 3.0 * np.arange(n) + rng.normal(0, 1, n),  # negative from the 11th year
        "zeros": np.where(np.arange(n) % 4 == 0, 0.0, 5.0 + rng.normal(0, 1, n)),
        "spike": np.where(np.arange(n) == 9, 1e9, 200.0 + rng.normal(0, 3, n)),
        "flat": np.full(n, 7.0),  # no MASE scale
    }
    parts = [pd.DataFrame({"unique_id": sid, "ds": ds, "y": y}) for sid, y in series.items()]
    parts.append(pd.DataFrame({"unique_id": "short", "ds": ds[-5:], "y": [1.0, 2.0, 3.0, 2.0, 4.0]}))
    parts.append(pd.DataFrame({"unique_id": "tiny", "ds": ds[-3:], "y": [1.0, 2.0, 3.0]}))
    parts.append(pd.DataFrame({"unique_id": "pair", "ds": ds[-2:], "y": [4.0, 2.0]}))  # the fallback's at predict
    return pd.concat(parts, ignore_index=True)


def tiny_fit(frame: pd.DataFrame, *, freq: str, horizon: int, input_size: int, **options):
    """A forecaster with a tiny network fitted one epoch on ``frame`` (seed 0; ``options``: other
    settings): for tests of what a fitted model does with ugly series, not of how well it forecasts."""
    from forecaster.forecaster import LSTMForecaster
    from forecaster.models.keras_network import NetworkSpec

    return LSTMForecaster(horizon=horizon, input_size=input_size, freq=freq, network=NetworkSpec(units=4, head_units=8),
                          epochs=1, batch_size=32, verbose=0, seed=0, **options).fit(frame)


def ugly_training_run(frame: pd.DataFrame, tmp_path: Path, monkeypatch, *, freq: str, horizon: int,
                      windows: int, input_size: int):
    """A whole tiny training run (backtest, final fit, an MLflow run in a store under ``tmp_path``) on
    ``frame`` written as a CSV: the result and its MLflow run, for tests of what a run logs and keeps."""
    from mlflow import MlflowClient

    from forecaster.config import model_config_from_dict
    from pipelines.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "history.csv"
    frame.to_csv(data, index=False)
    config = model_config_from_dict({
        "model": {"name": "ugly", "horizon": horizon}, "data": {"source": str(data), "freq": freq},
        "network": {"units": 4, "head_units": 8}, "training": {"input_size": input_size, "epochs": 1, "batch_size": 32},
        "backtest": {"n_windows": windows, "step": horizon}})
    result = train(config, register=False, verbose=0)
    return result, MlflowClient().get_run(result.run_id)


def streaming_history(n_new: int = 0) -> pd.DataFrame:
    """`hourly_frame`'s six series (what `tiny_registry` trains on), ``n_new`` series never seen in training
    (60 to 109 hours), and one too short for the network (``SHORT``, 20 hours)."""
    parts = [hourly_frame()]
    for k in range(n_new):
        parts.append(hourly_frame(n_series=1, length=60 + k % 50, seed=100 + k).assign(unique_id=f"N{k:04d}"))
    parts.append(hourly_frame(n_series=1, length=20, seed=3).assign(unique_id="SHORT"))
    return pd.concat(parts, ignore_index=True)


def tiny_config(data_path, name: str = "tiny", margin: float = 0.0, epochs: int = 2, combine: str = "theta"):
    """A model config small enough to train in seconds: horizon 12, input 48, 8 units.

    Its network is averaged with Theta's forecasts, not the product's default ``"auto"``: the tests that
    use it are about pipelines, stores and processes, and ``"auto"`` here chooses the mean with the
    seasonal state-space smoothing, whose AICc search (~0.4 s of CPU for these series) then runs again in
    every prediction (each backtest window, the plots, each scheduled run, each streamed chunk). Every
    fit still scores all the members on its holdout whatever is asked; the choice itself is tested in
    tests/models/test_fitted_state.py. Theta keeps the combination's path (its member at prediction, its
    weights in the saved state) in every such test."""
    from forecaster.config import model_config_from_dict

    return model_config_from_dict({
        "model": {"name": name, "horizon": 12, "quantiles": [0.1, 0.5, 0.9], "combine": combine},
        "data": {"source": str(data_path), "freq": "h"},
        "network": {"units": 8, "head_units": 16},
        "training": {"input_size": 48, "epochs": epochs, "batch_size": 64, "patience": 2,
                     "max_windows_per_series": 40},
        "backtest": {"n_windows": 2, "step": 12},
        "promotion": {"metric": "mase", "margin": margin},
    })


@contextlib.contextmanager
def tiny_registry(root: Path, name: str = "tiny", combine: str = "theta") -> Iterator[tuple[str, Path]]:
    """A fresh MLflow store under ``root`` holding one trained version of ``name`` (`tiny_config`, its
    ``combine``) as champion.

    MLFLOW_TRACKING_URI points at it while the context is open; yields (tracking URI, training data).
    """
    import pytest

    from pipelines.train import train
    from tests import stores

    data = root / "history.csv"
    hourly_frame().to_csv(data, index=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        # Trained once per test session for each name and combination, copied into each root after that
        # (tests/stores.py): the key names everything the training differs by here.
        config = tiny_config(data, name=name, margin=-10.0, combine=combine)
        stores.trained_once(f"{name}-{combine}", root, lambda: train(config, verbose=0))
        yield uri, data


def cli_command() -> list[str]:
    """The installed `forecaster` console script (beside this interpreter), else the module."""
    script = Path(sys.executable).with_name("forecaster")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]
