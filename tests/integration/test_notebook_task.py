"""``notebook:`` tasks with papermill and the real ipykernel: parameters, outputs, failures."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from connectors.notebook import NotebookAction, NotebookTaskSpec
from connectors.notebook_worker import NEEDS_EXTRA, OutputsMissing, notebook_outputs
from reactor.actions import LogStream, TaskRequest
from reactor.clock import FakeClock
from reactor.errors import ActionError
from reactor.pipelines import load_folder
from reactor.recovery import RUN_ID_VARIABLE

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

REPORT = Path(__file__).parents[1] / "data" / "notebooks" / "report.ipynb"


@pytest.fixture(scope="session")
def report_notebook() -> dict[str, Any]:
    """The test notebook as JSON (checked once: the tests below rely on its cells)."""
    notebook: dict[str, Any] = json.loads(REPORT.read_text(encoding="utf-8"))
    tags = [cell["metadata"].get("tags", []) for cell in notebook["cells"]]
    assert ["parameters"] in tags
    assert ["outputs"] in tags
    return notebook


@pytest.fixture
def notebooks(pipelines_dir: Path, report_notebook: dict[str, Any]) -> Path:
    """The pipelines folder with ``notebooks/report.ipynb`` in it."""
    folder = pipelines_dir / "notebooks"
    folder.mkdir()
    (folder / "report.ipynb").write_text(json.dumps(report_notebook), encoding="utf-8")
    return pipelines_dir


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited; it only waits for whoever adopted it to reap it.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_by(run_id: str) -> list[int]:
    """Live processes with this run's id in their environment, as crash recovery finds them."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def attempt(
    base_dir: Path, task: dict[str, Any]
) -> tuple[Any, list[tuple[LogStream, str]], list[int]]:
    """One attempt of a notebook task: its output or ActionError, its log lines and pids."""
    spec = NotebookTaskSpec.model_validate({"id": "t", **task})
    logs: list[tuple[LogStream, str]] = []
    pids: list[int] = []

    async def report_process(pid: int) -> None:
        pids.append(pid)

    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope={"params": {"day": "2024-05-06"}},
        base_dir=base_dir,
        log=lambda stream, line: logs.append((stream, line)),
        report_process=report_process,
    )
    try:
        result: Any = await NotebookAction(spec, base_dir).execute(request)
    except ActionError as exc:
        result = exc
    return result, logs, pids


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_pipeline_runs_the_notebook_with_its_parameters(
    notebooks, write_pipeline, start_reactor, store
) -> None:
    write_pipeline(
        "report.yaml",
        """
        name: report
        params:
          day: {type: string}
        tasks:
          - id: report
            notebook: notebooks/report.ipynb
            parameters: {day: "{{ params.day }}", mode: ok}
            output: "runs/{{ run.id }}/report.ipynb"
          - id: publish
            needs: [report]
            shell: echo {{ tasks.report.output.outputs.day }} {{ tasks.report.output.outputs.rows }}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("report", {"day": "2024-05-06"})
        finished = await reactor.wait_run(run.id)

    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    executed = notebooks / "runs" / run.id / "report.ipynb"
    assert outputs["report"] == {
        "notebook": str(executed),
        "outputs": {"day": "2024-05-06", "rows": 10, "mode": "ok", "cwd": str(notebooks)},
    }
    assert outputs["publish"] == "2024-05-06 10"
    # Papermill injected the parameters after the cell tagged parameters, and kept what ran.
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    [injected] = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert 'day = "2024-05-06"' in "".join(injected["source"])
    logs = {(x.task_id, x.stream, x.line) for x in await store.logs(run.id, after=0, limit=100)}
    assert ("report", "stdout", "report for 2024-05-06") in logs
    assert ("report", "system", f"executed notebook: {executed}") in logs


async def test_a_cell_that_raises_fails_the_task_and_keeps_the_executed_notebook(
    notebooks,
) -> None:
    error, logs, pids = await attempt(
        notebooks, {"notebook": "notebooks/report.ipynb", "parameters": {"mode": "fail"}}
    )

    assert isinstance(error, ActionError)
    # In [4]: the parameters cell, the injected one, the imports, then the failing cell.
    assert str(error) == "cell 4 raised ValueError: boom"
    assert error.exceptions == ("ValueError",)
    assert len(pids) == 1
    executed = notebooks / ".reactor" / "artifacts" / "run-1" / "t.ipynb"
    assert ("system", f"executed notebook: {executed}") in logs
    assert ("stdout", "report for 2024-01-01") in logs
    saved = executed.read_text(encoding="utf-8")
    assert "boom" in saved
    assert '"ename": "ValueError"' in saved


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_timeout_kills_papermill_and_the_kernel(
    notebooks, write_pipeline, start_reactor, store, tmp_path
) -> None:
    write_pipeline(
        "stall.yaml",
        """
        name: stall
        params:
          pids: {type: string}
        tasks:
          - id: report
            notebook: notebooks/report.ipynb
            parameters: {mode: stall, pids: "{{ params.pids }}"}
            timeout: 30s
        """,
    )
    pids = tmp_path / "kernel.pid"
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.run_now("stall", {"pids": str(pids)})
        await wait_for(pids.exists, timeout=60, message="the kernel to run the stalling cell")
        kernel, helper = (int(pid) for pid in pids.read_text().split())
        assert kernel != os.getpid()
        # Jupyter starts the kernel in a session of its own, outside the task's group.
        assert os.getsid(kernel) != os.getsid(0)
        started = started_by(run.id)
        assert {kernel, helper} <= set(started)
        assert len(started) == 3  # papermill's process, the kernel and the cell's helper
        clock.advance(30)
        finished = await wait_run(store, run.id)

    assert finished.status == "failed"
    [task] = await store.task_runs(run.id)
    assert (task.status, task.error) == ("timed_out", "timed out after 30s")
    await wait_for(
        lambda: not alive(kernel) and not alive(helper), message=f"{kernel} and {helper} to end"
    )
    assert started_by(run.id) == []


async def test_a_missing_notebook_is_named(pipelines_dir: Path) -> None:
    error, _logs, pids = await attempt(pipelines_dir, {"notebook": "notebooks/gone.ipynb"})

    assert isinstance(error, ActionError)
    assert str(error) == f"notebook {pipelines_dir / 'notebooks' / 'gone.ipynb'} does not exist"
    assert pids == []


async def test_without_papermill_the_attempt_says_which_extra_to_install(
    notebooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in an environment without the extra: `import papermill` fails, find_spec finds none.
    monkeypatch.setitem(sys.modules, "papermill", None)
    error, _logs, pids = await attempt(notebooks, {"notebook": "notebooks/report.ipynb"})

    assert isinstance(error, ActionError)
    assert str(error) == NEEDS_EXTRA
    assert str(error) == (
        "the notebook task needs the notebook extra: pip install 'reactor-orchestrator[notebook]'"
    )
    assert pids == []


async def test_an_unknown_kernel_lists_the_installed_ones(notebooks) -> None:
    error, _logs, _pids = await attempt(
        notebooks, {"notebook": "notebooks/report.ipynb", "kernel": "cobol"}
    )

    assert isinstance(error, ActionError)
    assert str(error).startswith("no Jupyter kernel named 'cobol' (installed: ")
    assert "python3" in str(error)


async def test_an_output_path_that_renders_empty_or_broken(notebooks) -> None:
    error, _logs, _pids = await attempt(
        notebooks, {"notebook": "notebooks/report.ipynb", "output": "{{ params.day[:0] }}"}
    )
    assert isinstance(error, ActionError)
    assert str(error) == "output '{{ params.day[:0] }}' renders as an empty path"

    error, _logs, _pids = await attempt(
        notebooks, {"notebook": "notebooks/report.ipynb", "output": "{{ params.none }}"}
    )
    assert isinstance(error, ActionError)
    assert str(error) == (
        "cannot render output: 'dict object' has no attribute 'none' (in 'params.none')"
    )


def test_bad_specs_are_reported_at_their_lines(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: script
            notebook: report.py
          - id: empty
            notebook: ""
          - id: params
            notebook: report.ipynb
            parameters: [day]
          - id: extra
            notebook: report.ipynb
            kernal: python3
        """)
    )
    found = [str(p) for p in load_folder(pipelines_dir).problems]
    bad = "pipelines/bad.yaml:"
    assert found == [
        bad + "4: tasks[0].notebook: notebook names a .ipynb file, got 'report.py'",
        bad + "6: tasks[1].notebook: String should have at least 1 character",
        bad + "9: tasks[2].parameters: Input should be a valid dictionary",
        bad + "12: tasks[3].kernal: unknown field",
    ]


@pytest.mark.parametrize("field", ["output", "parameters"])
def test_a_broken_template_is_reported_at_its_field(pipelines_dir: Path, field: str) -> None:
    value = '"{{ run.id"' if field == "output" else '{day: "{{ run.id"}'
    (pipelines_dir / "bad.yaml").write_text(
        f"name: bad\ntasks:\n  - id: t\n    notebook: report.ipynb\n    {field}: {value}\n"
    )
    [found] = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found == (
        f"pipelines/bad.yaml:5: tasks[0].{field}: unexpected end of template,"
        " expected 'end of print statement'. (in '{{ run.id')"
    )


# The outputs: mechanism, on the cells papermill hands back.


def code_cell(tags: list[str], *outputs: dict[str, Any]) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {"tags": tags}, "outputs": list(outputs)}


def result(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "execute_result", "data": data, "metadata": {}}


def test_outputs_come_from_the_last_cell_tagged_outputs() -> None:
    printed = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    first = code_cell(["outputs"], result({"text/plain": "1"}))
    last = code_cell(["outputs"], printed, result({"text/plain": "{'rows': 3, 'ok': True}"}))
    assert notebook_outputs([first, code_cell([]), last]) == {"rows": 3, "ok": True}
    # No cell tagged: no outputs.
    assert notebook_outputs([code_cell(["parameters"], result({"text/plain": "1"}))]) is None
    # application/json wins over the text; a value that is no literal stays text.
    both = result({"application/json": {"a": [1, 2]}, "text/plain": "<JSON>"})
    assert notebook_outputs([code_cell(["outputs"], both)]) == {"a": [1, 2]}
    stamp = result({"text/plain": "Timestamp('2024-01-01 00:00:00')"})
    assert notebook_outputs([code_cell(["outputs"], stamp)]) == "Timestamp('2024-01-01 00:00:00')"
    # Literals JSON has no word for are written as JSON would carry them.
    odd = result({"text/plain": ["{'tags': {'a'},", " 'pair': (1, 2)}"]})
    assert notebook_outputs([code_cell(["outputs"], odd)]) == {"tags": "{'a'}", "pair": [1, 2]}


def test_a_cell_tagged_outputs_without_a_value_is_an_error() -> None:
    printed = {"output_type": "stream", "name": "stdout", "text": "rows = 3\n"}
    with pytest.raises(OutputsMissing) as caught:
        notebook_outputs([code_cell(["outputs"], printed)])
    assert str(caught.value) == (
        "the cell tagged 'outputs' has no value: end it with an expression, e.g. {'rows': rows}"
    )
