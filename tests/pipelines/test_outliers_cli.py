"""Issue #27: one huge reading never gives a huge wrong forecast with exit 0. Through the command a user
runs (`forecaster train --data`, then `forecaster predict` with the registered model), with real
TensorFlow and a real MLflow store: the spike is treated at fit and at predict, counted on the CLI's
lines and as the run's metric, and the forecasts stay within the clean series' range; models saved
before the treatment existed load and predict as before."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from forecaster.forecaster import LSTMForecaster
from forecaster.models.keras_network import NetworkSpec
from forecaster.ops.integrity import sha256
from pipelines.cli import EXIT_DATA, EXIT_OK, main
from tests.synthetic import hourly_frame

pytestmark = pytest.mark.slow

HORIZON = 12


def _within_clean_range(forecast: pd.DataFrame, clean: pd.DataFrame, sid: str) -> None:
    """The series' forecasts lie within its clean history's range, widened by half that range."""
    y = clean.loc[clean.unique_id == sid, "y"]
    low, high = y.min() - 0.5 * (y.max() - y.min()), y.max() + 0.5 * (y.max() - y.min())
    values = forecast.loc[forecast.unique_id == sid, ["forecast", "q0.1", "q0.9"]].to_numpy()
    assert np.isfinite(values).all() and (values >= low).all() and (values <= high).all(), (sid, low, high,
                                                                                           values.min(), values.max())


def test_a_spike_through_train_and_predict(tmp_path, monkeypatch, capsys):
    clean = hourly_frame(n_series=3, length=240)
    spiked = clean.copy()
    spiked.loc[(spiked.unique_id == "S0").to_numpy().nonzero()[0][120], "y"] = 1e12  # inside the history
    data = tmp_path / "spiky.csv"
    spiked.to_csv(data, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code = main(["train", "--data", str(data), "--horizon", str(HORIZON), "--freq", "h", "--epochs", "2",
                 "--budget-windows", "2000", "--quiet"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err[-3000:]
    assert "outliers: 1 reading(s)" in out and "S0 (1)" in out
    run = mlflow.search_runs(experiment_names=["spiky"], output_format="list")[0]
    assert run.data.metrics["data.outlier_readings"] == 1.0

    # At predict time: the trained spike, one at the last reading of S1 (the forecast's starting
    # point, never seen in training) and a negative one in S2.
    history = spiked.copy()
    history.loc[(history.unique_id == "S1").to_numpy().nonzero()[0][-1], "y"] = 3e11
    history.loc[(history.unique_id == "S2").to_numpy().nonzero()[0][200], "y"] = -5e10
    given = tmp_path / "history.csv"
    history.to_csv(given, index=False)
    output = tmp_path / "forecast.csv"
    code = main(["predict", "--model", "models:/spiky/1", "--input", str(given), "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err[-3000:]
    assert "outlier_readings=3" in out
    forecast = pd.read_csv(output)
    for sid in ("S0", "S1", "S2"):
        _within_clean_range(forecast, clean, sid)

    # Three out-of-range readings ending a series: a new level or a broken sensor: exit 3 naming them,
    # no output written.
    history.loc[(history.unique_id == "S1").to_numpy().nonzero()[0][-3:], "y"] = 3e11
    history.to_csv(given, index=False)
    ambiguous = tmp_path / "ambiguous.csv"
    code = main(["predict", "--model", "models:/spiky/1", "--input", str(given), "--output", str(ambiguous)])
    out, err = capsys.readouterr()
    assert code == EXIT_DATA and not ambiguous.exists()
    assert "S1" in err and 'outliers = "keep"' in err and "Traceback" not in err


def test_keep_reproduces_the_huge_forecast_the_treatment_prevents(tmp_path):
    """The same model with ``outliers = "keep"`` forecasts the spiked series far outside its range: the
    test above can fail."""
    clean = hourly_frame(n_series=3, length=240)
    spiked = clean.copy()
    spiked.loc[(spiked.unique_id == "S0").to_numpy().nonzero()[0][-1], "y"] = 1e12
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                           epochs=1, batch_size=64, max_windows_per_series=20, verbose=0).fit(clean)
    treated = model.predict(spiked)
    assert treated.attrs["outlier_readings"] == 1
    _within_clean_range(treated, clean, "S0")
    kept = model.set_params(outliers="keep").predict(spiked)
    assert kept.attrs["outlier_readings"] == 0
    assert kept.loc[kept.unique_id == "S0", "forecast"].abs().max() > 1e6


def test_a_model_saved_before_the_treatment_loads_and_predicts_the_same(tmp_path):
    """A folder whose parameters have no ``outliers`` (saved before this change) loads with the
    treatment on, and on clean data predicts exactly what it predicted before (nothing is treated)."""
    frame = hourly_frame(n_series=3, length=160)
    model = LSTMForecaster(horizon=HORIZON, input_size=48, freq="h", network=NetworkSpec(units=8, head_units=16),
                           epochs=1, batch_size=64, max_windows_per_series=10, verbose=0, outliers="keep")
    path = model.fit(frame).save(tmp_path / "old")
    meta = json.loads((path / "forecaster.json").read_text())
    for key in ("outliers", "outlier_threshold"):
        del meta["params"][key]
    (path / "forecaster.json").write_text(json.dumps(meta))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["forecaster.json"] = sha256(path / "forecaster.json")
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = LSTMForecaster.load(path)
    assert loaded.outliers == "interpolate"
    before, after = model.predict(frame), loaded.predict(frame)
    assert after.attrs["outlier_readings"] == 0
    pd.testing.assert_frame_equal(before, after)
