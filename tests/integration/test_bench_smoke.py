"""The benchmark suite runs end to end at tiny sizes, so `make bench` cannot rot unnoticed.

Only that each benchmark produces figures is checked: timings are never asserted.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # bench/ is a folder of the repository, not part of the installed distribution.
    sys.path.insert(0, str(ROOT))

from bench import BENCHMARKS, Benchmark, Figure, Sizes  # noqa: E402
from bench.__main__ import main  # noqa: E402

pytestmark = pytest.mark.integration


def _check(figures: list[Figure]) -> None:
    assert figures
    for figure in figures:
        assert math.isfinite(figure.value), figure
        assert figure.unit
        if figure.floor is not None:
            assert math.isfinite(figure.floor), figure
        if figure.target is not None:
            assert figure.passed in (True, False)
        json.dumps(figure.to_json())


@pytest.mark.anyio
@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=[b.name for b in BENCHMARKS])
async def test_benchmark_produces_figures(benchmark: Benchmark) -> None:
    lines: list[str] = []
    figures = await benchmark.run(Sizes.tiny(), lines.append)
    _check(figures)


def test_command_line_prints_and_renders_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--quick", "--no-save", "--only", "store"]) == 0
    out = capsys.readouterr().out
    assert "[1/1] store:" in out
    assert "task transitions/s, sequential" in out

    figure = Figure("store SQLite", "x/s", 2500.0, "/s", 2000.0, 2000.0, better="higher")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"figures": [figure.to_json()]}), encoding="utf-8")
    assert main(["--markdown", str(results)]) == 0
    table = capsys.readouterr().out
    assert "| store SQLite | x/s | 2,500 /s | 2,000 /s | 1.25 | >= 2,000 /s | pass |" in table


def test_an_unknown_benchmark_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--only", "nope"])
    assert str(exc.value) == (
        "unknown benchmark 'nope'; known: " + ", ".join(b.name for b in BENCHMARKS)
    )
