"""The iCalendar feed's span and marks (`pager.ical`): every shift in force in the span, whole
(not cut at "now + 8 weeks" to the second, which moves with every refresh), and the shifts an
override made say so. Hypothesis over the random schedules and overrides of test_schedules."""

from __future__ import annotations

import datetime as dt

import icalendar
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.ical import FEED_AFTER, FEED_BEFORE, REACH, feed, feed_shifts
from pager.schedules import Layer, Override, Rotation, Schedule, on_call, shifts
from pager.weekly import instant, wall
from tests.test_schedules import LONDON, overrides, schedules, utc


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_feed_lists_every_shift_of_its_span_whole(data: st.DataObject) -> None:
    schedule, change = data.draw(schedules())
    around = instant(change, schedule.zone)
    now = around + data.draw(st.integers(-int(FEED_AFTER), int(FEED_BEFORE)))
    given_overrides = data.draw(overrides(around))
    found = feed_shifts(schedule, now, given_overrides)
    start, end = now - FEED_BEFORE, now + FEED_AFTER
    # Exactly the shifts of the span, where they overlap it ...
    inside = shifts(schedule, start, end, given_overrides)
    clipped = [(max(s.start, start), min(s.end, end), s.person) for s in found]
    assert clipped == [(s.start, s.end, s.person) for s in inside]
    for shift in found:
        # ... each whole: a hand-off at each end, unless it reaches past REACH (then midnight).
        for edge, before in ((shift.start, True), (shift.end, False)):
            other = on_call(schedule, edge - 1 if before else edge, given_overrides)
            if other != shift.person:
                continue  # a hand-off (or a gap) there
            assert wall(edge, schedule.zone).time() == dt.time(), (shift, edge)
            assert (edge < start - REACH + 86400) if before else (edge > end + REACH - 86400)
    # A refresh an hour later lists the same whole shifts (but those that came into the span).
    later = feed_shifts(schedule, now + 3600, given_overrides)
    whole = {(s.start, s.end) for s in later if start - REACH + 86400 < s.start and s.end < end}
    assert whole <= {(s.start, s.end) for s in found}


def test_an_override_s_shift_says_so() -> None:
    """bob stands in for alice on Tuesday 09:00 to 13:00 (her weekly shift's middle), and carol
    for nobody in particular all Wednesday: their events say "override"; alice's shift, cut in
    three, says nothing; a shift only partly made by one says which part."""
    rotation = Rotation(("alice", "dave"), dt.datetime(2024, 1, 1, 9), 1, "weeks")
    schedule = Schedule("primary", LONDON, (Layer(rotation),))
    made = [
        Override(1, "primary", "bob", "alice", utc(2024, 1, 2, 9), utc(2024, 1, 2, 13)),
        Override(2, "primary", "carol", None, utc(2024, 1, 3), utc(2024, 1, 4)),
        # dave's own shift from 09:00 on Monday 8th, begun early by an override at 07:00.
        Override(3, "primary", "dave", "alice", utc(2024, 1, 8, 7), utc(2024, 1, 8, 9)),
    ]
    now = utc(2024, 1, 5)
    body = feed(schedule, feed_shifts(schedule, now, made), now, None, made)
    events = [
        (str(e.get("summary")), str(e.get("description", "")))
        for e in icalendar.Calendar.from_ical(body).walk("VEVENT")
    ]
    summaries = [summary for summary, _ in events]
    assert "bob on call (primary, override)" in summaries
    assert "carol on call (primary, override)" in summaries
    assert summaries.count("alice on call (primary)") >= 3  # before, between, after
    (dave,) = [(s, d) for s, d in events if "part override" in s]
    assert dave == (
        "dave on call (primary, part override)",
        "By override: Mon 2024-01-08 07:00 Europe/London until Mon 2024-01-08 09:00 Europe/London",
    )
