"""Sandboxed expressions and templates: native types, strict names, shell quoting, the sandbox."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from reactor.errors import ExpressionError
from reactor.expressions import (
    CompiledValue,
    Expression,
    Template,
    compile_expression,
    compile_template,
    compile_value,
    is_template,
    task_references,
)

SCOPE: dict[str, Any] = {
    "n": 3,
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "items": [1, 2],
    "obj": {"a": 1, "nested": {"b": "deep"}},
    "text": "hi",
    "event": {"type": "orders.paid", "data": {"amount": 250, "path": "/in/a.csv"}},
}


def render(source: str, scope: dict[str, Any] | None = None, *, shell: bool = False) -> Any:
    return Template(source, shell=shell).render(SCOPE if scope is None else scope)


def render_error(source: str, scope: dict[str, Any] | None = None, *, shell: bool = False) -> str:
    with pytest.raises(ExpressionError) as caught:
        render(source, scope, shell=shell)
    return str(caught.value)


def evaluate_error(source: str, scope: dict[str, Any] | None = None) -> str:
    with pytest.raises(ExpressionError) as caught:
        Expression(source).evaluate(SCOPE if scope is None else scope)
    return str(caught.value)


# --- native types and strings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ n }}", 3),
        ("{{ ratio }}", 0.5),
        ("{{ flag }}", True),
        ("{{ nothing }}", None),
        ("{{ items }}", [1, 2]),
        ("{{ obj }}", {"a": 1, "nested": {"b": "deep"}}),
        ("{{ event.data.amount }}", 250),
        ("{{ n + 1 }}", 4),
        ("{{ items | length }}", 2),
        ("  {{ items }}  ", [1, 2]),
        ("{{ n }}\n", 3),
    ],
)
def test_a_single_expression_keeps_its_native_type(source: str, expected: Any) -> None:
    result = render(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x{{ n }}", "x3"),
        ("{{ n }}{{ n }}", "33"),
        ("{{ n }} items", "3 items"),
        ("{{ items }} items", "[1, 2] items"),
        ("obj={{ obj }}", 'obj={"a": 1, "nested": {"b": "deep"}}'),
        ("[{{ nothing }}]", "[]"),
        ("{{ flag }}!", "True!"),
        ("{% if n > 1 %}big{% endif %}", "big"),
        ("{{ items | tojson }}", "[1, 2]"),
        ("plain text", "plain text"),
    ],
)
def test_anything_else_renders_to_a_string(source: str, expected: Any) -> None:
    assert render(source) == expected


def test_a_template_keeps_a_trailing_newline() -> None:
    assert render("{{ n }} items\n") == "3 items\n"


def test_filters_and_defaults_work() -> None:
    assert render("{{ event.data.region | default('eu') }}") == "eu"
    assert render("{{ text | upper }}") == "HI"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{{ x }}", True), ("{% if x %}y{% endif %}", True), ("a { b }", False), ("plain", False)],
)
def test_is_template(text: str, expected: bool) -> None:
    assert is_template(text) is expected


# --- expressions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.amount > 100", True),
        ("event.data.amount > 1000", False),
        ("event.type == 'orders.paid'", True),
        ("event.type.startswith('orders.')", True),
        ("'a' in obj", True),
        ("items[1]", 2),
        ("obj.nested.b", "deep"),
        ("n * 2", 6),
    ],
)
def test_expression_evaluates_to_a_value(source: str, expected: Any) -> None:
    assert compile_expression(source).evaluate(SCOPE) == expected


def test_expression_keeps_its_source_and_repr() -> None:
    expression = Expression("n > 1")
    assert expression.source == "n > 1"
    assert repr(expression) == "Expression('n > 1')"
    assert repr(Template("{{ n }}")) == "Template('{{ n }}')"


def test_a_compiled_expression_is_reused_across_scopes() -> None:
    expression = Expression("event.data.amount > 100")
    assert expression.evaluate({"event": {"data": {"amount": 101}}}) is True
    assert expression.evaluate({"event": {"data": {"amount": 99}}}) is False


# --- strict undefined: errors name the expression ------------------------------------------------


def test_an_undefined_name_names_the_expression() -> None:
    assert evaluate_error("missing > 1") == "'missing' is undefined (in 'missing > 1')"
    assert evaluate_error("missing") == "'missing' is undefined (in 'missing')"
    assert evaluate_error("missing.x") == "'missing' is undefined (in 'missing.x')"


def test_an_undefined_attribute_names_the_expression() -> None:
    message = evaluate_error("event.data.region == 'eu'")
    assert message == "'dict object' has no attribute 'region' (in \"event.data.region == 'eu'\")"


def test_undefined_in_a_single_expression_template() -> None:
    assert render_error("{{ missing }}") == "'missing' is undefined (in 'missing')"
    assert render_error("{{ obj.zz }}") == "'dict object' has no attribute 'zz' (in 'obj.zz')"


def test_undefined_in_a_text_template_names_the_whole_template() -> None:
    message = render_error("path: {{ event.data.nope }}")
    assert message == ("'dict object' has no attribute 'nope' (in 'path: {{ event.data.nope }}')")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("n + 's'", "unsupported operand type(s) for +: 'int' and 'str' (in \"n + 's'\")"),
        ("1 / 0", "division by zero (in '1 / 0')"),
        ("items[5]", "list object has no element 5 (in 'items[5]')"),
        ("nothing.x", "'None' has no attribute 'x' (in 'nothing.x')"),
    ],
)
def test_evaluation_errors_become_expression_errors(source: str, message: str) -> None:
    assert evaluate_error(source) == message
    assert render_error("{{ " + source + " }}") == message


def test_runtime_errors_in_text_templates_become_expression_errors() -> None:
    assert render_error("x={{ 1 / 0 }}") == "division by zero (in 'x={{ 1 / 0 }}')"


# --- syntax errors, found when compiling ---------------------------------------------------------


def test_an_expression_syntax_error_is_reported_at_compile_time() -> None:
    with pytest.raises(ExpressionError) as caught:
        Expression("event.data.amount >")
    assert str(caught.value) == "unexpected 'end of template' (in 'event.data.amount >')"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ n", "unexpected end of template, expected 'end of print statement'. (in '{{ n')"),
        ("{% if %}x{% endif %}", "Expected an expression, got 'end of statement block'"),
        ("{{ event. }}", "expected name or number (in 'event.')"),
        ("{% for x in items %}", "Unexpected end of template."),
    ],
)
def test_a_template_syntax_error_is_reported_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(source)
    assert str(caught.value).startswith(message)


def test_a_shell_template_syntax_error_is_reported_at_compile_time() -> None:
    with pytest.raises(ExpressionError) as caught:
        Template("echo {{ x", shell=True)
    assert str(caught.value) == (
        "unexpected end of template, expected 'end of print statement'. (in 'echo {{ x')"
    )


# --- shell quoting: data never becomes code ------------------------------------------------------

HOSTILE = [
    "; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "it's",
    '"double" quotes',
    "a\nb; touch pwned",
    "&& rm -rf / ||",
    "| cat /etc/passwd",
    "> out.txt",
    "*",
    "$HOME",
    "",
    " spaced  words ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_rendered_value_is_one_shell_word(value: str) -> None:
    command = render("echo {{ x }} done", {"x": value}, shell=True)
    assert shlex.split(command) == ["echo", value, "done"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_single_value_shell_template_is_quoted_too(value: str) -> None:
    command = render("{{ x }}", {"x": value}, shell=True)
    assert isinstance(command, str)
    assert shlex.split(command) == [value]


def test_known_quotings() -> None:
    assert render("echo {{ x }}", {"x": "; touch pwned"}, shell=True) == "echo '; touch pwned'"
    assert render("echo {{ x }}", {"x": "$(id)"}, shell=True) == "echo '$(id)'"
    assert render("echo {{ x }}", {"x": "a\nb"}, shell=True) == "echo 'a\nb'"
    assert render("echo {{ x }}", {"x": "it's"}, shell=True) == "echo 'it'\"'\"'s'"
    assert render("echo {{ x }}", {"x": "safe-word"}, shell=True) == "echo safe-word"


def test_shell_quoting_of_non_strings() -> None:
    scope = {"n": 3, "none": None, "items": [1, "a b"], "obj": {"k": "v w"}}
    assert render("echo {{ n }}", scope, shell=True) == "echo 3"
    assert render("echo {{ none }}", scope, shell=True) == "echo ''"
    assert shlex.split(render("echo {{ items }}", scope, shell=True)) == ["echo", '[1, "a b"]']
    assert shlex.split(render("echo {{ obj }}", scope, shell=True)) == ["echo", '{"k": "v w"}']


def test_the_literal_parts_of_a_shell_template_are_left_alone() -> None:
    command = render("ls -l | wc -l && echo {{ x }}", {"x": "a b"}, shell=True)
    assert command == "ls -l | wc -l && echo 'a b'"


def test_text_templates_are_not_shell_quoted() -> None:
    assert render("echo {{ x }}", {"x": "; touch pwned"}) == "echo ; touch pwned"


# --- CompiledValue -------------------------------------------------------------------------------


def test_compiled_value_renders_nested_dicts_and_lists() -> None:
    value = CompiledValue(
        {
            "path": "{{ event.data.path }}",
            "amount": "{{ event.data.amount }}",
            "label": "amount={{ event.data.amount }}",
            "list": ["{{ text }}!", {"inner": "{{ items }}"}, 5, "literal"],
            "none": None,
            "flag": False,
        }
    )
    assert value.render(SCOPE) == {
        "path": "/in/a.csv",
        "amount": 250,
        "label": "amount=250",
        "list": ["hi!", {"inner": [1, 2]}, 5, "literal"],
        "none": None,
        "flag": False,
    }


def test_compiled_value_keeps_its_source_and_renders_fresh_each_time() -> None:
    source = {"a": ["{{ n }}"]}
    value = compile_value(source)
    assert value.source is source
    first = value.render({"n": 1})
    second = value.render({"n": 2})
    assert (first, second) == ({"a": [1]}, {"a": [2]})


def test_compiled_value_of_plain_data_is_that_data() -> None:
    for plain in ("text", 5, None, [1, "a"], {"k": {"j": [True]}}):
        assert CompiledValue(plain).render({}) == plain


def test_compiled_value_reports_a_broken_template_when_compiled() -> None:
    with pytest.raises(ExpressionError) as caught:
        CompiledValue({"a": ["ok", "{{ x"]})
    assert str(caught.value) == (
        "unexpected end of template, expected 'end of print statement'. (in '{{ x')"
    )


def test_compiled_value_reports_an_undefined_name_when_rendered() -> None:
    value = CompiledValue({"a": {"b": ["{{ missing }}"]}})
    with pytest.raises(ExpressionError) as caught:
        value.render({})
    assert str(caught.value) == "'missing' is undefined (in 'missing')"


# --- the sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("''.__class__.__mro__", "access to attribute '__class__' of 'str' object is unsafe."),
        ("n.__class__", "access to attribute '__class__' of 'int' object is unsafe."),
        (
            "items.__class__.__subclasses__()",
            "access to attribute '__class__' of 'list' object is unsafe.",
        ),
        ("obj.__init__.__globals__", "access to attribute '__init__' of 'dict' object is unsafe."),
        ("items.append(3)", "access to attribute 'append' of 'list' object is unsafe."),
        ("obj.update({})", "access to attribute 'update' of 'dict' object is unsafe."),
        ("obj.clear()", "access to attribute 'clear' of 'dict' object is unsafe."),
    ],
)
def test_the_sandbox_blocks_internals_and_mutation(source: str, message: str) -> None:
    assert evaluate_error(source) == f"{message} (in {source!r})"
    assert render_error("x {{ " + source + " }}").startswith(message)


def test_the_sandbox_leaves_the_scope_unchanged() -> None:
    scope = {"items": [1, 2]}
    with pytest.raises(ExpressionError):
        Expression("items.append(3)").evaluate(scope)
    assert scope == {"items": [1, 2]}


def test_safe_methods_still_work_in_the_sandbox() -> None:
    assert Expression("text.upper()").evaluate(SCOPE) == "HI"
    assert Expression("obj.get('a')").evaluate(SCOPE) == 1


@pytest.mark.parametrize(
    "scope",
    [
        {"event": {"data": {"n": 5, "items": [1, 2]}}},
        {"event": {"data": {"n": None}}},
        {"event": {"data": [1, 2]}},
    ],
)
@pytest.mark.parametrize("source", ["event.data.n", "event.data", "event"])
def test_a_plain_path_gives_what_jinja_gives(scope: dict[str, Any], source: str) -> None:
    fast = compile_expression(source)
    slow = compile_expression(f"({source})")  # not a plain path: always through Jinja
    try:
        expected = slow.evaluate(scope)
    except ExpressionError as exc:
        with pytest.raises(ExpressionError) as caught:
            fast.evaluate(scope)
        assert str(caught.value) == str(exc).replace(f"({source})", source)
        return
    assert fast.evaluate(scope) == expected


def test_a_path_through_a_dict_method_name_reads_the_key() -> None:
    # Keys come before attributes: ``data.items`` is the key, not the dict's method.
    scope = {"event": {"data": {"items": 3}}}
    assert compile_expression("event.data.items").evaluate(scope) == 3
    assert compile_expression("event.data.items + 1").evaluate(scope) == 4
    # Without such a key, the method is still there.
    assert callable(compile_expression("event.data.keys").evaluate(scope))


# --- keys before methods, and task references ----------------------------------------------------

DATA_SCOPE: dict[str, Any] = {
    "params": {"items": [1, 2], "keys": "k1", "values": 7, "get": "g"},
    "event": {"data": {"values": [9, 8], "items": {"a": 1}}},
    "x": {"count": 5},
    "obj": {"a": 1},
    "seq": [1, 1, 2],
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("params.items", [1, 2]),
        ("(params.items)", [1, 2]),
        ("params.items | length", 2),
        ("params.items[1]", 2),
        ("params.keys", "k1"),
        ("params.values + 1", 8),
        ("params.get", "g"),
        ("event.data.values", [9, 8]),
        ("event.data.values | sum", 17),
        ("event.data.items.a", 1),
        ("x.count", 5),
        ("x.count * 2", 10),
    ],
)
def test_a_mappings_keys_come_before_its_methods_in_expressions(source: str, expected: Any) -> None:
    assert Expression(source).evaluate(DATA_SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ params.items }}", [1, 2]),
        ("{{ x.count }}", 5),
        ("{{ event.data.values }}", [9, 8]),
        ("n={{ params.items }}", "n=[1, 2]"),
        ("k={{ params.keys }} c={{ x.count }}", "k=k1 c=5"),
        ("{% for v in event.data.values %}{{ v }};{% endfor %}", "9;8;"),
        ("{% for v in params.items %}{{ v }}{% endfor %}", "12"),
    ],
)
def test_a_mappings_keys_come_before_its_methods_in_templates(source: str, expected: Any) -> None:
    assert Template(source).render(DATA_SCOPE) == expected


def test_a_mappings_keys_come_first_in_shell_templates_too() -> None:
    assert Template("echo {{ params.items }} {{ x.count }}", shell=True).render(DATA_SCOPE) == (
        "echo '[1, 2]' 5"
    )
    assert CompiledValue({"n": "{{ x.count }}", "all": ["{{ params.keys }}"]}).render(
        DATA_SCOPE
    ) == {"n": 5, "all": ["k1"]}


def test_methods_of_a_mapping_without_such_a_key_still_work() -> None:
    assert Expression("obj.items() | list").evaluate(DATA_SCOPE) == [("a", 1)]
    assert Expression("obj.keys() | list").evaluate(DATA_SCOPE) == ["a"]
    assert Expression("obj.get('a')").evaluate(DATA_SCOPE) == 1
    assert Expression("x.get('count')").evaluate(DATA_SCOPE) == 5
    assert (
        Template("{% for k, v in obj.items() %}{{ k }}={{ v }}{% endfor %}").render(DATA_SCOPE)
        == "a=1"
    )


def test_attributes_of_non_mappings_still_work() -> None:
    assert Expression('"abc".upper()').evaluate({}) == "ABC"
    assert Template('{{ "abc".upper() }}').render({}) == "ABC"
    assert Expression("seq.count(1)").evaluate(DATA_SCOPE) == 2
    assert Expression("'a,b'.split(',')").evaluate({}) == ["a", "b"]


def test_a_missing_key_of_a_mapping_is_still_undefined() -> None:
    with pytest.raises(ExpressionError) as caught:
        Expression("params.nope + 1").evaluate(DATA_SCOPE)
    assert str(caught.value) == "'dict object' has no attribute 'nope' (in 'params.nope + 1')"


def test_a_key_named_like_an_internal_is_data_not_a_way_out() -> None:
    # The key is read as data; the sandbox still refuses the attribute itself.
    assert Expression("d.__class__").evaluate({"d": {"__class__": "text"}}) == "text"
    with pytest.raises(ExpressionError) as caught:
        Expression("d.__class__").evaluate({"d": {}})
    assert str(caught.value) == (
        "access to attribute '__class__' of 'dict' object is unsafe. (in 'd.__class__')"
    )


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ([("{{ tasks.a.output }}", False)], {"a"}),
        ([("{{ tasks['b'].output }}", False)], {"b"}),
        ([('{{ tasks["b"]["output"] }}', False)], {"b"}),
        ([("rows: {{ tasks.a.output.rows }} of {{ tasks.c.output }}", False)], {"a", "c"}),
        ([("{% if tasks.g.output %}yes{% endif %}", False)], {"g"}),
        ([("{% for t in tasks.h.output %}{{ t }}{% endfor %}", False)], {"h"}),
        ([("tasks.d.output > 1 and tasks['e'].output", True)], {"d", "e"}),
        ([("{{ tasks.a.output | length }}", False), ("tasks.b.output", True)], {"a", "b"}),
    ],
)
def test_task_references_finds_every_task_read(
    sources: list[tuple[str, bool]], expected: set[str]
) -> None:
    assert task_references(sources) == expected


@pytest.mark.parametrize(
    "source",
    [
        ("{{ tasks }}", False),
        ("{{ tasks | length }}", False),
        ("tasks", True),
        ("{{ event.tasks.x }}", False),
        ("{{ params.tasks.x }}", False),
        ("{{ tasks[name] }}", False),
        ("{{ tasks[0] }}", False),
        ("tasks.a.output", False),  # a plain string, not a template
        ("echo tasks.a", False),
    ],
)
def test_task_references_ignores_what_names_no_task(source: tuple[str, bool]) -> None:
    assert task_references([source]) == set()


def test_task_references_skips_text_that_does_not_parse() -> None:
    assert task_references([("{{ tasks.a", False)]) == set()
    assert task_references([("tasks.a ==", True)]) == set()
    assert task_references([("{{ tasks.a", False), ("{{ tasks.b.output }}", False)]) == {"b"}
    assert task_references([]) == set()
