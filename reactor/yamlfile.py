"""Reading YAML files while keeping the line of every key, for errors that say where."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reactor.errors import SpecError, SpecProblem

__all__ = ["YamlDocument", "load_yaml"]


@dataclass(frozen=True)
class YamlDocument:
    """A parsed document: plain Python data plus the lines its keys came from."""

    path: str
    data: Any
    _tree: Any

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The 1-based line of the deepest node of ``loc`` that exists in the file."""
        node = self._tree
        line: int | None = 1 if node is not None else None
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedMap | CommentedSeq):
                # A pydantic union tag or a missing key: the parent's line is the best answer.
                continue
            else:
                break
        return line

    def problem(self, loc: Sequence[str | int], message: str) -> SpecProblem:
        return SpecProblem(self.path, self.line_of(loc), _dotted(loc), message)


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_yaml(path: Path, *, display: str | None = None) -> YamlDocument:
    """Parse ``path``; a syntax error becomes a :class:`SpecError` with its line."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(SpecProblem(shown, None, "", f"cannot read file: {exc.strerror}")) from exc
    except UnicodeDecodeError as exc:
        raise SpecError(SpecProblem(shown, None, "", "file is not UTF-8 text")) from exc
    return parse_yaml(text, display=shown)


def parse_yaml(text: str, *, display: str) -> YamlDocument:
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError(SpecProblem(display, line, "", f"invalid YAML: {what}")) from exc
    except YAMLError as exc:
        raise SpecError(SpecProblem(display, None, "", f"invalid YAML: {exc}")) from exc
    return YamlDocument(display, _plain(tree), tree)
