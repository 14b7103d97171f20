"""Integration fixtures: pipeline folders written on disk and a real Reactor around a real store."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder

from reactor.clock import Clock
from reactor.service import Reactor, Settings
from reactor.store import Store

# Tests stop quickly: a task still running when a test ends gets 5 s, not the default 30 s.
TEST_SETTINGS = Settings(reload=False, grace=5.0)

StartReactor = Callable[..., Any]


@pytest.fixture
def write_pipeline(pipelines_dir: Path) -> Callable[[str, str], Path]:
    """Write ``text`` (dedented YAML) as ``pipelines_dir/filename``."""

    def write(filename: str, text: str) -> Path:
        path = pipelines_dir / filename
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_module(pipelines_dir: Path) -> Iterator[Callable[[str], str]]:
    """Write Python code as a module beside the pipelines; returns its unique module name.

    Each test gets its own module name: Python caches imported modules by name, so two
    tests writing ``steps.py`` in their own folders would otherwise share the first one.
    """
    names: list[str] = []

    def write(code: str) -> str:
        name = f"steps_{uuid.uuid4().hex[:12]}"
        (pipelines_dir / f"{name}.py").write_text(textwrap.dedent(code), encoding="utf-8")
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)
    while str(pipelines_dir) in sys.path:
        sys.path.remove(str(pipelines_dir))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def start_reactor(pipelines_dir: Path, store: Store, recorder: Recorder) -> StartReactor:
    """``async with start_reactor(**settings) as reactor``: the service on the test's store."""

    @asynccontextmanager
    async def start(
        *, clock: Clock | None = None, folder: Path | None = None, **settings: Any
    ) -> AsyncIterator[Reactor]:
        async with Reactor(
            folder or pipelines_dir,
            store,
            clock=clock,
            settings=replace(TEST_SETTINGS, **settings),
            observers=[recorder],
        ) as reactor:
            yield reactor

    return start
