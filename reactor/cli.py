"""The ``reactor`` command."""

from __future__ import annotations

import enum
import gc
import getpass
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from reactor.backfill import RUN_STATES
from reactor.config import SETTINGS_FILE, Config, load_config
from reactor.errors import ReactorError, SpecErrorGroup
from reactor.explain import NOT_CANDIDATE
from reactor.logs import LogFormat, setup_logging
from reactor.params import ParamSpec, parse_cli_value
from reactor.pipelines import load_folder, open_hooks
from reactor.service import Reactor, Settings
from reactor.store import RunRecord, TaskRecord, open_store
from reactor.store.records import FINAL_RUN_STATES

__all__ = ["app", "main"]

app = typer.Typer(
    name="reactor",
    help="Reactor: an event-driven data orchestrator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
UrlOption = Annotated[
    str, typer.Option("--url", envvar="REACTOR_URL", help="The running service's address.")
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="REACTOR_STORE",
        help="sqlite:///relative.db or sqlite:////absolute.db (default: DIR/.reactor/reactor.db).",
    ),
]

_STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "upstream_failed": "yellow",
    "cancelled": "yellow",
    "skipped": "dim",
    "pending": "dim",
}


# uvloop (a dependency off Windows) serves HTTP about 30% faster than asyncio's own loop.
_LOOP_OPTIONS = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


class _LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


LogFormatOption = Annotated[
    _LogFormat,
    typer.Option(
        "--log-format",
        envvar="REACTOR_LOG_FORMAT",
        case_sensitive=False,
        help="text, or json: one JSON object per line on standard error, runs and tasks"
        " included (docs/logging.md).",
    ),
]
_cli_log = logging.getLogger("reactor.cli")
_runs_log = logging.getLogger("reactor.runs")
#: ``--log-format json``: what serve and run say goes out as JSON log lines, nothing else.
_json_lines = False


def _setup_logging(verbose: bool, log_format: _LogFormat = _LogFormat.text) -> None:
    global _json_lines
    _json_lines = log_format is _LogFormat.json
    chosen: LogFormat = "json" if _json_lines else "text"
    setup_logging(chosen, verbose=verbose)


def _notice(text: str, *, to: Console = console, level: int = logging.INFO) -> None:
    """Say ``text`` (plain) to the user; a log line under ``--log-format json``."""
    if _json_lines:
        _cli_log.log(level, text)
    else:
        to.print(text, markup=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    if _json_lines:
        _cli_log.error(message)
    else:
        err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _store_url(store: str | None, folder: Path) -> str:
    if store:
        return store
    return f"sqlite:///{(folder / '.reactor' / 'reactor.db').resolve()}"


class LivePrinter:
    """Prints one line per run and task state change (logs it, with ``json_lines``);
    counts finished runs."""

    #: Iterations of a loop shown one by one before only every thousandth success is.
    SHOWN_ITERATIONS = 5

    def __init__(self, exit_after: int | None = None, *, json_lines: bool = False) -> None:
        self.exit_after = exit_after
        self.json_lines = json_lines
        self.finished: list[RunRecord] = []
        self.enough = anyio.Event()
        #: Successful iterations per ``(run, loop)`` seen so far.
        self._iterations: dict[tuple[str, str], int] = {}

    def _stamp(self) -> str:
        return datetime.now().strftime("%H:%M:%S")

    def _line(self, plain: str, styled: str, fields: dict[str, Any]) -> None:
        """``plain`` or ``styled`` after the time; a JSON log line with ``fields`` instead
        under ``--log-format json``."""
        if self.json_lines:
            _runs_log.info(plain, extra=fields)
            return
        stamp = self._stamp()
        # Rich costs about a millisecond a line (it inspects the terminal each time); into a
        # pipe or a file the line has no colours anyway, so it is written as it is.
        if console.is_terminal:
            console.print(f"{stamp} {styled}")
        else:
            sys.stdout.write(f"{stamp} {plain}\n")
            sys.stdout.flush()

    def run_changed(self, run: RunRecord) -> None:
        style = _STATUS_STYLE.get(run.status, "")
        what = f"trigger {run.trigger}" if run.trigger else "on demand"
        what = f" {what}" if run.status == "queued" else ""
        reason = f" ({run.reason})" if run.reason and run.status != "succeeded" else ""
        self._line(
            f"run {run.id} {run.pipeline} {run.status}{what}{reason}",
            # Reasons and outputs are data: brackets in them must not be read as markup.
            f"run {run.id} [bold]{escape(run.pipeline)}[/bold] "
            f"[{style}]{run.status}[/{style}]{what}{escape(reason)}",
            {"run_id": run.id, "pipeline": run.pipeline, "status": run.status},
        )
        # Only --exit-after needs the finished runs: kept for good, a long-lived serve
        # would grow by every run it ever finished.
        if run.status in FINAL_RUN_STATES:
            for key in [k for k in self._iterations if k[0] == run.id]:
                del self._iterations[key]
        if run.status in FINAL_RUN_STATES and self.exit_after is not None:
            self.finished.append(run)
            if len(self.finished) >= self.exit_after:
                self.enough.set()

    def _quiet_iteration(self, run: RunRecord, task: TaskRecord, note: str) -> bool:
        """A loop of 10,000 items must not print 20,000 lines: its iterations' starts and
        successes are shown for the first few, then as a count every thousand."""
        loop, bracket, _ = task.task_id.partition("[")
        if not bracket or task.status not in ("running", "succeeded"):
            return False
        if task.status == "running":
            if not note.startswith("attempt "):
                return False  # a retry or a wait for a pool is always shown
            return self._iterations.get((run.id, loop), 0) >= self.SHOWN_ITERATIONS
        done = self._iterations[(run.id, loop)] = self._iterations.get((run.id, loop), 0) + 1
        if done <= self.SHOWN_ITERATIONS:
            return False
        if done % 1000 == 0:
            text = f"run {run.id}   task {loop} {done} iterations succeeded so far"
            fields = {"run_id": run.id, "task_id": loop, "pipeline": run.pipeline}
            self._line(text, escape(text), fields)
        return True

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        if self._quiet_iteration(run, task, note):
            return
        style = _STATUS_STYLE.get(task.status, "")
        detail = ""
        if task.status == "succeeded" and task.output not in (None, ""):
            shown = json.dumps(task.output, default=str)
            detail = f" output={shown[:80]}{'...' if len(shown) > 80 else ''}"
        elif note:
            detail = f" {note}"
        self._line(
            f"run {run.id}   task {task.task_id} {task.status}{detail}",
            f"run {run.id}   task {task.task_id} [{style}]{task.status}[/{style}]{escape(detail)}",
            {
                "run_id": run.id,
                "task_id": task.task_id,
                "pipeline": run.pipeline,
                "status": task.status,
                "attempt": task.attempts,
            },
        )


def _parse_http(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _watch_signals(stop: anyio.Event, reactor: Reactor, *, task_status: Any) -> None:
    """First SIGINT/SIGTERM: stop gracefully. Second: cancel running tasks at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                _notice(
                    f"{name}: stopping (running tasks get the grace period; again to cancel)",
                    to=err,
                )
                stop.set()
            else:
                _notice(f"{name}: cancelling running tasks now", to=err, level=logging.WARNING)
                reactor.cancel_all()


def _pick(flag: T | None, setting: T | None, default: T) -> T:
    """A flag or ``REACTOR_*`` variable wins over ``reactor.yaml``, which wins over the default."""
    if flag is not None:
        return flag
    return setting if setting is not None else default


def _load_config(folder: Path) -> Config:
    try:
        return load_config(folder)
    except SpecErrorGroup as exc:
        for problem in exc.problems:
            _notice(str(problem), to=err, level=logging.ERROR)
        raise _fail(f"{len(exc.problems)} problem(s) in {folder / SETTINGS_FILE}") from None


def _configured_store(config: Config, folder: Path) -> str | None:
    """``store:`` of ``reactor.yaml``: a URL (a relative SQLite path is the folder's) or env:VAR."""
    value = config.spec.store
    if value is not None and value.startswith("env:"):
        variable = value.removeprefix("env:")
        if not os.environ.get(variable):
            raise _fail(
                f"{folder / SETTINGS_FILE}: store: environment variable {variable} is not set"
            )
        return os.environ[variable]
    if value is not None and value.startswith("sqlite:///"):
        path = Path(value.removeprefix("sqlite:///"))
        if not path.is_absolute():
            return f"sqlite:///{(folder / path).resolve()}"
    return value


@app.command()
def serve(
    folder: Annotated[Path, typer.Argument(help="The pipelines folder.")],
    store: StoreOption = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http", envvar="REACTOR_HTTP", help="HOST:PORT for the API [default: 127.0.0.1:8080]."
        ),
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Serve no HTTP API.")] = False,
    grace: Annotated[
        float | None,
        typer.Option(
            envvar="REACTOR_GRACE", help="Seconds running tasks get on stop [default: 30]."
        ),
    ] = None,
    max_tasks: Annotated[
        int | None,
        typer.Option(
            envvar="REACTOR_MAX_TASKS", min=1, help="Task attempts running at once [default: 64]."
        ),
    ] = None,
    heartbeat: Annotated[
        float | None,
        typer.Option(
            envvar="REACTOR_HEARTBEAT", min=0.1, help="Seconds between heartbeats [default: 5]."
        ),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            envvar="REACTOR_LEASE",
            min=0.1,
            help="Seconds without a heartbeat after which another process takes over a run"
            " [default: 15].",
        ),
    ] = None,
    exit_after: Annotated[
        int | None,
        typer.Option(help="Stop after this many runs finished; exit 0 only if all succeeded."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = _LogFormat.text,
) -> None:
    """Run the service: sensors, triggers, runs and the HTTP API.

    Settings not given as flags (or REACTOR_* variables) come from DIR/reactor.yaml.
    """
    _setup_logging(verbose, log_format)
    config = _load_config(folder)
    spec = config.spec
    # Only read when no flag gave one: an unset env:VAR under store: must not stop --store.
    store = store if store is not None else _configured_store(config, folder)
    address = None if no_http else _parse_http(_pick(http, spec.http, "127.0.0.1:8080"))
    heartbeat = _pick(heartbeat, spec.heartbeat, 5.0)
    lease = _pick(lease, spec.lease, 15.0)
    printer = LivePrinter(exit_after, json_lines=_json_lines)
    if lease <= heartbeat:
        raise _fail(f"the lease ({lease:g}s) must be longer than the heartbeat ({heartbeat:g}s)")
    settings = Settings(
        max_tasks=_pick(max_tasks, spec.limits.max_tasks, 64),
        grace=_pick(grace, spec.grace, 30.0),
        http=address,
        heartbeat=heartbeat,
        lease=lease,
        bus_capacity=spec.limits.bus_capacity,
    )

    # Kept out of the signal task group, which would wrap it in an ExceptionGroup.
    failure: list[ReactorError] = []

    async def main() -> None:
        reactor = Reactor(
            folder, open_store(_store_url(store, folder)), settings=settings, observers=[printer]
        )
        stop = printer.enough
        async with anyio.create_task_group() as tg:
            # The watcher outlives the service block, so a second signal during the
            # graceful stop still reaches it.
            await tg.start(_watch_signals, stop, reactor)
            try:
                async with reactor:
                    where = (
                        f"; UI and API on http://{address[0]}:{reactor.http_port}"
                        if address
                        else ""
                    )
                    names = ", ".join(sorted(reactor.pipelines)) or "none"
                    _notice(f"Reactor serving {folder} (pipelines: {names}){where}")
                    # What start-up made lives as long as the service: kept out of the
                    # collector's full passes, which would walk it again and again.
                    gc.freeze()
                    await stop.wait()
            except ReactorError as exc:
                failure.append(exc)
            tg.cancel_scope.cancel()

    try:
        anyio.run(main, backend_options=_LOOP_OPTIONS)
        if failure:
            raise failure[0]
    except SpecErrorGroup as exc:
        for problem in exc.problems:
            _notice(str(problem), to=err, level=logging.ERROR)
        raise _fail(f"{len(exc.problems)} problem(s) in {folder}; nothing started") from None
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    _notice("Reactor stopped.")
    if exit_after is not None:
        failed = [r for r in printer.finished if r.status != "succeeded"]
        if failed or len(printer.finished) < exit_after:
            raise typer.Exit(1)


@app.command()
def validate(folder: Annotated[Path, typer.Argument(help="The pipelines folder.")]) -> None:
    """Check every pipeline file; print every problem with file:line."""
    loaded = load_folder(folder)
    for problem in loaded.problems:
        err.print(str(problem), markup=False)
    # A missing secret is the deployment's business, not the file's: serve refuses it.
    _, unavailable = open_hooks(
        loaded.pipelines.values(), os.environ, loaded.config.limits.webhook_max_body
    )
    for problem in unavailable:
        err.print(f"warning: {problem} (serve will refuse to start)", markup=False)
    if loaded.problems:
        raise _fail(f"{len(loaded.problems)} problem(s) found")
    names = ", ".join(sorted(loaded.pipelines)) or "none"
    console.print(f"ok: {len(loaded.pipelines)} pipeline(s): {names}")


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON for lists)")
    ] = None,
    folder: Annotated[Path, typer.Option("--dir", help="The pipelines folder.")] = Path(),
    store: StoreOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: LogFormatOption = _LogFormat.text,
) -> None:
    """Run a pipeline once, now, in this process; exit 0 only if it succeeded."""
    _setup_logging(verbose, log_format)
    loaded = load_folder(folder)
    target = loaded.pipelines.get(pipeline)
    if target is None:
        for problem in loaded.problems:
            _notice(str(problem), to=err, level=logging.ERROR)
        known = ", ".join(sorted(loaded.pipelines)) or "none"
        raise _fail(f"no valid pipeline {pipeline!r} in {folder} (found: {known})")
    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(f"-p {item!r}: write key=value")
        params[key] = parse_cli_value(target.params.get(key), value)
    printer = LivePrinter(json_lines=_json_lines)
    settings = Settings(reload=False, sensors=False, recover=False, strict=False, chain=False)

    async def main() -> RunRecord:
        reactor = Reactor(
            folder, open_store(_store_url(store, folder)), settings=settings, observers=[printer]
        )
        async with reactor:
            started = await reactor.run_now(pipeline, params, actor="cli")
            return await reactor.wait_run(started.id)

    try:
        finished = anyio.run(main)
    except SpecErrorGroup as exc:
        for problem in exc.problems:
            _notice(str(problem), to=err, level=logging.ERROR)
        raise _fail(f"{len(exc.problems)} problem(s) in {folder}") from None
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if finished.status != "succeeded":
        raise typer.Exit(1)


db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    folder: Annotated[
        Path, typer.Option("--dir", help="The pipelines folder (for the default store).")
    ] = Path(),
    store: StoreOption = None,
) -> None:
    """Bring the store's schema to this version of Reactor (serve does it on start too)."""
    from reactor.store.migrations import LATEST

    url = _store_url(store, folder)

    async def main() -> None:
        opened = open_store(url)
        await opened.open()
        await opened.close()

    try:
        anyio.run(main)
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    console.print(f"store schema is at version {LATEST} (the latest)")


@app.command()
def runs(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """List runs of a running service, newest first."""
    from reactor.client import Client  # only the commands that talk to a service need httpx

    try:
        with Client(url) as client:
            found = client.runs(pipeline or None, limit)
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    # The run id is what a user copies into the next command: never cut it short.
    run_column = Column("run", no_wrap=True, min_width=32)
    table = Table(run_column, "pipeline", "status", "trigger", "created", "ended")
    for item in found:
        style = _STATUS_STYLE.get(item["status"], "")
        table.add_row(
            item["id"],
            item["pipeline"],
            f"[{style}]{item['status']}[/{style}]",
            item["trigger"] or "on demand",
            item["created_at"],
            item["ended_at"] or "",
        )
    console.print(table)


def _actor() -> str:
    """Who runs this command, as operator actions record it: ``cli:USER@HOST``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    task: Annotated[
        str | None, typer.Option(help="Cancel only this running task; the run goes on.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Cancel a run (its running tasks are stopped, processes killed) or one of its tasks."""
    from reactor.client import Client

    try:
        with Client(url) as client:
            answer = client.cancel(run_id, task=task, actor=_actor())
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if task is not None:
        console.print(f"cancelling task {task} of run {run_id}")
        return
    reason = f" ({answer['reason']})" if answer.get("reason") else ""
    console.print(f"run {run_id} {answer['pipeline']} {answer['status']}{escape(reason)}")


@app.command()
def repair(
    run_id: Annotated[str, typer.Argument(help="The finished run to repair.")],
    tasks: Annotated[
        str | None,
        typer.Option(help="Rerun these tasks (comma-separated) even if they succeeded."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value: a changed param (JSON for lists)"),
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest", help="Use the pipeline as it is now, not the version the run used."
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Rerun the failed, cancelled and timed-out tasks of a finished run and everything
    downstream of them, keeping the other tasks' outputs (a new attempt of the same run)."""
    from reactor.client import Client

    chosen = None
    if tasks is not None:
        chosen = [t.strip() for t in tasks.split(",") if t.strip()]
        if not chosen:
            raise _fail("--tasks: name at least one task, like --tasks load,report")
    params = _cli_params(param)
    try:
        with Client(url) as client:
            answer = client.repair(
                run_id, tasks=chosen, params=params, latest=latest, actor=_actor()
            )
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    repaired = answer["repair"]
    console.print(
        f"run {run_id} {answer['pipeline']}: repair {repaired['number']} running"
        f" (rerunning {', '.join(repaired['rerun'])})",
        markup=False,
    )


def _cli_params(param: list[str] | None) -> dict[str, Any]:
    """``-p key=value`` pairs; JSON lists and objects are sent as such, the rest as text
    (the service turns it into the declared type)."""
    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"-p {item!r}: write key=value")
        parsed = parse_cli_value(ParamSpec(type="object"), value)
        params[key] = parsed if isinstance(parsed, list | dict) else value
    return params


def _backfill_counts(found: dict[str, Any]) -> str:
    counts = found["counts"]
    return ", ".join(f"{state} {counts[state]}" for state in RUN_STATES if counts.get(state))


def _backfill_done(found: dict[str, Any]) -> int:
    counts = found["counts"]
    return sum(counts.get(state, 0) for state in FINAL_RUN_STATES)


def _follow_backfill(client: Any, found: dict[str, Any], interval: float) -> dict[str, Any]:
    """Poll the backfill until it ended: a progress bar on a terminal, else a line per
    change of its counts."""
    ident = found["id"]
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TextColumn("{task.fields[counts]}"), console=console) as bar:
            task = bar.add_task(
                f"backfill {found['pipeline']}",
                total=found["total"],
                counts=_backfill_counts(found),
            )
            while True:
                bar.update(task, completed=_backfill_done(found), counts=_backfill_counts(found))
                if found["status"] != "running":
                    return found
                time.sleep(interval)
                found = client.get_backfill(ident)
    shown = ""
    while True:
        line = f"{_backfill_done(found)}/{found['total']} done ({_backfill_counts(found)})"
        if line != shown:
            console.print(f"backfill {ident}: {line}", markup=False)
            shown = line
        if found["status"] != "running":
            return found
        time.sleep(interval)
        found = client.get_backfill(ident)


@app.command()
def backfill(
    pipeline: Annotated[str, typer.Argument(help="The pipeline to backfill.")],
    start: Annotated[
        str, typer.Option("--from", help="First logical time (included): 2026-01-01 or ISO 8601.")
    ],
    end: Annotated[str, typer.Option("--to", help="End of the range (not included).")],
    step: Annotated[
        str | None,
        typer.Option(help="One run every STEP (1d, 6h) instead of the schedule's ticks."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1000, help="At most this many of its runs at once.")
    ] = 4,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON for lists)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow it until it ends (the default).")
    ] = True,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Run a pipeline once per logical time of a past range, as its schedule would have
    (`logical.*` and the schedule trigger's params alike). Asking again for the same
    backfill shows it and starts nothing. Exit 0 only if every run succeeded."""
    from reactor.client import Client

    params = _cli_params(param)
    try:
        with Client(url) as client:
            found = client.backfill(
                pipeline,
                start,
                end,
                step=step,
                params=params,
                concurrency=concurrency,
                actor=_actor(),
            )
            ident = found["id"]
            console.print(
                f"backfill {ident} of {found['pipeline']}: {found['total']} run(s),"
                f" {found['concurrency']} at a time ({found['status']})",
                markup=False,
            )
            if not wait:
                return
            try:
                found = _follow_backfill(client, found, 0.5)
            except KeyboardInterrupt:
                err.print(
                    f"stopped following; backfill {ident} goes on"
                    f" (reactor backfill-cancel {ident} cancels it)",
                    markup=False,
                )
                raise typer.Exit(130) from None
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    reason = f" ({found['reason']})" if found.get("reason") else ""
    console.print(f"backfill {ident} {found['status']}{reason}", markup=False)
    if found["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("backfill-cancel")
def backfill_cancel(
    backfill_id: Annotated[str, typer.Argument(help="The backfill to cancel (its id).")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Cancel a backfill: it starts no more runs and its queued and running runs are
    cancelled."""
    from reactor.client import Client

    try:
        with Client(url) as client:
            found = client.cancel_backfill(backfill_id, actor=_actor())
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    console.print(f"backfill {backfill_id} cancelled ({_backfill_counts(found)})", markup=False)


@app.command()
def backfills(
    status: Annotated[
        str | None, typer.Option(help="Only these: running, succeeded, failed, cancelled.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """List backfills of a running service, newest first, with their runs per state."""
    from reactor.client import Client

    try:
        with Client(url) as client:
            found = client.backfills(status=status)
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    table = Table(
        Column("backfill", no_wrap=True, min_width=32), "pipeline", "from", "to", "status", "runs"
    )
    for item in found:
        style = _STATUS_STYLE.get(item["status"], "")
        table.add_row(
            item["id"],
            item["pipeline"],
            item["from"],
            item["to"],
            f"[{style}]{item['status']}[/{style}]",
            f"{_backfill_done(item)}/{item['total']} done ({_backfill_counts(item)})",
        )
    console.print(table)


TriggerOption = Annotated[
    str | None, typer.Option("--trigger", help="Only this trigger of the pipeline (its id).")
]


@app.command()
def pause(
    pipeline: Annotated[str, typer.Argument(help="The pipeline to pause.")],
    trigger: TriggerOption = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Pause a pipeline or one trigger: events are still recorded (explained as paused) but
    start no run until `reactor resume`. Manual runs still work."""
    from reactor.client import Client

    try:
        with Client(url) as client:
            answer = client.pause(pipeline, trigger=trigger, actor=_actor())
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{escape(answer['key'])} paused by {escape(answer['actor'])}")


@app.command()
def resume(
    pipeline: Annotated[str, typer.Argument(help="The pipeline to resume.")],
    trigger: TriggerOption = None,
    replay: Annotated[
        bool,
        typer.Option("--replay", help="Decide again the events received while paused."),
    ] = False,
    drop: Annotated[
        bool,
        typer.Option("--drop", help="Leave the events received while paused as paused."),
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Resume a paused pipeline or trigger; --replay or --drop says what happens to the
    events received while it was paused (needed only when there are some)."""
    from reactor.client import Client

    if replay and drop:
        raise _fail("--replay and --drop exclude each other: choose one")
    choice = True if replay else False if drop else None
    try:
        with Client(url) as client:
            answer = client.resume(pipeline, trigger=trigger, replay=choice, actor=_actor())
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    key = escape(answer["key"])
    if answer["replayed"]:
        runs = ", ".join(answer["run_ids"]) or "none"
        console.print(
            f"{key} resumed: {answer['replayed']} event(s) replayed, runs started: {runs}"
        )
    elif answer["dropped"]:
        console.print(f"{key} resumed: {answer['dropped']} event(s) dropped")
    else:
        console.print(f"{key} resumed: no event was received while paused")


class _Decoding(enum.StrEnum):
    """How ``--decode`` reads a dead letter's value."""

    json = "json"
    text = "text"
    bytes = "bytes"


@app.command()
def redrive(
    event_id: Annotated[
        str | None, typer.Argument(metavar="[EVENT_ID]", help="The stored event to re-drive.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="With EVENT_ID: its source (needed when several sources used the id)."),
    ] = None,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="Re-drive the events of this type (a glob: orders.*)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="With --type: those received in the last 30m, 2h, 1d."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="With --type: received at or after this time (ISO 8601)."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="With --type: received before this time (default: now)."),
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option(help="Decide again only this pipeline's triggers.")
    ] = None,
    trigger: TriggerOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be decided; start nothing.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, max=10_000, help="Refuse if more events than this match."),
    ] = None,
    dead_letter: Annotated[
        int | None,
        typer.Option(
            "--dead-letter",
            min=1,
            metavar="SEQ",
            help="Re-drive the event this dead letter (its seq) stands for, rebuilt and stored.",
        ),
    ] = None,
    decode: Annotated[
        _Decoding | None,
        typer.Option(help="With --dead-letter: read its value so (default: its trigger's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Decide stored events again with today's triggers (a pipeline or trigger fixed or added
    since they came in). A trigger that already started a run for an event starts nothing
    new (run keys are trigger + event): re-driving twice is safe. --dead-letter SEQ turns a
    dead letter back into its event (stored under its usual id) and decides it."""
    from reactor.client import Client

    if decode is not None and dead_letter is None:
        raise _fail("--decode goes with --dead-letter", 2)
    if dead_letter is not None and (event_id or type_ or source or since or start or end):
        raise _fail("--dead-letter re-drives one dead letter: give no EVENT_ID or other filter", 2)
    if dead_letter is not None and (dry_run or limit is not None):
        raise _fail("--dry-run and --limit do not go with --dead-letter", 2)
    if dead_letter is None and (event_id is None) == (type_ is None):
        raise _fail("give an EVENT_ID or --type GLOB with --since or --from (one of them)", 2)
    if event_id is not None and (since or start or end):
        raise _fail("--since, --from and --to go with --type, not with an EVENT_ID", 2)
    if type_ is not None and source is not None:
        raise _fail("--source goes with an EVENT_ID, not with --type", 2)
    if type_ is not None and (since is None) == (start is None):
        raise _fail("--type needs --since D or --from T (one of them)", 2)
    if since is not None and end is not None:
        raise _fail("--to goes with --from, not with --since", 2)
    if trigger is not None and pipeline is None:
        raise _fail("--trigger needs --pipeline", 2)
    try:
        with Client(url) as client:
            found = client.redrive(
                event_id,
                source=source,
                type=type_,
                start=since or start,
                end=end,
                pipeline=pipeline,
                trigger=trigger,
                dry_run=dry_run,
                limit=limit,
                actor=_actor(),
                dead_letter=dead_letter,
                decode=decode.value if decode is not None else None,
            )
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    would = "would be " if dry_run else ""
    for item in found["events"]:
        event = item["event"]
        console.print(
            f"event [bold]{escape(event['id'])}[/bold] from {escape(event['source'])}"
            f" ({escape(event['type'])})"
        )
        for record in item["decisions"]:
            run = f" -> run {record['run_id']}" if record.get("run_id") else ""
            console.print(
                f"  {escape(str(record['trigger']))}: {_outcome(str(record['outcome']))}"
                f" ({escape(str(record['reason']))}){run}"
            )
        if not item["decisions"]:
            console.print("  no trigger matches it")
    new, existing = found["new_run_ids"], found["existing_run_ids"]
    named = f"; existing run(s) {', '.join(existing)}" if existing else ""
    if dry_run:
        counted = f"would start {found['would_start']} new run(s)"
    else:
        counted = f"fired: {len(new)} new run(s){' ' + ', '.join(new) if new else ''}"
    console.print(f"{found['count']} event(s) {would}re-driven; {counted}{named}")


_SENSOR_STYLE = {"starting": "dim", "watching": "green", "failing": "red", "stopped": "dim"}


@app.command()
def sensors(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Show each sensor of a running service: state, events, lag, cursor, last error."""
    from reactor.client import Client  # only the commands that talk to a service need httpx

    try:
        with Client(url) as client:
            found = client.sensors()
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    table = Table(
        Column("trigger", no_wrap=True),
        "on",
        "state",
        "events",
        "dupes",
        "dead",
        "lag",
        "last event",
        "cursor",
        "message",
    )
    for item in found:
        style = _SENSOR_STYLE.get(item["state"], "")
        cursor = item["cursor"]
        table.add_row(
            item["trigger"],
            item["on"],
            f"[{style}]{item['state']}[/{style}]",
            str(item["events"]),
            str(item["duplicates"]),
            str(item["dead_letters"]),
            "" if item["lag"] is None else str(item["lag"]),
            item["last_event_at"] or "",
            "" if cursor is None else escape(json.dumps(cursor, default=str)[:40]),
            escape(item["message"] or ""),
        )
    console.print(table)
    if not found:
        console.print("no sensors running")


@app.command()
def publish(
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="The event type, e.g. orders.new")],
    data: Annotated[str | None, typer.Option(help="The event data as JSON.")] = None,
    source: Annotated[str, typer.Option(help="The event source.")] = "reactor/cli",
    subject: Annotated[str | None, typer.Option(help="The event subject.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event id (a repeat is a duplicate).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Publish an event to a running service; prints the runs it started."""
    from reactor.client import Client  # only the commands that talk to a service need httpx

    try:
        parsed = None if data is None else json.loads(data)
    except json.JSONDecodeError as exc:
        raise _fail(f"--data is not JSON: {exc}") from None
    try:
        with Client(url) as client:
            result = client.publish(
                type_, parsed, source=source, id=event_id or None, subject=subject or None
            )
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    dup = " (duplicate: no new run)" if result.duplicate else ""
    console.print(f"event {result.event_id}{dup}")
    for run_id in result.run_ids:
        console.print(f"run {run_id}")
    if not result.run_ids and not result.duplicate:
        console.print("no run started: no trigger fired for this event")


@app.command()
def schedule(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.")],
    folder: Annotated[Path, typer.Option("--dir", help="The pipelines folder.")] = Path(),
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="Fire times per trigger.")
    ] = 10,
    after: Annotated[
        str | None,
        typer.Option(help="List fire times after this ISO 8601 time with offset (default: now)."),
    ] = None,
) -> None:
    """List the next fire times of a pipeline's schedules, in their timezone and in UTC."""
    from datetime import UTC

    from reactor.specs import Schedule

    start = datetime.now(UTC)
    if after is not None:
        try:
            start = datetime.fromisoformat(after)
        except ValueError:
            raise _fail(f"--after {after!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            raise _fail(f"--after {after!r} needs a UTC offset, like 2026-01-01T06:00:00+01:00")
    loaded = load_folder(folder)
    target = loaded.pipelines.get(pipeline)
    if target is None:
        for problem in loaded.problems:
            err.print(str(problem), markup=False)
        known = ", ".join(sorted(loaded.pipelines)) or "none"
        raise _fail(f"no valid pipeline {pipeline!r} in {folder} (found: {known})")
    schedules = [t for t in target.triggers if isinstance(t.spec, Schedule)]
    if not schedules:
        raise _fail(f"pipeline {pipeline!r} has no schedule trigger")
    for trigger in schedules:
        spec = trigger.spec
        assert isinstance(spec, Schedule)
        console.print(f"[bold]{trigger.key}[/bold]: {escape(spec.describe())}")
        for moment in spec.upcoming(start, count):
            console.print(
                f"  {moment.isoformat()}  {moment:%a}  (UTC {moment.astimezone(UTC).isoformat()})"
            )


_OUTCOME_STYLE = {"fired": "green", NOT_CANDIDATE: "dim", "condition_false": "yellow"}


def _outcome(code: str) -> str:
    style = _OUTCOME_STYLE.get(code, "red" if "error" in code or "invalid" in code else "")
    return f"[{style}]{escape(code)}[/{style}]" if style else escape(code)


def _print_event_explanation(found: dict[str, Any], source_given: bool) -> None:
    event = found["event"]
    console.print(
        f"event [bold]{escape(event['id'])}[/bold] from {escape(event['source'])},"
        f" type {escape(event['type'])}"
    )
    evaluated = found["evaluated_at"] or "not yet"
    console.print(f"received {found['received_at']}, evaluated {evaluated}")
    same = found["same_id"]
    if same["count"]:
        sources = ", ".join(escape(o["source"]) for o in same["events"])
        more = "+" if found.get("same_id_more") else ""
        hint = "" if source_given else "; pass --source to pick another"
        console.print(
            f"{same['count']}{more} other event(s) share this id (sources: {sources}){hint}"
        )
    table = Table(
        Column("trigger", no_wrap=True),
        "outcome",
        "reason",
        Column("run", no_wrap=True, min_width=32),
    )
    for entry in found["triggers"]:
        reason = entry["reason"]
        if entry.get("computed_now"):
            reason += " (computed now)"
        if entry["recorded"] and not entry["loaded"]:
            reason += " (trigger no longer loaded)"
        if entry.get("params") and entry["fired"]:
            reason += f" params={json.dumps(entry['params'], default=str)}"
        table.add_row(
            escape(str(entry["trigger"])),
            _outcome(str(entry["outcome"])),
            escape(reason),
            entry.get("run_id") or "",
        )
    if found["triggers"]:
        console.print(table)
    else:
        console.print("no pipeline is loaded and nothing was recorded for this event")
    for run_id in found["run_ids"]:
        console.print(f"run {run_id}")
    if not found["run_ids"]:
        console.print("no run started for this event")


def _print_pipeline_explanation(found: dict[str, Any], since: str) -> None:
    console.print(
        f"pipeline [bold]{escape(found['pipeline'])}[/bold], last {escape(since)}"
        f" ({found['since']} to {found['until']})"
    )
    for trigger in found["triggers"]:
        what = [f"type {trigger['type']!r}"]
        if trigger["source"]:
            what.append(f"source {trigger['source']!r}")
        if trigger["when"]:
            what.append(f"when {trigger['when']!r}")
        console.print(
            f"  trigger {escape(trigger['trigger'])} (on {trigger['on']}): "
            f"{escape(', '.join(what))}"
        )
    if not found["triggers"]:
        console.print("  no triggers: this pipeline runs only on demand")
    events = found["events"]
    more = " (stopped reading: too many)" if events["truncated"] else ""
    console.print(
        f"events received: {events['total']}{more}; reached its triggers: {events['reached']};"
        f" not evaluated yet: {events['unevaluated']}"
    )
    for code, slot in found["outcomes"].items():
        console.print(f"  {_outcome(code)}: {slot['count']}")
        for example in slot["last"]:
            run = f" -> run {example['run_id']}" if example.get("run_id") else ""
            console.print(
                f"    {example['received_at']} event {escape(example['event_id'])}"
                f" ({escape(example['type'])}) {escape(str(example['trigger']))}:"
                f" {escape(example['reason'])}{run}"
            )
    unmatched = found["unmatched"]
    if unmatched["count"]:
        types = ", ".join(f"{escape(t)} {n}" for t, n in unmatched["by_type"].items())
        console.print(f"events none of its triggers could match: {unmatched['count']} ({types})")
    runs_found = found["runs"]
    statuses = ", ".join(f"{s} {n}" for s, n in runs_found["by_status"].items())
    console.print(f"runs: {runs_found['count']}" + (f" ({statuses})" if statuses else ""))
    for item in runs_found["last"]:
        why = f" ({escape(item['reason'])})" if item["reason"] else ""
        console.print(
            f"  run {item['id']} {item['status']} {escape(item['trigger'] or 'on demand')}"
            f" {item['created_at']}{why}"
        )
    if not events["reached"] and not runs_found["count"]:
        console.print("no event reached this pipeline's triggers and it did not run in this period")


@app.command()
def explain(
    event_id: Annotated[
        str | None, typer.Argument(metavar="[EVENT_ID]", help="The event to explain.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="The event's source (an id is unique per source; default: the first)."),
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(help="Explain why this pipeline ran or did not run, instead of an event."),
    ] = None,
    since: Annotated[
        str, typer.Option(help="With --pipeline: the period to look at (30m, 1h, 1d).")
    ] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Why an event fired or did not fire each trigger, or why a pipeline did not run."""
    from reactor.client import Client  # only the commands that talk to a service need httpx
    from reactor.durations import parse_duration

    if (event_id is None) == (pipeline is None):
        raise _fail("give an EVENT_ID or --pipeline P (one of them)", 2)
    if pipeline is not None and source is not None:
        raise _fail("--source goes with an EVENT_ID, not with --pipeline", 2)
    if pipeline is not None:
        try:
            parse_duration(since)
        except ValueError as exc:
            raise _fail(f"--since: {exc}", 2) from None
    try:
        with Client(url) as client:
            if event_id is not None:
                found = client.explain_event(event_id, source)
            else:
                assert pipeline is not None
                found = client.explain_pipeline(pipeline, since)
    except ReactorError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    elif event_id is not None:
        _print_event_explanation(found, source is not None)
    else:
        _print_pipeline_explanation(found, since)


@app.command("test-trigger")
def test_trigger(
    pipeline: Annotated[str, typer.Argument(help="The pipeline's name.")],
    event_file: Annotated[
        Path,
        typer.Option("--event", help="A CloudEvents JSON file (structured mode) to evaluate."),
    ],
    folder: Annotated[Path, typer.Option("--dir", help="The pipelines folder.")] = Path(),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate an event against a pipeline's triggers without starting anything.

    Exit 0 if a trigger fired, 1 if none did, 2 for bad input.
    """
    from reactor.events import Event, InvalidEvent
    from reactor.explain import dry_run

    try:
        text = event_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"--event {event_file}: no such file", 2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"--event {event_file}: cannot read it: {exc}", 2) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--event {event_file} is not JSON: {exc}", 2) from None
    try:
        event = Event.from_cloudevent(body, default_source="reactor/cli")
    except InvalidEvent as exc:
        raise _fail(f"--event {event_file} is not a CloudEvent: {exc}", 2) from None
    loaded = load_folder(folder)
    target = loaded.pipelines.get(pipeline)
    if target is None:
        for problem in loaded.problems:
            err.print(str(problem), markup=False)
        known = ", ".join(sorted(loaded.pipelines)) or "none"
        raise _fail(f"no valid pipeline {pipeline!r} in {folder} (found: {known})", 2)
    entries = dry_run(target, event, os.environ)
    fired = [e for e in entries if e["fired"]]
    if as_json:
        result = {"pipeline": pipeline, "event": event.to_cloudevent(), "triggers": entries}
        sys.stdout.write(json.dumps(result | {"fired": len(fired)}, indent=2, default=str) + "\n")
    else:
        console.print(
            f"event {escape(event.type)} from {escape(event.source)} against"
            f" [bold]{escape(pipeline)}[/bold] ({len(entries)} trigger(s)); nothing is started"
        )
        table = Table(Column("trigger", no_wrap=True), "candidate", "outcome", "reason", "params")
        for entry in entries:
            params = entry.get("params")
            table.add_row(
                escape(entry["trigger"]),
                "yes" if entry["candidate"] else "no",
                _outcome(entry["outcome"]),
                escape(entry["reason"]),
                "" if params is None else escape(json.dumps(params, default=str)),
            )
        if entries:
            console.print(table)
        else:
            console.print(f"pipeline {pipeline!r} has no triggers (it runs only on demand)")
        names = ", ".join(e["trigger"] for e in fired)
        console.print(f"fired: {escape(names)}" if fired else "no trigger fired")
    if not fired:
        raise typer.Exit(1)


def main() -> None:
    app()
