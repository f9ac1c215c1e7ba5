"""Timestamps as operators read them: ISO 8601, UTC."""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from pager.weekly import instant

MAX_DURATION: Final = 3650 * 86400.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


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


def nanoformat(ns: int) -> str:
    """Nanoseconds since the epoch as Go's RFC 3339 with nanoseconds writes a sender's time
    (Alertmanager's `startsAt`): `2026-11-30T21:24:22.809107Z`, the fraction's trailing zeros
    left out, none for a whole second."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    whole = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return whole + (f".{fraction:09d}".rstrip("0") if fraction else "") + "Z"


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


def parse_duration(text: str) -> float:
    """`500ms`, `30s`, `15m`, `1h`, `1h30m`, `90d` -> seconds (the config's durations, and
    the client's `--for`); a `ValueError` says what is wrong."""
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 30s, 15m, 1h30m, 90d)")
    d, h, m, s, ms = (int(part or 0) for part in match.groups())
    seconds = d * 86400 + h * 3600 + m * 60 + s + ms / 1000
    if seconds <= 0:
        raise ValueError("a duration must be more than zero")
    if seconds > MAX_DURATION:
        # Longer is a typo, and a deadline that far out cannot even be written as a date
        # (ack_timeout = "3000000d" was accepted, then broke every status reply).
        raise ValueError(f"a duration must be at most {MAX_DURATION // 86400:.0f}d (ten years)")
    return seconds


_MIN_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_MAX_TIME: Final = datetime(9000, 1, 1, tzinfo=UTC).timestamp()


def parse_time(text: str, *, local: bool = False) -> float:
    """An ISO 8601 time with its zone (`2027-01-26T03:00:00Z`, `2027-01-26T04:00+01:00`) ->
    seconds since the epoch. Without a zone it is refused, unless `local`: then it is the
    local time of this machine (the reader's, in the client), read as the schedules read a
    wall-clock time (`pager.weekly.instant`: a time the clocks skip is the moment they jump, a
    time they show twice its first occurrence). A `ValueError` says what is wrong."""
    example = "like 2027-01-26T03:00:00Z or 2027-01-26T04:00+01:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text[:64]!r} (ISO 8601, {example})") from None
    if when.tzinfo is None and not local:
        raise ValueError(f"a time needs its zone: {text[:64]!r} ({example})")
    try:
        seconds = when.timestamp() if when.tzinfo is not None else instant(when, None)
    except (OverflowError, OSError, ValueError):
        seconds = math.nan
    if not _MIN_TIME <= seconds < _MAX_TIME:
        raise ValueError(f"not a time pagerd can use: {text[:64]!r}")
    return seconds


_RELATIVE: Final = re.compile(r"\+([0-9]{1,6})([smhdw])")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def read_time(text: str, now: float) -> float:
    """A time as the reader types it on `pager`'s command line (`--at`, `--from`, `--until`, of
    every command) -> seconds since the epoch; a `ValueError` says what is accepted:

    - `2024-05-01T09:00+01:00`, `2024-05-01T08:00Z`: that instant (ISO 8601 with its offset);
    - `2024-05-01T09:00`, `2024-05-01 09:00`, `2024-05-01`: that time on the reader's wall clock
      (`TZ`, else the system's zone), as the schedules read one (`parse_time` with `local`);
    - `now`, and `+30m`, `+8h`, `+2d`, `+1w`: now (`now`, passed in), and that long after it.
    """
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        return now + int(relative.group(1)) * _UNIT[relative.group(2)]
    try:
        return parse_time(text, local=True)
    except ValueError:
        raise ValueError(
            f"{text[:64]!r} is not a time: give ISO 8601 with an offset"
            " (2024-05-01T09:00+01:00), a local time (2024-05-01T09:00 or '2024-05-01 09:00'),"
            " now, or +8h / +2d"
        ) from None
