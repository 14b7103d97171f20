"""``on: pipeline``: the trigger spec, its matching, and chaining checks of a folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reactor.errors import SpecErrorGroup
from reactor.events import Event
from reactor.pipelines import load_folder, load_pipeline
from reactor.rules import RuleEngine
from reactor.specs import EventFilter, PipelineTriggerSpec


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def pipeline(name: str, *upstreams: str, status: str | None = None) -> str:
    """A pipeline file whose ``on: pipeline`` triggers name ``upstreams``."""
    lines = [f"name: {name}"]
    if upstreams:
        lines.append("triggers:")
        for upstream in upstreams:
            lines += ["  - on: pipeline", f"    pipeline: {upstream}"]
            if status is not None:
                lines.append(f"    status: {status}")
    lines += ["tasks:", "  - id: work", "    shell: echo hi"]
    return "\n".join(lines) + "\n"


def run_event(pipeline: str, status: str, **data: object) -> Event:
    return Event(
        type=f"reactor.run.{status}",
        source=f"reactor/pipelines/{pipeline}",
        id="r1",
        data={"pipeline": pipeline, "run_id": "r1", "status": status, **data},
    )


# --- the trigger ---------------------------------------------------------------------------------


def test_the_trigger_defaults_to_succeeded_and_takes_one_status_or_a_list(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("extract"))
    write(
        tmp_path,
        "b.yaml",
        """
        name: report
        triggers:
          - on: pipeline
            pipeline: extract
          - on: pipeline
            id: on_failure
            pipeline: extract
            status: failed
          - on: pipeline
            id: on_end
            pipeline: extract
            status: [failed, cancelled]
        tasks:
          - id: work
            shell: echo hi
        """,
    )
    loaded = load_folder(tmp_path)
    assert loaded.problems == []
    triggers = loaded.pipelines["report"].triggers
    assert [t.key for t in triggers] == ["report/pipeline", "report/on_failure", "report/on_end"]
    specs = [t.spec for t in triggers]
    assert all(isinstance(s, PipelineTriggerSpec) for s in specs)
    assert [s.status for s in specs] == [  # type: ignore[attr-defined]
        ["succeeded"],
        ["failed"],
        ["failed", "cancelled"],
    ]
    assert triggers[0].filter == EventFilter("reactor.run.*", "reactor/pipelines/extract")


def test_status_filters_run_events_and_the_source_names_the_upstream(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("extract"))
    write(tmp_path, "o.yaml", pipeline("other"))
    write(tmp_path, "b.yaml", pipeline("report", "extract", status="[failed, cancelled]"))
    loaded = load_folder(tmp_path)
    engine = RuleEngine(loaded.pipelines.values())

    def decisions(event: Event) -> list[tuple[bool, str]]:
        return [(d.fired, d.reason) for d in engine.evaluate(event, {})]

    assert decisions(run_event("extract", "failed")) == [(True, "matched")]
    assert decisions(run_event("extract", "cancelled")) == [(True, "matched")]
    assert decisions(run_event("extract", "succeeded")) == [
        (False, "event not accepted by the trigger")
    ]
    assert decisions(run_event("other", "failed")) == []
    # A look-alike source does not match: the source is exact.
    lookalike = Event("reactor.run.failed", "reactor/pipelines/extract2", id="x")
    assert decisions(lookalike) == []


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            "    status: done\n",
            "p.yaml:4: triggers[0].status[0]: Input should be 'succeeded', 'failed' or"
            " 'cancelled', got 'done'",
        ),
        (
            "    status: []\n",
            "p.yaml:4: triggers[0].status: List should have at least 1 item after validation,"
            " not 0",
        ),
        (
            "    source: x\n",
            "p.yaml:4: triggers[0].source: unknown field",
        ),
    ],
)
def test_bad_fields_of_the_trigger_are_reported_at_their_line(
    tmp_path: Path, field: str, message: str
) -> None:
    text = (
        "name: report\ntriggers:\n  - on: pipeline\n"
        + field
        + "    pipeline: extract\ntasks:\n  - id: a\n    shell: echo\n"
    )
    path = write(tmp_path, "p.yaml", text)
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="p.yaml")
    assert [str(p) for p in caught.value.problems] == [message]


def test_a_trigger_without_its_upstream_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.yaml", "name: r\ntriggers:\n  - on: pipeline\ntasks: [{id: a, shell: x}]\n"
    )
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="p.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "p.yaml:3: triggers[0].pipeline: field required"
    ]


# --- chaining checks of a folder -----------------------------------------------------------------


def test_an_unknown_upstream_is_an_error_with_a_hint_and_the_pipeline_is_not_loaded(
    tmp_path: Path,
) -> None:
    write(tmp_path, "pipelines/a.yaml", pipeline("extract"))
    downstream = write(
        tmp_path,
        "pipelines/b.yaml",
        """
        name: report
        triggers:
          - on: event
            type: orders.paid
          - on: pipeline
            pipeline: extrakt
        tasks:
          - id: work
            shell: echo hi
        """,
    )
    write(tmp_path, "pipelines/c.yaml", pipeline("audit", "nothing_like_it"))
    loaded = load_folder(tmp_path / "pipelines")
    assert [str(p) for p in loaded.problems] == [
        "pipelines/b.yaml:6: triggers[1].pipeline: unknown pipeline 'extrakt'"
        " (did you mean 'extract'?)",
        "pipelines/c.yaml:4: triggers[0].pipeline: unknown pipeline 'nothing_like_it'",
    ]
    assert set(loaded.pipelines) == {"extract"}
    assert downstream in loaded.broken


def test_an_upstream_in_a_broken_file_is_not_called_unknown(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: extract\ntasks: []\n")
    write(tmp_path, "b.yaml", pipeline("report", "extract"))
    loaded = load_folder(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path.name}/a.yaml:2: tasks: List should have at least 1 item after validation, not 0"
    ]
    assert set(loaded.pipelines) == {"report"}


def test_two_pipelines_chained_to_each_other_are_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("extract", "report"))
    write(tmp_path, "b.yaml", pipeline("report", "extract"))
    write(tmp_path, "c.yaml", pipeline("unrelated"))
    loaded = load_folder(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path.name}/b.yaml:4: triggers[0].pipeline: chained pipelines form a cycle:"
        " extract -> report -> extract"
    ]
    assert set(loaded.pipelines) == {"unrelated"}
    assert loaded.broken == {tmp_path / "a.yaml", tmp_path / "b.yaml"}


def test_a_cycle_of_three_is_named_in_the_order_runs_would_start(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("a", "c"))
    write(tmp_path, "b.yaml", pipeline("b", "a"))
    write(tmp_path, "c.yaml", pipeline("c", "b"))
    # Downstream of the cycle, but not on it: loaded (and never started).
    write(tmp_path, "d.yaml", pipeline("d", "c"))
    loaded = load_folder(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path.name}/b.yaml:4: triggers[0].pipeline: chained pipelines form a cycle:"
        " a -> b -> c -> a"
    ]
    assert set(loaded.pipelines) == {"d"}


def test_a_pipeline_chained_to_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("again", "again", status="failed"))
    loaded = load_folder(tmp_path)
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path.name}/a.yaml:4: triggers[0].pipeline: chained pipelines form a cycle:"
        " again -> again"
    ]
    assert loaded.pipelines == {}


def test_a_chain_without_a_cycle_and_a_diamond_are_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", pipeline("a"))
    write(tmp_path, "b.yaml", pipeline("b", "a"))
    write(tmp_path, "c.yaml", pipeline("c", "a"))
    write(tmp_path, "d.yaml", pipeline("d", "b", "c"))
    loaded = load_folder(tmp_path)
    assert loaded.problems == []
    assert set(loaded.pipelines) == {"a", "b", "c", "d"}


def test_a_broad_event_glob_does_not_match_run_ends_but_an_explicit_one_does(
    tmp_path: Path,
) -> None:
    # A "*" trigger matching run ends would start a run at the end of each of its own runs.
    write(
        tmp_path,
        "a.yaml",
        """
        name: audit
        triggers:
          - on: event
            id: everything
            type: "*"
          - on: event
            id: run_ends
            type: "reactor.run.*"
        tasks:
          - id: work
            shell: echo hi
        """,
    )
    engine = RuleEngine(load_folder(tmp_path).pipelines.values())
    decisions = engine.evaluate(run_event("audit", "succeeded"), {})
    assert [(d.trigger, d.fired, d.reason) for d in decisions] == [
        ("audit/everything", False, "event not accepted by the trigger"),
        ("audit/run_ends", True, "matched"),
    ]
    other = engine.evaluate(Event("orders.paid", "shop"), {})
    assert [(d.trigger, d.fired) for d in other] == [("audit/everything", True)]
