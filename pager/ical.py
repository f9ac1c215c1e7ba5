"""A schedule's shifts as an iCalendar feed (RFC 5545), made with the `icalendar` package.

One `VEVENT` per shift: who is on call from when until when (in UTC, which every calendar
client shows in its reader's zone), its `UID` stable for the same shift so a client that
refreshes the feed updates rather than duplicates. Pure: the shifts and the time it was made
(`DTSTAMP`) are passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import icalendar

from pager.schedules import Schedule, Segment

PRODID = "-//pagerd//schedules//EN"


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(round(t), dt.UTC)


def feed(
    schedule: Schedule, shifts: Sequence[Segment], made_at: float, person: str | None = None
) -> bytes:
    """The calendar of `shifts` (of `schedule`, and of `person` only if given)."""
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
        event.add("summary", f"{shift.person} on call ({schedule.name})")
        event.add("transp", "TRANSPARENT")  # on call is not busy: it blocks no meeting
        calendar.add_component(event)
    text: bytes = calendar.to_ical()
    return text
