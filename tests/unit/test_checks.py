"""Check results and the ``reactor.check.*`` events of finished check tasks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reactor.checks import CheckResult, check_events, check_outcome
from reactor.store import RunRecord, TaskRecord

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RUN = RunRecord("r1", "k", "orders", "v1", "running", {}, None, [], NOW)


@pytest.mark.parametrize(
    ("passed", "severity", "outcome"),
    [
        (True, "fail", "passed"),
        (True, "warn", "passed"),
        (False, "warn", "warned"),
        (False, "fail", "failed"),
    ],
)
def test_the_outcome_follows_the_result_and_severity(
    passed: bool, severity: str, outcome: str
) -> None:
    result = CheckResult(passed, severity, 3, "no rows")  # type: ignore[arg-type]
    assert result.outcome == outcome
    assert result.to_json() == {
        "passed": passed,
        "severity": severity,
        "observed": 3,
        "expectation": "no rows",
        "message": "",
        "outcome": outcome,
    }
    assert check_outcome(result.to_json()) == outcome


def test_a_finished_check_is_one_event_beside_its_task_event() -> None:
    output = CheckResult(False, "fail", 3, "no rows", "found 3 rows").to_json()
    record = TaskRecord("r1", "no_negatives", "failed", 1, NOW, NOW, output, "check failed")
    [event] = check_events(RUN, record, NOW)
    assert event.type == "reactor.check.failed"
    assert event.source == "reactor/pipelines/orders"
    # Not the task event's id (r1/no_negatives/1): events are unique by source and id.
    assert event.id == "r1/no_negatives/1/check"
    assert event.data["task_id"] == "no_negatives"
    assert event.data["observed"] == 3


def test_a_check_task_without_a_result_has_no_check_event() -> None:
    record = TaskRecord("r1", "no_negatives", "failed", 1, NOW, NOW, None, "connection refused")
    assert check_events(RUN, record, NOW) == []
    assert check_outcome({"rows": []}) is None
