"""Running the ``reactor`` command in e2e tests, and looking for what it left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

REACTOR = str(Path(sys.executable).with_name("reactor"))
# Plain output whatever the terminal: no colours, no wrapping at 80 columns.
ENV = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_reactor(*args: str, cwd: Path | None = None, timeout: float = 60) -> Result:
    """Run ``reactor ARGS`` to completion."""
    done = subprocess.run(
        [REACTOR, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def processes_of_run(run_id: str) -> list[int]:
    """Every live process started for ``run_id`` (tasks mark their environment with it)."""
    marker = f"REACTOR_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


@dataclass
class Served:
    """One ``reactor serve`` process in its own session, its output going to files."""

    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def out(self) -> str:
        return self.stdout.read_text()

    def err(self) -> str:
        return self.stderr.read_text()

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"reactor serve exited with {self.process.returncode}:\n{self.out()}\n{self.err()}"
            )
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["status"] == "ok"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal ``reactor serve`` (not its session) and wait for it to exit."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def session_is_empty(self) -> bool:
        """Whether nothing of the session serve led is left (its own children included)."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False
