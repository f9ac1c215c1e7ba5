"""Durations as the config writes them: `500ms`, `30s`, `15m`, `1h`, `1h30m`, `90d`."""

from __future__ import annotations

import re
from typing import Final, NewType

Duration = NewType("Duration", float)
"""Seconds, written in the config as a duration string."""


class Invalid(ValueError):
    """A config value that is the right type but wrong; its text is the whole explanation."""


MAX_DURATION: Final = 3650 * 86400.0

_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


def parse_duration(text: str) -> float:
    """`500ms`, `30s`, `15m`, `1h`, `1h30m`, `90d` -> seconds."""
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise Invalid(f"not a duration: {text!r} (examples: 500ms, 30s, 15m, 1h30m, 90d)")
    d, h, m, s, ms = (int(part or 0) for part in match.groups())
    seconds = d * 86400 + h * 3600 + m * 60 + s + ms / 1000
    if seconds <= 0:
        raise Invalid("a duration must be more than zero")
    if seconds > MAX_DURATION:
        # Longer is a typo, and a deadline that far out cannot even be written as a date
        # (ack_timeout = "3000000d" was accepted, then broke every status reply).
        raise Invalid(f"a duration must be at most {MAX_DURATION // 86400:.0f}d (ten years)")
    return seconds
