"""Taking over a task or iteration left running by a process that died."""

from __future__ import annotations

from datetime import UTC, datetime

from reactor.executor import _take_over_crashed
from reactor.store import TaskRecord

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def running(attempts: int) -> TaskRecord:
    return TaskRecord("run", "load[3]", "running", attempts)


def test_a_cut_off_attempt_runs_again_while_retries_allow() -> None:
    record = running(2)
    _take_over_crashed(record, 2, NOW)
    assert (record.status, record.ended_at) == ("pending", None)
    assert record.error == "crashed: the process running it stopped"


def test_a_cut_off_last_attempt_fails_the_task() -> None:
    record = running(3)
    _take_over_crashed(record, 2, NOW)
    assert (record.status, record.ended_at) == ("failed", NOW)
    assert record.error == "crashed: the process running it stopped"


def test_a_loop_always_goes_on() -> None:
    record = running(7)
    _take_over_crashed(record, None, NOW)
    assert record.status == "pending"
