"""The plain LSTM recurrence as two hand-written TensorFlow CPU ops (`lstm_cpu.cc`), built on first use.

Under XLA a step of the recurrence is about twenty kernels, and the gating and the values kept for
the gradient cost more than the step's matrix product; the ops do a step as one product and one pass
over the batch rows (`docs/benchmarks.md` has the figures). The layer's TensorFlow loop
(`fused_loop.run_fused`) takes them for the plain cell in float32 on a CPU, outside XLA
compilation, and keeps its XLA loops everywhere else.

The library is compiled with the C++ compiler (``$CXX``, else ``g++``) against the installed
TensorFlow's headers, for this CPU (``-march=native``), into a cache folder (``$FORECASTER_KERNEL_CACHE``,
else ``$XDG_CACHE_HOME/forecaster`` or ``~/.cache/forecaster``) under a name that hashes the source,
TensorFlow's version and the CPU's flags, so a changed source, TensorFlow or machine builds afresh.
Processes that start together build once (a file lock), and a library is only ever renamed into
place whole. Without a compiler, or when the build or the load fails, `ops` returns None, one
warning says why, and the layer runs its XLA loops: slower, never wrong.
``FORECASTER_CPU_KERNEL=0`` turns the ops off (the benchmarks' and tests' way to compare the two).

A step's matrix products are our own AVX2 ones on a CPU with AVX2 and FMA but no AVX-512, Eigen's
elsewhere (`products`); ``FORECASTER_KERNEL_PRODUCTS=eigen`` or ``=avx2`` builds the other kind where the
CPU can run it (the benchmarks' and tests' way to compare the two; the cache keeps each apart).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_SOURCE = Path(__file__).with_name("lstm_cpu.cc")
_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}
_log = logging.getLogger(__name__)
# A build takes 10-20 s on two cores; this bounds a hung compiler.
BUILD_TIMEOUT_S = 600


class KernelBuildError(RuntimeError):
    """The ops could not be built or loaded; the message names the step and the compiler's output."""


def enabled() -> bool:
    """Whether the ops may be used: ``FORECASTER_CPU_KERNEL`` is not ``0``."""
    return os.environ.get("FORECASTER_CPU_KERNEL", "1").strip() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built libraries are kept."""
    if os.environ.get("FORECASTER_KERNEL_CACHE"):
        return Path(os.environ["FORECASTER_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "forecaster"


def cpu_info(field: str) -> str:
    """A field of ``/proc/cpuinfo`` for the first core ("flags", "model name"), empty where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_flags() -> str:
    return cpu_info("flags")


def products() -> str:
    """Which matrix products the ops are built with here: ``"avx2"`` (ours: AVX2 and FMA without
    AVX-512) or ``"eigen"``; ``$FORECASTER_KERNEL_PRODUCTS`` chooses, `KernelBuildError` where it names
    neither or asks for AVX2 on a CPU without it."""
    flags = set(_cpu_flags().split())
    has_avx2 = {"avx2", "fma"} <= flags
    value = os.environ.get("FORECASTER_KERNEL_PRODUCTS", "").strip().lower()
    if not value:
        return "avx2" if has_avx2 and "avx512f" not in flags else "eigen"
    if value not in ("avx2", "eigen"):
        raise KernelBuildError(f"FORECASTER_KERNEL_PRODUCTS={value!r}: expected 'avx2' or 'eigen'")
    if value == "avx2" and not has_avx2:
        raise KernelBuildError("FORECASTER_KERNEL_PRODUCTS=avx2, but this CPU has no AVX2 and FMA")
    return value


def _compiler() -> list[str]:
    """The C++ compiler's command words: ``$CXX`` (it may carry flags), else ``g++``; `KernelBuildError`
    for a ``$CXX`` that names no command (blank, or an unclosed quote), so that the layer warns and
    runs its XLA loops instead of failing the user's first call."""
    value = os.environ.get("CXX") or "g++"
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise KernelBuildError(f"CXX={value!r} cannot be read as a command: {exc}") from exc
    if not words:
        raise KernelBuildError(f"CXX={value!r} names no compiler")
    return words


def _command(output: Path) -> list[str]:
    import tensorflow as tf

    compiler = _compiler()
    flags = ["-O3", "-march=native", "-shared", "-fPIC", "-w"]
    if "avx512_fp16" in _cpu_flags().split():
        # Eigen's AVX512-FP16 packet code does not compile with this TensorFlow's headers; the ops are
        # float32 and lose nothing without it.
        flags.append("-mno-avx512fp16")
    if products() == "eigen":
        # The source takes its own products wherever the target has AVX2 and FMA, unless told otherwise.
        flags.append("-DFORECASTER_EIGEN_PRODUCTS")
    return [*compiler, *flags, *tf.sysconfig.get_compile_flags(), str(_SOURCE), "-o", str(output),
            *tf.sysconfig.get_link_flags()]


def library_path() -> Path:
    """The library's path in the cache for this source, TensorFlow and CPU (built or not)."""
    import tensorflow as tf

    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), tf.__version__.encode(), _cpu_flags().encode(),
                 " ".join(_compiler()).encode(), products().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"lstm_cpu-{key.hexdigest()[:16]}.so"


def build() -> Path:
    """Build the library into the cache unless it is there; its path. Raises `KernelBuildError`."""
    path = library_path()
    if path.exists():
        return path
    compiler = _compiler()[0]
    if shutil.which(compiler) is None:
        raise KernelBuildError(f"no C++ compiler {compiler!r} on PATH (set CXX, or install g++)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():  # another process built it while we waited
                return path
            fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".so.tmp", dir=path.parent)
            os.close(fd)
            try:
                done = subprocess.run(_command(Path(tmp)), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
                if done.returncode != 0:
                    raise KernelBuildError(
                        f"{compiler} failed ({done.returncode}) building {_SOURCE.name}: {done.stderr.strip()[-2000:]}"
                    )
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except OSError as exc:
        raise KernelBuildError(f"cannot build into {path.parent}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise KernelBuildError(f"{compiler} did not finish within {BUILD_TIMEOUT_S} s") from exc
    return path


def ops() -> Any | None:
    """The loaded ops module (``forecaster_lstm_forward``, ``forecaster_lstm_backward``), or None
    where they are turned off or cannot be built here (warned once)."""
    if not enabled():
        return None
    with _LOCK:
        if "module" not in _LOADED:
            import tensorflow as tf

            try:
                _LOADED["module"] = tf.load_op_library(str(build()))
            except (KernelBuildError, tf.errors.NotFoundError, OSError) as exc:
                _log.warning("forecaster: the LSTM's CPU kernel is not available (%s); using the XLA loops", exc)
                _LOADED["module"] = None
        return _LOADED["module"]


def main() -> int:
    """`python -m forecaster.layers.cpu_kernel`: build ahead (the set-up script does), one line either way."""
    try:
        path = build()
    except KernelBuildError as exc:
        print(f"the LSTM's CPU kernel did not build, the layer will run its XLA loops: {exc}", file=sys.stderr)
        return 1
    print(f"the LSTM's CPU kernel: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
