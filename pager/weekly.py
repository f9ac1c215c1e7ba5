"""Wall-clock times in a time zone, and windows that recur every week.

Schedules hand off at a wall-clock time ("09:00 in London"), business hours are "Monday to
Friday, 09:00 to 17:00", a maintenance window is "every Sunday 02:00 to 04:00": all of them are
times on a zone's wall clock, which the daylight-saving changes make skip an hour (a gap) or
show an hour twice (a fold). This module turns such wall times into instants (seconds since the
epoch) one way, deliberately, so that every schedule and window agrees:

- a wall time shown twice (a fold) is its first occurrence (`fold=0`);
- a wall time never shown (a gap) is the instant the clocks jump past it, when the wall clock
  first shows a later time: a hand-off at 02:30 on the day the clocks go from 02:00 to 03:00
  happens at 03:00, as the people on the rota would expect.

So the mapping from wall times to instants never goes backwards (`instant` is monotonic), and
a shift or window that lies wholly in a gap is empty. Pure: the caller resolves the zone's IANA
name to a `tzinfo` (`zoneinfo.ZoneInfo`) and passes it in; nothing here reads a clock or a file.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the config writes them, Monday first (`date.weekday()`)."""

MINUTES_A_DAY: Final = 24 * 60
LONGEST_RUN: Final = 8 * 7 * 86400.0
"""How far `Weekly.status` follows a window that goes on into the next (an operator who
writes every day 00:00 to 24:00 gets an end this far away, not a search for ever)."""


def wall(t: float, zone: dt.tzinfo | None) -> dt.datetime:
    """The naive wall-clock time that `zone` shows at instant `t` (None: the local time of
    this machine, as the client reads what its reader types)."""
    return dt.datetime.fromtimestamp(t, zone).replace(tzinfo=None, fold=0)


def instant(local: dt.datetime, zone: dt.tzinfo | None) -> float:
    """The instant at which `zone`'s wall clock shows the naive `local`: its first occurrence
    in a fold, the moment the clocks jump past it in a gap (see the module's docstring).
    `zone` None is this machine's local time (`TZ`, else the system's zone): `pager` reads a
    time its reader types without an offset by the same rule as the schedules."""
    local = local.replace(tzinfo=None, fold=0)
    first = local.replace(tzinfo=zone).timestamp()
    if wall(first, zone) == local:
        return first
    # In a gap: between the two readings PEP 495 gives lies the transition, the first instant
    # whose wall time is later than `local`. Transitions fall on whole seconds.
    other = local.replace(tzinfo=zone, fold=1).timestamp()
    lo, hi = math.floor(min(first, other)), math.ceil(max(first, other))
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if wall(middle, zone) >= local:
            hi = middle
        else:
            lo = middle
    return float(hi)


def parse_clock(text: str, *, allow_24: bool = False) -> int:
    """`"09:30"` -> minutes since midnight; `"24:00"` too when `allow_24` (an `until`).
    A `ValueError` says what is wrong."""
    hours, sep, minutes = text.partition(":")
    if (
        not sep
        or len(minutes) != 2
        or not 1 <= len(hours) <= 2
        or not (hours + minutes).isascii()
        or not (hours + minutes).isdigit()
    ):
        raise ValueError(f"expected a time of day like 09:00, got {text!r}")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > MINUTES_A_DAY or (value == MINUTES_A_DAY and not allow_24):
        raise ValueError(
            f"{text!r} is not a time of day (00:00 to 23:59" + (", or 24:00)" if allow_24 else ")")
        )
    return value


def clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@attrs.frozen
class Window:
    """Every week on `days` (0 is Monday), from `start` for `length` minutes of wall clock
    (1 to 1440): 22:00 until 06:00 is `start` 1320 and `length` 480, ending the next day."""

    days: frozenset[int]
    start: int
    length: int

    @classmethod
    def of(cls, days: Iterable[str], start: str, until: str) -> Window:
        """From the config's words: `days` names, `from` and `until` times of day. `until` at
        or before `from` ends the next day; equal to it, the window is the whole day."""
        numbers = []
        for day in days:
            if day not in DAYS:
                raise ValueError(f"{day!r} is not a day (expected one of {', '.join(DAYS)})")
            numbers.append(DAYS.index(day))
        if not numbers:
            raise ValueError("no days given")
        begin = parse_clock(start)
        end = parse_clock(until, allow_24=True)
        length = (end - begin) % MINUTES_A_DAY or MINUTES_A_DAY
        return cls(frozenset(numbers), begin, length)

    def occurrences(self, day: dt.date, zone: dt.tzinfo) -> tuple[float, float] | None:
        """The window's occurrence starting on `day`, as instants, or None (not one of its
        days, or wholly in a gap of the clocks)."""
        if day.weekday() not in self.days:
            return None
        begin = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=self.start)
        start = instant(begin, zone)
        end = instant(begin + dt.timedelta(minutes=self.length), zone)
        return (start, end) if end > start else None

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        end = (self.start + self.length) % MINUTES_A_DAY
        return f"{days} {clock_text(self.start)}-{clock_text(end)}"


def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, with overlapping and touching intervals joined."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


@attrs.frozen
class Status:
    """Where a recurring window stands at an instant: whether one is in force, when it ends
    (if in force), and when the next one starts (after that end, if in force)."""

    in_force: bool
    ends_at: float | None
    next_start: float | None


@attrs.frozen
class Weekly:
    """Windows that recur every week on one zone's wall clock (business hours, a maintenance
    window). Where windows overlap, they are one."""

    windows: tuple[Window, ...]
    zone: dt.tzinfo

    def intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        """The windows' occurrences that meet [start, end), merged and cut to it."""
        if end <= start:
            return []
        first = wall(start, self.zone).date() - dt.timedelta(days=2)
        last = wall(end, self.zone).date() + dt.timedelta(days=1)
        found = []
        day = first
        while day <= last:
            for window in self.windows:
                occurrence = window.occurrences(day, self.zone)
                if occurrence is not None and occurrence[1] > start and occurrence[0] < end:
                    found.append((max(occurrence[0], start), min(occurrence[1], end)))
            day += dt.timedelta(days=1)
        return merge(found)

    def covers(self, t: float) -> bool:
        return bool(self.intervals(t, t + 1e-3))

    def status(self, t: float) -> Status:
        """Whether a window is in force at `t`, until when, and when the next one starts.

        `ends_at` follows windows that run into one another for up to `LONGEST_RUN`; the next
        start is looked for up to a week and a day ahead (every window recurs within a week;
        None if none has an occurrence there: all of them fall in clock gaps)."""
        horizon = t + LONGEST_RUN
        spans = self.intervals(t, horizon)
        if spans and spans[0][0] <= t:
            ends = spans[0][1]
            later = spans[1][0] if len(spans) > 1 else None
            if later is None and ends < horizon:
                later = _first_start(self.intervals(ends, ends + 8 * 86400.0), ends)
            return Status(True, ends, later)
        return Status(False, None, spans[0][0] if spans else None)


def _first_start(spans: Sequence[tuple[float, float]], after: float) -> float | None:
    for start, _ in spans:
        if start > after:
            return start
    return None


def maintenance(windows: Sequence[Weekly], t: float) -> Status:
    """Where a service's recurring maintenance windows (`[[services.X.maintenance]]`, each
    `Weekly` in its own zone) stand at instant `t`: in force or not, when the one in force
    ends (following windows that run into one another, whatever their zones), and when the
    next starts. No windows: never in force, no next start.

    The one pure function the silences' wiring needs: an alert at `t` during a window is
    recorded but pages nobody, and paging starts at `ends_at` if the service is still
    unhealthy then."""
    if not windows:
        return Status(False, None, None)
    spans = merge(span for w in windows for span in w.intervals(t, t + LONGEST_RUN))
    if spans and spans[0][0] <= t:
        ends = spans[0][1]
        later = spans[1][0] if len(spans) > 1 else None
        if later is None and ends < t + LONGEST_RUN:
            starts = [w.status(ends).next_start for w in windows]
            later = min((s for s in starts if s is not None and s > ends), default=None)
        return Status(True, ends, later)
    return Status(False, None, spans[0][0] if spans else None)
