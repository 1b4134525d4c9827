"""The README's examples work as written in a fresh checkout: its Python blocks and its cheap shell commands,
read out of README.md and run in real processes (as tests/pipelines/test_recipes.py does for the recipes). The
training example runs on three series for one epoch: each such change is a listed substitution, and a
substitution that no longer applies fails the test. Every other shell command is named here with the
test that runs it, so a new README command cannot go untried unnoticed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from forecaster.quiet import STARTUP_HOOK, install_startup_hook
from tests.synthetic import tiny_registry

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent  # the project's .venv/bin: the README's commands assume it on PATH

# Commands the README shows that this file does not run, and where they are run for real.
ELSEWHERE = {
    r"bash scripts/main\.sh": "the main job, end to end (a fresh clone and CI run it)",
    r"bash scripts/test\.sh": "this suite",
    r"\.venv/bin/python -m pytest -m \"not slow\"": "this suite (its fast tier)",
    r"forecaster train models/m4_hourly\.toml$": "the main job (scripts/main.sh)",
    r"forecaster train --data ": "tests/pipelines/test_cli.py (training from a data file without a config)",
    r"forecaster train .* --strategy multi_worker": "tests/models/test_distributed.py",
    r"([A-Z_]+=\S+ )*mlflow models serve ": "tests/ops/test_serving.py",
    r"curl .*/invocations": "tests/ops/test_serving.py",
    r"export MLFLOW_TRACKING_URI=http": "tests/ops/test_postgres.py (a real tracking server)",
    r"pip install mlflow==": "tests/ops/test_postgres.py",
    r"mlflow server ": "tests/ops/test_postgres.py",
    r"forecaster run ": "tests/pipelines/test_scheduled_job.py and tests/pipelines/test_recipes.py",
    r"forecaster report ": "tests/pipelines/test_scheduled_job.py",
}
# Commands run here, by the test that runs them.
HERE = {
    r"forecaster --help$": "test_the_help_command_runs_as_written",
    r"mkdir -p out$": "test_predicting_with_a_registered_model_as_written",
    r"python -c \"from forecaster\.datasets import load_m4_hourly; .*to_parquet\('out/history\.parquet'\)\"$":
        "test_predicting_with_a_registered_model_as_written",
    r"forecaster predict --model models:/m4_hourly@champion --input out/history\.parquet "
    r"--output out/forecast\.parquet$": "test_predicting_with_a_registered_model_as_written",
}
# The training example, made cheap: three series, one epoch (LSTMForecaster's documented parameters).
CHEAP = {
    'load_m4_hourly(split="train")': 'load_m4_hourly(split="train").query("unique_id in [\'H1\', \'H2\', \'H3\']")',
    "LSTMForecaster(horizon=48, quantiles=(0.1, 0.5, 0.9))":
        "LSTMForecaster(horizon=48, quantiles=(0.1, 0.5, 0.9), epochs=1, max_windows_per_series=4, verbose=0)",
}


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def shell_commands() -> list[str]:
    """Each command of the README's bash blocks: continuation lines joined, trailing comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it: unset
    return env


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter of the project's environment, with the startup hook that
    scripts/setup-venv.sh installs (written to a site folder of the test's own where it is not installed)."""
    if not (Path(sysconfig.get_paths()["purelib"]) / STARTUP_HOOK).is_file():
        install_startup_hook(cwd)
        code = f"import site; site.addsitedir({str(cwd)!r})\n" + code
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=_env())


def _bash(commands: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(commands)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=_env())


def test_every_readme_command_is_run_here_or_by_a_named_test():
    commands = shell_commands()
    assert len(commands) >= 15
    for command in commands:
        places = [p for p in (*ELSEWHERE, *HERE) if re.match(p, command)]
        assert len(places) == 1, f"README command {command!r} matches {places}: say where it is run"
    for where in ELSEWHERE.values():
        for test_file in re.findall(r"tests/\w+\.py", where):
            assert (ROOT / test_file).is_file(), test_file
    for test in set(HERE.values()):
        assert test in globals(), test
    assert not any("[" in c and "--" in c.split("[", 1)[1] for c in commands), "optional flags in brackets: " \
        "a command that cannot run as written"


@pytest.mark.slow  # a process importing TensorFlow
def test_the_layer_example_runs_as_written_and_prints_nothing_else(tmp_path):
    (block,) = [b for b in python_blocks() if "from forecaster.layers import LSTM" in b]
    done = _run_python(block + "\nprint(model.output_shape)", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "(None, 48)"
    assert done.stderr == ""


@pytest.mark.slow
def test_the_training_example_runs_as_written(tmp_path):
    (block,) = [b for b in python_blocks() if "LSTMForecaster" in b]
    for written, cheap in CHEAP.items():
        assert written in block, f"the README's training example no longer has {written!r}"
        block = block.replace(written, cheap)
    done = _run_python(block + "\nimport json\nprint(json.dumps({'ids': sorted(forecasts['unique_id'].unique()), "
                                "'rows': len(forecasts), 'columns': list(forecasts.columns)}))", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ids"] == ["H1", "H2", "H3"] and out["rows"] == 3 * 48
    assert {"unique_id", "ds", "forecast", "q0.1", "q0.5", "q0.9", "model"} <= set(out["columns"])


def test_the_help_command_runs_as_written(tmp_path):
    (command,) = [c for c in shell_commands() if re.match(r"forecaster --help$", c)]
    done = _bash([command], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for sub in ("train", "predict", "run", "report"):
        assert sub in done.stdout


@pytest.mark.slow
def test_predicting_with_a_registered_model_as_written(tmp_path):
    wanted = [p for p, test in HERE.items() if test == "test_predicting_with_a_registered_model_as_written"]
    commands = [c for c in shell_commands() if any(re.match(p, c) for p in wanted)]
    commands = list(dict.fromkeys(commands))  # the team-server block repeats the predict line
    assert len(commands) == 3
    with tiny_registry(tmp_path, name="m4_hourly"):  # a champion m4_hourly in a store of the test's own
        done = _bash(commands, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    history = pd.read_parquet(tmp_path / "out" / "history.parquet")
    forecast = pd.read_parquet(tmp_path / "out" / "forecast.parquet")
    assert history["unique_id"].nunique() == 414
    assert set(forecast["unique_id"]) == set(history["unique_id"])
    assert set(forecast["model_name"]) == {"m4_hourly"} and set(forecast["model_version"]) == {"1"}
    assert forecast["forecast"].notna().all()
