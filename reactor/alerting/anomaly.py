"""Anomalies by robust statistics: the median and the MAD of recent history, no fixed
thresholds. Pure functions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from reactor.durations import format_duration

__all__ = ["MAD_SCALE", "duration_anomaly", "rate_drop", "robust_z"]

#: 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_SCALE = 1.4826


def robust_z(history: Sequence[float], value: float, floor: float) -> tuple[float, float, float]:
    """``(z, median, scale)``: how many robust standard deviations ``value`` is from the
    median of ``history``; the scale is at least ``floor`` (a history of equal values has
    no spread, and every change would be infinitely far)."""
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    scale = max(MAD_SCALE * mad, floor)
    return (value - median) / scale, median, scale


def duration_anomaly(
    history: Sequence[float], seconds: float, *, min_runs: int, threshold: float
) -> str | None:
    """Why a run that took ``seconds`` is far from the earlier runs' durations, or ``None``.

    Far: more than ``threshold`` robust standard deviations from the median, the scale being
    at least 10% of the median and 1 s (so runs of steady length do not alert on jitter).
    Needs ``min_runs`` earlier runs.
    """
    if len(history) < min_runs:
        return None
    median = statistics.median(history)
    z, median, _ = robust_z(history, seconds, max(0.1 * median, 1.0))
    if abs(z) <= threshold:
        return None
    way = "longer" if z > 0 else "shorter"
    return (
        f"ran {format_duration(seconds)}, far {way} than usual: median"
        f" {format_duration(median)} of the last {len(history)} runs (robust z {z:+.1f})"
    )


def rate_drop(
    history: Sequence[int], count: int, *, min_windows: int, threshold: float
) -> str | None:
    """Why ``count`` events in the last window is far below the usual count, or ``None``.

    Far below: more than ``threshold`` robust standard deviations under the median of
    ``history`` (the earlier windows), the scale being at least 1 event and 10% of the
    median; only for a usual level of at least 5 events a window (below that, silence is
    no news). Needs ``min_windows`` earlier windows.
    """
    if len(history) < min_windows:
        return None
    median = statistics.median(history)
    if median < 5:
        return None
    z, median, _ = robust_z([float(x) for x in history], float(count), max(0.1 * median, 1.0))
    if z >= -threshold:
        return None
    return (
        f"{count} events in the last window, usually {median:g}"
        f" (median of the last {len(history)} windows; robust z {z:+.1f})"
    )
