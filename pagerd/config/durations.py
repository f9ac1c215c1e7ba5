"""Durations as the config writes them: `500ms`, `30s`, `15m`, `1h`, `1h30m`, `90d`."""

from __future__ import annotations

from typing import Final, NewType

from pager import timefmt

Duration = NewType("Duration", float)
"""Seconds, written in the config as a duration string."""


class Invalid(ValueError):
    """A config value that is the right type but wrong; its text is the whole explanation."""


MAX_DURATION: Final = timefmt.MAX_DURATION


def parse_duration(text: str) -> float:
    """`500ms`, `30s`, `15m`, `1h`, `1h30m`, `90d` -> seconds (`pager.timefmt.parse_duration`,
    which the client's `--for` shares)."""
    try:
        return timefmt.parse_duration(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
