"""Retention policy: which runs and events a pass removes, from settings and pipelines."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from reactor.clock import FakeClock
from reactor.config import SETTINGS_FILE, load_config
from reactor.errors import SpecErrorGroup
from reactor.pipelines import load_folder
from reactor.retention import (
    DEFAULT_EVERY,
    PipelineRetentionSpec,
    Pruned,
    RetentionSpec,
    RunPolicy,
    plan_retention,
    wanted,
)

DAY = 86400.0


def settings(**values: object) -> RetentionSpec:
    return RetentionSpec.model_validate(values)


def own(**values: object) -> PipelineRetentionSpec:
    return PipelineRetentionSpec.model_validate(values)


def test_without_retention_nothing_is_planned() -> None:
    clock = FakeClock()
    plan = plan_retention(clock.now(), None, {"orders": None, "noisy": None})
    assert plan.empty
    assert plan.run_policy("orders") is None
    assert plan.events_before is None
    assert not wanted(None, [None, None])


def test_ages_count_back_from_the_clock() -> None:
    clock = FakeClock()
    clock.advance(90 * DAY)
    now = clock.now()
    plan = plan_retention(now, settings(runs="30d", keep_runs=1000, events="7d"), {"orders": None})
    assert plan.run_policy("orders") == RunPolicy(now - timedelta(days=30), 1000)
    assert plan.events_before == now - timedelta(days=7)
    clock.advance(DAY)
    later = plan_retention(clock.now(), settings(runs="30d"), {})
    assert later.run_policy("orders") == RunPolicy(now - timedelta(days=29), 0)


def test_runs_of_a_pipeline_no_longer_loaded_follow_the_settings() -> None:
    now = FakeClock().now()
    plan = plan_retention(now, settings(runs="2d", keep_runs=5), {})
    assert plan.run_policy("gone") == RunPolicy(now - timedelta(days=2), 5)


def test_keep_runs_alone_keeps_the_newest_whatever_their_age() -> None:
    now = FakeClock().now()
    plan = plan_retention(now, settings(keep_runs=10), {"orders": None})
    assert plan.run_policy("orders") == RunPolicy(None, 10)


def test_events_alone_prune_no_runs() -> None:
    now = FakeClock().now()
    plan = plan_retention(now, settings(events="1d"), {"orders": None})
    assert plan.run_policy("orders") is None
    assert plan.events_before == now - timedelta(days=1)
    assert not plan.empty


def test_a_pipeline_override_wins_field_by_field() -> None:
    now = FakeClock().now()
    plan = plan_retention(
        now,
        settings(runs="30d", keep_runs=1000),
        {
            "noisy": own(runs="2d", keep_runs=100),
            "ages": own(runs="1d"),
            "counts": own(keep_runs=3),
            "plain": None,
        },
    )
    assert plan.run_policy("noisy") == RunPolicy(now - timedelta(days=2), 100)
    assert plan.run_policy("ages") == RunPolicy(now - timedelta(days=1), 1000)
    assert plan.run_policy("counts") == RunPolicy(now - timedelta(days=30), 3)
    assert plan.run_policy("plain") == RunPolicy(now - timedelta(days=30), 1000)


def test_a_pipeline_retention_alone_prunes_only_that_pipeline() -> None:
    now = FakeClock().now()
    plan = plan_retention(now, None, {"noisy": own(runs="2d"), "plain": None})
    assert plan.run_policy("noisy") == RunPolicy(now - timedelta(days=2), 0)
    assert plan.run_policy("plain") is None
    assert plan.run_policy("gone") is None
    assert plan.events_before is None
    assert wanted(None, [None, own(runs="2d")])


def test_a_pipeline_saying_null_keeps_its_runs_whatever_the_settings() -> None:
    now = FakeClock().now()
    plan = plan_retention(
        now,
        settings(runs="30d"),
        {"audit": own(runs=None), "counted": own(runs=None, keep_runs=5)},
    )
    assert plan.run_policy("audit") is None
    assert plan.run_policy("counted") == RunPolicy(None, 5)
    assert plan.run_policy("other") == RunPolicy(now - timedelta(days=30), 0)


def test_every_defaults_to_an_hour() -> None:
    assert settings(runs="1d").every == DEFAULT_EVERY == 3600.0
    assert settings(every="5m").every == 300.0


def test_the_summary_names_every_count() -> None:
    pruned = Pruned(runs=3, events=12, log_lines=40, seconds=0.25)
    assert pruned.summary() == "retention: removed 3 runs, 12 events, 40 log lines in 0.25s"


# --- as written in files -------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def test_reactor_yaml_and_a_pipeline_file_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        SETTINGS_FILE,
        """
        retention:
          runs: 30d
          keep_runs: 1000
          events: 7d
          every: 1h
        """,
    )
    write(
        tmp_path,
        "noisy.yaml",
        """
        name: noisy
        retention: {runs: 2d, keep_runs: 100}
        tasks:
          - id: hello
            shell: echo hi
        """,
    )
    loaded = load_folder(tmp_path)
    assert not loaded.problems
    spec = loaded.config.spec.retention
    assert spec == RetentionSpec(runs=30 * DAY, keep_runs=1000, events=7 * DAY, every=3600)
    assert loaded.pipelines["noisy"].spec.retention == own(runs="2d", keep_runs=100)


def problems(folder: Path, text: str) -> list[str]:
    write(folder, SETTINGS_FILE, text)
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(folder, display=f"pipelines/{SETTINGS_FILE}")
    return [str(p) for p in caught.value.problems]


def test_an_unknown_retention_key_lists_the_retention_settings(tmp_path: Path) -> None:
    assert problems(tmp_path, "retention:\n  runs: 30d\n  logs: 7d\n") == [
        "pipelines/reactor.yaml:3: retention.logs: unknown setting;"
        " retention takes runs, keep_runs, events, every"
    ]


def test_bad_retention_values_are_named_at_their_lines(tmp_path: Path) -> None:
    text = """
    retention:
      runs: forever
      keep_runs: -1
      events: 0
      every: 0.5
    """
    assert problems(tmp_path, text) == [
        "pipelines/reactor.yaml:2: retention.runs: 'forever' is not a duration;"
        " write a number of seconds or 500ms, 10s, 5m, 1h, 1d",
        "pipelines/reactor.yaml:3: retention.keep_runs: Input should be greater than or equal to 0",
        "pipelines/reactor.yaml:4: retention.events: Input should be greater than or equal to 1",
        "pipelines/reactor.yaml:5: retention.every: Input should be greater than or equal to 1",
    ]


def test_a_pipeline_retention_takes_only_runs_and_keep_runs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "noisy.yaml",
        """
        name: noisy
        retention: {runs: 2d, events: 1d}
        tasks:
          - id: hello
            shell: echo hi
        """,
    )
    loaded = load_folder(tmp_path)
    assert "noisy" not in loaded.pipelines
    [problem] = loaded.problems
    assert str(problem).endswith("/noisy.yaml:2: retention.events: unknown field")
