"""Start and stop a real `mlflow models serve` process on a free loopback port (tests and benches)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_uri: str, tracking_uri: str, log_path: Path, timeout: float = 120.0) -> tuple:
    """Serve ``model_uri`` with ``--env-manager local``; returns (process, base URL) once /ping answers.

    The venv's bin goes first on PATH: the server runs uvicorn from there.
    """
    port = free_port()
    # Pickle loading off: our models need none, and a served folder must not unpickle anything. The
    # registry too: `mlflow.set_registry_uri` (run by every `tracking.configure` in this process) leaves
    # MLFLOW_REGISTRY_URI in os.environ, and the server would look `models:/` up in that older store.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    log = open(log_path, "w")  # noqa: SIM115 (handed to the process, closed by stop_server)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("server did not start:\n" + Path(log_path).read_text()[-3000:])


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (kill after 20 s) and close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_file.close()
