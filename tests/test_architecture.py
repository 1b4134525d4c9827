"""The code's shape: the library never imports the jobs, and no two modules import each other."""

from __future__ import annotations

import ast
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
    assert "forecaster.contract" in graph["pipelines.steps"]
    for path in list((ROOT / "pipelines").glob("*.py")) + list((ROOT / "forecaster").rglob("*.py")):
        text = path.read_text()
        assert "[2:-3]" not in text, path
        if path.name != "contract.py":
            assert '= "model_version"' not in text and '= "forecast"' not in text, path
