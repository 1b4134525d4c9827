"""The Spark engine's JVM started without its start-up notices on our stderr.

Starting a SparkSession from Python (pyspark 4.3, Java 17) wrote, before any line of ours:

- ``WARNING: Using incubator modules: jdk.incubator.vector``, from the JVM itself: Spark's launcher always
  adds ``--add-modules=jdk.incubator.vector``, and the JDK has no option that silences this warning;
- ``Using Spark's default log4j profile: ...`` (twice), ``Setting default log level to "WARN".``,
  ``To adjust logging level use sc.setLogLevel(newLevel). ...`` and ``Setting Spark log level to "OFF".``,
  Spark's own ``System.err`` lines when no log4j2 configuration is given;
- log4j WARN lines logged before ``spark.log.level`` takes effect (``NativeCodeLoader: Unable to load
  native-hadoop library ...``, ``Utils: Your hostname, ... resolves to a loopback address ...``);
- ``INFO py4j.clientserver: Closing down clientserver connection`` at exit, through Python's logging.

`driver_java_options` gives the driver JVM our log4j2 configuration (``spark-log4j2.properties`` beside
this file): Spark's log at ``$FORECASTER_SPARK_LOG_LEVEL`` (default OFF) from the JVM's first line, which
also keeps Spark's own profile and log-level lines away. `jvm_stderr_filtered` covers the one notice no
configuration reaches: while the gateway JVM is spawned, descriptor 2 is a pipe, which the JVM (and the
Python workers it starts) keep as their stderr; a thread copies every line of it to our stderr except
that notice, so a real JVM error, or why the JVM did not start, is still seen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

LOG4J2_PROPERTIES = Path(__file__).with_name("spark-log4j2.properties")
_NOTICE = re.compile(rb"^WARNING: Using incubator modules: ")
_LONGEST_LINE = 1 << 16


def driver_java_options(level: str) -> str:
    """Driver JVM options: our log4j2 configuration, Spark's log at ``level`` ('' without the file)."""
    if not LOG4J2_PROPERTIES.is_file():
        return ""
    level = level if re.fullmatch(r"[A-Za-z]+", level) else "OFF"  # spark.log.level refuses a bad one
    return f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()} -Dforecaster.spark.logLevel={level}"


def quiet_py4j() -> None:
    """py4j's INFO lines (connections opened and closed) off, unless its level was set by the user."""
    py4j = logging.getLogger("py4j")
    if py4j.level == logging.NOTSET:
        py4j.setLevel(logging.WARNING)


def _write(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # our stderr closed: keep draining the JVM's, or it would block
        while data:
            data = data[os.write(fd, data):]


def _copy_lines(read_fd: int, target: int) -> None:
    """Copy ``read_fd`` to ``target`` line by line, without the JVM's start-up notice, until EOF."""
    pending = b""
    try:
        while chunk := os.read(read_fd, _LONGEST_LINE):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not _NOTICE.match(line))
            if len(pending) >= _LONGEST_LINE:
                kept, pending = kept + pending, b""
            if kept:
                _write(target, kept)
        if pending and not _NOTICE.match(pending):
            _write(target, pending)
    finally:
        os.close(read_fd)
        os.close(target)


def _launches_a_jvm() -> bool:
    from pyspark import SparkContext

    return getattr(SparkContext, "_gateway", None) is None and "PYSPARK_GATEWAY_PORT" not in os.environ


@contextlib.contextmanager
def jvm_stderr_filtered() -> Iterator[None]:
    """Run the block (which starts Spark's gateway JVM) with descriptor 2 a filtered pipe; see the module.

    Nothing changes when a JVM is already running in this process: no new one will be spawned."""
    try:
        target = os.dup(2) if _launches_a_jvm() else None
    except OSError:  # no descriptor 2 at all: nothing to filter
        target = None
    if target is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    copier = threading.Thread(target=_copy_lines, args=(read_fd, target), name="forecaster-jvm-stderr",
                              daemon=True)
    copier.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if failed:  # the JVM has exited: its last lines go before the caller's error
            copier.join(timeout=1)
