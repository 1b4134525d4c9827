"""Fresh MLflow SQLite stores without replaying MLflow's schema migrations for each one.

MLflow builds a new SQLite store by running its Alembic migrations (68 in 3.17) one by one, each
committed (synced to disk): 5.5-6.7 s on the shared 2-core test machine, 1.1 s of it CPU, against 0.2 s
for a copy. The suite makes a fresh store for most tests (each in the test's own folder), so the first
one a test process builds is kept as a template, and later fresh stores start as a copy of it: the same
file MLflow's migrations wrote, made by this very MLflow. Tests about a store's first creation by our
processes still get MLflow's own (the first-hour and README tests start from nothing).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy


@functools.cache
def template() -> Path:
    """A store MLflow's own migrations built, once per test process (removed with its folder at exit)."""
    import atexit

    import sqlalchemy
    from mlflow.store.db import utils

    folder = Path(tempfile.mkdtemp(prefix="forecaster-test-store-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        _original()(engine)
        assert utils._all_tables_exist(engine)
    finally:
        engine.dispose()
    return path


def seed(database: Path) -> Path:
    """Make ``database`` (an SQLite file that does not exist yet) a fresh, empty MLflow store, for the
    processes a test starts on it; returns it."""
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template(), database)
    return database


def _initialize_from_template(engine: sqlalchemy.engine.Engine) -> None:
    """MLflow's table initialization for this process: an empty SQLite file gets the template's tables;
    anything else (another database, a half-built store) goes to MLflow's own migrations."""
    from mlflow.store.db import utils

    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or not utils._is_empty_database(engine):
        _original()(engine)
        return
    engine.dispose()  # no connection keeps the empty file's pages: the next one reads the copy
    shutil.copyfile(template(), database)


_MIGRATIONS: list[Callable[[sqlalchemy.engine.Engine], None]] = []


def _original() -> Callable[[sqlalchemy.engine.Engine], None]:
    """MLflow's own table initialization (its migrations), as it was before `install`."""
    if not _MIGRATIONS:
        from mlflow.store.db import utils

        _MIGRATIONS.append(utils._initialize_tables)
    return _MIGRATIONS[0]


def install() -> None:
    """Route this process's fresh SQLite stores through the template (both of MLflow's stores build them)."""
    from mlflow.store.db import utils
    from mlflow.store.model_registry import sqlalchemy_store as registry_store

    _original()
    utils._initialize_tables = _initialize_from_template
    registry_store._initialize_tables = _initialize_from_template


def copy_store(source: Path, target: Path) -> None:
    """Copy the store in folder ``source`` (``mlflow.db`` and ``artifacts/``, as `forecaster.ops.tracking` lays
    out a SQLite store) into folder ``target``, its absolute paths moved there: the copy is a store of its
    own, which a test may change without touching the source (copying files is cheaper than training)."""
    import sqlite3

    target.mkdir(parents=True, exist_ok=True)
    old, new = str(source.resolve()), str(target.resolve())
    shutil.copyfile(source / "mlflow.db", target / "mlflow.db")
    if (source / "artifacts").exists():
        shutil.copytree(source / "artifacts", target / "artifacts")
    with sqlite3.connect(target / "mlflow.db") as db:  # every text value that names a path under source
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                name = column[1]
                db.execute(f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                           f'WHERE typeof("{name}") = \'text\' AND instr("{name}", ?) > 0', (old, new, old))
    db.close()
    # The artifacts are copied as they are: the model's files are checked against the SHA-256 its run
    # recorded, and the path an MLmodel file notes where it was logged is not read back.


SHARED_ENV = "FORECASTER_TEST_SHARED"


def shared_folder() -> Path:
    """A folder every process of one test session sees: made by the first process that asks (pytest's
    own, before xdist starts its workers, see tests/conftest.py), named to the later ones by the
    environment they inherit, and removed when its maker ends."""
    import atexit
    import os

    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV])
    folder = Path(tempfile.mkdtemp(prefix="forecaster-test-shared-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ[SHARED_ENV] = str(folder)
    return folder


_TRAINED: dict[str, Path] = {}


def trained_once(name: str, root: Path, train: Callable[[], object]) -> None:
    """The store of folder ``root`` holding what ``train()`` makes there, trained once per test session for
    each ``name`` and copied into ``root`` afterwards (see `copy_store`).

    Once per session, not per process: both xdist workers need the same tiny registered model, and each
    trained it. The first process to ask trains while it holds a lock in `shared_folder`, and keeps a
    copy there; the others wait for the lock and copy that. A name stands for one training (data and
    config) throughout a session; the folder lives no longer than the session, so nothing older is read.
    """
    if name in _TRAINED:
        copy_store(_TRAINED[name], root)
        return
    from forecaster.ops import locks

    keep = shared_folder() / f"trained-{name}"
    with locks.hold(shared_folder() / f"trained-{name}.lock", timeout=1800, what=f"the tiny model {name!r}"):
        done = keep.with_name(f"{keep.name}.done")  # written last: a copy cut short is not taken
        if done.exists():
            copy_store(keep, root)
        else:
            train()
            shutil.rmtree(keep, ignore_errors=True)
            copy_store(root, keep)
            done.touch()
    _TRAINED[name] = keep
