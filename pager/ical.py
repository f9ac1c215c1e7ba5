"""A schedule's shifts as an iCalendar feed (RFC 5545), made with the `icalendar` package.

One `VEVENT` per shift: who is on call from when until when (in UTC, which every calendar
client shows in its reader's zone), its `UID` stable for the same shift so a client that
refreshes the feed updates rather than duplicates. A shift an override made (in whole or in
part) says so in its `SUMMARY` and `DESCRIPTION`. Pure: the shifts, the overrides and the time it
was made (`DTSTAMP`) are passed in.

The feed lists the shifts in force at some moment from `FEED_BEFORE` ago to `FEED_AFTER` ahead,
each whole (`feed_shifts`): not cut where the span is, which moves with every refresh, so the
last event does not end at "now + 8 weeks" to the second, nor the first one's `UID` change each
time. A shift that reaches more than `REACH` past either end is cut at that day's midnight on the
schedule's wall clock, which moves once a day.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Final

import icalendar

from pager.budget import Budget, spend
from pager.schedules import Override, Schedule, Segment, base_on_call, boundaries, shifts
from pager.weekly import instant, wall, when_text

PRODID = "-//pagerd//schedules//EN"
WEEK: Final = 7 * 86400.0
FEED_BEFORE: Final = 8 * WEEK
FEED_AFTER: Final = 8 * WEEK
"""The span of the feed: the shifts of eight weeks back and eight weeks ahead."""
REACH: Final = 2 * WEEK
"""How far past the span a shift in force at its ends is shown whole."""


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(round(t), dt.UTC)


def _midnight(t: float, zone: dt.tzinfo) -> float:
    """The start of the day of instant `t` on `zone`'s wall clock."""
    return instant(dt.datetime.combine(wall(t, zone).date(), dt.time()), zone)


def feed_shifts(
    schedule: Schedule,
    now: float,
    overrides: Sequence[Override] = (),
    person: str | None = None,
    budget: Budget | None = None,
) -> list[Segment]:
    """The shifts the feed lists at `now` (of `person` only, if given): every shift in force at
    some moment from `FEED_BEFORE` ago to `FEED_AFTER` ahead, whole, but cut at midnight
    `REACH` beyond those ends. Each boundary looked at is a step of `budget`."""
    start, end = now - FEED_BEFORE, now + FEED_AFTER
    wide = shifts(
        schedule,
        _midnight(start - REACH, schedule.zone),
        _midnight(end + REACH, schedule.zone),
        overrides,
        person,
        budget,
    )
    return [s for s in wide if s.end > start and s.start < end]


def _by_override(
    schedule: Schedule, shift: Segment, overrides: Sequence[Override], budget: Budget | None
) -> list[Segment]:
    """The parts of `shift` where its person is on call by an override, not by the layers."""
    if not any(o.by == shift.person and o.start < shift.end and o.end > shift.start
               for o in overrides):  # fmt: skip
        return []
    found: list[Segment] = []
    cuts = boundaries(schedule, shift.start, shift.end, overrides)
    for a, b in itertools.pairwise(cuts):
        spend(budget)
        if b <= a or base_on_call(schedule, a) == shift.person:
            continue
        if found and found[-1].end == a:
            found[-1] = Segment(found[-1].start, b, shift.person)
        else:
            found.append(Segment(a, b, shift.person))
    return found


def feed(
    schedule: Schedule,
    shifts: Sequence[Segment],
    made_at: float,
    person: str | None = None,
    overrides: Sequence[Override] = (),
    budget: Budget | None = None,
) -> bytes:
    """The calendar of `shifts` (of `schedule`, and of `person` only if given); `overrides`, the
    schedule's, mark the shifts (or parts of shifts) they made (each boundary of a shift an
    override made looked at a step of `budget`)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    title = f"On call: {schedule.name}" + (f" ({person})" if person else "")
    calendar.add("x-wr-calname", title)
    calendar.add("x-wr-timezone", str(schedule.zone))
    for shift in shifts:
        assert shift.person is not None
        event = icalendar.Event()
        event.add("uid", f"{schedule.name}/{shift.person}/{round(shift.start)}@pagerd")
        event.add("dtstamp", _utc(made_at))
        event.add("dtstart", _utc(shift.start))
        event.add("dtend", _utc(shift.end))
        summary = f"{shift.person} on call ({schedule.name})"
        made = _by_override(schedule, shift, overrides, budget)
        if made:
            what = "override" if made == [shift] else "part override"
            summary = f"{shift.person} on call ({schedule.name}, {what})"
            parts = [f"{_shown(p.start, schedule.zone)} until {_shown(p.end, schedule.zone)}"
                     for p in made]  # fmt: skip
            event.add("description", "By override: " + ", ".join(parts))
        event.add("summary", summary)
        event.add("transp", "TRANSPARENT")  # on call is not busy: it blocks no meeting
        calendar.add_component(event)
    text: bytes = calendar.to_ical()
    return text


def _shown(t: float, zone: dt.tzinfo) -> str:
    return f"{when_text(t, zone)} {zone}"
