"""``python:`` tasks with ``venv:``: the function runs on the venv's own interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.python import PythonAction, PythonTaskSpec
from reactor.actions import LogStream, TaskRequest
from reactor.errors import ActionError
from reactor.pipelines import load_folder

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
import importlib.util
import os
import sys


def where(n):
    return {
        "prefix": sys.prefix,
        "executable": sys.executable,
        "reactor_importable": importlib.util.find_spec("reactor") is not None,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "n": n,
    }
"""


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real virtualenv without Reactor (nor pip: it is only an interpreter)."""
    path = tmp_path_factory.mktemp("venvs") / "plain"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def request(base_dir: Path, logs: list[tuple[LogStream, str]]) -> TaskRequest:
    return TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope={},
        base_dir=base_dir,
        log=lambda stream, line: logs.append((stream, line)),
    )


async def test_a_relative_venv_runs_the_function_on_its_interpreter(
    venv: Path, write_pipeline, write_module, start_reactor, store, pipelines_dir: Path
) -> None:
    mod = write_module(STEPS)
    relative = os.path.relpath(venv, pipelines_dir)
    assert not Path(relative).is_absolute()
    write_pipeline(
        "venv.yaml",
        f"""
        name: venv
        tasks:
          - id: where
            python: {mod}:where
            args: {{n: 3}}
            venv: {relative}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("venv")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "succeeded", finished.reason
    [task] = await store.task_runs(run.id)
    output = task.output
    assert Path(output["prefix"]).resolve() == venv.resolve()
    assert Path(output["virtual_env"]).resolve() == venv.resolve()
    assert Path(output["executable"]).parent.resolve() == (venv / "bin").resolve()
    # The worker needs nothing but the standard library: Reactor is not in this venv.
    assert output["reactor_importable"] is False
    assert output["n"] == 3
    assert sys.prefix != output["prefix"]


async def test_an_absolute_venv(venv: Path, write_module, pipelines_dir: Path) -> None:
    mod = write_module(STEPS)
    spec = PythonTaskSpec.model_validate(
        {"id": "t", "python": f"{mod}:where", "args": {"n": 1}, "venv": str(venv)}
    )
    logs: list[tuple[LogStream, str]] = []
    output = await PythonAction(spec, pipelines_dir).execute(request(pipelines_dir, logs))
    assert Path(output["prefix"]).resolve() == venv.resolve()


async def test_a_missing_venv_loads_but_fails_at_run_time(
    write_pipeline, write_module, start_reactor, store, pipelines_dir: Path
) -> None:
    mod = write_module(STEPS)
    write_pipeline(
        "later.yaml",
        f"""
        name: later
        tasks:
          - id: where
            python: {mod}:where
            args: {{n: 1}}
            venv: .venv-not-built-yet
        """,
    )
    # Not a load problem: the venv may be built after the pipeline is written.
    assert load_folder(pipelines_dir).problems == []
    async with start_reactor() as reactor:
        run = await reactor.run_now("later")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert task.error == f"venv {pipelines_dir / '.venv-not-built-yet'} has no bin/python"


async def test_a_folder_that_is_not_a_venv(tmp_path: Path, write_module) -> None:
    mod = write_module(STEPS)
    (tmp_path / "bin").mkdir()
    spec = PythonTaskSpec.model_validate(
        {"id": "t", "python": f"{mod}:where", "args": {"n": 1}, "venv": str(tmp_path)}
    )
    with pytest.raises(ActionError) as caught:
        await PythonAction(spec, tmp_path).execute(request(tmp_path, []))
    assert str(caught.value) == f"venv {tmp_path} has no bin/python"


def test_venv_must_not_be_empty(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        "name: bad\ntasks:\n  - id: t\n    python: m:f\n    venv: ''\n"
    )
    [found] = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found.startswith("pipelines/bad.yaml:5: tasks[0].venv: ")
