"""TensorFlow imported without the start-up lines its C++ runtime writes straight to file descriptor 2.

TensorFlow 2.21 logs "oneDNN custom operations are on" and, on a machine without a GPU, "Could not find
cuda drivers" (twice each, through absl before it is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not
reach them): a scheduler's log, a CLI user and a Spark job's output would see them on every command and
in every worker. `install` (run when the ``forecaster`` package is imported) puts a finder on
``sys.meta_path`` so that the first import of ``tensorflow``, by whichever module, runs with descriptor 2
captured; the known informational lines are dropped and anything else is written back, so a real
warning or an import failure is still seen. TensorFlow's own behaviour is unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} .*(port\.cc|cudart_stub\.cc|cpu_feature_guard\.cc).*)$"
)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture descriptor 2 for the duration; write back what is not known start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not _NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


class _AlreadyImported(importlib.abc.Loader):
    """Hands the import system the module that `_QuietTensorFlow` has just imported."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: ModuleType) -> None:
        pass


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != "tensorflow":
            return None
        uninstall()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _filtered_stderr():
            import tensorflow  # noqa: F401
        # Each loaded or fitted forecaster compiles its own predict function (reduce_retracing is set);
        # TF counts them together and warns of "retracing" in a job that forecasts with several models.
        logging.getLogger("tensorflow").addFilter(
            lambda record: "triggered tf.function retracing" not in record.getMessage())
        return importlib.machinery.ModuleSpec("tensorflow", _AlreadyImported())


_FINDER = _QuietTensorFlow()


def install() -> None:
    """Quiet the first import of TensorFlow in this process (nothing to do once it is imported)."""
    if "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)
