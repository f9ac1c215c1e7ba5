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

import bisect
import datetime as dt
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
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


def _date(t: float, zone: dt.tzinfo) -> dt.date:
    """`wall(t, zone).date()`, for less."""
    return dt.datetime.fromtimestamp(t, zone).date()


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


def when_text(t: float, zone: dt.tzinfo) -> str:
    """Instant `t` on `zone`'s wall clock as people read a schedule's times, to the minute:
    `Mon 2027-01-25 09:00` (the zone itself is not named)."""
    return f"{dt.datetime.fromtimestamp(round(t), zone):%a %Y-%m-%d %H:%M}"


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


ONE_DAY: Final = dt.timedelta(days=1)
DAYS_KEPT: Final = 1024
"""Days of occurrences a `Weekly` keeps worked out (then it starts afresh): the days around now,
which every status and every decision asks about, are worked out once, not at every call."""
_EARLY: Final = 1e-3
"""`Weekly.covers(t)` counts a window that starts less than this after `t` (a millisecond)."""


@attrs.frozen
class _Day:
    """The occurrences of a `Weekly`'s windows that start on one day: by start, with the latest
    end of each prefix (`reach`), so that one bisection says whether any is in force."""

    spans: tuple[tuple[float, float], ...]
    starts: tuple[float, ...]
    reach: tuple[float, ...]

    @classmethod
    def of(cls, spans: list[tuple[float, float]]) -> _Day:
        spans.sort()
        reach: list[float] = []
        for _, end in spans:
            reach.append(max(end, reach[-1]) if reach else end)
        return cls(tuple(spans), tuple(s for s, _ in spans), tuple(reach))


@attrs.frozen
class Weekly:
    """Windows that recur every week on one zone's wall clock (business hours, a maintenance
    window). Where windows overlap, they are one.

    Each day's occurrences are worked out once (`DAYS_KEPT` days are kept) and every question
    is answered from them: whether a window is in force at `t` costs a bisection in each of
    the four days that can hold one, not four days of time-zone arithmetic; so a schedule's
    shifts, a service's status and each decision cost no more than the windows they meet.
    The days kept are a cache, not state: they change no answer (and threads may share them)."""

    windows: tuple[Window, ...]
    zone: dt.tzinfo
    _days: dict[int, _Day] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def _day(self, day: dt.date) -> _Day:
        key = day.toordinal()
        found = self._days.get(key)
        if found is None:
            spans = [
                occurrence
                for window in self.windows
                if (occurrence := window.occurrences(day, self.zone)) is not None
            ]
            found = _Day.of(spans)
            if len(self._days) >= DAYS_KEPT:
                self._days.clear()
            self._days[key] = found
        return found

    def _days_of(self, start: float, end: float) -> tuple[dt.date, dt.date]:
        """The first and last day whose occurrences may meet [start, end): a window starts on
        its day and lasts a day at most, and the clocks' changes move it by less than a day."""
        return _date(start, self.zone) - 2 * ONE_DAY, _date(end, self.zone) + ONE_DAY

    def spans(self, start: float, end: float) -> Iterator[tuple[float, float]]:
        """Every occurrence that may meet [start, end), by start (the ones that do not are
        the caller's to skip), worked out a day at a time as they are taken."""
        day, last = self._days_of(start, end)
        while day <= last:
            yield from self._day(day).spans
            day += ONE_DAY

    def intervals(self, start: float, end: float) -> list[tuple[float, float]]:
        """The windows' occurrences that meet [start, end), merged and cut to it."""
        if end <= start:
            return []
        return merge(
            (max(s, start), min(e, end)) for s, e in self.spans(start, end) if e > start and s < end
        )

    def covers(self, t: float) -> bool:
        """Whether a window is in force at `t` (or starts less than a millisecond after)."""
        end = t + _EARLY
        if end <= t:
            return False
        day, last = self._days_of(t, end)
        while day <= last:
            found = self._day(day)
            before = bisect.bisect_left(found.starts, end)  # those starting before `end`
            if before and found.reach[before - 1] > t:
                return True
            day += ONE_DAY
        return False

    def status(self, t: float) -> Status:
        """Whether a window is in force at `t`, until when, and when the next one starts.

        `ends_at` follows windows that run into one another for up to `LONGEST_RUN`; the next
        start is looked for up to a week and a day ahead (every window recurs within a week;
        None if none has an occurrence there: all of them fall in clock gaps)."""
        horizon = t + LONGEST_RUN
        in_force, ends, later = _look(self.spans(t, horizon), t, horizon)
        if in_force and ends is not None and later is None and ends < horizon:
            later = _first_start(self.intervals(ends, ends + 8 * 86400.0), ends)
        return Status(in_force, ends, later)


def _look(
    spans: Iterator[tuple[float, float]], t: float, horizon: float
) -> tuple[bool, float | None, float | None]:
    """From occurrences by start: whether one is in force at `t`; if so, the end of the run of
    them that touch one another (cut at `horizon`) and the start of the next before `horizon`
    (None if none: the caller looks further); if not, the first start before `horizon`.

    The answer `merge` of the occurrences cut to [t, horizon) gives, without working out more
    of them than it takes: the days past the answer are never looked at."""
    for start, end in spans:
        if end <= t:
            continue
        if start >= horizon:
            break
        if start > t:
            return False, None, start
        for later, later_end in spans:  # in force: follow the run
            if end >= horizon:
                break
            if later > end:
                return True, end, later if later < horizon else None
            end = max(end, later_end)
        return True, min(end, horizon), None
    return False, None, None


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
    unhealthy then. Its cost is that of the windows' occurrences from two days before `t` to
    the answer (a few days' worth, worked out once), not of `LONGEST_RUN` ahead."""
    if not windows:
        return Status(False, None, None)
    horizon = t + LONGEST_RUN
    occurrences = heapq.merge(*(w.spans(t, horizon) for w in windows), key=_start)
    in_force, ends, later = _look(occurrences, t, horizon)
    if in_force and ends is not None and later is None and ends < horizon:
        starts = [w.status(ends).next_start for w in windows]
        later = min((s for s in starts if s is not None and s > ends), default=None)
    return Status(in_force, ends, later)


def _start(span: tuple[float, float]) -> float:
    return span[0]


class Maintenance:
    """A service's maintenance windows, and where they stand (`status`, which is `maintenance`
    of them): the last answer is kept for as long as it holds, so that the status of every
    service, asked for by every `pager status` and every alert's reply, and each decision's
    look at the quiet, cost one comparison while nothing changes, whatever the windows.

    An answer holds from the instant it was asked for until the next start (none in force)
    or the end (one in force) it gives: nothing starts or ends in between. An end cut at
    `LONGEST_RUN` holds only at its instant. Threads may share one: an answer is kept whole."""

    __slots__ = ("_kept", "windows")

    def __init__(self, windows: Sequence[Weekly]) -> None:
        self.windows = tuple(windows)
        self._kept: tuple[float, float, Status] | None = None

    def __bool__(self) -> bool:
        return bool(self.windows)

    def status(self, t: float) -> Status:
        kept = self._kept
        if kept is not None and kept[0] <= t < kept[1]:
            return kept[2]
        status = maintenance(self.windows, t)
        self._kept = (t, _holds_until(status, t), status)
        return status


def _holds_until(status: Status, t: float) -> float:
    """Until when `status`, the answer at `t`, is the answer (`t` itself: only at `t`)."""
    if not status.in_force:
        return t if status.next_start is None else status.next_start
    assert status.ends_at is not None
    return status.ends_at if status.ends_at < t + LONGEST_RUN else t
