"""The network's Keras file, written byte for byte the same for the same network and weights.

Keras writes a ``.keras`` archive (a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``)
that differs between two saves of identical weights: ``metadata.json`` holds the save's time
(``date_saved``), the weights' zip entry the save's clock, and ``config.json`` each shared object's
``shared_object_id``, which is the Python ``id()`` of the object in the saving process. A saved
forecaster's ``manifest.json`` records the SHA-256 of its files, so two seeded trainings of one model
showed different hashes for the same weights, and a user comparing them by hash saw them differ.

`save_network` lets Keras write its archive, then rewrites it from its own entries, in Keras' order:
``date_saved`` left out of the metadata (nothing reads it: loading reads ``config.json`` and the
weights), the shared objects numbered 1, 2, ... in order of first appearance (loading uses the number only
to tell which references are one object), every entry stamped 1980-01-01 00:00 (the zip format's first
time) with one set of permissions. The weights' bytes are Keras' own. Nothing of Keras is patched, and
the rewritten file loads with ``keras.saving.load_model`` in safe mode like any other (no code, no pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from forecaster.data.io import temporary

#: The zip format's earliest time: every entry's, so that the archive does not depend on the clock.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ENTRY_MODE = 0o644 << 16


def _numbered(node: Any, numbers: dict[int, int]) -> Any:
    """``node`` (a parsed ``config.json``) with every ``shared_object_id`` renumbered by first appearance."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "shared_object_id" and isinstance(value, int):
                out[key] = numbers.setdefault(value, len(numbers) + 1)
            else:
                out[key] = _numbered(value, numbers)
        return out
    if isinstance(node, list):
        return [_numbered(value, numbers) for value in node]
    return node


def _entry(name: str, data: bytes) -> bytes:
    """An archive entry's bytes as written here: the metadata without its date, the configuration with
    its shared objects numbered; anything else as Keras wrote it."""
    if name == "metadata.json":
        meta = json.loads(data)
        meta.pop("date_saved", None)
        return json.dumps(meta).encode()
    if name == "config.json":
        return json.dumps(_numbered(json.loads(data), {})).encode()
    return data


def canonical_archive(source: Path, target: Path) -> None:
    """Write ``target``: the Keras archive ``source`` with no trace of when or in which process it was
    written (see the module's text)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            entry.compress_type = info.compress_type
            entry.external_attr = _ENTRY_MODE
            zout.writestr(entry, _entry(info.filename, zin.read(info)))


def save_network(model: Any, path: str | os.PathLike) -> Path:
    """Save the Keras ``model`` to ``path`` (a ``.keras`` file), the same bytes for the same network and
    weights whenever and wherever it is saved; returns ``path``."""
    path = Path(path)
    folder = tempfile.mkdtemp(prefix="forecaster-network-")
    with temporary(folder):  # a signal's handler removes it (`forecaster.data.io.remove_temporaries`)
        try:
            written = Path(folder) / "network.keras"
            model.save(written)
            canonical_archive(written, path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return path
