"""Steps of the control-flow example: counting, checking and loading orders per region."""

from __future__ import annotations

ORDERS = {"eu": 1200, "us": 800, "apac": 300}


def count(region: str) -> dict[str, object]:
    """How many orders a region has (a real pipeline would query its source)."""
    if region not in ORDERS:
        raise LookupError(f"no such region: {region}")
    return {"region": region, "orders": ORDERS[region]}


def total(counts: list[dict[str, int] | None]) -> int:
    """The sum over the regions that could be counted."""
    return sum(c["orders"] for c in counts if c is not None)
