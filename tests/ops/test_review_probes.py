"""Review probes of issue #29 part B: what a model folder or a request could still cost before the
checks refuse it. Real files (sparse files, named pipes), a real MLflow store holding the folder's
record, and the real quantile matching that `forecaster predict` and the server use."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from forecaster.errors import ConfigError, ModelError
from forecaster.forecaster import requested_quantiles
from forecaster.ops.integrity import CODE_FILE, CODE_LOADER, MODEL_HASHES_TAG, artifact_hashes, sha256

TRAINED = (0.1, 0.5, 0.9)


# --------------------------------------------------------------------------- quantiles asked for


def test_a_million_quantiles_are_matched_at_once_in_trained_order():
    # A served request's params may list a million entries in 4 MB of JSON: each one matched by a Python
    # loop of np.isclose took 17 s per 100,000 (a worker thread the server cannot stop).
    wanted = np.full(10**6, 0.9)
    wanted[::2] = 0.1 + 1e-12  # equal within np.isclose's tolerance, as before
    assert requested_quantiles(TRAINED, wanted.tolist()) == (0.1, 0.9)
    assert requested_quantiles(TRAINED, None) == TRAINED
    assert requested_quantiles(TRAINED, ["0.5"]) == (0.5,)  # what float() took before


def test_untrained_quantiles_are_named_five_at_most_and_text_is_a_config_error():
    with pytest.raises(ConfigError, match=r"quantiles \[0\.3, 0\.3, 0\.3, 0\.3, 0\.3 and 999995 more\] were not "
                                          r"trained; available: \[0\.1, 0\.5, 0\.9\]"):
        requested_quantiles(TRAINED, [0.3] * 10**6)
    with pytest.raises(ConfigError, match=r"quantiles must be numbers, got \['median'\]"):
        requested_quantiles(TRAINED, ["median"])


# --------------------------------------------------------------------------- model folders


def test_a_file_is_hashed_in_chunks_whatever_its_size(tmp_path):
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as file:
        file.truncate(256 * 2**20)  # 256 MiB of holes: read whole, it would be 256 MiB of memory
    tracemalloc.start()
    try:
        digest = sha256(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484"  # sha256 of 256 MiB of 0
    assert peak < 16 * 2**20


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A folder shaped as ours (MLmodel, code file, one artifact) whose every file is recorded in a run
    of a real MLflow store, as `log_model` records them: what the checks before the copy look at."""
    from forecaster.ops import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.configure()
    root = tmp_path / "model"
    (root / "artifacts" / "forecaster").mkdir(parents=True)
    (root / "artifacts" / "forecaster" / "forecaster.json").write_text("{}")
    (root / CODE_FILE).write_text("# the models-from-code file\n")
    with mlflow.start_run() as run:
        pyfunc = {"loader_module": CODE_LOADER, "model_code_path": CODE_FILE,
                  "artifacts": {"forecaster": {"path": "artifacts/forecaster"}}}
        (root / "MLmodel").write_text(yaml.safe_dump({"run_id": run.info.run_id,
                                                      "flavors": {"python_function": pyfunc}}))
        mlflow.set_tag(MODEL_HASHES_TAG, json.dumps(artifact_hashes(root)))
    return root


def test_the_intact_folder_passes_and_its_download_metadata_is_not_copied(folder, tmp_path):
    from pipelines.steps import fetch_verified

    (folder / "registered_model_meta").write_text("model_name: x\n")  # MLflow's, in no record
    copy = Path(fetch_verified(str(folder), tmp_path / "copy"))
    assert sorted(artifact_hashes(copy)) == ["MLmodel", "artifacts/forecaster/forecaster.json", CODE_FILE]


def test_an_added_file_of_any_size_is_refused_before_it_is_copied(folder, tmp_path):
    from pipelines.steps import fetch_verified

    with open(folder / "artifacts" / "huge.bin", "wb") as file:
        file.truncate(8 * 2**30)  # 8 GiB of holes: copied, it would be 8 GiB written; hashed whole, 8 GiB read
    into = tmp_path / "copy"
    with pytest.raises(ModelError, match=r"files \['artifacts/huge.bin'\] differ from the SHA-256 recorded"):
        fetch_verified(str(folder), into)
    assert not into.exists()


def test_a_named_pipe_is_refused_by_name_before_anything_reads_it(folder, tmp_path):
    from pipelines.steps import fetch_verified

    os.mkfifo(folder / "artifacts" / "forecaster" / "pipe")  # copied or hashed, it would block or fail
    into = tmp_path / "copy"
    with pytest.raises(ModelError, match=r"files \['artifacts/forecaster/pipe'\] differ"):
        fetch_verified(str(folder), into)
    assert not into.exists()


def test_an_mlmodel_over_a_mebibyte_is_not_read(folder):
    from pipelines.steps import fetch_verified

    with open(folder / "MLmodel", "a") as file:
        file.write("#" * 2**21 + "\n")
    with pytest.raises(ModelError, match=r"its MLmodel is \d+ bytes, ours is a few thousand: not a forecaster"):
        fetch_verified(str(folder), folder.parent / "copy")


# --------------------------------------------------------------------------- the startup hook


@pytest.mark.slow  # a process importing TensorFlow
def test_with_the_startup_hook_looking_tensorflow_up_imports_nothing_and_its_import_stays_quiet_and_lean(tmp_path):
    # Libraries ask importlib.util.find_spec("tensorflow") whether it is installed (mlflow.transformers
    # does): with the hook in the environment that imported all of TensorFlow (10 s) in any program.
    import subprocess
    import sys

    from forecaster.quiet import install_startup_hook

    install_startup_hook(tmp_path)
    code = (f"import site; site.addsitedir({str(tmp_path)!r})\n"
            "import importlib.util, sys\n"
            "spec = importlib.util.find_spec('tensorflow')\n"
            "print(spec is not None, 'tensorflow' in sys.modules)\n"
            "import tensorflow\n"
            "print(type(tensorflow.__spec__.loader).__name__, type(tensorflow.__loader__).__name__)\n"
            # Keras' unused submodules (the legacy tf.keras API, scikit-learn's wrappers, pyplot's gallery)
            # are left unexecuted by the import, and still there when asked for.
            "print([m in sys.modules for m in ('keras._tf_keras.keras', 'sklearn', 'matplotlib.pyplot')])\n"
            "import keras\n"
            "print(tensorflow.keras.layers.Dense is keras.layers.Dense, keras.wrappers.SKLearnRegressor.__name__,\n"
            "      'sklearn' in sys.modules, callable(keras.visualization.plot_image_gallery))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["True False", "SourceFileLoader SourceFileLoader", "[False, False, False]",
                                        "True SKLearnRegressor True True"]
    assert done.stderr == ""


@pytest.mark.slow  # a process importing Keras and its backend
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_with_the_startup_hook_keras_imports_under_the_other_backends(tmp_path, backend):
    # The hook makes Keras' unused submodules lazy only when TensorFlow imports Keras: under torch, torch's
    # own import (inside Keras') reads every module in sys.modules, and a lazy one executed then was a
    # circular import: `import keras` failed with KERAS_BACKEND=torch.
    import subprocess
    import sys

    from forecaster.quiet import install_startup_hook

    install_startup_hook(tmp_path)
    code = (f"import site; site.addsitedir({str(tmp_path)!r})\n"
            "import keras\n"
            "from forecaster.layers import LSTM\n"
            "import numpy as np\n"
            "out = LSTM(3)(np.ones((2, 4, 5), dtype='float32'))\n"
            "print(keras.backend.backend(), tuple(out.shape))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "KERAS_BACKEND": backend}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [backend, "(2,", "3)"]
