"""Training is decided by the data's size, never by a clock: a seeded fit gives the same weights on an
idle and on a loaded machine (issue #27; the budget is `training.budget_windows`, forecaster/defaults.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forecaster.forecaster import LSTMForecaster
from forecaster.models.network_spec import NetworkSpec
from tests.synthetic import hourly_frame

ROOT = Path(__file__).resolve().parents[2]
# Where a clock may be read: not training. Each entry says why.
CLOCK_ALLOWED = {
    "forecaster/ops/locks.py": "how long a run waits for another run's lock, before any training",
    "pipelines/steps/fitting.py:EpochLines": "each epoch's log line prints how long it took; nothing reads it back",
}
CLOCKS = {"time", "perf_counter", "monotonic", "process_time", "thread_time", "time_ns", "perf_counter_ns",
          "monotonic_ns", "now", "utcnow", "today"}


def _fit() -> LSTMForecaster:
    """Epochs and windows per series derived from a small budget: 10 epochs of 20 windows a series; the
    weights kept are the moving average of the steps' (as a derived network's are: forecaster/defaults.py)."""
    return LSTMForecaster(horizon=12, freq="h", input_size=48, network=NetworkSpec(units=8, head_units=16),
                          budget_windows=600, patience=10, seed=7, verbose=0,
                          weight_average=1.0).fit(hourly_frame(n_series=3, length=300))


def test_a_seeded_fit_gives_the_same_weights_with_a_cpu_bound_process_beside_it():
    idle = _fit()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = _fit()
        assert spinner.poll() is None, "the CPU-bound process ran all through the second fit"
    finally:
        spinner.kill()
        spinner.wait()
    assert idle.resolved_ == loaded.resolved_
    assert (idle.resolved_.epochs, idle.resolved_.max_windows_per_series) == (10, 20)
    assert idle.history_ == loaded.history_ and len(idle.history_["loss"]) == 10
    weights = idle.model_.get_weights(), loaded.model_.get_weights()
    assert len(weights[0]) == len(weights[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def _clock_reads(path: Path) -> list[str]:
    """``time.<clock>()``/``datetime.now()``-like calls and ``from time import ...`` in one module, each
    with the class it stands in (``line N: time.monotonic in EpochLines``)."""
    found = []

    def visit(node: ast.AST, owner: str) -> None:
        if isinstance(node, ast.ClassDef):
            owner = node.name
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime") and any(
                alias.name in CLOCKS for alias in node.names):
            found.append((f"line {node.lineno}: from {node.module} import ...", owner))
        elif isinstance(node, ast.Attribute) and node.attr in CLOCKS and isinstance(
                node.value, ast.Name | ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if base in ("time", "datetime", "Timestamp", "date"):
                found.append((f"line {node.lineno}: {base}.{node.attr}", owner))
        for child in ast.iter_child_nodes(node):
            visit(child, owner)

    visit(ast.parse(path.read_text()), "")
    return found


def test_no_training_code_reads_a_clock():
    """The library and the training pipeline never read a clock (the former time-budget callback did),
    except where `CLOCK_ALLOWED` says why; Keras' own progress lines only print durations."""
    paths = [*sorted((ROOT / "forecaster").rglob("*.py")), ROOT / "pipelines" / "train.py",
             *sorted((ROOT / "pipelines" / "steps").glob("*.py"))]
    reads = {str(p.relative_to(ROOT)): _clock_reads(p) for p in paths}
    offenders = {p: [what for what, owner in r if p not in CLOCK_ALLOWED and f"{p}:{owner}" not in CLOCK_ALLOWED]
                 for p, r in reads.items()}
    assert {p: r for p, r in offenders.items() if r} == {}
    assert reads["forecaster/ops/locks.py"], "the scan finds the clock reads it is meant to find"
    assert {owner for _, owner in reads["pipelines/steps/fitting.py"]} == {"EpochLines"}, "and where they stand"


@pytest.mark.slow
def test_two_seeded_trainings_save_the_same_bytes_in_every_file_the_manifest_lists(tmp_path):
    """Keras wrote the save's date, the zip entries' clock times and each shared object's ``id()`` into
    ``network.keras``, and its optimizer's name counted up in a process (``adam_1``): the manifest's SHA-256
    of the same weights differed between two seeded trainings (`forecaster.models.keras_file`)."""
    import json
    import time

    from tests.synthetic import tiny_fit

    frame = hourly_frame(n_series=2, length=120)
    fits = []
    for k, ensemble in enumerate((1, 1, 2, 2)):
        fits.append(tiny_fit(frame, freq="h", horizon=6, input_size=24, ensemble=ensemble))
        fits[-1].save(tmp_path / f"m{k}")
        time.sleep(1.1)  # Keras' date and the zip times are to the second: the saves differ in the clock
    for first, second in (("m0", "m1"), ("m2", "m3")):
        manifest = json.loads((tmp_path / first / "manifest.json").read_text())
        assert sorted(manifest) == ["forecaster.json", "network.keras", "scaler.json"]
        for name in manifest:
            assert (tmp_path / first / name).read_bytes() == (tmp_path / second / name).read_bytes(), (first, name)
        assert (tmp_path / first / "manifest.json").read_bytes() == (tmp_path / second / "manifest.json").read_bytes()
    # The rewritten archive loads through the manifest's check and forecasts as the saved one did.
    loaded = LSTMForecaster.load(tmp_path / "m2")
    np.testing.assert_allclose(loaded.predict(frame)["forecast"], fits[2].predict(frame)["forecast"], rtol=1e-6)
