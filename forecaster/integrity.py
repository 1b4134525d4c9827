"""SHA-256 records of model files, written when a model is saved or logged and checked before it loads.

Two records: a saved forecaster folder's ``manifest.json`` (its network, scaler and description, checked
by `LSTMForecaster.load` wherever it loads), and a logged MLflow model's tag `MODEL_HASHES_TAG` on its
run (every file of the model, checked by `forecaster predict` before loading). The tag lives in the
tracking store, not beside the files, so whoever can write the artifact store cannot make a replaced
file pass.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODEL_HASHES_TAG = "forecaster.model_sha256"
# Written by MLflow itself when it downloads a model, so never part of the logged record.
DOWNLOAD_METADATA = frozenset({"registered_model_meta"})


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of one file, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def artifact_hashes(model_dir: str | os.PathLike) -> dict[str, str]:
    """{relative path: SHA-256} of every file under a folder but MLflow's own download metadata."""
    root = Path(model_dir)
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and str(p.relative_to(root)) not in DOWNLOAD_METADATA}


def changed_files(expected: dict[str, str], folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that differ from ``expected``: changed, missing or added."""
    found = artifact_hashes(folder)
    names = (expected.keys() | found.keys()) - DOWNLOAD_METADATA
    return sorted(k for k in names if expected.get(k) != found.get(k))
