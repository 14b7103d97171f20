"""Task functions of the quickstart pipeline."""

import csv
from pathlib import Path


def validate(path: str) -> dict[str, float]:
    """Check every order has an id and a positive amount; return the row count and total."""
    rows = 0
    total = 0.0
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            if not record.get("order_id"):
                raise ValueError(f"{path}:{line}: order_id is empty")
            amount = float(record["amount"])
            if amount <= 0:
                raise ValueError(f"{path}:{line}: amount must be positive, got {amount}")
            rows += 1
            total += amount
    return {"rows": rows, "total": round(total, 2)}
