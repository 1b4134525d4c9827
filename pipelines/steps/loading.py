"""Load a model one way for every job: resolve a URI, fetch and hash-check its files, read only its data; then
forecast with it."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow import MlflowClient

from forecaster.contract import (
    MODEL_NAME_COLUMN,
    MODEL_VERSION_COLUMN,
)
from forecaster.data.io import temporary
from forecaster.errors import ConfigError, ModelError
from forecaster.ops import tracking
from forecaster.ops.integrity import (
    DOWNLOAD_METADATA,
    MODEL_HASHES_TAG,
    changed_files,
    read_mlmodel,
    saved_forecaster,
    unlisted_entries,
)

if TYPE_CHECKING:  # TensorFlow: imported where a model is loaded or fitted, not by the steps around it
    from forecaster.forecaster import LSTMForecaster

log = logging.getLogger("forecaster.steps")


_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")
URI_FORMS = ("models:/<name>@<alias>", "models:/<name>/<version>", "models:/<name>/latest",
             "models:/<name>/<stage>", "runs:/<run_id>/<path>", "a local model folder")


@dataclass
class LoadedModel:
    """A model resolved to one registry version (or one run, or one folder), loaded once.

    ``name`` and ``version`` go on every forecast row: the registered name and version number, or for
    a run the run's model path and ``run:<run_id>``, or for a folder its path and ``local``.
    """

    name: str
    version: str
    uri: str
    forecaster: LSTMForecaster

    def predict(self, history: pd.DataFrame, horizon: int | None = None,
                quantiles: list[float] | None = None) -> pd.DataFrame:
        """The forecast frame for ``history``, with the model name and version on every row."""
        out = self.forecaster.predict(history, horizon=horizon, quantiles=quantiles)
        out[MODEL_NAME_COLUMN] = self.name
        out[MODEL_VERSION_COLUMN] = self.version
        return out


def _registered_version(client: MlflowClient, name: str, ref: str) -> str:
    """The version number that ``models:/<name>/<ref>`` names: a number, ``latest`` or a stage."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"cannot read registered model {name!r}: {exc.message}") from None
    if not versions:
        raise ConfigError(f"no registered model named {name!r} (or it has no versions)")
    numbers = sorted(int(v.version) for v in versions)
    if ref.isdigit():
        if int(ref) not in numbers:
            raise ConfigError(f"model {name!r} has no version {ref}; its versions: {numbers}")
        return ref
    if ref.lower() == "latest":
        return str(numbers[-1])
    staged = [int(v.version) for v in versions if (v.current_stage or "").lower() == ref.lower()]
    if not staged:
        raise ConfigError(f"model {name!r} has no version in stage {ref!r} (and {ref!r} is not a version number)")
    return str(max(staged))


def resolve(model_uri: str) -> tuple[str, str, str]:
    """(name, version, the URI to load) of any model URI that `mlflow.pyfunc.load_model` takes here."""
    registry_match = _REGISTRY_URI.match(model_uri)
    if registry_match:
        name, client = registry_match["name"], MlflowClient()
        if registry_match["alias"]:
            try:
                version = str(client.get_model_version_by_alias(name, registry_match["alias"]).version)
            except mlflow.exceptions.MlflowException as exc:
                raise ConfigError(f"no version of model {name!r} holds alias {registry_match['alias']!r}: "
                                  f"{exc.message}") from None
        else:
            version = _registered_version(client, name, registry_match["ref"])
        return name, version, f"models:/{name}/{version}"
    run_match = _RUN_URI.match(model_uri)
    if run_match:
        try:
            MlflowClient().get_run(run_match["run"])
        except mlflow.exceptions.MlflowException:
            raise ConfigError(f"no run {run_match['run']!r} in the tracking store ({model_uri})") from None
        return run_match["path"], f"run:{run_match['run']}", model_uri
    local = Path(model_uri.removeprefix("file://"))
    if "://" not in model_uri.removeprefix("file://") and local.is_dir():
        if not (local / "MLmodel").is_file():
            raise ConfigError(f"{local} is a folder but not an MLflow model (no MLmodel file in it)")
        return str(local), "local", str(local.resolve())
    raise ConfigError(f"cannot resolve model {model_uri!r}; give one of: {', '.join(URI_FORMS)}")


def _run_of(uri: str) -> str | None:
    """The run that logged the model ``uri`` (a resolved ``models:/name/N`` or ``runs:/``), else None."""
    if uri.startswith("runs:/"):
        return uri.split("/")[1]
    match = _REGISTRY_URI.match(uri)
    if match and match["ref"]:
        return MlflowClient().get_model_version(match["name"], match["ref"]).run_id
    return None


def _local_folder(uri: str) -> Path | None:
    """The folder a resolved local-folder URI names (see `resolve`), else None."""
    return None if "://" in uri or uri.startswith(("models:/", "runs:/")) else Path(uri)


def _recorded_hashes(run_id: object) -> dict[str, str] | None:
    """The SHA-256 record of the model files that run ``run_id`` logged, None if it has none here."""
    try:
        recorded = None if run_id is None else MlflowClient().get_run(str(run_id)).data.tags.get(MODEL_HASHES_TAG)
    except mlflow.exceptions.MlflowException:
        recorded = None
    return None if recorded is None else json.loads(recorded)


def _refuse_changed(uri: str, run_id: object, changed: list[str]) -> None:
    if changed:
        raise ModelError(f"{uri}: files {changed[:5]} differ from the SHA-256 recorded in run {run_id} when "
                         f"the model was logged (changed, removed or added): refusing to load it")


def fetch_verified(uri: str, into: Path) -> str:
    """Copy the model at ``uri`` into ``into`` (a download, or a copy of a local folder), check that loading
    it runs only our code (`integrity.saved_forecaster`) and every file against the SHA-256 recorded in
    its run when it was logged; returns the local folder to load. ModelError if a file differs, is
    missing or was added, or a check fails. Registry and run models logged before hashes were recorded
    load as they are; a local folder must have a record (its MLmodel's run, in the tracking store), or
    it is refused: a folder on its own vouches for nothing.
    """
    folder = _local_folder(uri)
    run_id = recorded = None
    if folder is not None:
        # The folder as found, from its listing and MLmodel alone: why it is not ours, and any file its
        # record lacks, before a byte of it is copied or hashed. The copy is then checked in full.
        saved_forecaster(folder, uri)
        run_id = read_mlmodel(folder, uri).get("run_id")
        recorded = _recorded_hashes(run_id)
        if recorded is None:
            raise ModelError(f"{uri}: no SHA-256 record of its files: its MLmodel names run {run_id!r}, which has "
                             f"none in the tracking store {mlflow.get_tracking_uri()}; point MLFLOW_TRACKING_URI at "
                             f"the store that logged it, or load it from there (models:/<name>/<version>)")
        _refuse_changed(uri, run_id, unlisted_entries(recorded, folder))
    try:
        if folder is not None:
            # MLflow's download metadata is in no record and read by nothing here: not copied either.
            shutil.copytree(folder, into, symlinks=True, dirs_exist_ok=True,
                            ignore=lambda at, ns: [n for n in ns if Path(at) == folder and n in DOWNLOAD_METADATA])
            local = into
        else:
            local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(into)))
    except (OSError, mlflow.exceptions.MlflowException) as exc:
        message = exc.message if isinstance(exc, mlflow.exceptions.MlflowException) else str(exc)
        raise ModelError(f"cannot fetch {uri}: {(message.strip().splitlines() or [''])[0][:300]}") from None
    if folder is None and not any(local.rglob("*")):
        # MLflow "downloads" a location holding nothing into an empty folder, without an error.
        raise ModelError(f"cannot fetch {uri}: its artifact store holds none of its files (removed or moved "
                         f"since it was logged): register a version again from a run that has its model")
    saved_forecaster(local, uri)  # before any hash: says why a folder is not ours
    if folder is None:
        run_id = _run_of(uri)
        recorded = _recorded_hashes(run_id)
    if recorded is not None:
        _refuse_changed(uri, run_id, changed_files(recorded, local))
    return str(local)


MODEL_COPY_PREFIX = "forecaster-model-"  # + pid + "-": the checked copies `load` makes in $TMPDIR


def _clear_stale_model_copies() -> None:
    """Remove the checked copies that processes no longer alive left (a SIGKILL skips every cleanup)."""
    for path in Path(tempfile.gettempdir()).glob(f"{MODEL_COPY_PREFIX}*-*"):
        pid = path.name[len(MODEL_COPY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def load(model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` against the configured registry, check its files, and load that version once.

    The checked copy is what loads, and only its data is read: the network in Keras' safe mode and
    JSON, by the installed package. No file of the model is imported or unpickled (MLflow's loader,
    which would import the model's own copy of its code, is not used here).
    """
    from forecaster.forecaster import LSTMForecaster

    tracking.configure()
    name, version, uri = resolve(model_uri)
    try:
        # The checked copy is what loads; the model reads all of its files into memory, so it goes afterwards
        # (recorded as this process's temporary, so a signal removes it too, and a killed run's is cleared).
        _clear_stale_model_copies()
        with tempfile.TemporaryDirectory(prefix=f"{MODEL_COPY_PREFIX}{os.getpid()}-") as tmp, temporary(tmp):
            model = LSTMForecaster.load(saved_forecaster(fetch_verified(uri, Path(tmp) / "model"), uri))
    except ModelError:
        raise
    except mlflow.exceptions.MlflowException as exc:
        raise ModelError(f"cannot load {uri}: {(exc.message.strip().splitlines() or [''])[0][:300]}") from None
    return LoadedModel(name, version, uri, model)




def forecast(model: LoadedModel, history: pd.DataFrame, horizon: int | None = None,
             quantiles: list[float] | None = None) -> pd.DataFrame:
    """The forecast frame for ``history``, with the model name and version on every row."""
    return model.predict(history, horizon=horizon, quantiles=quantiles)




def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
