"""TensorFlow imported without the start-up lines its C++ runtime writes straight to file descriptor 2.

TensorFlow 2.21 logs "oneDNN custom operations are on" and, on a machine without a GPU, "Could not find
cuda drivers" (twice each, through absl before it is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not
reach them): a scheduler's log, a CLI user and a Spark job's output would see them on every command and
in every worker. `install` (run when the ``forecaster`` package is imported) puts a finder on
``sys.meta_path`` so that the first import of ``tensorflow``, by whichever module, runs with descriptor 2
captured; the known informational lines are dropped and anything else is written back, so a real
warning or an import failure is still seen. TensorFlow's own behaviour is unchanged.

A program that imports TensorFlow (or Keras, which imports it) before ``forecaster`` gets the noise
before this package can act; `install_startup_hook` (run by ``scripts/setup-venv.sh``) adds a ``.pth``
file to the environment's site-packages so that the finder is in place when Python starts. That
costs each interpreter start in the environment the import of this module (the standard library's
``importlib`` and ``re``, nothing heavy).

The same finder makes TensorFlow's import lighter: ``import keras`` (which ``import tensorflow`` runs
too) executes every public submodule of Keras, among them the legacy ``keras._tf_keras`` (a second copy
of the whole API for ``tf.keras``), the scikit-learn wrappers (scikit-learn and SciPy's statistics) and
the image-gallery plots (``matplotlib.pyplot``): ~1.5 s of CPU in every process that imports TensorFlow,
none of which this project uses. `_LAZY` modules are created at import and executed at their first
attribute access (``importlib.util.LazyLoader``): ``tf.keras.layers``, ``keras.wrappers.SKLearnRegressor``
and ``keras.visualization`` work as before, loaded when first used.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import re
import sys
from collections.abc import Iterator
from types import ModuleType

# This module is imported at every interpreter start where the startup hook is installed: it imports
# only what Python has loaded by then anyway, the rest inside the functions that need it.

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} .*(port\.cc|cudart_stub\.cc|cpu_feature_guard\.cc).*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    # TensorFlow's CUDA wheels on a machine with no GPU: cuInit finds no device (303, "no CUDA device").
    r"|E\d{4} .*failed call to cuInit: .*UNKNOWN ERROR \(303\).*)$"
)
# The .pth line: put the finder in place at interpreter start, if the package is still installed.
STARTUP_HOOK = "forecaster-quiet.pth"
_HOOK_LINE = 'import importlib.util; importlib.util.find_spec("forecaster") and __import__("forecaster")\n'


#: While `_filtered_stderr` captures descriptor 2, the descriptor of the process's real stderr; else None.
_REAL_STDERR: int | None = None


def stderr_fd() -> int:
    """The descriptor that reaches the process's stderr now: 2, or while TensorFlow's import runs with
    descriptor 2 captured, the saved one. A signal's handler that ends the process at once (``os._exit``,
    `pipelines.cli`) writes its line there: written to 2, it went into the capture, which was never
    written back."""
    return 2 if _REAL_STDERR is None else _REAL_STDERR


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture descriptor 2 for the duration; write back what is not known start-up noise."""
    import tempfile

    global _REAL_STDERR
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        _REAL_STDERR = saved
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            _REAL_STDERR = None
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not _NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


class _QuietLoader:
    """TensorFlow's own loader, running its import with descriptor 2 filtered. Only an import runs it:
    ``importlib.util.find_spec("tensorflow")``, which libraries call to see whether TensorFlow is there,
    gets the spec and imports nothing (importing it there took 10 s)."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # TensorFlow's own loader again, for whatever reads the module's loader later.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _filtered_stderr():
            self.loader.exec_module(module)
        import logging

        # Each loaded or fitted forecaster compiles its own predict function (reduce_retracing is set);
        # TF counts them together and warns of "retracing" in a job that forecasts with several models.
        logging.getLogger("tensorflow").addFilter(
            lambda record: "triggered tf.function retracing" not in record.getMessage())


# Keras' submodules that ``import keras`` executes and this project never uses (see the module's docstring).
_LAZY = frozenset({"keras._tf_keras", "keras.wrappers", "keras.visualization", "keras.src.visualization"})


class _QuietTensorFlow:
    def __init__(self) -> None:
        self._finding = False
        self._left = {"tensorflow", *_LAZY}  # once each is handed out, the finder takes itself off

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        """TensorFlow's spec as the finders after this one give it, with its loader wrapped (quiet), and
        the `_LAZY` modules' with theirs made lazy; nothing is imported here."""
        if (fullname != "tensorflow" and fullname not in _LAZY) or self._finding:
            return None
        if fullname in _LAZY and "tensorflow" not in sys.modules:
            # Keras under another backend: torch's import, inside Keras' own, runs inspect.getmodule over
            # sys.modules, which would execute a lazy module before Keras is complete (a circular import).
            # Only when TensorFlow imports Keras are they made lazy.
            self._left.discard(fullname)
            return None
        self._finding = True  # a finder after this one may look the name up again: not through here
        try:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        if fullname == "tensorflow":
                            spec.loader = _QuietLoader(spec.loader)
                        else:
                            import importlib.util

                            spec.loader = importlib.util.LazyLoader(spec.loader)
                    self._left.discard(fullname)
                    return spec
            return None
        finally:
            self._finding = False
            if not self._left:
                uninstall()


_FINDER = _QuietTensorFlow()


def install() -> None:
    """Quiet the first import of TensorFlow in this process and leave Keras' unused submodules unexecuted
    until used (nothing to do once Keras is imported: TensorFlow imports it)."""
    if "keras" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Take the finder off once Keras' lazy submodules are in place (TensorFlow's import is quiet by then)."""
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)


def install_startup_hook(site_dir: str | os.PathLike[str] | None = None) -> str:
    """Write the ``.pth`` file that quiets TensorFlow's first import in every process of this Python
    environment, whichever module imports it first (default: this interpreter's site-packages)."""
    import sysconfig
    from pathlib import Path

    folder = Path(site_dir or sysconfig.get_paths()["purelib"])
    hook = folder / STARTUP_HOOK
    hook.write_text(_HOOK_LINE)
    return str(hook)

