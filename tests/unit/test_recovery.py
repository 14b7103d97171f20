"""Telling a dead process from a live one, and parsing crash points."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reactor import failpoints
from reactor.recovery import RUN_ID_VARIABLE, is_dead, kill_orphans, pid_alive
from reactor.store.records import ProcessRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def process(owner: str, host: str, pid: int, seconds_ago: float) -> ProcessRecord:
    beat = NOW - timedelta(seconds=seconds_ago)
    return ProcessRecord(owner, host, pid, beat, beat)


def dead(owner: str | None, *records: ProcessRecord, host: str = "here") -> bool:
    return is_dead(
        owner,
        me="me",
        processes={r.owner: r for r in records},
        host=host,
        now=NOW,
        lease=15.0,
    )


def test_this_process_is_never_dead() -> None:
    assert not dead("me")


def test_an_unknown_or_missing_owner_is_dead() -> None:
    assert dead("ghost")
    assert dead(None)


def test_a_live_process_on_this_host_with_a_fresh_heartbeat_is_alive() -> None:
    assert not dead("other", process("other", "here", os.getpid(), 1))


def test_a_process_of_this_host_that_exited_is_dead_at_once() -> None:
    assert dead("other", process("other", "here", dead_pid(), 0))


def test_a_process_elsewhere_is_judged_by_its_heartbeat() -> None:
    assert not dead("far", process("far", "there", 1, 14.9))
    assert dead("far", process("far", "there", 1, 15.1))


def test_a_reused_pid_still_loses_its_lease() -> None:
    # Same host and a live pid (reused by another program): the stale heartbeat decides.
    assert dead("old", process("old", "here", os.getpid(), 60))


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())


def test_failpoints_parse_names_and_counts() -> None:
    assert failpoints._parse("ingest.after_persist=3, task.after_start") == {
        "ingest.after_persist": 3,
        "task.after_start": 1,
    }
    assert failpoints._parse("") == {}


def test_an_unknown_failpoint_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown failpoint 'nope'; known: ingest\.after_persist"):
        failpoints._parse("nope=1")


def test_an_unarmed_point_does_nothing() -> None:
    failpoints.hit("ingest.after_persist")  # not armed in tests: the process lives on


def test_kill_orphans_kills_the_processes_of_that_run_only() -> None:
    def sleeper(run_id: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, RUN_ID_VARIABLE: run_id}
        return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)

    mine, other = sleeper("run-a"), sleeper("run-b")
    try:
        # Until the child has exec'd, /proc shows the parent's environment: wait for it.
        for process in (mine, other):
            marker = f"{RUN_ID_VARIABLE}={'run-a' if process is mine else 'run-b'}".encode()
            environ = Path(f"/proc/{process.pid}/environ")
            for _ in range(1000):
                if marker in environ.read_bytes().split(b"\0"):
                    break
                time.sleep(0.005)
        assert kill_orphans("run-a") == 1
        assert mine.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for process in (mine, other):
            if process.poll() is None:
                process.kill()
            process.wait()
