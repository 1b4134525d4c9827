"""The code's shape: the library never imports the jobs, and no two modules import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports anywhere (top level or in a function)."""
    modules = {_module_name(p): p for package in ("forecaster", "pipelines") for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_library_never_imports_the_jobs():
    offenders = {m: sorted(i for i in deps if i.startswith("pipelines")) for m, deps in _imports().items()
                 if m.startswith("forecaster") and any(i.startswith("pipelines") for i in deps)}
    assert offenders == {}


def test_no_two_modules_import_each_other():
    graph = _imports()
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                     if a in graph.get(b, set()) and not (a in b or b in a)})  # a package and its own module
    assert mutual == []


def test_the_output_schema_is_built_in_one_place():
    """Spark's schema and the MLflow signature both come from forecaster.contract.output_schema."""
    graph = _imports()
    assert "forecaster.contract" in graph["pipelines.spark_predict"]
    assert "forecaster.contract" in graph["pipelines.steps.run_logging"]
    for path in list((ROOT / "pipelines").rglob("*.py")) + list((ROOT / "forecaster").rglob("*.py")):
        text = path.read_text()
        assert "[2:-3]" not in text, path
        if path.name != "contract.py":
            assert '= "model_version"' not in text and '= "forecast"' not in text, path


# --------------------------------------------------------------------------- one owner per concept, read on the code

LIBRARY = sorted([*(ROOT / "forecaster").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")])


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in LIBRARY}


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (a module's, a class's or a function's)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _code_strings(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of every string constant in code (f-string parts included), docstrings and ``__all__``
    left out."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip]


def _defined(name: str) -> list[str]:
    """Where a function or class called ``name`` is defined (module:line)."""
    return [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in _trees().items() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name]


def _calls(path: Path, function: str) -> set[str]:
    """The names that ``function`` in ``path`` calls."""
    tree = ast.parse(path.read_text())
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr for n in ast.walk(body)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)}


def test_parameters_are_defined_in_one_table():
    """Types, defaults and ranges live in forecaster.params.PARAMS: the config's sections are made from it
    (no field written in a class body), the estimator's defaults are read from it (no literal default in its
    signature), and the CLI's override flags are made from it (no flag of a parameter spelt in cli.py)."""
    import typing

    from forecaster.forecaster import LSTMForecaster
    from forecaster.params import ESTIMATOR, FLAGS, PARAMS

    trees = _trees()
    for name in ("config.py", "models/network_spec.py"):
        tree = trees[ROOT / "forecaster" / name]
        fields = [f"{name}:{node.lineno}" for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                  for node in cls.body if isinstance(node, ast.AnnAssign)]
        assert fields == [], "a config field written by hand: add it to forecaster.params.PARAMS"
    names = {p.name for p in PARAMS}
    literal_defaults = []
    for path, tree in trees.items():
        if path.name == "params.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                args = [*node.args.args, *node.args.kwonlyargs]
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + [*node.args.defaults,
                                                                                         *node.args.kw_defaults]
                for arg, default in zip(args, defaults):
                    if arg.arg in ESTIMATOR and isinstance(default, ast.Constant) and default.value is not None \
                            and path.name in ("forecaster.py", "config.py", "cli.py", "network_spec.py"):
                        literal_defaults.append(f"{path.relative_to(ROOT)}:{node.lineno} {arg.arg}")
    assert literal_defaults == [], "a parameter's default written outside forecaster.params"
    signature = typing.get_type_hints(LSTMForecaster.__init__)
    init = next(n for n in ast.walk(trees[ROOT / "forecaster" / "forecaster.py"])
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    read = {a.arg: d for a, d in zip(init.args.args[-len(init.args.defaults):], init.args.defaults)}
    for name, p in ESTIMATOR.items():
        assert signature[name] == p.type, f"LSTMForecaster({name}) is typed {signature[name]}, the table {p.type}"
        if name != "horizon":
            assert isinstance(read[name], ast.Call) and ast.unparse(read[name]) == f"_D({name!r})", name
    cli = "\n".join(text for _, text in _code_strings(trees[ROOT / "pipelines" / "cli.py"]))
    for p in FLAGS:
        assert f"--{p.name.replace('_', '-')}" not in cli, f"the flag of {p.name} is made from the table"
    assert names >= {"point_loss", "scaler", "lr_schedule", "units", "horizon", "quantiles"}


def test_window_counts_interval_keys_and_model_names_have_one_owner():
    # The windows a series gives: window_ends, read by the window index and by the training budget.
    assert len(_defined("window_ends")) == 1
    assert "window_ends" in _calls(ROOT / "forecaster" / "data" / "windows.py", "window_index")
    assert "window_ends" in _calls(ROOT / "forecaster" / "defaults.py", "windows_available")
    # Intervals and their names: forecaster.evaluation.metrics.intervals and Interval, nowhere else.
    assert len(_defined("intervals")) == 1 and len(_defined("Interval")) == 1
    assert _defined("interval_pairs") == [] and _defined("pair_key") == []
    strays = [f"{path.relative_to(ROOT)}:{line} {text!r}" for path, tree in _trees().items()
              if path.name != "metrics.py" for line, text in _code_strings(tree) if text.startswith("coverage_")]
    assert strays == [], "an interval's metric name built outside forecaster.evaluation.metrics.Interval"
    # The output's model names: forecaster.contract.LSTM and BASELINE, no literal elsewhere.
    word = re.compile(r"(?<![\w.])lstm(?![\w])|(?<![\w])lstm\.|^seasonal_naive$")
    strays = [f"{path.relative_to(ROOT)}:{line} {text!r}" for path, tree in _trees().items()
              if path.name != "contract.py" for line, text in _code_strings(tree) if word.search(text)]
    assert strays == [], "a model name spelt outside forecaster.contract"
    # The as-of cut: forecaster.data.splits.as_of_split, which the pipelines' prepare calls.
    assert "as_of_split" in _calls(ROOT / "pipelines" / "steps" / "prepare.py", "prepare")
    assert len(_defined("as_of_split")) == 1


def test_a_validated_frame_cannot_be_built_by_hand():
    """Only validate_frame (and .subset of what it made) may vouch that a frame passed validation."""
    import pandas as pd
    import pytest

    from forecaster.data.schema import Columns
    from forecaster.data.validation import ValidatedFrame, validate_frame

    with pytest.raises(TypeError, match="validate_frame"):
        ValidatedFrame(frame=pd.DataFrame(), freq="h", columns=Columns(), report={})
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 3, "ds": list(pd.date_range("2026-01-01", periods=3,
                                                                                       freq="h")) * 2,
                          "y": [1.0, 2, 3, 4, 5, 6]})
    valid = validate_frame(frame, Columns())
    assert valid.subset(["b"]).ids == ["b"] and valid.subset(["b"]).frame["y"].tolist() == [4.0, 5.0, 6.0]
    built = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, tree in _trees().items() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ValidatedFrame"
             and path.name != "validation.py"]
    assert built == []


# --------------------------------------------------------------------------- the layout the docs describe


def test_docs_architecture_names_every_module_and_tests_mirror_the_packages():
    """docs/architecture.md names every module of the library and the jobs by its path, and each folder
    of tests/ is named after a package (forecaster's subpackages, or pipelines)."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    modules = sorted(str(p.relative_to(ROOT)) for package in ("forecaster", "pipelines")
                     for p in (ROOT / package).rglob("*.py") if p.name != "__init__.py")
    unnamed = [m for m in modules if m not in page and m.split("/", 1)[1] not in page]
    assert unnamed == [], "modules docs/architecture.md does not name"
    packages = {p.name for p in (ROOT / "forecaster").iterdir() if (p / "__init__.py").is_file()} | {"pipelines"}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders and folders <= packages, folders - packages


def test_every_fitted_attribute_is_a_field_of_the_one_state_save_and_load_write():
    """The forecaster's fitted attributes (``model_``, ``weights_``, ...) are exactly the fields of
    `forecaster.models.state.FittedState`, and each field is written by save (a JSON key of
    ``forecaster.json`` or a file of its own) and read back by load: no attribute listed by hand a
    second time. The values' round trip is `tests/models/test_fitted_state.py`."""
    from dataclasses import fields

    from forecaster.forecaster import LSTMForecaster
    from forecaster.models.state import FittedState

    fitted = {n[:-1] for n in dir(LSTMForecaster) if n.endswith("_") and not n.startswith("_")}
    assert fitted == set(FittedState.names())
    unsaved = [f.name for f in fields(FittedState) if not {"key", "file"} & set(f.metadata)]
    assert unsaved == []
