"""``python -m bench``: run the benchmarks, print each figure, record them in bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import BENCHMARKS, Benchmark, Figure, Sizes, machine_facts

RESULTS = Path(__file__).resolve().parent / "results"


def _say(line: str) -> None:
    print(line, flush=True)


def _run_one(benchmark: Benchmark, sizes: Sizes) -> list[Figure]:
    gc.collect()
    return asyncio.run(benchmark.run(sizes, _say))


def _choose(only: str | None) -> list[Benchmark]:
    if not only:
        return list(BENCHMARKS)
    known = {b.name: b for b in BENCHMARKS}
    chosen = []
    for name in only.split(","):
        if name.strip() not in known:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(known)}")
        chosen.append(known[name.strip()])
    return chosen


def _profile(benchmark: Benchmark, sizes: Sizes, top: int) -> None:
    """Run one benchmark under cProfile (the event loop's thread) and print what dominates."""
    profiler = cProfile.Profile()
    profiler.enable()
    figures = _run_one(benchmark, sizes)
    profiler.disable()
    for figure in figures:
        _say(figure.line())
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        _say(f"\n--- top {top} by {order} ---")
        _say(out.getvalue())


def _table(results: dict[str, Any]) -> str:
    """The figures of a results file as a Markdown table."""
    rows = [
        "| benchmark | figure | value | floor | x floor | target | |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for item in results["figures"]:
        figure = Figure(
            **{k: item[k] for k in ("benchmark", "name", "value", "unit", "floor", "target")},
            better=item["better"],
        )
        unit = figure.unit
        floor = f"{_fmt(figure.floor)} {unit}" if figure.floor is not None else ""
        ratio = _fmt(figure.ratio) if figure.ratio is not None else ""
        target = ""
        if figure.target is not None:
            sign = "<" if figure.better == "lower" else ">="
            target = f"{sign} {_fmt(figure.target)} {unit}"
        verdict = {True: "pass", False: "**miss**", None: ""}[figure.passed]
        rows.append(
            f"| {figure.benchmark} | {figure.name} | {_fmt(figure.value)} {unit} | {floor}"
            f" | {ratio} | {target} | {verdict} |"
        )
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _save(results: dict[str, Any], *, latest: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    if latest:
        (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    names = ", ".join(b.name for b in BENCHMARKS)
    parser.add_argument("--only", help=f"comma-separated benchmarks to run ({names})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; nothing is recorded")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--profile", metavar="NAME", help="run one benchmark under cProfile")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile to print")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const=str(RESULTS / "latest.json"),
        metavar="RESULTS_JSON",
        help="print a results file (default: latest) as a Markdown table and exit",
    )
    args = parser.parse_args(argv)
    sizes = Sizes.tiny() if args.quick else Sizes()

    if args.markdown:
        _say(_table(json.loads(Path(args.markdown).read_text(encoding="utf-8"))))
        return 0
    if args.profile:
        _profile(_choose(args.profile)[0], sizes, args.top)
        return 0

    chosen = _choose(args.only)
    facts = machine_facts()
    _say(
        f"Reactor benchmarks on {facts['cpu_count']} cores, Python {facts['python']},"
        f" SQLite {facts['sqlite']}, load average {facts['load_average_1m']}"
        f"{' (quick sizes)' if args.quick else ''}"
    )
    if facts["load_average_1m"] > 0.5 * (facts["cpu_count"] or 1):
        _say("  note: the machine is busy with other work; figures will be noisy")
    figures: list[Figure] = []
    started = time.perf_counter()
    for number, benchmark in enumerate(chosen, 1):
        _say(f"[{number}/{len(chosen)}] {benchmark.name}: {benchmark.title}")
        before = time.perf_counter()
        found = _run_one(benchmark, sizes)
        for figure in found:
            _say(f"  {figure.line()}")
        _say(f"  ({time.perf_counter() - before:.1f} s)")
        figures.extend(found)
    took = time.perf_counter() - started
    missed = [f"{f.benchmark} {f.name}" for f in figures if f.passed is False]
    passed = sum(1 for f in figures if f.passed)
    _say(f"done in {took:.0f} s: {passed} target(s) met, {len(missed)} missed")
    for name in missed:
        _say(f"  missed: {name}")
    if args.quick or args.no_save:
        return 0
    results = {
        "date": facts["date"],
        "machine": facts,
        "sizes": sizes.to_json(),
        "benchmarks": [b.name for b in chosen],
        "duration_s": round(took, 1),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "figures": [f.to_json() for f in figures],
        "summary": {"met": passed, "missed": missed},
    }
    path = _save(results, latest=len(chosen) == len(BENCHMARKS))
    _say(f"recorded {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
