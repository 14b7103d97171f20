"""Loading pipeline files: compiled pipelines, and errors that name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from spec_files import load, problems, write

from reactor.dag import Need
from reactor.errors import SpecError, SpecErrorGroup, SpecProblem
from reactor.expressions import Expression
from reactor.pipelines import load_folder, load_pipeline
from reactor.registry import default_registry
from reactor.specs import EventFilter, EventTriggerSpec
from reactor.yamlfile import load_yaml, parse_yaml

# Every installed kind, as the messages list them (connectors add kinds; the list follows).
TRIGGER_KINDS = ", ".join(sorted(default_registry().triggers))

MINIMAL = """
name: orders
tasks:
  - id: a
    shell: echo hi
"""

#: Every registered task type, as messages list them (connectors add types).
TASK_KEYS = ", ".join(sorted(default_registry().tasks))


# --- a valid pipeline ----------------------------------------------------------------------------

FULL = """
name: ingest_orders
description: Validate, then summarise.
params:
  path: {type: string}
  region: {type: string, default: eu, enum: [eu, us]}
concurrency: {max_active_runs: 4, on_overlap: skip}
triggers:
  - on: file
    id: orders_inbox
    path: ./inbox
    pattern: "orders-*.csv"
    settle: 200ms
    params: {path: "{{ event.data.path }}"}
  - on: event
    type: "orders.*"
    source: "shop/*"
    when: "event.data.amount > 100"
    params: {path: "{{ event.data.path }}", region: us}
tasks:
  - id: summarise
    needs: validate
    shell: "echo {{ tasks.validate.output.rows }}"
    timeout: 5m
  - id: validate
    python: orders:validate
    args: {path: "{{ params.path }}"}
    retries: {max: 2}
"""


def test_a_valid_pipeline_is_compiled(tmp_path: Path) -> None:
    pipeline = load(tmp_path, FULL)
    assert pipeline.name == "ingest_orders"
    assert pipeline.path == tmp_path / "p.yaml"
    assert pipeline.base_dir == tmp_path
    assert pipeline.text == textwrap.dedent(FULL).lstrip("\n")
    assert pipeline.spec.concurrency.max_active_runs == 4
    assert pipeline.spec.concurrency.on_overlap == "skip"
    assert set(pipeline.params) == {"path", "region"}
    assert pipeline.params["region"].default == "eu"
    assert pipeline.params["path"].required


def test_tasks_are_ordered_by_their_needs(tmp_path: Path) -> None:
    pipeline = load(tmp_path, FULL)
    assert pipeline.order == ("validate", "summarise")
    assert pipeline.needs == {"summarise": (Need("validate"),), "validate": ()}
    assert pipeline.tasks["summarise"].spec.timeout == 300.0
    assert pipeline.tasks["validate"].retries.max == 2
    assert pipeline.tasks["validate"].retries.initial == 1.0
    assert pipeline.tasks["summarise"].retries.max == 0


def test_triggers_are_compiled_with_keys_filters_and_conditions(tmp_path: Path) -> None:
    file_trigger, event_trigger = load(tmp_path, FULL).triggers
    assert (file_trigger.id, file_trigger.key) == ("orders_inbox", "ingest_orders/orders_inbox")
    assert file_trigger.filter == EventFilter(
        "reactor.file.arrived", "reactor/sensors/ingest_orders/orders_inbox"
    )
    assert file_trigger.when is None
    assert event_trigger.key == "ingest_orders/event"
    assert event_trigger.pipeline == "ingest_orders"
    assert isinstance(event_trigger.spec, EventTriggerSpec)
    assert event_trigger.filter == EventFilter("orders.*", "shop/*")
    assert isinstance(event_trigger.when, Expression)
    assert event_trigger.when.source == "event.data.amount > 100"
    scope = {"event": {"data": {"path": "/in/x.csv"}}}
    assert event_trigger.params.render(scope) == {"path": "/in/x.csv", "region": "us"}


def test_the_version_is_a_hash_of_the_text(tmp_path: Path) -> None:
    first = load(tmp_path, MINIMAL)
    again = load(tmp_path, MINIMAL)
    changed = load(tmp_path, MINIMAL.replace("echo hi", "echo bye"))
    assert first.version == again.version
    assert first.version != changed.version
    assert len(first.version) == 16


def test_defaults_apply_when_sections_are_left_out(tmp_path: Path) -> None:
    pipeline = load(tmp_path, MINIMAL)
    assert pipeline.triggers == ()
    assert pipeline.params == {}
    assert pipeline.spec.concurrency.max_active_runs == 16
    assert pipeline.spec.concurrency.on_overlap == "queue"


def test_text_can_be_given_instead_of_reading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "not-written.yaml"
    pipeline = load_pipeline(path, text=textwrap.dedent(MINIMAL), display="shown.yaml")
    assert pipeline.name == "orders"
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, text="name: [", display="shown.yaml")
    assert str(caught.value).startswith("shown.yaml:1: invalid YAML:")


def test_errors_show_the_path_when_no_display_name_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "name: p\n")
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path)
    assert str(caught.value) == f"{path}:1: tasks: field required"


# --- default trigger ids -------------------------------------------------------------------------


def test_a_lone_trigger_of_a_kind_is_named_after_the_kind(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: p
        triggers:
          - {on: file, path: inbox}
          - {on: event, type: a}
        tasks:
          - {id: a, shell: echo}
        """,
    )
    assert [t.id for t in pipeline.triggers] == ["file", "event"]
    assert [t.key for t in pipeline.triggers] == ["p/file", "p/event"]


def test_several_triggers_of_a_kind_are_numbered(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: p
        triggers:
          - {on: event, type: a}
          - {on: file, path: inbox}
          - {on: event, id: named, type: b}
          - {on: event, type: c}
        tasks:
          - {id: a, shell: echo}
        """,
    )
    assert [t.id for t in pipeline.triggers] == ["event_1", "file", "named", "event_2"]


def test_duplicate_trigger_ids_are_errors(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        triggers:
          - {on: event, id: t, type: a}
          - {on: event, id: t, type: b}
          - {on: event, type: c}
          - {on: file, id: event, path: inbox}
        tasks:
          - {id: a, shell: echo}
        """,
    ) == [
        "p.yaml:3: triggers[0]: duplicate trigger id 't'",
        "p.yaml:4: triggers[1]: duplicate trigger id 't'",
        "p.yaml:5: triggers[2]: duplicate trigger id 'event'",
        "p.yaml:6: triggers[3]: duplicate trigger id 'event'",
    ]


# --- schema errors: file, line, field ------------------------------------------------------------


def test_an_unknown_key_is_reported_at_its_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
            retires: 3
        """,
    ) == ["p.yaml:5: tasks[0].retires: unknown field"]


def test_an_unknown_top_level_key_is_reported_at_its_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        colour: red
        tasks:
          - {id: a, shell: echo}
        """,
    ) == ["p.yaml:2: colour: unknown field"]


def test_wrong_types_are_reported_with_what_is_allowed(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        concurrency:
          max_active_runs: lots
          on_overlap: sometimes
        tasks:
          - id: a
            shell: echo
            timeout: soon
            retries: {max: -1}
        """,
    ) == [
        "p.yaml:3: concurrency.max_active_runs: Input should be a valid integer,"
        " unable to parse string as an integer",
        "p.yaml:4: concurrency.on_overlap: Input should be 'queue', 'skip', 'cancel_running'"
        " or 'allow', got 'sometimes'",
        "p.yaml:8: tasks[0].timeout: 'soon' is not a duration;"
        " write a number of seconds or 500ms, 10s, 5m, 1h, 1d",
        "p.yaml:9: tasks[0].retries.max: Input should be greater than or equal to 0",
    ]


def test_a_missing_name_and_empty_tasks(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        description: nothing else
        tasks: []
        """,
    ) == [
        "p.yaml:1: name: field required",
        "p.yaml:2: tasks: List should have at least 1 item after validation, not 0",
    ]


def test_names_and_ids_must_be_identifiers(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: "bad name"
        tasks:
          - {id: 1a, shell: echo}
        """,
    ) == [
        "p.yaml:1: name: String should match pattern '^[A-Za-z0-9_][A-Za-z0-9_.-]*$'",
        "p.yaml:3: tasks[0].id: String should match pattern '^[A-Za-z_][A-Za-z0-9_-]*$'",
    ]


def test_an_unknown_trigger_kind_lists_the_allowed_kinds(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        triggers:
          - on: nope
        tasks:
          - {id: a, shell: echo}
        """,
    ) == [f"p.yaml:3: triggers[0]: unknown trigger kind 'nope'; allowed: {TRIGGER_KINDS}"]


def test_a_trigger_without_on_lists_the_allowed_kinds(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        triggers:
          - type: orders.paid
        tasks:
          - {id: a, shell: echo}
        """,
    ) == [f"p.yaml:3: triggers[0]: a trigger needs 'on:', one of: {TRIGGER_KINDS}"]


def test_a_trigger_missing_a_field_of_its_kind(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        triggers:
          - on: pipeline
            when: "true"
        tasks:
          - {id: a, shell: echo}
        """,
    ) == ["p.yaml:3: triggers[0].pipeline: field required"]


def test_an_event_trigger_needs_a_type_or_a_correlation(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        triggers:
          - on: event
            when: "true"
        tasks:
          - {id: a, shell: echo}
        """,
    ) == ["p.yaml:3: triggers[0]: on: event needs type: (a glob) or all_of: (a correlation)"]


def test_a_task_with_no_type_key(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            needs: []
        """,
    ) == ["p.yaml:3: tasks[0]: a task needs one type key, one of: " + TASK_KEYS]


def test_a_task_with_two_type_keys(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            python: jobs:run
            shell: echo
        """,
    ) == [
        "p.yaml:5: tasks[0].shell: a task has exactly one type key; this task already has another"
    ]


def test_an_unknown_param_type(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        params:
          n: {type: integr}
          region: {default: fr, enum: [eu, us]}
        tasks:
          - {id: a, shell: echo}
        """,
    ) == [
        "p.yaml:3: params.n.type: Input should be 'string', 'integer', 'number', 'boolean',"
        " 'date', 'datetime', 'list' or 'object', got 'integr'",
        "p.yaml:4: params.region: 'fr' is not one of 'eu', 'us'",
    ]


# --- graph errors --------------------------------------------------------------------------------


def test_duplicate_task_ids(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo 1
          - id: a
            shell: echo 2
        """,
    ) == [
        "p.yaml:3: tasks[0].id: duplicate task id 'a'",
        "p.yaml:5: tasks[1].id: duplicate task id 'a'",
    ]


def test_unknown_needs_suggest_the_closest_task(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: load
            shell: echo
          - id: report
            needs: [load, laod, zzz]
            shell: echo
        """,
    ) == [
        "p.yaml:6: tasks[1].needs[1]: unknown task 'laod' (did you mean 'load'?)",
        "p.yaml:6: tasks[1].needs[2]: unknown task 'zzz'",
    ]


def test_a_need_on_a_separate_line_is_reported_at_that_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: load
            shell: echo
          - id: report
            needs:
              - load
              - lod
            shell: echo
        """,
    ) == ["p.yaml:8: tasks[1].needs[1]: unknown task 'lod' (did you mean 'load'?)"]


def test_a_cycle_shows_its_path(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            needs: [c]
            shell: echo
          - id: b
            needs: [a]
            shell: echo
          - id: c
            needs: b
            shell: echo
        """,
    ) == ["p.yaml:4: tasks[0].needs: dependency cycle: a -> c -> b -> a"]


def test_a_task_cannot_need_itself(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            needs: [a]
            shell: echo
        """,
    ) == ["p.yaml:4: tasks[0].needs[0]: a task cannot need itself"]


# --- params given by triggers --------------------------------------------------------------------


def test_a_trigger_param_that_is_not_declared(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        params:
          path: {type: string, default: x}
        triggers:
          - on: event
            type: orders.paid
            params:
              pth: "{{ event.data.path }}"
        tasks:
          - {id: a, shell: echo}
        """,
    ) == ["p.yaml:8: triggers[0].params.pth: undeclared param (did you mean 'path'?)"]


def test_a_required_param_not_given_by_a_trigger(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        params:
          path: {type: string}
          region: {type: string, default: eu}
        triggers:
          - on: event
            type: orders.paid
            params: {region: us}
          - on: file
            path: inbox
        tasks:
          - {id: a, shell: echo}
        """,
    ) == [
        "p.yaml:8: triggers[0].params: required param 'path' is not given by this trigger",
        "p.yaml:9: triggers[1].params: required param 'path' is not given by this trigger",
    ]


# --- broken templates ----------------------------------------------------------------------------


def test_broken_templates_are_reported_where_they_are(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        params:
          a: {type: string, default: x}
        triggers:
          - on: event
            type: x
            when: "event.data.amount >"
          - on: event
            type: y
            params: {a: "{{ event. }}"}
        tasks:
          - id: run
            shell: "echo {{ params.a"
          - id: call
            python: jobs:call
            args:
              x: "{% if %}"
        """,
    ) == [
        "p.yaml:7: triggers[0].when: unexpected 'end of template' (in 'event.data.amount >')",
        "p.yaml:10: triggers[1].params: expected name or number (in 'event.')",
        "p.yaml:13: tasks[0].shell: unexpected end of template,"
        " expected 'end of print statement'. (in 'echo {{ params.a')",
        "p.yaml:16: tasks[1].args: Expected an expression, got 'end of statement block'"
        " (in '{% if %}')",
    ]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: "echo {{ x"
          - id: b
            needs: [nope]
            shell: echo
        """,
    )
    assert len(found) == 2
    assert found[0].startswith("p.yaml:4: tasks[0].shell: unexpected end of template")
    assert found[1] == "p.yaml:6: tasks[1].needs[0]: unknown task 'nope'"


# --- files that are not pipelines ----------------------------------------------------------------


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: [echo
        """,
    ) == ["p.yaml:5: invalid YAML: expected ',' or ']', but got '<stream end>'"]


def test_bad_indentation_is_invalid_yaml(tmp_path: Path) -> None:
    found = problems(tmp_path, "name: p\n  tasks: x\n")
    assert found == ["p.yaml:2: invalid YAML: mapping values are not allowed here"]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert problems(tmp_path, text) == [
        "p.yaml:1: a pipeline file must be a mapping (name:, tasks:)"
    ]


def test_an_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == ["p.yaml: a pipeline file must be a mapping (name:, tasks:)"]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(tmp_path / "gone.yaml", display="gone.yaml")
    assert str(caught.value) == "gone.yaml: cannot read file: No such file or directory"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="p.yaml")
    assert str(caught.value) == "p.yaml: file is not UTF-8 text"


# --- yamlfile ------------------------------------------------------------------------------------


def test_yaml_documents_know_the_line_of_every_key(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "p.yaml", FULL), display="p.yaml")
    assert doc.path == "p.yaml"
    assert doc.data["name"] == "ingest_orders"
    assert doc.line_of(()) == 1
    assert doc.line_of(("params", "region")) == 5
    assert doc.line_of(("triggers", 1, "when")) == 17
    assert doc.line_of(("tasks", 0, "needs")) == 21
    # A key that is not there: the closest existing parent's line.
    assert doc.line_of(("tasks", 0, "nothing")) == 20
    assert doc.line_of(("tasks", 9)) == 19


def test_a_problem_names_file_line_and_dotted_field() -> None:
    doc = parse_yaml("a:\n  b:\n    - x\n    - y\n", display="f.yaml")
    problem = doc.problem(("a", "b", 1), "bad")
    assert problem == SpecProblem("f.yaml", 4, "a.b[1]", "bad")
    assert str(problem) == "f.yaml:4: a.b[1]: bad"
    assert str(SpecProblem("f.yaml", None, "", "bad")) == "f.yaml: bad"


def test_a_yaml_syntax_error_is_a_spec_error_with_its_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml("a: 1\nb: [\n", display="f.yaml")
    assert caught.value.problem.line == 3
    assert str(caught.value).startswith("f.yaml:3: invalid YAML: ")


# --- load_folder ---------------------------------------------------------------------------------


def test_load_folder_collects_every_problem_and_keeps_valid_pipelines(
    pipelines_dir: Path,
) -> None:
    good = write(pipelines_dir, "a.yaml", MINIMAL.replace("orders", "alpha"))
    write(pipelines_dir, "nested/c.yml", MINIMAL.replace("orders", "gamma"))
    broken = write(pipelines_dir, "b.yaml", "name: beta\ntasks:\n  - id: x\n")
    bad_yaml = write(pipelines_dir, "d.yaml", "name: [\n")
    result = load_folder(pipelines_dir)
    assert set(result.pipelines) == {"alpha", "gamma"}
    assert result.pipelines["alpha"].path == good.resolve()
    assert [str(p) for p in result.problems] == [
        "pipelines/b.yaml:3: tasks[0]: a task needs one type key, one of: " + TASK_KEYS,
        "pipelines/d.yaml:2: invalid YAML: expected the node content, but found '<stream end>'",
    ]
    assert result.broken == {broken.resolve(), bad_yaml.resolve()}


def test_load_folder_skips_settings_and_hidden_files(pipelines_dir: Path) -> None:
    write(pipelines_dir, "a.yaml", MINIMAL)
    write(pipelines_dir, "reactor.yaml", "connections: {warehouse: 'sqlite:///w.db'}\n")
    write(pipelines_dir, ".hidden/x.yaml", "broken: [\n")
    write(pipelines_dir, ".draft.yaml", "broken: [\n")
    write(pipelines_dir, "notes.txt", "broken: [\n")
    result = load_folder(pipelines_dir)
    assert list(result.pipelines) == ["orders"]
    assert result.problems == []
    assert result.broken == set()


def test_duplicate_pipeline_names_across_files(pipelines_dir: Path) -> None:
    write(pipelines_dir, "a.yaml", MINIMAL)
    duplicate = write(pipelines_dir, "b.yaml", MINIMAL)
    result = load_folder(pipelines_dir)
    assert result.pipelines["orders"].path.name == "a.yaml"
    assert [str(p) for p in result.problems] == [
        "pipelines/b.yaml:1: name: pipeline 'orders' is also in a.yaml"
    ]
    assert result.broken == {duplicate.resolve()}


def test_an_empty_folder_has_no_pipelines_and_no_problems(pipelines_dir: Path) -> None:
    result = load_folder(pipelines_dir)
    assert (result.pipelines, result.problems, result.broken) == ({}, [], set())


def test_a_missing_folder_is_a_problem(tmp_path: Path) -> None:
    result = load_folder(tmp_path / "nowhere")
    assert [str(p) for p in result.problems] == [f"{tmp_path / 'nowhere'}: is not a folder"]
    assert result.pipelines == {}


def test_graph_problems_are_reported_beside_problems_of_structure(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
            timeout: soon
          - id: a
            shell: echo
          - id: b
            needs: [nope]
            shell: echo
        """,
    ) == [
        "p.yaml:3: tasks[0].id: duplicate task id 'a'",
        "p.yaml:5: tasks[0].timeout: 'soon' is not a duration;"
        " write a number of seconds or 500ms, 10s, 5m, 1h, 1d",
        "p.yaml:6: tasks[1].id: duplicate task id 'a'",
        "p.yaml:9: tasks[2].needs[0]: unknown task 'nope'",
    ]
