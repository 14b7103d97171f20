"""``reactor schedule``: the next fire times of a pipeline's schedules, no service needed."""

from __future__ import annotations

import pytest

from .commands import run_reactor

pytestmark = pytest.mark.e2e

NIGHTLY = """
name: nightly
triggers:
  - on: schedule
    id: at_half_past_two
    cron: "30 2 * * *"
    timezone: Europe/Amsterdam
  - on: schedule
    every: 90m
    start: "2026-01-01T00:15:00+00:00"
tasks:
  - id: show
    shell: "echo {{ logical.time }}"
"""

ON_DEMAND = """
name: on_demand
tasks:
  - id: show
    shell: echo
"""


def test_schedule_lists_fire_times_in_the_timezone_and_in_utc(folder) -> None:
    path = folder("pipelines", {"nightly.yaml": NIGHTLY})
    result = run_reactor(
        "schedule", "nightly", "--dir", str(path), "--count", "3", "--after",
        "2026-03-28T00:00:00+01:00",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "nightly/at_half_past_two: cron '30 2 * * *' in Europe/Amsterdam",
        "  2026-03-28T02:30:00+01:00  Sat  (UTC 2026-03-28T01:30:00+00:00)",
        # 02:30 does not exist on the 29th: it runs once, when the clock jumps to 03:00.
        "  2026-03-29T03:00:00+02:00  Sun  (UTC 2026-03-29T01:00:00+00:00)",
        "  2026-03-30T02:30:00+02:00  Mon  (UTC 2026-03-30T00:30:00+00:00)",
        "nightly/schedule: every 90m from 2026-01-01T00:15:00+00:00",
        "  2026-03-28T00:15:00+00:00  Sat  (UTC 2026-03-28T00:15:00+00:00)",
        "  2026-03-28T01:45:00+00:00  Sat  (UTC 2026-03-28T01:45:00+00:00)",
        "  2026-03-28T03:15:00+00:00  Sat  (UTC 2026-03-28T03:15:00+00:00)",
    ]


def test_schedule_defaults_to_ten_times_from_now(folder) -> None:
    path = folder("pipelines", {"nightly.yaml": NIGHTLY})
    result = run_reactor("schedule", "nightly", "--dir", str(path))
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 2 + 2 * 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: no valid pipeline 'nope' in {path} (found: nightly, on_demand)"),
        (["on_demand"], "error: pipeline 'on_demand' has no schedule trigger"),
        (["nightly", "--after", "tomorrow"], "error: --after 'tomorrow' is not an ISO 8601 time"),
        (
            ["nightly", "--after", "2026-01-01T06:00:00"],
            "error: --after '2026-01-01T06:00:00' needs a UTC offset,"
            " like 2026-01-01T06:00:00+01:00",
        ),
    ],
)
def test_schedule_errors_say_what_is_wrong(folder, args: list[str], message: str) -> None:
    path = folder("pipelines", {"nightly.yaml": NIGHTLY, "demand.yaml": ON_DEMAND})
    result = run_reactor("schedule", *args, "--dir", str(path))
    assert result.code == 1
    assert result.err.strip() == message.format(path=path)
    assert result.out == ""


def test_schedule_refuses_a_count_out_of_range(folder) -> None:
    path = folder("pipelines", {"nightly.yaml": NIGHTLY})
    result = run_reactor("schedule", "nightly", "--dir", str(path), "--count", "0")
    assert result.code == 2
    assert (
        "Invalid value for '--count' / '-n': Input should be greater than or equal to 1"
        in result.err
    )
