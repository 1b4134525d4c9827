"""OS file locks: held while a process lives, released by the kernel when it dies (a killed job never
blocks the next one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from forecaster.errors import LockHeldError


@contextlib.contextmanager
def hold(path: str | os.PathLike, timeout: float, what: str) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (created if missing), waiting up to ``timeout`` seconds.

    `LockHeldError` naming ``what`` and the path if another live process still holds it then; a
    ``timeout`` of 0 tries once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeldError(f"{what}: another live process holds the lock {path} "
                                        f"(waited {timeout:.0f} s)") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
