"""Config round trips and `.keras` files loaded with safe_mode=True in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from forecaster.layers import LSTM, LSTMCell

pytestmark = pytest.mark.layer


def test_config_round_trip_keeps_every_argument():
    layer = LSTM(7, activation="relu", recurrent_activation="hard_sigmoid", use_bias=False,
                 unit_forget_bias=False, kernel_regularizer="l2", dropout=0.1, recurrent_dropout=0.2,
                 seed=3, return_sequences=True, return_state=True, go_backwards=True, stateful=False,
                 unroll=True, layer_norm=True, peephole=True, proj_size=3, name="enc")
    config = layer.get_config()
    json.dumps(config)  # JSON-safe
    clone = LSTM.from_config(config)
    assert clone.get_config() == config
    assert (clone.units, clone.proj_size, clone.dropout, clone.go_backwards) == (7, 3, 0.1, True)
    cell = LSTMCell.from_config(layer.cell.get_config())
    assert cell.get_config() == layer.cell.get_config()


def test_config_of_keras_lstm_builds_our_layer():
    # A Keras LSTM's config is a valid config for ours: the swap works for saved configs too.
    config = keras.layers.LSTM(5, return_sequences=True, dropout=0.2).get_config()
    layer = LSTM.from_config(config)
    assert layer.units == 5 and layer.return_sequences and layer.dropout == 0.2


@pytest.mark.slow  # a process importing TensorFlow
def test_keras_file_loads_in_a_fresh_process_in_safe_mode(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 6, 2)).astype("float32")
    inputs = keras.Input((6, 2))
    h = LSTM(4, return_sequences=True, layer_norm=True)(inputs)
    h = keras.layers.Bidirectional(LSTM(3, peephole=True, proj_size=2))(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", np.asarray(model(x)))
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import forecaster.layers  # registers the classes; nothing else is needed
        model = keras.saving.load_model({str(path)!r}, safe_mode=True)
        got = np.asarray(model(np.load({str(tmp_path / 'x.npy')!r})))
        np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-6)
        print("loaded", type(model.layers[1]).__module__)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded forecaster.layers.lstm" in result.stdout
