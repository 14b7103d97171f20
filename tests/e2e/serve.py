"""A real ``reactor serve`` process for end-to-end tests, in its own session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

REACTOR = str(Path(sys.executable).with_name("reactor"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``reactor serve FOLDER --store STORE`` on a free port; ``kill`` ends its session."""

    def __init__(
        self, folder: Path, store: str, env: dict[str, str] | None = None, *args: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                REACTOR,
                "serve",
                str(folder),
                "--store",
                store,
                "--http",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            out, err = self.process.communicate()
            raise AssertionError(
                f"serve exited {self.process.returncode}:\n{out.decode()}\n{err.decode()}"
            )
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[str, str]:
        """Signal serve itself and wait for it; returns its stdout and stderr."""
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=timeout)
        return out.decode(), err.decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
