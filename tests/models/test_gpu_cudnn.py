"""GPU validation against Keras' cuDNN LSTM; skipped cleanly where no GPU is visible."""

from __future__ import annotations

import pytest

from bench.validate_gpu import CASES, compare_case, gpu_name

pytestmark = [pytest.mark.gpu, pytest.mark.layer]


@pytest.fixture(scope="module")
def gpu():
    name = gpu_name()
    if name is None:
        pytest.skip("no GPU visible to Keras: the cuDNN comparison needs one")
    return name


@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-u{}-masked{}-seq{}".format(*c))
def test_matches_keras_cudnn_lstm(gpu, case):
    timesteps, units, masked, return_sequences = case
    result = compare_case(timesteps, units, 32, 8, masked, return_sequences)
    assert result["ok"], result
