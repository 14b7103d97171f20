"""Writing pipeline files in tests and reading the problems Reactor reports for them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reactor.errors import SpecErrorGroup, SpecProblem
from reactor.pipelines import Pipeline, load_pipeline


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented) as ``folder/name``, creating folders on the way."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Pipeline:
    """``text`` saved as p.yaml and loaded."""
    return load_pipeline(write(tmp_path, "p.yaml", text), display="p.yaml")


def found(tmp_path: Path, text: str) -> list[SpecProblem]:
    """Every problem reported for ``text`` saved as p.yaml."""
    with pytest.raises(SpecErrorGroup) as caught:
        load(tmp_path, text)
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return caught.value.problems


def problems(tmp_path: Path, text: str) -> list[str]:
    """Every problem reported for ``text`` saved as p.yaml, as the user reads them."""
    return [str(p) for p in found(tmp_path, text)]
