"""A throwaway PostgreSQL cluster and a real `mlflow server` on it, for the tests marked ``postgres``.

`postgres_mlflow_server()` runs initdb in a temporary folder, starts postgres on a free loopback port
(its unix socket in that folder too), creates a database, starts ``mlflow server --backend-store-uri
postgresql+psycopg2://... --serve-artifacts`` on another free port, waits until it answers, and yields
the server (its http URI in ``.uri``); on the way out it stops both, reaps every process it started and
removes the folder. Nothing of the machine's own PostgreSQL (a cluster, a service, port 5432) is used
or touched.

As root (a container, CI) PostgreSQL refuses to run: initdb and postgres then run as the
``postgres`` user the Debian package creates (else ``nobody``), owning the temporary folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATABASE = "mlflow"
ROLE = "forecaster"


@dataclass(frozen=True)
class PostgresMlflow:
    """A running server: ``uri`` (http, what MLFLOW_TRACKING_URI takes), ``backend`` (its PostgreSQL
    database, a libpq URI) and ``artifacts`` (the folder it stores uploaded artifacts in)."""

    uri: str
    backend: str
    artifacts: Path


class PostgresMissingError(RuntimeError):
    """PostgreSQL's server binaries (initdb, postgres) are not installed."""


def find_bin_dir() -> Path:
    """The folder with initdb and postgres: initdb's on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).resolve().with_name("postgres").exists():
        return Path(on_path).resolve().parent

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", Path(path).parent.parent.name))

    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if Path(p).with_name("postgres").exists()]
    if not candidates:
        raise PostgresMissingError("PostgreSQL's server binaries (initdb, postgres) were not found: install the "
                              "'postgresql' package (scripts/test.sh does so as root)")
    return Path(max(candidates, key=version)).parent


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: None (ourselves) unless we are root, which initdb and postgres refuse."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


class _Postgres:
    """initdb and postgres in ``root``; as ``user`` when given (we are root)."""

    def __init__(self, bin_dir: Path, root: Path, user: pwd.struct_passwd | None) -> None:
        self.bin_dir, self.root, self.user = bin_dir, root, user
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def _as_user(self) -> tuple[dict, dict]:
        """Popen's keywords and environment to run a PostgreSQL program as ``self.user``."""
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if self.user is None:
            return {}, env
        env |= {"HOME": str(self.root), "USER": self.user.pw_name, "LOGNAME": self.user.pw_name}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}, env

    def start(self) -> None:
        self.sockets.mkdir()
        if self.user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        as_user, env = self._as_user()
        done = subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust",
                               "-E", "UTF8", "--no-locale", "--no-sync"], capture_output=True, text=True, env=env,
                              cwd=self.root, timeout=120, stdin=subprocess.DEVNULL, **as_user)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        # postgres itself, not pg_ctl: a child of ours that we stop and reap (pg_ctl's would be orphaned,
        # a zombie where PID 1 reaps nothing, as in many containers).
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.sockets}", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.root,
                start_new_session=True, **as_user)
        import psycopg2  # the driver MLflow uses; creating the database needs no client package

        deadline = time.time() + 60
        while True:
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=ROLE, dbname="postgres",
                                              connect_timeout=2)
                break
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("postgres did not start:\n" + self.log.read_text()[-3000:]) from None
                time.sleep(0.2)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients disconnected, a clean checkpoint); SIGKILL after 60 s."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    @property
    def uri(self) -> str:
        """The database as libpq (and psycopg2) take it."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def sqlalchemy_uri(self) -> str:
        """The database as ``mlflow server --backend-store-uri`` takes it: the driver named, since
        SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3 and we ship psycopg2."""
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"


def _stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process group ``proc`` leads (mlflow server, its uvicorn and workers); SIGKILL after
    ``timeout`` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Workers outlive a leader that died first: the group goes in any case.
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def start_mlflow_server(backend_uri: str, artifacts: Path, log_path: Path,
                        timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on ``backend_uri`` with proxied artifacts in ``artifacts``; (process, http URI)
    once its /health answers. The process leads its own process group (see `_stop_group`)."""
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           # No background job runner (huey) for a test server: nothing here uses MLflow's server jobs.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(log_path, "w")  # noqa: SIM115 (closed below, the process holds its own descriptor)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
             "--serve-artifacts", "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.5)
    _stop_group(proc)
    raise RuntimeError("mlflow server did not start:\n" + Path(log_path).read_text()[-4000:])


@contextlib.contextmanager
def postgres_mlflow_server() -> Iterator[PostgresMlflow]:
    """A PostgreSQL cluster and an `mlflow server` on it for as long as the context is open; yields the
    server (its http URI in ``.uri``). Raises `PostgresMissingError` when PostgreSQL is not installed."""
    bin_dir = find_bin_dir()
    user = _unprivileged_user()
    # Not pytest's tmp_path: that folder is private to root, and postgres may run as another user, who
    # must be able to reach the folder (a TMPDIR private to root would not do: /tmp then).
    base = Path(tempfile.gettempdir()).resolve()
    if user is not None and not all(os.stat(p).st_mode & 0o001 for p in (base, *base.parents)):
        base = Path("/tmp")
    root = Path(tempfile.mkdtemp(prefix="forecaster-pg-", dir=base))
    postgres = _Postgres(bin_dir, root, user)
    server = None
    try:
        postgres.start()
        server, uri = start_mlflow_server(postgres.sqlalchemy_uri, root / "artifacts", root / "mlflow-server.log")
        yield PostgresMlflow(uri, postgres.uri, root / "artifacts")
    finally:
        try:
            if server is not None:
                _stop_group(server)
        finally:
            try:
                postgres.stop()
            finally:
                shutil.rmtree(root, ignore_errors=True)
