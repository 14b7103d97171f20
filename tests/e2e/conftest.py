"""E2E fixtures: the ``reactor`` command run as a user runs it, and ``reactor serve`` sessions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .commands import ENV, REACTOR, Served, free_port

StartServe = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServe]:
    """``serve(folder, *args)``: start ``reactor serve``; every session is killed at the end."""
    started: list[Served] = []

    def start(folder: Path, *args: str, http: bool = True) -> Served:
        n = len(started)
        port = free_port()
        command = [REACTOR, "serve", str(folder), *args]
        if http:
            command += ["--http", f"127.0.0.1:{port}"]
        stdout = tmp_path / f"serve-{n}.out"
        stderr = tmp_path / f"serve-{n}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                command,
                cwd=tmp_path,
                env=ENV,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        served = Served(process, f"http://127.0.0.1:{port}", stdout, stderr)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(served.process.pid, signal.SIGKILL)
            served.process.wait()


@pytest.fixture
def folder(tmp_path: Path) -> Callable[..., Path]:
    """``folder(name, {"file.yaml": text, ...})``: a pipelines folder with those files."""

    def make(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for filename, text in files.items():
            target = path / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return make
