"""Figures, percentiles and the facts of the machine a run was measured on."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Figure", "machine_facts", "percentile", "summary"]

Better = Literal["lower", "higher"]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of a list of samples (same unit as the samples)."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "max": max(values),
        "n": float(len(values)),
    }


@dataclass
class Figure:
    """One measured number, with its plain-asyncio floor and its target when it has one.

    ``value`` is what the target applies to: for an overhead figure it is
    already the framework's time minus the floor's.
    """

    benchmark: str
    name: str
    value: float
    unit: str
    floor: float | None = None
    target: float | None = None
    better: Better = "lower"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How many times the floor this figure is (``None`` without a usable floor)."""
        if self.floor is None or self.floor <= 0:
            return None
        return self.value / self.floor

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.better == "lower":
            return self.value < self.target
        return self.value >= self.target

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["pass"] = self.passed
        return data

    def line(self) -> str:
        """One human line: value, floor, ratio, target and verdict."""
        parts = [f"{self.benchmark} {self.name}: {_number(self.value)} {self.unit}"]
        if self.floor is not None:
            parts.append(f"floor {_number(self.floor)} {self.unit}")
        if self.ratio is not None:
            parts.append(f"x{_number(self.ratio)} floor")
        if self.target is not None:
            sign = "<" if self.better == "lower" else ">="
            verdict = "pass" if self.passed else "MISS"
            parts.append(f"target {sign} {_number(self.target)} {self.unit}: {verdict}")
        return ", ".join(parts)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, memory, Python, SQLite, and how busy it was."""
    facts: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    facts["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            total_kb = int(meminfo.readline().split()[1])
            facts["memory_gb"] = round(total_kb / 1024 / 1024, 1)
    except OSError:
        pass
    import sqlite3

    facts["sqlite"] = sqlite3.sqlite_version
    facts["load_average_1m"] = round(os.getloadavg()[0], 2)
    return facts
