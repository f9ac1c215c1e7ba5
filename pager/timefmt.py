"""Timestamps as operators read them: ISO 8601, UTC."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=65536)
def isoformat(ts: float) -> str:
    """`1800000000.5` -> `2027-01-15T08:00:00.500Z`.

    Cached: in a storm the same incident's times are formatted for every reply.
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timestamp(text: str) -> float:
    """The inverse of `isoformat`: `2027-01-15T08:00:00.500Z` -> `1800000000.5`."""
    return datetime.fromisoformat(text).timestamp()
