"""Sandboxed expressions and templates, compiled once when a pipeline loads.

A template that is exactly one ``{{ expression }}`` keeps the expression's native
type; any other template renders to a string. Undefined names are errors.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reactor.errors import ExpressionError

__all__ = [
    "CompiledValue",
    "Expression",
    "Template",
    "compile_expression",
    "compile_template",
    "compile_value",
    "is_template",
    "task_references",
]

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


def _to_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if value is None:
        return ""
    return str(value)


def _shell_quote(value: Any) -> str:
    return shlex.quote(_to_text(value))


class _DataEnvironment(ImmutableSandboxedEnvironment):
    """Reads keys before attributes on mappings: ``params.items`` is the param named
    ``items``, not the dict method (data has keys like items, keys, values and count)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _environment(finalize: Any) -> ImmutableSandboxedEnvironment:
    env = _DataEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters["tojson"] = lambda v: json.dumps(v, default=str)
    return env


_TEXT_ENV = _environment(_to_text)
_SHELL_ENV = _environment(_shell_quote)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _explain(source: str, exc: Exception) -> ExpressionError:
    message = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
    return ExpressionError(f"{message} (in {source!r})")


_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")


class Expression:
    """A bare expression such as ``event.data.amount > 100``."""

    __slots__ = ("_compiled", "_path", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._compiled = _TEXT_ENV.compile_expression(source, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise _explain(source, exc) from exc
        # ``event.data.path``, the most common template, is looked up directly: the same
        # answer as Jinja's for mappings (keys first), without a Jinja context per render.
        self._path = tuple(source.split(".")) if _PATH.match(source) else ()

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        if self._path:
            value: Any = scope
            for part in self._path:
                if type(value) is not dict or part not in value:
                    break
                value = value[part]
            else:
                return value
        try:
            result = self._compiled(**scope)
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()
        except jinja2.TemplateError as exc:
            raise _explain(self.source, exc) from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise _explain(self.source, exc) from exc
        return result

    def operands(self, scope: Mapping[str, Any]) -> dict[str, Any]:
        """The value of each name and attribute path the expression reads, such as
        ``{"event.data.amount": 42}``: what a "why not" shows next to a false condition.
        A path that cannot be read is shown as ``"<undefined>"``."""
        values: dict[str, Any] = {}
        for path in _paths(self.source):
            try:
                values[path] = _path_expression(path).evaluate(scope)
            except ExpressionError:
                values[path] = "<undefined>"
        return values

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@lru_cache(maxsize=4096)
def _path_expression(path: str) -> Expression:
    return Expression(path)


@lru_cache(maxsize=1024)
def _paths(source: str) -> tuple[str, ...]:
    """The longest ``name.attr[key]`` paths in an expression, in order of appearance."""
    body = _TEXT_ENV.parse("{{ " + source + " }}")
    found: list[str] = []

    def path_of(node: nodes.Node) -> str | None:
        if isinstance(node, nodes.Name):
            return node.name
        if isinstance(node, nodes.Getattr):
            inner = path_of(node.node)
            return f"{inner}.{node.attr}" if inner else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            inner = path_of(node.node)
            return f"{inner}[{node.arg.value!r}]" if inner else None
        return None

    def visit(node: nodes.Node) -> None:
        path = path_of(node)
        if path is not None:
            if path not in found:
                found.append(path)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(body)
    return tuple(found)


def task_references(sources: Iterable[tuple[str, bool]]) -> set[str]:
    """The task ids read as ``tasks.ID`` or ``tasks["ID"]`` in ``(text, is_bare_expression)``
    pairs; text that does not parse is left to the compiler to report."""
    names: set[str] = set()
    for text, bare in sources:
        if not bare and not is_template(text):
            continue
        try:
            body = _TEXT_ENV.parse("{{ " + text + " }}" if bare else text)
        except jinja2.TemplateSyntaxError:
            continue
        for node in body.find_all((nodes.Getattr, nodes.Getitem)):
            inner = getattr(node, "node", None)
            if not (isinstance(inner, nodes.Name) and inner.name == "tasks"):
                continue
            if isinstance(node, nodes.Getattr):
                names.add(node.attr)
            elif isinstance(node, nodes.Getitem):
                key = node.arg
                if isinstance(key, nodes.Const) and isinstance(key.value, str):
                    names.add(key.value)
    return names


class Template:
    """A text template; ``shell=True`` shell-quotes every rendered value."""

    __slots__ = ("_expression", "_template", "source")

    def __init__(self, source: str, *, shell: bool = False) -> None:
        self.source = source
        self._expression: Expression | None = None
        self._template: jinja2.Template | None = None
        single = _SINGLE.match(source)
        if single and not shell and "{{" not in single["expr"] and "}}" not in single["expr"]:
            self._expression = Expression(single["expr"].strip())
            return
        try:
            self._template = (_SHELL_ENV if shell else _TEXT_ENV).from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise _explain(source, exc) from exc

    def render(self, scope: Mapping[str, Any]) -> Any:
        if self._expression is not None:
            return self._expression.evaluate(scope)
        assert self._template is not None
        try:
            return self._template.render(scope)
        except jinja2.TemplateError as exc:
            raise _explain(self.source, exc) from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise _explain(self.source, exc) from exc

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_expression(source: str) -> Expression:
    return Expression(source)


def compile_template(source: str, *, shell: bool = False) -> Template:
    return Template(source, shell=shell)


class CompiledValue:
    """A JSON-like value whose strings may be templates, rendered as a whole."""

    __slots__ = ("_render", "source")

    def __init__(self, value: Any) -> None:
        self.source = value
        self._render = _compile(value)

    def render(self, scope: Mapping[str, Any]) -> Any:
        return self._render(scope)


def _compile(value: Any) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return lambda _scope: value
        template = Template(value)
        return template.render
    if isinstance(value, dict):
        parts = {key: _compile(item) for key, item in value.items()}
        return lambda scope: {key: render(scope) for key, render in parts.items()}
    if isinstance(value, list):
        items = [_compile(item) for item in value]
        return lambda scope: [render(scope) for render in items]
    return lambda _scope: value


def compile_value(value: Any) -> CompiledValue:
    return CompiledValue(value)
