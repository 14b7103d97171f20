"""The run graph's layout: left to right, no overlaps, longest-path columns, few crossings."""

from __future__ import annotations

import random
import re
from itertools import combinations, pairwise

from hypothesis import given
from hypothesis import strategies as st

from reactor.ui.layout import MARGIN, MAX_WIDTH, MIN_WIDTH, NODE_HEIGHT, Layout, layered

Edges = list[tuple[str, str]]


def overlapping(layout: Layout) -> list[tuple[str, str]]:
    """Pairs of boxes whose rectangles share any area."""
    found = []
    for (a, one), (b, two) in combinations(layout.boxes.items(), 2):
        apart_x = one.x + one.width <= two.x or two.x + two.width <= one.x
        apart_y = one.y + NODE_HEIGHT <= two.y or two.y + NODE_HEIGHT <= one.y
        if not (apart_x or apart_y):
            found.append((a, b))
    return found


def backwards(layout: Layout) -> list[tuple[str, str]]:
    """Edges whose target is not drawn in a later column, wholly right of its source."""
    wrong = []
    for edge in layout.edges:
        source, target = layout.boxes[edge.source], layout.boxes[edge.target]
        if target.column <= source.column or target.x < source.x + source.width:
            wrong.append((edge.source, edge.target))
    return wrong


def longest_paths(nodes: list[str], edges: Edges) -> dict[str, int]:
    """Each node's longest path from a root, by relaxing edges until nothing changes."""
    column = dict.fromkeys(nodes, 0)
    for _ in nodes:
        for source, target in edges:
            column[target] = max(column[target], column[source] + 1)
    return column


def crossings(layout: Layout) -> int:
    """Pairs of edges between the same two columns that cross each other."""
    count = 0
    for one, two in combinations(layout.edges, 2):
        a, b = layout.boxes[one.source], layout.boxes[one.target]
        c, d = layout.boxes[two.source], layout.boxes[two.target]
        if (a.column, b.column) != (c.column, d.column):
            continue
        if (a.y - c.y) * (b.y - d.y) < 0:
            count += 1
    return count


def inside(layout: Layout) -> bool:
    return all(
        box.x >= 0
        and box.y >= 0
        and box.x + box.width <= layout.width
        and box.y + NODE_HEIGHT <= layout.height
        for box in layout.boxes.values()
    )


def test_an_empty_graph_is_just_its_margins() -> None:
    layout = layered([], [])
    assert layout.boxes == {}
    assert layout.edges == []
    assert (layout.width, layout.height) == (2 * MARGIN, 2 * MARGIN)


def test_a_chain_goes_left_to_right_one_column_per_task() -> None:
    layout = layered(
        ["extract", "transform", "load"], [("extract", "transform"), ("transform", "load")]
    )
    columns = {name: box.column for name, box in layout.boxes.items()}
    assert columns == {"extract": 0, "transform": 1, "load": 2}
    xs = [layout.boxes[n].x for n in ("extract", "transform", "load")]
    assert xs == sorted(xs)
    assert len({layout.boxes[n].y for n in columns}) == 1  # one row: all at the same height
    assert backwards(layout) == []
    assert inside(layout)


def test_columns_are_the_longest_path_from_a_root() -> None:
    # "late" hangs off both a root and the end of a chain: the longest path decides.
    nodes = ["a", "b", "c", "late", "root2", "alone"]
    edges = [("a", "b"), ("b", "c"), ("root2", "late"), ("c", "late"), ("a", "late")]
    layout = layered(nodes, edges)
    columns = {name: box.column for name, box in layout.boxes.items()}
    assert columns == {"a": 0, "b": 1, "c": 2, "late": 3, "root2": 0, "alone": 0}
    assert columns == longest_paths(nodes, edges)


def test_edges_run_from_the_sources_right_side_to_the_targets_left_side() -> None:
    layout = layered(["a", "b"], [("a", "b")])
    [edge] = layout.edges
    a, b = layout.boxes["a"], layout.boxes["b"]
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", edge.path)]
    assert edge.path.startswith("M") and " C" in edge.path
    assert numbers[:2] == [round(a.x + a.width, 1), round(a.middle, 1)]
    assert numbers[-2:] == [round(b.x, 1), round(b.middle, 1)]


def test_unknown_self_and_duplicate_edges_are_ignored() -> None:
    nodes = ["a", "b", "c"]
    clean = [("a", "b"), ("b", "c")]
    noisy = [
        ("a", "b"),
        ("a", "b"),  # duplicate
        ("b", "b"),  # self
        ("ghost", "c"),  # unknown source
        ("c", "nowhere"),  # unknown target
        ("b", "c"),
        ("b", "c"),
    ]
    assert layered(nodes, noisy) == layered(nodes, clean)
    assert [(e.source, e.target) for e in layered(nodes, noisy).edges] == clean


def test_the_same_graph_gives_the_same_layout() -> None:
    nodes = [f"t{i}" for i in range(40)]
    rng = random.Random(7)
    edges = [(f"t{rng.randrange(i)}", f"t{i}") for i in range(1, 40) for _ in range(2)]
    first = layered(nodes, edges)
    assert layered(list(nodes), list(edges)) == first
    assert layered(tuple(nodes), tuple(edges)) == first


def test_an_obvious_crossing_is_reordered_away() -> None:
    # In the pipeline's order c comes before d, so drawn as listed a->d and b->c cross.
    nodes = ["a", "b", "c", "d"]
    edges = [("a", "d"), ("b", "c")]
    layout = layered(nodes, edges)
    boxes = layout.boxes
    assert (boxes["a"].column, boxes["b"].column, boxes["c"].column, boxes["d"].column) == (
        0,
        0,
        1,
        1,
    )
    assert boxes["a"].y < boxes["b"].y  # the roots keep their order
    assert boxes["d"].y < boxes["c"].y  # d moved up beside a
    assert crossings(layout) == 0


def test_columns_are_centred_on_the_tallest() -> None:
    layout = layered(["root", "x", "y", "z"], [("root", "x"), ("root", "y"), ("root", "z")])
    tops = sorted(layout.boxes[n].y for n in ("x", "y", "z"))
    root = layout.boxes["root"]
    assert root.middle == (tops[0] + tops[-1] + NODE_HEIGHT) / 2
    assert overlapping(layout) == []


def test_box_widths_follow_the_label_within_bounds() -> None:
    layout = layered(["a", "m" * 12, "z" * 300], [])
    assert layout.boxes["a"].width == MAX_WIDTH  # one column: the widest label sets it
    alone = layered(["a"], [])
    assert alone.boxes["a"].width == MIN_WIDTH
    wide = layered(["z" * 300], [])
    assert wide.boxes["z" * 300].width == MAX_WIDTH


def test_a_cycle_still_gives_every_node_a_box() -> None:
    # Never in a valid run, but a broken stored version must still draw.
    layout = layered(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])
    assert set(layout.boxes) == {"a", "b", "c"}
    assert overlapping(layout) == []
    assert inside(layout)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], Edges]:
    """A random DAG (edges from an earlier to a later name), its nodes in a random order."""
    count = draw(st.integers(min_value=0, max_value=25))
    names = [f"task_{i}" + "x" * draw(st.integers(0, 30)) for i in range(count)]
    edges: Edges = []
    for i in range(1, count):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3))
        edges.extend((names[p], names[i]) for p in parents)
    order = draw(st.permutations(names))
    return list(order), edges


@given(dags())
def test_random_dags_go_left_to_right_without_overlaps(graph: tuple[list[str], Edges]) -> None:
    nodes, edges = graph
    layout = layered(nodes, edges)
    assert set(layout.boxes) == set(nodes)
    assert backwards(layout) == []
    assert overlapping(layout) == []
    assert inside(layout)
    assert {n: b.column for n, b in layout.boxes.items()} == longest_paths(nodes, edges)
    assert {(e.source, e.target) for e in layout.edges} == set(edges)
    assert layered(nodes, edges) == layout


def test_a_thousand_tasks_are_laid_out() -> None:
    rng = random.Random(1000)
    nodes = [f"step_{i:04d}" for i in range(1000)]
    edges = [(nodes[i - 1], nodes[i]) for i in range(1, 1000) if i % 50]
    edges += [(nodes[rng.randrange(i)], nodes[i]) for i in range(1, 1000) for _ in range(2)]
    layout = layered(nodes, edges)
    assert set(layout.boxes) == set(nodes)
    assert backwards(layout) == []
    assert inside(layout)
    # Overlaps only within a column matter beyond the column check: boxes of one column
    # share x, and columns never share x.
    by_column: dict[int, list[float]] = {}
    for box in layout.boxes.values():
        by_column.setdefault(box.column, []).append(box.y)
    for ys in by_column.values():
        ys.sort()
        assert all(b - a >= NODE_HEIGHT for a, b in pairwise(ys))
    xs = sorted({(b.column, b.x, b.width) for b in layout.boxes.values()})
    assert all(a[1] + a[2] < b[1] for a, b in pairwise(xs))
