"""Peak RSS of the real ``reactor serve`` process: idle, and after runs through the API."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.measure import Figure
from bench.workspace import Workspace

__all__ = ["process_memory", "serve_memory"]

Report = Callable[[str], None]
CLIENTS = 8

PIPELINE = """\
name: bench_serve
triggers:
  - on: event
    type: bench.ping
tasks:
  - id: first
    python: "{module}:noop"
"""

_BARE_PYTHON = """\
import asyncio

async def main():
    print("ready", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""

# What `reactor serve` imports before it serves, and nothing else.
_IMPORTS_ONLY = """\
import asyncio
import reactor.cli, reactor.api, connectors.files, connectors.python, connectors.shell
import fastapi, uvicorn, watchfiles

async def main():
    print("ready", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def _quiet(_line: str) -> None:
    return None


def process_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB (10^6 bytes), from /proc/PID/status."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024 / 1e6
    return found


def _reactor_command() -> list[str]:
    script = Path(sys.executable).with_name("reactor")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from reactor.cli import main; main()"]


def start_serve(ws: Workspace) -> tuple[subprocess.Popen[bytes], Path]:
    """`reactor serve` on the workspace's pipelines and store, on a free port, its output in
    a log file (read by :func:`_wait_for_port`)."""
    log = ws.root / "serve.log"
    command = [
        *_reactor_command(),
        "serve",
        str(ws.pipelines),
        "--http",
        "127.0.0.1:0",
        "--store",
        f"sqlite:///{ws.database}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ws.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process, log


async def wait_idle(client: httpx.AsyncClient, timeout: float) -> None:
    """Until the service has no run active or queued."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = (await client.get("/healthz")).json()
        if health["active_runs"] == 0 and health["queued_runs"] == 0:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"runs still active {timeout:g}s after the load ended")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _idle_python(code: str, cwd: Path, idle_wait: float) -> float:
    """VmRSS (MB) of a Python process running ``code`` once it printed ``ready``."""
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        if line.strip() != b"ready":
            raise RuntimeError(f"floor process did not start (exit {process.poll()})")
        await asyncio.sleep(idle_wait)
        return process_memory(process.pid)["VmRSS"]
    finally:
        _stop(process)


async def _wait_for_port(log: Path, process: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"reactor serve exited with status {process.returncode}")
        found = re.search(r"API on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        await asyncio.sleep(0.05)
    raise TimeoutError(f"reactor serve printed no API address in {timeout:g}s")


async def _check_succeeded(client: httpx.AsyncClient, expected_runs: int) -> None:
    # Read after the memory figures: a page of thousands of runs raises the peak itself.
    runs = (await client.get("/api/runs", params={"limit": expected_runs})).json()
    succeeded = sum(1 for run in runs if run["status"] == "succeeded")
    if succeeded != expected_runs:
        raise RuntimeError(f"{succeeded} of {expected_runs} runs succeeded")


async def _publish_many(client: httpx.AsyncClient, count: int, report: Report) -> None:
    headers = {"content-type": "application/cloudevents+json"}
    keys = iter(range(count))
    step = max(count // 4, 1)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for key in keys:
            body = {"specversion": "1.0", "type": "bench.ping", "data": {"key": key}}
            response = await client.post("/api/events", json=body, headers=headers)
            if response.status_code != 202 or len(response.json()["run_ids"]) != 1:
                raise RuntimeError(f"POST /api/events: {response.status_code} {response.text}")
            sent += 1
            if sent % step == 0 and sent < count:
                report(f"  {sent}/{count} events posted")

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))


async def serve_memory(
    runs: int = 1000, report: Report = _quiet, *, idle_wait: float = 1.0
) -> list[Figure]:
    """RSS of `reactor serve --http 127.0.0.1:0` idle (``idle_wait`` s after it answered),
    then after ``runs`` runs posted through the API."""
    with Workspace() as ws:
        ws.write("bench_serve", PIPELINE)
        process, log = start_serve(ws)
        try:
            port = await _wait_for_port(log, process, 60.0)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=30.0
            ) as client:
                await client.get("/healthz")
                await asyncio.sleep(idle_wait)
                idle = process_memory(process.pid)
                before = time.perf_counter()
                await _publish_many(client, runs, report)
                await wait_idle(client, 120.0)
                elapsed = time.perf_counter() - before
                loaded = process_memory(process.pid)
                await _check_succeeded(client, runs)
        except BaseException:
            _stop(process)
            tail = log.read_text(errors="replace")[-2000:]
            sys.stderr.write(f"reactor serve output (tail):\n{tail}\n")
            raise
        _stop(process)
        bare = await _idle_python(_BARE_PYTHON, ws.root, idle_wait)
        imports = await _idle_python(_IMPORTS_ONLY, ws.root, idle_wait)
    benchmark = "reactor serve RSS"
    return [
        Figure(
            benchmark,
            "idle",
            idle["VmRSS"],
            "MB",
            bare,
            60.0,
            note=f"VmRSS {idle_wait:g} s after the API answered; floor: a bare asyncio process",
            extra={"imports_only_MB": imports, "idle_peak_MB": idle["VmHWM"]},
        ),
        Figure(
            benchmark,
            f"peak after {runs} runs",
            loaded["VmHWM"],
            "MB",
            bare,
            note=f"VmHWM after {runs} runs posted by {CLIENTS} concurrent httpx clients",
            extra={"rss_after_MB": loaded["VmRSS"]},
        ),
        Figure(
            benchmark,
            "imports only",
            imports,
            "MB",
            bare,
            note="reference: a process that imports what serve imports and idles",
        ),
        Figure(
            benchmark,
            f"runs/s through the API ({runs} runs)",
            runs / elapsed,
            "runs/s",
            better="higher",
            note=f"{CLIENTS} concurrent clients; POST -> admitted, until every run succeeded",
        ),
    ]
