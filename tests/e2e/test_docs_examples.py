"""Every example in the docs and in examples/ is checked with the reactor command.

- Each ```yaml block of README.md and docs/*.md is a pipeline that `reactor validate`
  accepts, unless the line before it says `<!-- fragment -->` (then it only has to
  be YAML) or `<!-- invalid -->` (then validate must fail with exactly the lines of
  the ```text block that follows it). A block whose first line is `# reactor.yaml`
  is a settings file: `load_config` and `reactor validate` must accept it.
  `<!-- file: PATH -->` says the block is a copy of that file of the repository,
  and it must stay one.
- Every folder under examples/ validates, and every pipeline in it runs with
  `reactor run` and succeeds; the events example is also served and fed events.
- docs/cli.md names every command, option and variable of `reactor`; docs/api.md
  names every route of the HTTP API; every relative link in the docs resolves;
  compose.yaml is a well-formed compose file whose build inputs exist.
"""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import typer
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reactor.api import create_app
from reactor.cli import app
from reactor.config import SETTINGS_FILE, load_config
from reactor.errors import SpecErrorGroup
from reactor.pipelines import load_folder

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
SAMPLE_CSV = Path("sample") / "orders-sample.csv"

# How each example pipeline is run: (pipeline, params, text the run must print).
# "{sample}" becomes the path of the sample CSV in the test's copy of the example.
EXAMPLE_RUNS: dict[str, list[tuple[str, dict[str, str], str]]] = {
    "sub_pipelines": [
        ("load_day", {"day": "2026-11-05"}, 'task load succeeded output="loaded 2026-11-05"'),
        ("load_month", {}, 'task report succeeded output="loaded 2026-11-01 in run '),
    ],
    "control_flow": [
        (
            "orders_by_region",
            {"regions": '["eu", "us", "mars"]'},
            'task publish succeeded output="published 2000 orders"',
        ),
    ],
    "quickstart": [
        (
            "ingest_orders",
            {"path": "{sample}", "region": "us"},
            'task summarise succeeded output="3 orders worth 505.75 in us"',
        ),
    ],
    "chaining": [
        ("extract", {"day": "2026-03-01"}, 'task count succeeded output="3"'),
        (
            "report",
            {"day": "2026-03-01", "rows": "3"},
            'task summarise succeeded output="report for 2026-03-01: 3 rows"',
        ),
    ],
    "events": [
        (
            "large_payments",
            {"order_id": "A-1001", "amount": "1500"},
            'task report succeeded output="run ',
        ),
    ],
    "webhooks": [
        (
            "deploy_on_push",
            {"ref": "refs/heads/main", "commit": "abc123"},
            'task deploy succeeded output="deploying abc123 from refs/heads/main"',
        ),
    ],
    "file_batches": [
        (
            "load_export",
            {
                "folder": "landing/day=2026-03-01",
                # Doubled braces: each value goes through str.format (for "{sample}").
                "files": '[{{"name": "part-0.csv", "size": 12}},'
                ' {{"name": "part-1.csv", "size": 30}}]',
            },
            'task list_files succeeded output="2 files, 42 bytes: part-0.csv, part-1.csv"',
        ),
    ],
    "kafka": [
        (
            "accept_orders",
            {"order_id": "A-1", "amount": "250", "region": "us"},
            'task check succeeded output="order A-1: 250.0 in us"',
        ),
    ],
    "table": [
        (
            "new_orders",
            {"order_id": "7", "customer": "ada", "amount": "250.00"},
            'task report succeeded output="order 7 of ada: 250.00"',
        ),
    ],
    "schedule": [
        (
            "nightly_summary",
            {"day": "2026-03-29"},
            'task summarise succeeded output="summary of 2026-03-29 for the tick at ',
        ),
    ],
}


# Markdown code blocks


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str
    mark: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


_MARK = re.compile(r"^<!--\s*(fragment|invalid|file:\s*\S+)\s*-->$")


def code_blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("```"):
            index += 1
            continue
        lang = line[3:].strip()
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        before = next((x.strip() for x in reversed(lines[:index]) if x.strip()), "")
        mark = _MARK.match(before)
        blocks.append(
            Block(
                doc,
                index + 1,
                lang,
                "\n".join(lines[index + 1 : end]) + "\n",
                re.sub(r"\s+", "", mark[1]) if mark else None,
            )
        )
        index = end + 1
    return blocks


ALL_BLOCKS = [block for doc in DOCS for block in code_blocks(doc)]
YAML_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "yaml" and b.mark != "invalid"]
INVALID_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "yaml" and b.mark == "invalid"]


def _yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def _validate_in_process(folder: Path) -> Any:
    return CliRunner().invoke(app, ["validate", str(folder)])


SETTINGS_MARK = f"# {SETTINGS_FILE}\n"


def _check_settings_block(block: Block, folder: Path) -> None:
    (folder / SETTINGS_FILE).write_text(block.text, encoding="utf-8")
    try:
        load_config(folder)
    except SpecErrorGroup as exc:
        raise AssertionError(f"{block.where}: reactor.yaml is invalid:\n{exc}") from None
    result = _validate_in_process(folder)
    assert result.exit_code == 0, f"{block.where}: reactor validate said:\n{result.output}"


def _settings_before(block: Block) -> Block | None:
    """The last ``# reactor.yaml`` block of the same page above ``block``, if any."""
    earlier = [
        b
        for b in YAML_BLOCKS
        if b.doc == block.doc and b.line < block.line and b.text.startswith(SETTINGS_MARK)
    ]
    return earlier[-1] if earlier else None


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.where)
def test_doc_yaml_block_is_a_valid_pipeline(block: Block, tmp_path: Path) -> None:
    data = _yaml(block.text)
    if block.mark == "fragment":
        return
    if block.text.startswith(SETTINGS_MARK):
        folder = tmp_path / "pipelines"
        folder.mkdir()
        _check_settings_block(block, folder)
        return
    assert isinstance(data, dict) and "name" in data and "tasks" in data, (
        f"{block.where}: a ```yaml block must be a whole pipeline (name:, tasks:);"
        " put <!-- fragment --> on the line before it if it is only a part of one"
    )
    if block.mark and block.mark.startswith("file:"):
        copied = ROOT / block.mark.removeprefix("file:")
        assert block.text == copied.read_text(encoding="utf-8"), (
            f"{block.where} is no longer a copy of {copied.relative_to(ROOT)}"
        )
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "example.yaml").write_text(block.text, encoding="utf-8")
    if settings := _settings_before(block):
        # A pipeline naming pools or connections is checked with the page's settings.
        (folder / SETTINGS_FILE).write_text(settings.text, encoding="utf-8")
    names = [data["name"]]
    if block.mark and block.mark.startswith("file:"):
        # A copy of an example file is checked beside its folder's other pipelines
        # (a chained pipeline needs its upstream).
        copied = ROOT / block.mark.removeprefix("file:")
        for sibling in sorted(copied.parent.glob("*.yaml")):
            if sibling != copied and sibling.name != "reactor.yaml":
                shutil.copyfile(sibling, folder / sibling.name)
                names.append(_yaml(sibling.read_text(encoding="utf-8"))["name"])
    result = _validate_in_process(folder)
    assert result.exit_code == 0, f"{block.where}: reactor validate said:\n{result.output}"
    assert f"ok: {len(names)} pipeline(s): {', '.join(sorted(names))}" in result.output


def _expected_after(block: Block) -> list[str]:
    following = [
        b
        for b in ALL_BLOCKS
        if b.doc == block.doc and b.line > block.line and b.lang in ("text", "console")
    ]
    assert following, f"{block.where}: an <!-- invalid --> block needs a ```text block after it"
    return [x for x in following[0].text.splitlines() if x and not x.startswith("$ ")]


@pytest.mark.parametrize("block", INVALID_BLOCKS, ids=lambda b: b.where)
def test_doc_invalid_block_fails_as_shown(block: Block, tmp_path: Path) -> None:
    expected = _expected_after(block)
    shown_file = expected[0].split(":", 1)[0]  # e.g. pipelines/orders.yaml
    target = tmp_path / shown_file
    target.parent.mkdir(parents=True)
    target.write_text(block.text, encoding="utf-8")
    result = subprocess.run(
        [_reactor(), "validate", str(Path(shown_file).parent)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert (result.stderr + result.stdout).splitlines() == expected


def test_docs_have_yaml_examples() -> None:
    # A broken extractor must not pass by finding nothing.
    assert len([b for b in YAML_BLOCKS if b.mark != "fragment"]) >= 8
    assert INVALID_BLOCKS
    assert any(b.text.startswith(SETTINGS_MARK) for b in YAML_BLOCKS)


# examples/


def _reactor() -> str:
    beside = Path(sys.executable).with_name("reactor")
    return str(beside) if beside.exists() else shutil.which("reactor") or "reactor"


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_reactor(), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_example(name: str, into: Path) -> Path:
    target = into / name
    shutil.copytree(
        ROOT / "examples" / name,
        target,
        ignore=shutil.ignore_patterns(".reactor", "__pycache__", "*.csv"),
    )
    # The quickstart's sample is the one CSV kept (the inbox's files are left behind).
    sample = ROOT / "examples" / name / SAMPLE_CSV
    if sample.exists():
        shutil.copyfile(sample, target / SAMPLE_CSV)
    return target


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(example: Path) -> None:
    result = _run("validate", f"examples/{example.name}", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_every_example_pipeline_has_a_run() -> None:
    for example in EXAMPLES:
        names = set(load_folder(example).pipelines)
        covered = {name for name, _, _ in EXAMPLE_RUNS.get(example.name, [])}
        assert names == covered, f"examples/{example.name}: give every pipeline a run here"


RUN_CASES = [
    pytest.param(example, *case, id=f"{example}-{case[0]}")
    for example, cases in EXAMPLE_RUNS.items()
    for case in cases
]


@pytest.mark.parametrize(("example", "pipeline", "params", "expected"), RUN_CASES)
def test_example_pipeline_runs(
    example: str, pipeline: str, params: dict[str, str], expected: str, tmp_path: Path
) -> None:
    folder = _copy_example(example, tmp_path)
    args = ["run", pipeline, "--dir", example, "--store", "sqlite:///runs.db"]
    for key, value in params.items():
        args += ["-p", f"{key}={value.format(sample=folder / SAMPLE_CSV)}"]
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout
    assert f"{pipeline} succeeded" in result.stdout
    assert (tmp_path / "runs.db").exists()
    assert not (folder / ".reactor").exists()


def test_quickstart_run_with_a_bad_param_is_refused(tmp_path: Path) -> None:
    _copy_example("quickstart", tmp_path)
    result = _run("run", "ingest_orders", "--dir", "quickstart", "-p", "region=asia", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: ingest_orders: param 'path' is required (string);"
        " param 'region': 'asia' is not one of 'eu', 'us'"
    )


class _Lines:
    """Lines of a process's stdout, waited for with a deadline (never a bare sleep).

    Reads the pipe's raw bytes: a buffered reader could hold a line that ``select``
    no longer reports.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        self.pending = b""
        self.seen: list[str] = []

    def until(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.pending:
                raw, self.pending = self.pending.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.seen.append(line)
                if found := re.search(pattern, line):
                    return found
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.pending += chunk
        seen = "\n".join(self.seen)
        raise AssertionError(f"no line matching {pattern!r} in {timeout:g}s; saw:\n{seen}")


@contextmanager
def _served(
    example: str, tmp_path: Path, exit_after: int
) -> Iterator[tuple[subprocess.Popen[bytes], _Lines, str, Path]]:
    """``reactor serve`` on a copy of ``examples/EXAMPLE``: the process, its output lines,
    the API's URL and the copied folder; killed if the test leaves it running."""
    folder = _copy_example(example, tmp_path)
    errors = (tmp_path / "serve.err").open("w")
    command = [_reactor(), "serve", folder.name, "--http", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--exit-after", str(exit_after)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=errors,
        start_new_session=True,
    )
    try:
        lines = _Lines(process)
        url = lines.until(r"API on (http://127\.0\.0\.1:\d+)")[1]
        yield process, lines, url, folder
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
        errors.close()


@pytest.fixture
def serve_events(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], _Lines, str]]:
    with _served("events", tmp_path, 1) as (process, lines, url, _):
        yield process, lines, url


def test_events_example_fires_only_when_its_condition_holds(
    serve_events: tuple[subprocess.Popen[bytes], _Lines, str], tmp_path: Path
) -> None:
    process, lines, url = serve_events
    env = {"REACTOR_URL": url}

    small = _run(
        "publish",
        "orders.paid",
        "--data",
        '{"order_id": "A-1000", "amount": 20}',
        cwd=tmp_path,
        env=env,
    )
    assert small.returncode == 0, small.stderr
    assert small.stdout.splitlines()[1] == "no run started: no trigger fired for this event"

    paid = '{"order_id": "A-1001", "amount": 1500, "currency": "USD"}'
    big = _run("publish", "orders.paid", "--data", paid, cwd=tmp_path, env=env)
    assert big.returncode == 0, big.stderr
    run_id = re.fullmatch(r"run ([0-9a-f]{32})", big.stdout.splitlines()[1])
    assert run_id, big.stdout

    lines.until(rf"run {run_id[1]}   task record succeeded output=\"order A-1001 paid 1500.0 USD\"")
    lines.until(rf"run {run_id[1]} large_payments succeeded")
    assert process.wait(timeout=60) == 0


def test_chaining_example_served_starts_report_when_extract_succeeds(tmp_path: Path) -> None:
    with _served("chaining", tmp_path, 2) as (process, lines, url, _):
        started = httpx.post(
            f"{url}/api/pipelines/extract/runs", json={"params": {"day": "2026-03-01"}}, timeout=10
        )
        assert started.status_code == 201, started.text
        lines.until(r"run \w+ extract succeeded")
        lines.until(r'task summarise succeeded output="report for 2026-03-01: 3 rows"')
        lines.until(r"run \w+ report succeeded")
        assert process.wait(timeout=60) == 0


def test_file_batches_example_served_runs_once_the_marker_lands(tmp_path: Path) -> None:
    with _served("file_batches", tmp_path, 1) as (process, lines, _, folder):
        batch = folder / "landing" / "day=2026-03-01"
        batch.mkdir()
        (batch / "part-0.csv").write_text("id\n1\n")
        (batch / "part-1.csv").write_text("id\n2\n3\n")
        (batch / "_SUCCESS").write_text("")
        lines.until(r'task list_files succeeded output="2 files, 12 bytes: part-0.csv, part-1.csv"')
        lines.until(r"run \w+ load_export succeeded")
        assert process.wait(timeout=60) == 0


# The reference pages name everything there is


def test_cli_doc_names_every_command_option_and_variable() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    commands = []
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            commands += [(f"{name} {sub}", cmd) for sub, cmd in command.commands.items()]
        else:
            commands.append((name, command))
    for name, command in commands:
        assert f"## reactor {name}\n" in text, f"docs/cli.md has no section for {name}"
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("-"):
                    assert f"`{flag}" in text, f"docs/cli.md does not name {name} {flag}"
            envvar = getattr(param, "envvar", None)
            if envvar:
                assert f"`{envvar}`" in text, f"docs/cli.md does not name {envvar}"


def test_api_doc_names_every_route() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    # Routes only; nothing is served. The web UI's pages are in docs/ui.md, not the API's.
    stand_in = SimpleNamespace(observers=[], event_observers=[], before_http_stops=[])
    api = create_app(stand_in)  # type: ignore[arg-type]
    for route in api.routes:
        if not getattr(route, "include_in_schema", False):
            continue
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        path = route.path  # type: ignore[attr-defined]
        if path.endswith("/oauth2-redirect"):
            continue
        for method in methods:
            if method == "HEAD":
                continue
            assert f"{method} {path}" in text, f"docs/api.md does not name {method} {path}"


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        assert linked.exists(), f"{doc.name}: link to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{doc.name}: no heading for #{anchor}"


def test_docs_name_no_path_of_this_machine() -> None:
    for path in [*DOCS, *ROOT.glob("examples/*/*.yaml"), ROOT / "compose.yaml"]:
        assert str(ROOT) not in path.read_text(encoding="utf-8"), path


# compose.yaml and the Dockerfile


def test_compose_file_is_well_formed() -> None:
    compose = _yaml((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"reactor", "postgres", "kafka"} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for port in service.get("ports", []):
            assert isinstance(port, str) and re.fullmatch(r"([\d.]+:)?\d+:\d+", port), port
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: {key} must be a string in compose"
    build = services["reactor"]["build"]
    dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


# What docs/pipelines.md promises about shell tasks, as `reactor run` shows it


def test_shell_values_are_quoted_env_lists_are_json_and_output_is_shown_as_is(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "quoting.yaml").write_text(
        "name: quoting\n"
        "params:\n"
        '  note: {type: string, default: "; touch pwned"}\n'
        "  tags: {type: list, default: [a, b]}\n"
        "tasks:\n"
        "  - id: safe\n"
        '    shell: "echo {{ params.note }}"\n'
        "  - id: via_env\n"
        "    shell: 'echo \"$TAGS|$NOTHING|\"'\n"
        '    env: {TAGS: "{{ params.tags }}", NOTHING: "{{ none }}"}\n'
        "  - id: brackets\n"
        "    shell: echo '[bold]x[/bold] [/nope]'\n",
        encoding="utf-8",
    )
    result = _run("run", "quoting", "--dir", "pipelines", "--store", "sqlite:///q.db", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'task safe succeeded output="; touch pwned"' in result.stdout
    assert not (folder / "pwned").exists()
    assert 'task via_env succeeded output="[\\"a\\", \\"b\\"]||"' in result.stdout
    assert 'task brackets succeeded output="[bold]x[/bold] [/nope]"' in result.stdout
