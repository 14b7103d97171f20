"""Loading pipeline files into compiled, validated pipelines (with file:line errors)."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model

from reactor.actions import Action
from reactor.alerting.specs import AlertSpec
from reactor.asset_trigger import AssetTriggerSpec
from reactor.assets import DeclaredAssets, template_pattern
from reactor.config import SETTINGS_FILE, Config, load_config
from reactor.control import ForEachTaskSpec, RunPipelineSpec, RunPipelineTaskSpec
from reactor.dag import Need, find_cycle, topological_order
from reactor.durations import Duration
from reactor.errors import ExpressionError, SpecError, SpecErrorGroup, SpecProblem
from reactor.expressions import CompiledValue, Expression, compile_expression, task_references
from reactor.grouping import Grouping, compile_grouping
from reactor.params import ParamSpec
from reactor.registry import Registry, default_registry
from reactor.retention import PipelineRetentionSpec
from reactor.retry import RetryPolicy
from reactor.specs import (
    NAME_PATTERN,
    ConcurrencySpec,
    EventFilter,
    HookReceiver,
    HttpIngress,
    IngressUnavailable,
    PipelineTriggerSpec,
    RetrySpec,
    Spec,
    TaskSpec,
    TriggerSpec,
)
from reactor.yamlfile import YamlDocument, load_yaml, parse_yaml

__all__ = [
    "FolderLoad",
    "Pipeline",
    "PipelineSpec",
    "Task",
    "Trigger",
    "chain_cycles",
    "load_folder",
    "load_pipeline",
    "open_hooks",
]


class PipelineSpec(Spec):
    """The top level of a pipeline file."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    params: dict[str, ParamSpec] = {}
    concurrency: ConcurrencySpec = ConcurrencySpec()
    #: The whole run's time limit; running tasks are stopped and end ``timed_out``.
    timeout: Duration | None = Field(None, gt=0)
    #: Overrides ``runs``/``keep_runs`` of ``retention:`` in ``reactor.yaml`` for this pipeline.
    retention: PipelineRetentionSpec | None = None
    #: Replaces ``alerts:`` of ``reactor.yaml`` for this pipeline (docs/alerts.md).
    alerts: list[AlertSpec] = []
    triggers: list[Any] = []
    tasks: list[Any] = Field(min_length=1)


def _tag(name: str) -> str:
    return f"<{name}>"


@cache
def _task_union(registry: Registry) -> Any:
    """The registered task types as one discriminated union (by their type key)."""
    task_keys = sorted(registry.tasks)

    def task_tag(value: Any) -> str | None:
        if not isinstance(value, dict):
            return _tag(value.type_key) if isinstance(value, TaskSpec) else None
        present = [key for key in task_keys if key in value]
        return _tag(present[0]) if present else None

    tasks = [Annotated[k.spec, Tag(_tag(n))] for n, k in registry.tasks.items()]
    return Annotated[
        Union[tuple(tasks)],  # noqa: UP007 - built at run time
        Discriminator(
            task_tag,
            custom_error_type="task_type",
            custom_error_message=f"a task needs one type key, one of: {', '.join(task_keys)}",
        ),
    ]


@cache
def _task_adapter(registry: Registry) -> TypeAdapter[Any]:
    return TypeAdapter(_task_union(registry))


@cache
def pipeline_model(registry: Registry) -> type[PipelineSpec]:
    """A :class:`PipelineSpec` whose triggers and tasks are the registered kinds."""
    trigger_keys = sorted(registry.triggers)

    def trigger_tag(value: Any) -> str | None:
        kind = value.get("on") if isinstance(value, dict) else getattr(value, "on", None)
        return _tag(kind) if isinstance(kind, str) else None

    triggers = [Annotated[k.spec, Tag(_tag(n))] for n, k in registry.triggers.items()]
    trigger_union: Any = Annotated[
        Union[tuple(triggers)],  # noqa: UP007 - built at run time
        Discriminator(
            trigger_tag,
            custom_error_type="trigger_kind",
            custom_error_message=f"a trigger needs 'on:', one of: {', '.join(trigger_keys)}",
        ),
    ]
    task_union: Any = _task_union(registry)
    model: type[PipelineSpec] = create_model(
        "Pipeline",
        __base__=PipelineSpec,
        triggers=(list[trigger_union], []),
        tasks=(list[task_union], Field(min_length=1)),
    )
    return model


@dataclass(frozen=True)
class Trigger:
    """A compiled trigger of one pipeline; ``key`` is ``pipeline/trigger-id``."""

    key: str
    id: str
    pipeline: str
    spec: TriggerSpec
    filter: EventFilter
    when: Expression | None
    params: CompiledValue
    #: Where it is written: the file as shown to users, its position under ``triggers:``,
    #: and the line of the trigger and of each of its keys (for problems found later).
    file: str = ""
    index: int = 0
    lines: tuple[tuple[str, int | None], ...] = ()
    #: Batch, debounce, correlation, dedupe and rate limit, if it has any.
    grouping: Grouping | None = None

    @property
    def filters(self) -> tuple[EventFilter, ...]:
        """What the rule engine files the trigger under: its filter, or for a
        correlation one filter per pattern."""
        several = self.spec.event_filters(self.key)
        return several if len(several) > 1 else (self.filter,)

    def problem(self, key: str, message: str) -> SpecProblem:
        """A problem of this trigger's ``key``, at that key's line."""
        lines = dict(self.lines)
        line = lines.get(key, lines.get(""))
        return SpecProblem(self.file, line, f"triggers[{self.index}].{key}", message)


@dataclass(frozen=True)
class Task:
    """A compiled task: its action, retry policy and edges; a loop also has its ``inner`` task."""

    id: str
    spec: TaskSpec
    needs: tuple[Need, ...]
    action: Action
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(None))
    #: What a ``for_each:`` runs per item.
    inner: Task | None = None
    #: Its ``inputs:`` and ``outputs:``, compiled (reactor/assets.py).
    assets: DeclaredAssets = field(default_factory=lambda: DeclaredAssets((), ()))

    @property
    def need_ids(self) -> tuple[str, ...]:
        return tuple(n.task for n in self.needs)

    @property
    def retries(self) -> RetrySpec:
        return self.retry.spec


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline version, ready to run: compiled templates and actions."""

    name: str
    spec: PipelineSpec
    path: Path
    text: str
    version: str
    triggers: tuple[Trigger, ...]
    tasks: dict[str, Task]
    order: tuple[str, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.spec.params

    @property
    def needs(self) -> dict[str, tuple[Need, ...]]:
        return {task.id: task.needs for task in self.tasks.values()}

    @property
    def timeout(self) -> float | None:
        return self.spec.timeout


def _display_loc(loc: Iterable[str | int]) -> tuple[str | int, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("<")))


def _message(error: Any, registry: Registry) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = error["loc"][-1]
        if key in registry.tasks:
            return "a task has exactly one type key; this task already has another"
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "union_tag_invalid":
        tag = str(error["ctx"].get("tag", "")).strip("<>")
        expected = ", ".join(sorted(registry.triggers))
        return f"unknown trigger kind {tag!r}; allowed: {expected}"
    if kind == "trigger_kind":
        given = error["input"].get("on") if isinstance(error["input"], dict) else None
        if isinstance(given, str):
            expected = ", ".join(sorted(registry.triggers))
            return f"unknown trigger kind {given!r}; allowed: {expected}"
    if kind == "literal_error":
        return f"{error['msg']}, got {error['input']!r}"
    if kind == "value_error":
        # Our validators' own words, without pydantic's "Value error, " prefix.
        return str(error["ctx"]["error"])
    return str(error["msg"])


def _closest(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _default_trigger_ids(triggers: list[TriggerSpec]) -> list[str]:
    counts = Counter(t.on for t in triggers if t.id is None)
    seen: Counter[str] = Counter()
    ids = []
    for trigger in triggers:
        if trigger.id is not None:
            ids.append(trigger.id)
        elif counts[trigger.on] == 1:
            ids.append(trigger.on)
        else:
            seen[trigger.on] += 1
            ids.append(f"{trigger.on}_{seen[trigger.on]}")
    return ids


def _graph_problems(
    doc: YamlDocument, graph: list[tuple[int, str, list[str]]]
) -> list[SpecProblem]:
    """Duplicate ids, unknown or self needs, and (when those are fine) a cycle.

    ``graph`` holds ``(position, id, needs)`` of every task whose id could be read, so
    the checks also run on a file with other problems.
    """
    problems: list[SpecProblem] = []
    ids = Counter(task_id for _, task_id, _ in graph)
    for i, task_id, needs in graph:
        if ids[task_id] > 1:
            problems.append(doc.problem(("tasks", i, "id"), f"duplicate task id {task_id!r}"))
            continue
        for j, need in enumerate(needs):
            if need not in ids:
                hint = _closest(need, ids)
                problems.append(
                    doc.problem(("tasks", i, "needs", j), f"unknown task {need!r}{hint}")
                )
            elif need == task_id:
                problems.append(doc.problem(("tasks", i, "needs", j), "a task cannot need itself"))
    if not problems and (cycle := find_cycle({t: n for _, t, n in graph})):
        where = next(i for i, t, _ in graph if t == cycle[0])
        problems.append(
            doc.problem(("tasks", where, "needs"), "dependency cycle: " + " -> ".join(cycle))
        )
    return problems


def _raw_graph(data: Any) -> list[tuple[int, str, list[str]]]:
    """The task graph as far as it can be read from a file that did not validate."""
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return []
    graph = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            continue
        needs = task.get("needs", [])
        needs = [needs] if isinstance(needs, str | dict) else needs
        if isinstance(needs, list):
            needs = [n.get("task") if isinstance(n, dict) else n for n in needs]
        if isinstance(needs, list) and all(isinstance(n, str) for n in needs):
            graph.append((i, task["id"], needs))
        else:
            graph.append((i, task["id"], []))
    return graph


def _compile(
    doc: YamlDocument, spec: PipelineSpec, path: Path, text: str, registry: Registry
) -> Pipeline:
    task_specs: list[TaskSpec] = spec.tasks
    problems = _graph_problems(doc, [(i, t.id, t.need_ids) for i, t in enumerate(task_specs)])
    ids = Counter(t.id for t in task_specs)
    tasks: dict[str, Task] = {}
    for i, task_spec in enumerate(task_specs):
        if ids[task_spec.id] > 1:
            continue
        task = _compile_task(doc, ("tasks", i), task_spec, path.parent, registry, problems)
        if task is not None:
            tasks[task_spec.id] = task
    needs = {t.id: t.need_ids for t in task_specs}
    if not problems:
        problems += _edge_problems(doc, task_specs, needs)

    triggers: list[Trigger] = []
    trigger_specs: list[TriggerSpec] = spec.triggers
    trigger_ids = _default_trigger_ids(trigger_specs)
    counted = Counter(trigger_ids)
    for i, (trigger_id, trigger_spec) in enumerate(zip(trigger_ids, trigger_specs, strict=True)):
        if counted[trigger_id] > 1:
            problems.append(doc.problem(("triggers", i), f"duplicate trigger id {trigger_id!r}"))
            continue
        for name in trigger_spec.params:
            if name not in spec.params:
                hint = _closest(name, spec.params)
                problems.append(
                    doc.problem(("triggers", i, "params", name), f"undeclared param{hint}")
                )
        for name, param in spec.params.items():
            if param.required and name not in trigger_spec.params:
                problems.append(
                    doc.problem(
                        ("triggers", i, "params"),
                        f"required param {name!r} is not given by this trigger",
                    )
                )
        key = f"{spec.name}/{trigger_id}"
        try:
            when = compile_expression(trigger_spec.when) if trigger_spec.when else None
        except ExpressionError as exc:
            problems.append(doc.problem(("triggers", i, "when"), str(exc)))
            continue
        try:
            params = CompiledValue(trigger_spec.params)
        except ExpressionError as exc:
            problems.append(doc.problem(("triggers", i, "params"), str(exc)))
            continue
        try:
            grouping = compile_grouping(trigger_spec)
        except ExpressionError as exc:
            problems.append(doc.problem(("triggers", i, *exc.loc), str(exc)))
            continue
        if isinstance(trigger_spec, AssetTriggerSpec):
            trigger_spec = trigger_spec.bound(spec.name, _declared_inputs(task_specs))
            if not trigger_spec.patterns:
                message = (
                    "on: asset without assets: fires when an input of this pipeline's tasks"
                    " is written, but no task declares inputs:; add assets: or inputs:"
                )
                problems.append(doc.problem(("triggers", i), message))
                continue
        filter_ = trigger_spec.event_filter(key)
        raw = doc.data["triggers"][i] if isinstance(doc.data, dict) else {}
        lines = (
            ("", doc.line_of(("triggers", i))),
            *((str(name), doc.line_of(("triggers", i, name))) for name in raw),
        )
        triggers.append(
            Trigger(
                key,
                trigger_id,
                spec.name,
                trigger_spec,
                filter_,
                when,
                params,
                doc.path,
                i,
                lines,
                grouping,
            )
        )

    if problems:
        raise SpecErrorGroup(sorted(problems, key=lambda p: p.line or 0))
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Pipeline(
        name=spec.name,
        spec=spec,
        path=path,
        text=text,
        version=version,
        triggers=tuple(triggers),
        tasks=tasks,
        order=tuple(topological_order(needs)),
    )


def _declared_inputs(specs: Iterable[TaskSpec]) -> list[str]:
    """The patterns of the assets a pipeline's tasks (and loops' tasks) declare reading."""
    found: list[str] = []
    for spec in specs:
        inner = spec.task.get("inputs", []) if isinstance(spec, ForEachTaskSpec) else []
        for text in [*spec.inputs, *([inner] if isinstance(inner, str) else inner)]:
            with contextlib.suppress(ValueError):  # the loop's task reports its own problem
                found.append(template_pattern(str(text)))
    return list(dict.fromkeys(found))


def _compile_task(
    doc: YamlDocument,
    loc: tuple[str | int, ...],
    spec: TaskSpec,
    base_dir: Path,
    registry: Registry,
    problems: list[SpecProblem],
) -> Task | None:
    """One task's action and retry policy (and a loop's inner task); problems are added."""
    kind = registry.tasks[spec.type_key]
    try:
        action = kind.action(spec, base_dir)
        retry = RetryPolicy(spec.retries, spec.retry_on)
        assets = DeclaredAssets(spec.inputs, spec.outputs)
    except ExpressionError as exc:
        where = exc.loc or (kind.key,)
        if where == ("retry_on", "when") and isinstance(_raw(doc.data, (*loc, "retry_on")), str):
            where = ("retry_on",)  # written as retry_on: "expression"
        problems.append(doc.problem((*loc, *where), str(exc)))
        return None
    inner = None
    if isinstance(spec, ForEachTaskSpec):
        try:
            inner_spec = _task_adapter(registry).validate_python({**spec.task, "id": spec.id})
        except ValidationError as exc:
            problems.extend(
                doc.problem((*loc, "task", *_display_loc(err["loc"])), _message(err, registry))
                for err in exc.errors()
            )
            return None
        inner = _compile_task(doc, (*loc, "task"), inner_spec, base_dir, registry, problems)
        if inner is None:
            return None
    needs = tuple(Need(n.task, n.outcome) for n in spec.need_specs)
    return Task(spec.id, spec, needs, action, retry, inner, assets)


def _raw(data: Any, loc: Sequence[str | int]) -> Any:
    """The value at ``loc`` in a file's raw data, or ``None``."""
    for part in loc:
        found = isinstance(data, dict) and part in data
        found = found or (isinstance(data, list) and isinstance(part, int) and part < len(data))
        if not found:
            return None
        data = data[part]
    return data


def _edge_problems(
    doc: YamlDocument, specs: list[TaskSpec], needs: Mapping[str, Sequence[str]]
) -> list[SpecProblem]:
    """Outcomes on tasks that are not ``if:``, ``run_if`` without needs, and templates that
    read ``tasks.X`` where X is not a task this one waits for."""
    problems: list[SpecProblem] = []
    kinds = {t.id: t.type_key for t in specs}
    upstream = _ancestors(needs)
    for i, spec in enumerate(specs):
        for j, need in enumerate(spec.need_specs):
            if need.outcome is not None and kinds.get(need.task) != "if":
                problems.append(
                    doc.problem(
                        ("tasks", i, "needs", j, "outcome"),
                        f"outcome: needs an if: task; {need.task!r} is a"
                        f" {kinds.get(need.task)}: task (use needs: [{need.task}])",
                    )
                )
        if spec.retry_on is not None and spec.retries is None:
            problems.append(
                doc.problem(
                    ("tasks", i, "retry_on"),
                    "retry_on chooses which failures are retried, but the task has no retries:",
                )
            )
        if spec.run_if != "all_success" and not spec.needs:
            problems.append(
                doc.problem(("tasks", i, "run_if"), "run_if has no needs to look at; add needs:")
            )
        raw = doc.data["tasks"][i] if isinstance(doc.data, dict) else {}
        for name in sorted(task_references(_strings(raw))):
            if name not in kinds:
                problems.append(
                    doc.problem(
                        ("tasks", i),
                        f"reads tasks.{name}: there is no task {name!r}" + _closest(name, kinds),
                    )
                )
            elif spec.id in upstream[name]:
                problems.append(
                    doc.problem(
                        ("tasks", i),
                        f"reads tasks.{name}, but {name!r} runs after this task (it needs it,"
                        " directly or through its needs)",
                    )
                )
            elif name not in upstream[spec.id]:
                problems.append(
                    doc.problem(
                        ("tasks", i),
                        f"reads tasks.{name} but does not need {name!r} (directly or through"
                        f" its needs), so it may run before {name!r} ends; add it to needs:",
                    )
                )
    return problems


def _strings(value: Any) -> list[tuple[str, bool]]:
    """Every string in a raw task (but its own ``id``, ``needs`` and ``run_if``), with
    whether it is a bare expression (``if:``, ``retry_on:`` as a string or its ``when:``)
    rather than a template."""
    found: list[tuple[str, bool]] = []

    def walk(item: Any, key: str) -> None:
        if isinstance(item, str):
            found.append((item, key in ("if", "when", "retry_on")))
        elif isinstance(item, dict):
            for k, v in item.items():
                walk(v, str(k))
        elif isinstance(item, list):
            for v in item:
                walk(v, "")

    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("id", "needs", "run_if"):
                walk(v, str(k))
    return found


def _ancestors(needs: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    """Every task each task waits for, directly or through others (the graph is acyclic)."""
    found: dict[str, set[str]] = {}
    for task in topological_order({t: list(n) for t, n in needs.items()}):
        found[task] = set()
        for need in needs[task]:
            found[task] |= {need, *found.get(need, ())}
    return found


def load_pipeline(
    path: Path,
    *,
    registry: Registry | None = None,
    display: str | None = None,
    text: str | None = None,
) -> Pipeline:
    """Load and compile one file (or ``text`` as if it were that file).

    Raises :class:`SpecErrorGroup` with every problem found.
    """
    registry = registry or default_registry()
    try:
        if text is None:
            doc = load_yaml(path, display=display)
            text = path.read_text(encoding="utf-8")
        else:
            doc = parse_yaml(text, display=display or str(path))
    except SpecError as exc:
        raise SpecErrorGroup([exc.problem]) from exc
    if not isinstance(doc.data, dict):
        raise SpecErrorGroup([doc.problem((), "a pipeline file must be a mapping (name:, tasks:)")])
    try:
        spec = pipeline_model(registry).model_validate(doc.data)
    except ValidationError as exc:
        problems = [
            doc.problem(_display_loc(err["loc"]), _message(err, registry)) for err in exc.errors()
        ]
        problems += _graph_problems(doc, _raw_graph(doc.data))
        problems.sort(key=lambda p: p.line or 0)
        raise SpecErrorGroup(problems) from exc
    return _compile(doc, spec, path, text, registry)


def pipeline_files(folder: Path) -> list[Path]:
    """Every pipeline file under ``folder`` (``*.yaml``/``*.yml``, not ``reactor.yaml``)."""
    files = [
        p
        for p in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")])
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.relative_to(folder) != Path(SETTINGS_FILE)
    ]
    return files


@dataclass
class FolderLoad:
    """The valid pipelines of a folder, the problems of the others, and which files broke.

    ``config`` is the folder's ``reactor.yaml`` (defaults if it is missing or broken; its
    problems are in ``problems`` then).
    """

    pipelines: dict[str, Pipeline]
    problems: list[SpecProblem]
    broken: set[Path]
    config: Config = field(default_factory=Config)


def load_folder(folder: Path, *, registry: Registry | None = None) -> FolderLoad:
    """Every valid pipeline in ``folder`` and every problem found in the others."""
    result = FolderLoad({}, [], set())
    if not folder.is_dir():
        result.problems.append(SpecProblem(str(folder), None, "", "is not a folder"))
        return result
    folder = folder.resolve()
    try:
        result.config = load_config(folder, display=str(Path(folder.name) / SETTINGS_FILE))
        settings_read = True
    except SpecErrorGroup as exc:
        result.problems.extend(exc.problems)
        settings_read = False
    for path in pipeline_files(folder):
        display = str(path.relative_to(folder.parent))
        try:
            pipeline = load_pipeline(path, registry=registry, display=display)
        except SpecErrorGroup as exc:
            result.problems.extend(exc.problems)
            result.broken.add(path)
            continue
        if pipeline.name in result.pipelines:
            other = result.pipelines[pipeline.name].path.name
            result.problems.append(
                SpecProblem(display, 1, "name", f"pipeline {pipeline.name!r} is also in {other}")
            )
            result.broken.add(path)
            continue
        result.pipelines[pipeline.name] = pipeline
    _check_chaining(result)
    _check_hooks(result)
    _check_run_pipelines(result, folder)
    if settings_read:
        # With a broken reactor.yaml its problems are reported; checking names against the
        # defaults would add "unknown connection/pool" for every name it declares.
        _check_connections(result, folder)
        _check_pools(result, folder)
        _check_alerts(result, folder)
    return result


def _check_alerts(result: FolderLoad, folder: Path) -> None:
    """An ``email:`` alert needs ``alerting.smtp`` in ``reactor.yaml``."""
    if result.config.spec.alerting.smtp is not None:
        return
    message = f"email: needs alerting: {{smtp: {{host: ...}}}} in {SETTINGS_FILE}"
    for index, alert in enumerate(result.config.spec.alerts):
        if alert.email is not None:
            display = str(Path(folder.name) / SETTINGS_FILE)
            assert result.config.path is not None
            doc = load_yaml(result.config.path, display=display)
            result.problems.append(doc.problem(("alerts", index, "email"), message))
    bad: set[str] = set()
    for name, pipeline in result.pipelines.items():
        for index, alert in enumerate(pipeline.spec.alerts):
            if alert.email is not None:
                display = str(pipeline.path.relative_to(folder.parent))
                doc = parse_yaml(pipeline.text, display=display)
                result.problems.append(doc.problem(("alerts", index, "email"), message))
                bad.add(name)
    for name in bad:
        result.broken.add(result.pipelines.pop(name).path)


def _check_pools(result: FolderLoad, folder: Path) -> None:
    """Every ``pool:`` (of a task or of a loop's task) is declared in ``reactor.yaml``."""
    declared = result.config.spec.pools
    known = ", ".join(sorted(declared)) or "none declared"
    bad: set[str] = set()
    for name, pipeline in result.pipelines.items():
        for task in pipeline.tasks.values():
            for key, one in (("pool", task), ("task", task.inner)):
                pool = one.spec.pool if one is not None else None
                if pool is None or pool in declared:
                    continue
                where: tuple[str, ...] = ("pool",) if key == "pool" else ("task", "pool")
                message = f"unknown pool {pool!r}: pools in {SETTINGS_FILE}: {known}"
                result.problems.append(_task_problem(pipeline, folder, task.id, where, message))
                bad.add(name)
    for name in bad:
        result.broken.add(result.pipelines.pop(name).path)


def _check_connections(result: FolderLoad, folder: Path) -> None:
    """Every ``connection:`` of a trigger or task is a URL or a name in ``reactor.yaml``."""
    connections = result.config.connections
    known = ", ".join(sorted(connections.values)) or "none"
    bad: set[str] = set()
    for name, pipeline in result.pipelines.items():
        # (the reference, the problem at its place given a message)
        wanted: list[tuple[str, Callable[[str], SpecProblem]]] = [
            (ref, partial(trigger.problem, "connection"))
            for trigger in pipeline.triggers
            if isinstance(ref := getattr(trigger.spec, "connection", None), str)
        ]
        for task in pipeline.tasks.values():
            for where, one in (((), task), (("task",), task.inner)):
                ref = getattr(one.spec, "connection", None) if one is not None else None
                if one is not None and isinstance(ref, str):
                    loc = (*where, *one.spec.connection_loc)
                    wanted.append((ref, partial(_task_problem, pipeline, folder, task.id, loc)))
        for ref, problem in wanted:
            if not connections.knows(ref):
                message = (
                    f"unknown connection {ref!r}: write a URL (scheme://...) or a name under"
                    f" connections: in {SETTINGS_FILE} (names: {known})"
                )
                result.problems.append(problem(message))
                bad.add(name)
    for name in bad:
        result.broken.add(result.pipelines.pop(name).path)


def _task_problem(
    pipeline: Pipeline, folder: Path, task_id: str, key: str | tuple[str, ...], message: str
) -> SpecProblem:
    """A problem of one task's ``key``, at its line (the file is parsed again: rare)."""
    index = list(pipeline.tasks).index(task_id)
    doc = parse_yaml(pipeline.text, display=str(pipeline.path.relative_to(folder.parent)))
    return doc.problem(("tasks", index, *((key,) if isinstance(key, str) else key)), message)


def _hook_triggers(
    pipelines: Iterable[Pipeline],
) -> Iterable[tuple[Trigger, Pipeline, HttpIngress]]:
    for pipeline in pipelines:
        for trigger in pipeline.triggers:
            if isinstance(trigger.spec, HttpIngress):
                yield trigger, pipeline, trigger.spec


def _check_hooks(result: FolderLoad) -> None:
    """Pipelines may share a hook name only with the same settings (one check per request)."""
    first: dict[str, tuple[Trigger, object]] = {}
    bad: set[str] = set()
    for trigger, pipeline, ingress in _hook_triggers(result.pipelines.values()):
        settings = ingress.ingress_settings(pipeline.base_dir)
        seen = first.setdefault(ingress.hook_name, (trigger, settings))
        if seen[1] != settings:
            other = seen[0]
            message = (
                f"hook {ingress.hook_name!r} is also used by {other.key} ({other.file}) with"
                " other settings; triggers sharing a hook need the same signature, secret,"
                " public and max_body"
            )
            result.problems.append(trigger.problem("name", message))
            bad.add(pipeline.name)
    for name in bad:
        result.broken.add(result.pipelines.pop(name).path)


def open_hooks(
    pipelines: Iterable[Pipeline], env: Mapping[str, str], default_max_body: int
) -> tuple[dict[str, HookReceiver], list[SpecProblem]]:
    """A receiver for each hook name (its secret read), and the hooks that cannot have one."""
    hooks: dict[str, HookReceiver] = {}
    problems: list[SpecProblem] = []
    failed: set[str] = set()
    for trigger, pipeline, ingress in _hook_triggers(pipelines):
        name = ingress.hook_name
        if name in hooks or name in failed:
            continue
        try:
            hooks[name] = ingress.open_ingress(pipeline.base_dir, env, default_max_body)
        except IngressUnavailable as exc:
            problems.append(trigger.problem(exc.key, str(exc)))
            failed.add(name)
    return hooks, problems


def _broken_names(paths: Iterable[Path]) -> set[str]:
    """The ``name:`` of each broken file that has a readable one."""
    names = set()
    for path in paths:
        try:
            data = load_yaml(path).data
        except SpecError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.add(data["name"])
    return names


def _check_chaining(result: FolderLoad) -> None:
    """``on: pipeline`` triggers name a loaded pipeline and chain no pipeline to itself.

    A pipeline with such a problem is not loaded, like a broken file; an upstream that
    is itself in a broken file is reported there, not as unknown here.
    """
    broken_names: set[str] | None = None
    problems: list[SpecProblem] = []
    bad: set[str] = set()
    for name, pipeline in result.pipelines.items():
        for trigger, upstream in _upstreams(pipeline):
            if upstream in result.pipelines:
                continue
            if broken_names is None:
                broken_names = _broken_names(result.broken)
            if upstream in broken_names:
                continue
            hint = _closest(upstream, result.pipelines)
            problems.append(trigger.problem("pipeline", f"unknown pipeline {upstream!r}{hint}"))
            bad.add(name)
    for problem, members in chain_cycles(result.pipelines):
        problems.append(problem)
        bad.update(members)
    for name in bad:
        result.broken.add(result.pipelines.pop(name).path)
    result.problems.extend(sorted(problems, key=lambda p: (p.file, p.line or 0)))


def _children(pipeline: Pipeline) -> list[tuple[str, tuple[str, ...], RunPipelineSpec]]:
    """``(task id, where in the task, spec)`` of each ``run_pipeline:`` (loops' included)."""
    found = []
    for task in pipeline.tasks.values():
        for where, one in (((), task), (("task",), task.inner)):
            if one is not None and isinstance(one.spec, RunPipelineTaskSpec):
                found.append((task.id, (*where, "run_pipeline"), one.spec.run_pipeline))
    return found


def _check_run_pipelines(result: FolderLoad, folder: Path) -> None:
    """``run_pipeline:`` names a loaded pipeline with params it declares, and no pipeline
    runs itself through others (which would start runs without end)."""
    problems: list[SpecProblem] = []
    bad: set[str] = set()
    broken_names: set[str] | None = None
    edges: dict[str, list[tuple[str, tuple[str, ...], str]]] = {}
    for name, pipeline in result.pipelines.items():
        edges[name] = []
        for task_id, where, spec in _children(pipeline):
            at = partial(_task_problem, pipeline, folder, task_id)
            edges[name].append((task_id, where, spec.pipeline))
            child = result.pipelines.get(spec.pipeline)
            if child is None:
                if broken_names is None:
                    broken_names = _broken_names(result.broken)
                if spec.pipeline not in broken_names:
                    hint = _closest(spec.pipeline, result.pipelines)
                    problems.append(
                        at((*where, "pipeline"), f"unknown pipeline {spec.pipeline!r}{hint}")
                    )
                    bad.add(name)
                continue
            for param in spec.params:
                if param not in child.params:
                    declared = ", ".join(child.params) or "none"
                    message = f"{spec.pipeline} has no param {param!r} (declared: {declared})"
                    problems.append(at((*where, "params"), message))
                    bad.add(name)
            for param, declared_param in child.params.items():
                if declared_param.required and param not in spec.params:
                    message = f"{spec.pipeline} requires param {param!r}, which is not given"
                    problems.append(at((*where, "params"), message))
                    bad.add(name)
    for members, (pipeline_name, task_id, where, cycle) in _run_cycles(edges):
        pipeline = result.pipelines[pipeline_name]
        message = "run_pipeline forms a cycle: " + " -> ".join(cycle)
        problems.append(_task_problem(pipeline, folder, task_id, (*where, "pipeline"), message))
        bad.update(members)
    for name in bad:
        if name in result.pipelines:
            result.broken.add(result.pipelines.pop(name).path)
    result.problems.extend(sorted(problems, key=lambda p: (p.file, p.line or 0)))


def _run_cycles(
    edges: Mapping[str, list[tuple[str, tuple[str, ...], str]]],
) -> list[tuple[set[str], tuple[str, str, tuple[str, ...], list[str]]]]:
    """Each cycle of ``run_pipeline:`` edges: its pipelines, and where it closes
    (pipeline, task id, place in the task) with the path in the order runs would start."""
    found: list[tuple[set[str], tuple[str, str, tuple[str, ...], list[str]]]] = []
    color = dict.fromkeys(edges, 0)
    path: list[str] = []

    def visit(name: str) -> None:
        color[name] = 1
        path.append(name)
        for task_id, where, target in edges[name]:
            if target not in color:
                continue
            if color[target] == 1:
                members = path[path.index(target) :]
                found.append((set(members), (name, task_id, where, [*members, target])))
            elif color[target] == 0:
                visit(target)
        path.pop()
        color[name] = 2

    for name in edges:
        if color[name] == 0:
            visit(name)
    return found


def _upstreams(pipeline: Pipeline) -> list[tuple[Trigger, str]]:
    return [
        (t, t.spec.pipeline) for t in pipeline.triggers if isinstance(t.spec, PipelineTriggerSpec)
    ]


def chain_cycles(pipelines: Mapping[str, Pipeline]) -> list[tuple[SpecProblem, set[str]]]:
    """Every cycle of ``on: pipeline`` triggers, with its problem and its pipelines.

    The problem is reported at the trigger that closes the cycle.
    """
    upstreams = {name: _upstreams(p) for name, p in pipelines.items()}
    found: list[tuple[SpecProblem, set[str]]] = []
    # Depth first along "is started by" (a trigger's pipeline to its upstream); an edge
    # back to a pipeline on the path closes a cycle, reported at that edge's trigger.
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(upstreams, white)
    path: list[str] = []

    def visit(name: str) -> None:
        color[name] = grey
        path.append(name)
        for trigger, upstream in upstreams[name]:
            if upstream not in color:
                continue
            if color[upstream] == grey:
                members = path[path.index(upstream) :]
                # Told in the order runs would start, from this trigger's upstream:
                # it starts this pipeline, which starts the next, ..., back to it.
                flow = [upstream, *reversed(members[1:]), upstream]
                message = "chained pipelines form a cycle: " + " -> ".join(flow)
                found.append((trigger.problem("pipeline", message), set(members)))
            elif color[upstream] == white:
                visit(upstream)
        path.pop()
        color[name] = black

    for name in upstreams:
        if color[name] == white:
            visit(name)
    return found
