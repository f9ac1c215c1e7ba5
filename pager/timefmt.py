"""Timestamps as operators read them: ISO 8601, UTC."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime


def isoformat(ts: float) -> str:
    """`1800000000.5` -> `2027-01-15T08:00:00.500Z`.

    What `datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")` gives, rounded to
    the microsecond the same way first, at a fifth of its cost: every notification and status
    reply carries a few of these, and the seconds repeat, so only they go through datetime.
    """
    fraction, whole = math.modf(ts)
    seconds, micros = int(whole), round(fraction * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    return f"{_second(seconds)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp(text: str) -> float:
    """The inverse of `isoformat`: `2027-01-15T08:00:00.500Z` -> `1800000000.5`."""
    return datetime.fromisoformat(text).timestamp()


def duration(seconds: float) -> str:
    """Seconds as the config writes a duration: `300.0` -> `5m`, `5400.0` -> `1h30m`,
    `0.5` -> `500ms` (the inverse of the config's duration parser, to the millisecond)."""
    millis = round(seconds * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis or not parts:
        parts.append(f"{millis}ms")
    return "".join(parts)
