"""Fits a small network around our LSTM layer and writes its weights and losses to ``argv[1]`` (.npz).

Run by tests/models/test_distributed.py: once per worker with ``TF_CONFIG`` (under
`MultiWorkerMirroredStrategy`, through `forecaster.models.distribute`) and once without (one process), on the
same data, initial weights and global batch. Inputs are masked (leading steps padded), so the fused
loop's masked path and its hand-written gradient both run under the strategy.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from forecaster.models import distribute

NAME = "multi_worker" if os.environ.get("TF_CONFIG") else "none"
strategy = distribute.strategy(NAME)

import keras  # noqa: E402

from forecaster.layers import LSTM  # noqa: E402

keras.utils.set_random_seed(3)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 24, 3)).astype("float32")
x[::3, :6] = 0.0  # a third of the windows padded on the left (masked out)
y = np.stack([x[:, -1, 0] * 2 + x[:, -2, 1], x[:, -3:, 2].sum(axis=1)], axis=1).astype("float32")
import tensorflow as tf  # noqa: E402

data = distribute.shard_by_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), NAME)
with strategy.scope():
    layer = LSTM(16, name="ours")
    model = keras.Sequential([keras.Input((24, 3)), keras.layers.Masking(0.0), layer, keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0), loss="mae")
distribute.prepare_model(model, NAME)
assert layer._own_loop() == "tensorflow", "the layer must take its fused loop, not Keras' generic one"
history = model.fit(data, epochs=2, verbose=0, validation_data=data, shuffle=False)
weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
np.savez(sys.argv[1], loss=np.array(history.history["loss"]), val_loss=np.array(history.history["val_loss"]),
         predictions=np.asarray(model(x[:32], training=False)), **weights)
