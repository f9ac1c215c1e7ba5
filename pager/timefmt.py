"""Timestamps as operators read them: ISO 8601, UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def isoformat(ts: float) -> str:
    """`1800000000.5` -> `2027-01-15T08:00:00.500Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
