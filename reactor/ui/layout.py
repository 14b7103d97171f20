"""Where each task of a run's graph is drawn: layers left to right, crossings reduced.

A small layered (Sugiyama-style) layout computed on the server, so the browser
draws a 1,000-task run as plain SVG at once instead of laying it out in script:
each task's column is its longest path from a root, rows inside a column are
ordered by the mean row of its neighbours (a few sweeps each way), and every
column is centred on the tallest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NODE_HEIGHT", "Box", "Layout", "layered"]

NODE_HEIGHT = 34
ROW_GAP = 14
COLUMN_GAP = 56
MARGIN = 12
#: Width per character of a label and the room around it (the font is about 7 px wide).
CHAR_WIDTH = 7.2
MIN_WIDTH = 96
MAX_WIDTH = 260
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Box:
    """A task's box: top-left corner, size, and its column."""

    x: float
    y: float
    width: float
    column: int

    @property
    def middle(self) -> float:
        return self.y + NODE_HEIGHT / 2


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    #: An SVG path from the right side of the source to the left side of the target.
    path: str


@dataclass(frozen=True, slots=True)
class Layout:
    boxes: dict[str, Box]
    edges: list[Edge]
    width: float
    height: float

    @property
    def edges_path(self) -> str:
        """Every edge as one SVG path: a thousand-task graph draws one element, not
        two thousand (edges change with nothing, so they need no element each)."""
        return " ".join(edge.path for edge in self.edges)

    @property
    def arrows_path(self) -> str:
        """One arrowhead per task with needs: its edges all end at its left middle."""
        ends = {edge.target for edge in self.edges}
        return " ".join(
            f"M{b.x:.1f},{b.middle:.1f} l-8,-4.5 v9 z"
            for target, b in self.boxes.items()
            if target in ends
        )


def label_width(label: str) -> float:
    return min(MAX_WIDTH, max(MIN_WIDTH, len(label) * CHAR_WIDTH + 40))


def _columns(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a root; nodes left on a cycle (never in a valid run) go last."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        parents[target].append(source)
        children[source].append(target)
    waiting = {n: len(parents[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    column: dict[str, int] = {}
    while ready:
        node = ready.pop()
        column[node] = max((column[p] + 1 for p in parents[node]), default=0)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    last = max(column.values(), default=-1) + 1
    for node in nodes:
        column.setdefault(node, last)
    return column


def _order(
    columns: list[list[str]], parents: dict[str, list[str]], children: dict[str, list[str]]
) -> None:
    """Reorder each column in place by the mean position of each node's neighbours."""
    position: dict[str, float] = {}

    def place(column: list[str]) -> None:
        size = max(len(column), 1)
        for i, node in enumerate(column):
            position[node] = (i + 0.5) / size

    def sweep(order: Sequence[list[str]], neighbours: dict[str, list[str]]) -> None:
        for column in order:
            before = {node: position[node] for node in column}

            def mean(node: str, before: dict[str, float] = before) -> float:
                near = [position[n] for n in neighbours[node] if n in position]
                return sum(near) / len(near) if near else before[node]

            column.sort(key=mean)
            place(column)

    for column in columns:
        place(column)
    for _ in range(SWEEPS):
        sweep(columns[1:], parents)
        sweep(columns[-2::-1], children)


def layered(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    """Boxes and edge paths for ``nodes`` (in the pipeline's order) and ``edges``."""
    known = set(nodes)
    edges = [(s, t) for s, t in dict.fromkeys(edges) if s in known and t in known and s != t]
    column_of = _columns(nodes, edges)
    count = max(column_of.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(count)]
    for node in nodes:
        columns[column_of[node]].append(node)
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        parents[target].append(source)
        children[source].append(target)
    _order(columns, parents, children)

    row = NODE_HEIGHT + ROW_GAP
    tallest = max((len(c) for c in columns), default=0)
    boxes: dict[str, Box] = {}
    x = float(MARGIN)
    for index, column in enumerate(columns):
        width = max((label_width(n) for n in column), default=MIN_WIDTH)
        top = MARGIN + (tallest - len(column)) * row / 2
        for i, node in enumerate(column):
            boxes[node] = Box(x, top + i * row, width, index)
        x += width + COLUMN_GAP
    drawn = []
    for source, target in edges:
        a, b = boxes[source], boxes[target]
        x1, y1, x2, y2 = a.x + a.width, a.middle, b.x, b.middle
        bend = max((x2 - x1) / 2, 20)
        drawn.append(
            Edge(
                source,
                target,
                f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f}"
                f" {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}",
            )
        )
    width = max(x - COLUMN_GAP + MARGIN, 2 * MARGIN)
    height = tallest * row - ROW_GAP + 2 * MARGIN if tallest else 2 * MARGIN
    return Layout(boxes, drawn, width, height)
