"""SHA-256 records of model files, written when a model is saved or logged and checked before it loads.

Two records: a saved forecaster folder's ``manifest.json`` (its network, scaler and description, checked
by `LSTMForecaster.load` wherever it loads), and a logged MLflow model's tag `MODEL_HASHES_TAG` on its
run (every file of the model, checked by `forecaster predict` before loading). The tag lives in the
tracking store, not beside the files, so whoever can write the artifact store cannot make a replaced
file pass. And the shape of a model folder of ours (`saved_forecaster`), checked from its files alone
before anything of it is loaded: which loader, which artifact, where.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODEL_HASHES_TAG = "forecaster.model_sha256"
# Written by MLflow itself when it downloads a model, so never part of the logged record.
DOWNLOAD_METADATA = frozenset({"registered_model_meta"})


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of one file, hex; read in chunks, so a file of any size costs no memory."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


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


def unlisted_entries(expected: dict[str, str], folder: str | os.PathLike) -> list[str]:
    """The entries of ``folder`` that ``expected`` cannot match, from its listing alone (nothing read):
    files missing or added, and anything neither a regular file nor a folder (a link, a pipe, a device).
    Checked before a folder is copied, so that an added file of any size is refused without a byte of it
    copied or hashed."""
    root = Path(folder)
    found, odd = set(), set()
    for p in root.rglob("*"):
        name = str(p.relative_to(root))
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            odd.add(name)
        elif p.is_file():
            found.add(name)
    return sorted(((expected.keys() ^ found) - DOWNLOAD_METADATA) | odd)


# --------------------------------------------------------------------------- model folders

#: How every model of ours is logged: MLflow's models-from-code loader, our code file, one artifact.
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
CODE_FILE = "mlflow_model.py"
FORECASTER_ARTIFACT = "forecaster"
MLMODEL_MAX_BYTES = 2**20  # ours is ~3 KB: a larger one is not read into memory at all


def _refuse(folder: Path | str, why: str) -> None:
    from forecaster.errors import ModelError

    raise ModelError(f"{folder}: {why}: not a forecaster model folder, refusing to load it")


def read_mlmodel(folder: str | os.PathLike, name: str | None = None) -> dict:
    """The ``MLmodel`` file of a model folder as plain YAML data (safe loading: no tags, no objects);
    messages name the folder as ``name`` (default: its path)."""
    import yaml

    path = Path(folder) / "MLmodel"
    try:
        if path.stat().st_size > MLMODEL_MAX_BYTES:
            _refuse(name or str(folder), f"its MLmodel is {path.stat().st_size} bytes, ours is a few thousand")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        _refuse(name or str(folder), f"cannot read its MLmodel ({type(exc).__name__}: {first})")
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        _refuse(name or str(folder), "its MLmodel has no flavors")
    return data


def saved_forecaster(folder: str | os.PathLike, name: str | None = None) -> Path:
    """The saved forecaster inside an MLflow model folder of ours, after checking from its files alone
    (nothing imported, nothing unpickled) that loading it runs only our code.

    Refused (`ModelError`): a flavor besides ``python_function``; a loader other than `CODE_LOADER` (a
    ``loader_module`` such as ``mlflow.sklearn`` unpickles its data); a ``python_model`` pickle or a
    ``code`` folder of modules; a code file not named `CODE_FILE`; artifacts besides `FORECASTER_ARTIFACT`,
    or its path absolute, with ``..`` or leading outside the folder; a symbolic link anywhere in it.
    Messages name the folder as ``name`` (default: its path), e.g. the user's folder of a checked copy.
    """
    root = Path(folder)
    shown = name or str(root)
    links = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink()]
    if links:
        _refuse(shown, f"it holds symbolic links {links[:5]}")
    flavors = read_mlmodel(root, shown)["flavors"]
    if set(flavors) != {"python_function"}:
        _refuse(shown, f"its flavors are {sorted(flavors)}, ours has python_function only")
    pyfunc = flavors["python_function"]
    if not isinstance(pyfunc, dict) or pyfunc.get("loader_module") != CODE_LOADER:
        loader = pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None
        _refuse(shown, f"its loader_module is {loader!r}, ours is {CODE_LOADER!r}")
    if pyfunc.get("python_model") is not None or pyfunc.get("code") is not None:
        _refuse(shown, "it names a pickled python_model or a code folder of its own")
    if Path(str(pyfunc.get("model_code_path", ""))).name != CODE_FILE:
        _refuse(shown, f"its model code is {pyfunc.get('model_code_path')!r}, ours is {CODE_FILE!r}")
    artifacts = pyfunc.get("artifacts")
    if not isinstance(artifacts, dict) or set(artifacts) != {FORECASTER_ARTIFACT}:
        _refuse(shown, f"its artifacts are {sorted(artifacts) if isinstance(artifacts, dict) else artifacts!r}, "
                      f"ours is [{FORECASTER_ARTIFACT!r}]")
    entry = artifacts[FORECASTER_ARTIFACT]
    relative = entry.get("path") if isinstance(entry, dict) else None
    inside = root.resolve() / str(relative)
    if (not isinstance(relative, str) or Path(relative).is_absolute() or ".." in Path(relative).parts
            or not inside.resolve().is_relative_to(root.resolve())):
        _refuse(shown, f"its artifact path {relative!r} is not a relative path inside the folder")
    if not (inside / "forecaster.json").is_file():
        _refuse(shown, f"it holds no saved forecaster at {relative!r}")
    return inside
