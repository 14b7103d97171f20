"""Control flow in pipeline files: output references, retries, loops, branches, pools and
timeouts, each mistake with the file:line and message ``validate`` shows."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from spec_files import found, load, problems, write

from reactor.config import load_config
from reactor.control import ForEachTaskSpec
from reactor.dag import Need
from reactor.errors import SpecErrorGroup, SpecProblem
from reactor.pipelines import load_folder
from reactor.registry import default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "control-flow.md"

# What ``validate`` says for a ``for_each:`` that is not a list (docs/control-flow.md).
NOT_A_LIST = (
    'for_each takes a list, or a template giving one such as "{{ params.regions }}"'
    ' or "{{ tasks.list.output }}"'
)
RETRY_ON_EMPTY = (
    "retry_on names nothing to retry; remove it or list exit codes, exception types,"
    " timeout, or give an expression"
)
RUN_IF_VALUES = (
    "'all_success', 'at_least_one_success', 'none_failed', 'all_done',"
    " 'at_least_one_failed' or 'all_failed'"
)
# Names of pydantic's models and union branches, which mean nothing to the user.
INTERNAL_NAMES = ("NeedSpec", "RetrySpec", "RetryOnSpec", ".str", "list[any]")

#: Every registered task type, as messages list them (connectors add types).
TASK_KEYS = ", ".join(sorted(default_registry().tasks))


def not_needed(task: str) -> str:
    return (
        f"reads tasks.{task} but does not need {task!r} (directly or through its needs),"
        f" so it may run before {task!r} ends; add it to needs:"
    )


def doc_pipeline(name: str) -> str:
    """The ```yaml block of docs/control-flow.md whose pipeline is ``name``."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    [block] = [b for b in blocks if re.search(rf"^name: {name}$", b, re.MULTILINE)]
    return str(block)


def assert_one_clear_problem(problems: list[SpecProblem], line: int, field: str) -> None:
    """One problem for one mistake, at the field's line, naming nothing internal."""
    assert [(p.line, p.field) for p in problems] == [(line, field)]
    assert not any(name in str(problems[0]) for name in INTERNAL_NAMES), str(problems[0])


# --- output references ---------------------------------------------------------------------------


def test_an_unknown_output_reference_suggests_the_closest_task(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: extract
            shell: echo
          - id: load
            needs: extract
            shell: "echo {{ tasks.extarct.output }}"
        """,
    ) == [
        "p.yaml:5: tasks[1]: reads tasks.extarct: there is no task 'extarct'"
        " (did you mean 'extract'?)"
    ]


def test_an_unknown_output_reference_without_a_close_task(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: extract
            shell: echo
          - id: load
            needs: extract
            shell: "echo {{ tasks.zzz.output }}"
        """,
    ) == ["p.yaml:5: tasks[1]: reads tasks.zzz: there is no task 'zzz'"]


def test_an_output_read_without_the_need_is_refused(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: extract
            shell: echo
          - id: other
            shell: echo
          - id: load
            needs: other
            shell: "echo {{ tasks.extract.output }}"
        """,
    ) == [f"p.yaml:7: tasks[2]: {not_needed('extract')}"]


def test_a_grandparents_output_may_be_read(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
          - id: b
            needs: a
            shell: echo
          - id: c
            needs: b
            shell: "echo {{ tasks.a.output }} {{ tasks.b.output }}"
        """,
    )
    assert pipeline.order == ("a", "b", "c")


def test_a_sibling_reached_only_through_a_shared_need_is_not_waited_for(tmp_path: Path) -> None:
    # d and c both come after a, but nothing makes d wait for c.
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
          - id: b
            needs: a
            shell: echo
          - id: c
            needs: a
            shell: echo
          - id: d
            needs: b
            shell: "echo {{ tasks.c.output }}"
        """,
    ) == [f"p.yaml:11: tasks[3]: {not_needed('c')}"]


@pytest.mark.parametrize(
    "reference",
    ["tasks['a'].output", 'tasks["a"].output', "tasks['a']['output']"],
)
def test_item_syntax_references_are_checked(tmp_path: Path, reference: str) -> None:
    quote = '"' if "'" in reference else "'"
    text = f"""
        name: p
        tasks:
          - id: a
            shell: echo
          - id: c
            shell: {quote}echo {{{{ {reference} }}}}{quote}
        """
    assert problems(tmp_path, text) == [f"p.yaml:5: tasks[1]: {not_needed('a')}"]
    head, reader = text.rsplit("    shell:", 1)
    assert load(tmp_path, f"{head}    needs: a\n            shell:{reader}")


def test_an_unknown_task_in_item_syntax(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: extract
            shell: echo
          - id: c
            needs: extract
            shell: "echo {{ tasks['extrac'].output }}"
        """,
    ) == [
        "p.yaml:5: tasks[1]: reads tasks.extrac: there is no task 'extrac'"
        " (did you mean 'extract'?)"
    ]


# Where a task can read an output; each reads tasks.a (line 6 of the pipeline below).
READERS = {
    "if": """
    if: "tasks.a.output > 3"
    """,
    "retry_on expression": """
    shell: echo
    retries: 2
    retry_on: "tasks.a.output == 1"
    """,
    "retry_on when": """
    shell: echo
    retries: 2
    retry_on:
      exit_codes: [1]
      when: "tasks.a.output == 1"
    """,
    "for_each task args": """
    for_each: [1, 2]
    task:
      python: jobs:run
      args: {x: "{{ tasks.a.output }}"}
    """,
    "for_each task shell": """
    for_each: [1, 2]
    task:
      shell: "echo {{ item }} {{ tasks.a.output.rows }}"
    """,
    "for_each template": """
    for_each: "{{ tasks.a.output }}"
    task:
      shell: "echo {{ item }}"
    """,
}


def reader_pipeline(body: str, *, needs: bool) -> str:
    lines = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    need = "    needs: a\n" if needs else ""
    return f"name: p\ntasks:\n  - id: a\n    shell: echo\n  - id: c\n{need}{lines}\n"


@pytest.mark.parametrize("body", READERS.values(), ids=READERS.keys())
def test_every_place_that_reads_an_output_is_checked(tmp_path: Path, body: str) -> None:
    assert problems(tmp_path, reader_pipeline(body, needs=False)) == [
        f"p.yaml:5: tasks[1]: {not_needed('a')}"
    ]


@pytest.mark.parametrize("body", READERS.values(), ids=READERS.keys())
def test_every_place_may_read_an_output_it_waits_for(tmp_path: Path, body: str) -> None:
    pipeline = load(tmp_path, reader_pipeline(body, needs=True))
    assert pipeline.needs["c"] == (Need("a"),)


def test_reading_a_task_that_needs_the_reader_is_refused(tmp_path: Path) -> None:
    # A cycle in disguise: a reads b, but b waits for a.
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: "echo {{ tasks.b.output }}"
          - id: b
            needs: a
            shell: echo
        """,
    ) == [
        "p.yaml:3: tasks[0]: reads tasks.b, but 'b' runs after this task (it needs it,"
        " directly or through its needs)"
    ]


def test_a_reference_under_an_argument_named_id_is_checked(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
          - id: b
            python: jobs:run
            args: {id: "{{ tasks.a.output }}", needs: "{{ tasks.nope.output }}"}
        """,
    ) == [
        f"p.yaml:5: tasks[1]: {not_needed('a')}",
        "p.yaml:5: tasks[1]: reads tasks.nope: there is no task 'nope'",
    ]


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        (
            "retries:\n  max: 2\n  backoff: linear",
            "p.yaml:7: tasks[0].retries.backoff: Input should be 'fixed' or 'exponential',"
            " got 'linear'",
        ),
        (
            "retries: {max: 2, backoff: linear}",
            "p.yaml:5: tasks[0].retries.backoff: Input should be 'fixed' or 'exponential',"
            " got 'linear'",
        ),
        (
            "retries:\n  max: 2\n  initial: -1s",
            "p.yaml:7: tasks[0].retries.initial: a duration cannot be negative",
        ),
        (
            "retries:\n  max: 2\n  backoff: exponential\n  initial: 10s\n  max_delay: 5s",
            "p.yaml:5: tasks[0].retries: max_delay must be at least initial",
        ),
        (
            "retries:\n  max: 2\n  max_delay: 0",
            "p.yaml:7: tasks[0].retries.max_delay: Input should be greater than 0",
        ),
        (
            "retries:\n  max: -1",
            "p.yaml:6: tasks[0].retries.max: Input should be greater than or equal to 0",
        ),
        (
            "retries: -1",
            "p.yaml:5: tasks[0].retries.max: Input should be greater than or equal to 0",
        ),
        (
            "retries: 1001",
            "p.yaml:5: tasks[0].retries.max: Input should be less than or equal to 1000",
        ),
        (
            "retries:\n  max: 2\n  delay: 1s\n  initial: 2s",
            "p.yaml:5: tasks[0].retries: write initial: or delay: (the same thing), not both",
        ),
        (
            "retries:\n  max: 2\n  jitter: sometimes",
            "p.yaml:7: tasks[0].retries.jitter: Input should be a valid boolean,"
            " unable to interpret input",
        ),
        ("retries: {max: 2, tries: 3}", "p.yaml:5: tasks[0].retries.tries: unknown field"),
    ],
)
def test_a_bad_retry_spec_is_reported_at_its_field(
    tmp_path: Path, retries: str, expected: str
) -> None:
    text = "name: p\ntasks:\n  - id: a\n    shell: echo\n" + textwrap.indent(retries, "    ")
    assert problems(tmp_path, text) == [expected]


def test_retries_as_a_word_says_what_is_accepted(tmp_path: Path) -> None:
    text = "name: p\ntasks:\n  - id: a\n    shell: echo\n    retries: three\n"
    assert_one_clear_problem(found(tmp_path, text), 5, "tasks[0].retries")


def test_retries_as_a_word_is_refused(tmp_path: Path) -> None:
    text = "name: p\ntasks:\n  - id: a\n    shell: echo\n    retries: three\n"
    assert [(p.line, p.field) for p in found(tmp_path, text)] == [(5, "tasks[0].retries")]


@pytest.mark.parametrize(
    ("retry_on", "expected"),
    [
        ("retry_on: []", f"p.yaml:6: tasks[0].retry_on: {RETRY_ON_EMPTY}"),
        ("retry_on: {}", f"p.yaml:6: tasks[0].retry_on: {RETRY_ON_EMPTY}"),
        (
            "retry_on: {exit_codes: [], exceptions: [], timeout: false}",
            f"p.yaml:6: tasks[0].retry_on: {RETRY_ON_EMPTY}",
        ),
        (
            "retry_on: [1abc]",
            r"p.yaml:6: tasks[0].retry_on.exceptions[0]: String should match pattern"
            r" '^[A-Za-z_][\w.]*$'",
        ),
        (
            "retry_on: [ConnectionError, 1abc]",
            r"p.yaml:6: tasks[0].retry_on.exceptions[1]: String should match pattern"
            r" '^[A-Za-z_][\w.]*$'",
        ),
        (
            "retry_on: 'exit_code =='",
            "p.yaml:6: tasks[0].retry_on: unexpected 'end of template' (in 'exit_code ==')",
        ),
        ("retry_on: {codes: [1]}", "p.yaml:6: tasks[0].retry_on.codes: unknown field"),
    ],
)
def test_a_bad_retry_on_is_reported_at_its_line(
    tmp_path: Path, retry_on: str, expected: str
) -> None:
    text = f"name: p\ntasks:\n  - id: a\n    shell: echo\n    retries: 2\n    {retry_on}\n"
    assert problems(tmp_path, text) == [expected]


def test_a_bad_retry_on_expression_of_a_loops_task_is_reported_under_task(
    tmp_path: Path,
) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: loop
            for_each: [1]
            task:
              shell: echo
              retries: 2
              retry_on: "exit_code =="
        """,
    ) == ["p.yaml:8: tasks[0].task.retry_on: unexpected 'end of template' (in 'exit_code ==')"]


def test_a_bad_when_of_retry_on_is_reported_at_its_own_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
            retries: 2
            retry_on:
              exit_codes: [1]
              when: "exit_code =="
        """,
    ) == ["p.yaml:8: tasks[0].retry_on.when: unexpected 'end of template' (in 'exit_code ==')"]


def test_retry_settings_are_compiled(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
            retries: {max: 3, backoff: exponential, delay: 2s, max_delay: 5s}
            retry_on: [6, ConnectionError, timeout]
        """,
    )
    retry = pipeline.tasks["a"].retry
    assert (retry.spec.max, retry.spec.initial, retry.spec.max_delay) == (3, 2.0, 5.0)
    assert [retry.delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]
    assert retry.retry_on is not None
    assert retry.retry_on.exit_codes == [6]
    assert retry.retry_on.exceptions == ["ConnectionError"]
    assert retry.retry_on.timeout


# --- for_each ------------------------------------------------------------------------------------


def test_for_each_a_plain_string_is_not_a_list(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: loop
            for_each: eu
            task:
              shell: echo
        """,
    ) == [f"p.yaml:4: tasks[0].for_each: {NOT_A_LIST}"]


@pytest.mark.parametrize("value", ["3", "{a: 1}", "true"])
def test_for_each_a_number_or_mapping_is_not_a_list(tmp_path: Path, value: str) -> None:
    [problem] = found(
        tmp_path,
        f"""
        name: p
        tasks:
          - id: loop
            for_each: {value}
            task:
              shell: echo
        """,
    )
    assert (problem.line, problem.field) in ((3, "tasks[0]"), (4, "tasks[0].for_each"))
    assert problem.message == NOT_A_LIST


def test_a_for_each_template_that_does_not_compile(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: loop
            for_each: "{{ params.regions"
            task:
              shell: echo
        """,
    ) == [
        "p.yaml:4: tasks[0].for_each: unexpected end of template, expected 'end of print"
        " statement'. (in '{{ params.regions')"
    ]


@pytest.mark.parametrize(
    ("fields", "owned"),
    [
        ("id: x", "id"),
        ("needs: [a]", "needs"),
        ("run_if: all_done", "run_if"),
        ("id: x\nneeds: [a]\nrun_if: all_done", "id, needs, run_if"),
    ],
)
def test_the_task_of_a_for_each_takes_no_loop_owned_fields(
    tmp_path: Path, fields: str, owned: str
) -> None:
    text = (
        "name: p\ntasks:\n  - id: a\n    shell: echo\n  - id: loop\n    needs: a\n"
        "    for_each: [1]\n    task:\n"
        + textwrap.indent(fields, "      ")
        + "\n      shell: echo\n"
    )
    assert problems(tmp_path, text) == [
        f"p.yaml:5: tasks[1]: the task: of a for_each takes no {owned} (the for_each task has them)"
    ]


def test_a_for_each_cannot_hold_another_directly(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: loop
            for_each: [1, 2]
            task:
              for_each: [3, 4]
              task:
                shell: echo
        """,
    ) == ["p.yaml:3: tasks[0]: a for_each cannot hold another for_each directly"]


@pytest.mark.parametrize(
    ("field", "key"),
    [("retries: 2", "retries"), ("retry_on: [1]", "retry_on"), ("pool: warehouse", "pool")],
)
def test_retries_and_pools_belong_under_task(tmp_path: Path, field: str, key: str) -> None:
    text = f"""
        name: p
        tasks:
          - id: loop
            for_each: [1]
            {field}
            task:
              shell: echo
        """
    assert problems(tmp_path, text) == [
        f"p.yaml:3: tasks[0]: put {key}: under task: (each iteration has its own)"
    ]


def test_a_task_of_a_for_each_with_no_type_key(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: loop
            for_each: [1]
            task:
              args: {a: 1}
        """,
    ) == ["p.yaml:5: tasks[0].task: a task needs one type key, one of: " + TASK_KEYS]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "shell: echo\nretries:\n  max: 2\n  backoff: linear",
            "p.yaml:9: tasks[0].task.retries.backoff: Input should be 'fixed' or"
            " 'exponential', got 'linear'",
        ),
        ("shell: echo\ntimeot: 5s", "p.yaml:7: tasks[0].task.timeot: unknown field"),
        (
            "shell: echo\ntimeout: 0",
            "p.yaml:7: tasks[0].task.timeout: Input should be greater than 0",
        ),
        (
            'shell: "echo {{ item"',
            "p.yaml:6: tasks[0].task.shell: unexpected end of template, expected 'end of"
            " print statement'. (in 'echo {{ item')",
        ),
        (
            "shell: echo\npython: jobs:run",
            "p.yaml:6: tasks[0].task.shell: a task has exactly one type key;"
            " this task already has another",
        ),
    ],
)
def test_a_bad_field_inside_task_is_reported_at_its_line(
    tmp_path: Path, fields: str, expected: str
) -> None:
    text = "name: p\ntasks:\n  - id: loop\n    for_each: [1]\n    task:\n" + textwrap.indent(
        fields, "      "
    )
    assert problems(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("", "p.yaml:3: tasks[0].task: field required"),
        ("task: echo", "p.yaml:5: tasks[0].task: Input should be a valid dictionary"),
        (
            "concurrency: 0\ntask: {shell: echo}",
            "p.yaml:5: tasks[0].concurrency: Input should be greater than or equal to 1",
        ),
        (
            "succeed_if: most\ntask: {shell: echo}",
            f"p.yaml:5: tasks[0].succeed_if: Input should be {RUN_IF_VALUES}, got 'most'",
        ),
    ],
)
def test_a_bad_loop_field_is_reported_at_its_line(
    tmp_path: Path, fields: str, expected: str
) -> None:
    text = "name: p\ntasks:\n  - id: loop\n    for_each: [1]\n" + textwrap.indent(fields, "    ")
    assert problems(tmp_path, text) == [expected]


# --- needs with outcomes, and run_if -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [("shell", "shell: echo"), ("for_each", "for_each: [1]\n    task: {shell: echo}")],
)
def test_an_outcome_needs_an_if_task(tmp_path: Path, kind: str, body: str) -> None:
    text = (
        f"name: p\ntasks:\n  - id: load\n    {body}\n  - id: b\n"
        "    needs:\n      - task: load\n        outcome: true\n    shell: echo\n"
    )
    line = 8 + body.count("\n")
    assert problems(tmp_path, text) == [
        f"p.yaml:{line}: tasks[1].needs[0].outcome: outcome: needs an if: task; 'load' is a"
        f" {kind}: task (use needs: [load])"
    ]


def test_an_outcome_in_a_flow_list_is_reported_at_the_need(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: load
            shell: echo
          - id: b
            needs: [{task: load, outcome: true}]
            shell: echo
        """,
    ) == [
        "p.yaml:6: tasks[1].needs[0].outcome: outcome: needs an if: task; 'load' is a"
        " shell: task (use needs: [load])"
    ]


def test_a_need_naming_an_unknown_task_suggests_the_closest(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: check
            if: "1 > 0"
          - id: b
            needs:
              - task: chekc
                outcome: true
            shell: echo
        """,
    ) == ["p.yaml:7: tasks[1].needs[0]: unknown task 'chekc' (did you mean 'check'?)"]


def test_a_need_with_an_unknown_key(tmp_path: Path) -> None:
    text = """
        name: p
        tasks:
          - id: check
            if: "1 > 0"
          - id: b
            needs:
              - task: check
                outcom: true
            shell: echo
        """
    assert_one_clear_problem(found(tmp_path, text), 8, "tasks[1].needs[0].outcom")


def test_an_outcome_that_is_not_a_boolean(tmp_path: Path) -> None:
    text = """
        name: p
        tasks:
          - id: check
            if: "1 > 0"
          - id: b
            needs:
              - task: check
                outcome: maybe
            shell: echo
        """
    assert_one_clear_problem(found(tmp_path, text), 8, "tasks[1].needs[0].outcome")


def test_bad_need_mappings_are_refused_at_their_lines(tmp_path: Path) -> None:
    # Each refused at its line (the two tests above check the wording).
    text = """
        name: p
        tasks:
          - id: check
            if: "1 > 0"
          - id: b
            needs:
              - task: check
                outcom: true
              - task: check
                outcome: maybe
            shell: echo
        """
    lines = {p.line for p in found(tmp_path, text)}
    assert {8, 10} <= lines <= {7, 8, 9, 10}


def test_an_unknown_run_if_lists_the_rules(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        name: p
        tasks:
          - id: a
            shell: echo
          - id: b
            needs: [a]
            run_if: sometimes
            shell: echo
        """,
    ) == [f"p.yaml:7: tasks[1].run_if: Input should be {RUN_IF_VALUES}, got 'sometimes'"]


@pytest.mark.parametrize("needs", ["", "    needs: []\n"])
def test_run_if_without_needs_is_refused(tmp_path: Path, needs: str) -> None:
    text = f"name: p\ntasks:\n  - id: b\n{needs}    run_if: all_done\n    shell: echo\n"
    line = 5 if needs else 4
    assert problems(tmp_path, text) == [
        f"p.yaml:{line}: tasks[0].run_if: run_if has no needs to look at; add needs:"
    ]


def test_run_if_all_success_without_needs_is_the_default(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path, "name: p\ntasks:\n  - id: b\n    run_if: all_success\n    shell: echo\n"
    )
    assert pipeline.tasks["b"].spec.run_if == "all_success"


def test_needs_as_a_single_mapping(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: p
        tasks:
          - id: check
            if: "1 > 0"
          - id: on_true
            needs: {task: check, outcome: true}
            shell: echo
          - id: on_false
            needs: {task: check, outcome: false}
            shell: echo
          - id: either
            needs: {task: check}
            shell: echo
        """,
    )
    assert pipeline.needs == {
        "check": (),
        "on_true": (Need("check", True),),
        "on_false": (Need("check", False),),
        "either": (Need("check"),),
    }


# --- pools ---------------------------------------------------------------------------------------

POOLED = """
name: loads
tasks:
  - id: load
    shell: echo
    pool: warehose
  - id: each
    for_each: [a, b]
    task:
      shell: "echo {{ item }}"
      pool: partner
"""


def test_an_undeclared_pool_is_reported_at_its_line(pipelines_dir: Path) -> None:
    write(pipelines_dir, "reactor.yaml", "pools:\n  warehouse: 4\n  partner_api: 2\n")
    path = write(pipelines_dir, "p.yaml", POOLED)
    result = load_folder(pipelines_dir)
    assert [str(p) for p in result.problems] == [
        "pipelines/p.yaml:5: tasks[0].pool: unknown pool 'warehose': pools in reactor.yaml:"
        " partner_api, warehouse",
        "pipelines/p.yaml:10: tasks[1].task.pool: unknown pool 'partner': pools in"
        " reactor.yaml: partner_api, warehouse",
    ]
    assert result.pipelines == {}
    assert result.broken == {path.resolve()}


def test_a_pool_without_a_reactor_yaml(pipelines_dir: Path) -> None:
    write(pipelines_dir, "p.yaml", POOLED)
    result = load_folder(pipelines_dir)
    assert [str(p) for p in result.problems] == [
        "pipelines/p.yaml:5: tasks[0].pool: unknown pool 'warehose': pools in reactor.yaml:"
        " none declared",
        "pipelines/p.yaml:10: tasks[1].task.pool: unknown pool 'partner': pools in"
        " reactor.yaml: none declared",
    ]


def test_declared_pools_load_for_tasks_and_loop_tasks(pipelines_dir: Path) -> None:
    write(pipelines_dir, "reactor.yaml", "pools:\n  warehouse: 4\n  partner: 2\n")
    write(pipelines_dir, "p.yaml", POOLED.replace("warehose", "warehouse"))
    result = load_folder(pipelines_dir)
    assert result.problems == []
    assert result.config.spec.pools == {"warehouse": 4, "partner": 2}
    tasks = result.pipelines["loads"].tasks
    assert tasks["load"].spec.pool == "warehouse"
    inner = tasks["each"].inner
    assert inner is not None
    assert inner.spec.pool == "partner"


@pytest.mark.parametrize(
    ("pools", "expected"),
    [
        (
            "pools:\n  a: 0\n",
            "pipelines/reactor.yaml:2: pools.a: Input should be greater than or equal to 1",
        ),
        (
            "pools:\n  a: 100001\n",
            "pipelines/reactor.yaml:2: pools.a: Input should be less than or equal to 100000",
        ),
        (
            "pools:\n  a: two\n",
            "pipelines/reactor.yaml:2: pools.a: Input should be a valid integer,"
            " unable to parse string as an integer",
        ),
    ],
)
def test_a_bad_pool_size_is_refused_in_reactor_yaml(
    pipelines_dir: Path, pools: str, expected: str
) -> None:
    write(pipelines_dir, "reactor.yaml", pools)
    write(pipelines_dir, "p.yaml", "name: p\ntasks:\n  - id: a\n    shell: echo\n")
    result = load_folder(pipelines_dir)
    assert [str(p) for p in result.problems] == [expected]


def test_max_output_takes_a_size_with_a_unit(tmp_path: Path) -> None:
    write(tmp_path, "reactor.yaml", "limits:\n  max_output: 512KiB\n")
    assert load_config(tmp_path).limits.max_output == 512 * 1024


def test_max_output_defaults_to_one_mebibyte(tmp_path: Path) -> None:
    assert load_config(tmp_path).limits.max_output == 1024 * 1024


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "a size must be at least 1 byte"),
        ("lots", "'lots' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
    ],
)
def test_a_bad_max_output_is_refused(tmp_path: Path, value: str, message: str) -> None:
    write(tmp_path, "reactor.yaml", f"limits:\n  max_output: {value}\n")
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(tmp_path, display="reactor.yaml")
    assert [str(p) for p in caught.value.problems] == [
        f"reactor.yaml:2: limits.max_output: {message}"
    ]


# --- the run's timeout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "Input should be greater than 0"), ("-5s", "a duration cannot be negative")],
)
def test_a_pipeline_timeout_must_be_positive(tmp_path: Path, value: str, message: str) -> None:
    text = f"name: p\ntimeout: {value}\ntasks:\n  - id: a\n    shell: echo\n"
    assert problems(tmp_path, text) == [f"p.yaml:2: timeout: {message}"]


def test_a_pipeline_timeout_takes_a_duration(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: p\ntimeout: 1h\ntasks:\n  - id: a\n    shell: echo\n")
    assert pipeline.timeout == 3600.0


# --- the examples of docs/control-flow.md --------------------------------------------------------


def test_the_branches_example_loads(tmp_path: Path) -> None:
    pipeline = load(tmp_path, doc_pipeline("big_or_small"))
    assert pipeline.needs["bulk_load"] == (Need("is_big", True),)
    assert pipeline.needs["row_load"] == (Need("is_big", False),)
    assert pipeline.tasks["publish"].spec.run_if == "none_failed"
    assert pipeline.tasks["is_big"].spec.type_key == "if"


def test_the_loops_example_loads(tmp_path: Path) -> None:
    pipeline = load(tmp_path, doc_pipeline("refresh_regions"))
    loop = pipeline.tasks["each_table"]
    assert isinstance(loop.spec, ForEachTaskSpec)
    assert (loop.spec.concurrency, loop.spec.succeed_if) == (20, "at_least_one_success")
    assert loop.inner is not None
    assert loop.inner.spec.type_key == "python"
    each_region = pipeline.tasks["each_region"].inner
    assert each_region is not None
    assert (each_region.retry.max, each_region.spec.timeout) == (2, 300.0)


def test_a_broken_reactor_yaml_is_reported_without_unknown_pool_noise(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "reactor.yaml", "pools:\n  warehouse: 0\n")
    write(folder, "p.yaml", "name: p\ntasks:\n  - id: a\n    shell: echo\n    pool: warehouse\n")
    result = load_folder(folder)
    assert [str(p) for p in result.problems] == [
        "pipelines/reactor.yaml:2: pools.warehouse: Input should be greater than or equal to 1"
    ]


def test_an_unknown_connection_of_a_loops_task_is_refused_at_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(
        folder,
        "p.yaml",
        """
        name: p
        tasks:
          - id: each
            for_each: [1, 2]
            task:
              sql: "select 1"
              connection: warehose
        """,
    )
    assert [str(p) for p in load_folder(folder).problems] == [
        "pipelines/p.yaml:7: tasks[0].task.connection: unknown connection 'warehose': write a"
        " URL (scheme://...) or a name under connections: in reactor.yaml (names: none)"
    ]
