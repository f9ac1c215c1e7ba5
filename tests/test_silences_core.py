"""Silences in the pure core: what is silenced when (`pager.silences`), and what `decide` does
with it: pages held, never dropped; paging at the quiet's end as if the alert had just come."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.domain import (
    Ack,
    Alert,
    EndSilence,
    Healthy,
    Level,
    Policy,
    Rejected,
    ServiceState,
    StartSilence,
    Target,
    Timeout,
    decide,
)
from pager.silences import (
    MAX_AHEAD,
    MAX_SILENCES,
    Silence,
    live,
    recurring,
    silenced_until,
    spans,
)
from pager.weekly import LONGEST_RUN, Weekly, Window

T0 = 1_800_000_000.0
ALICE, LEAD = Target("email", "alice@example.com"), Target("email", "lead@example.com")
POLICY = Policy((Level((ALICE,), 300.0), Level((LEAD,), 900.0)))
HOUR = 3600.0


def silence(number: int, start: float, end: float, ended: float | None = None) -> Silence:
    return Silence(number, start, end, "db migration", "bob", start, ended)


def silenced(*silences: Silence) -> ServiceState:
    return ServiceState("api", silences=silences)


def targets(notes: tuple[object, ...]) -> list[str]:
    return [str(n.target) for n in notes]  # type: ignore[attr-defined]


# What is silenced when ------------------------------------------------------------------------


def test_overlapping_and_touching_silences_are_one_quiet() -> None:
    quiet = spans([silence(1, 0, 10), silence(2, 5, 20), silence(3, 20, 30), silence(4, 31, 40)])
    assert silenced_until(0, [quiet]) == 30  # 0-10, 5-20 and 20-30 overlap or touch
    assert silenced_until(25, [quiet]) == 30
    assert silenced_until(30, [quiet]) is None  # the end is not silenced: a gap until 31
    assert silenced_until(31, [quiet]) == 40
    assert silenced_until(-1, [quiet]) is None


def test_a_silence_ended_early_stops_there_and_one_to_come_silences_nothing_yet() -> None:
    ended = silence(1, 0, 100, ended=40)
    assert ended.until == 40 and ended.in_force(39) and not ended.in_force(40)
    assert silenced_until(10, [spans([ended])]) == 40
    to_come = silence(2, 50, 60)
    assert silenced_until(10, [spans([to_come])]) is None
    assert live([ended, to_come], 45) == (to_come,)


def test_every_source_joins_the_quiet() -> None:
    def windows(at: float) -> float | None:
        return 50.0 if 10 <= at < 50 else None  # a maintenance window, say

    assert silenced_until(0, [spans([silence(1, 0, 20)]), windows]) == 50
    assert silenced_until(30, [None, windows]) == 50
    assert silenced_until(0, [None]) is None


intervals = st.lists(
    st.tuples(st.integers(0, 100), st.integers(1, 40)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=8,
)


@given(spans_=intervals, at=st.integers(0, 150))
def test_the_quiet_ends_where_the_union_of_the_spans_first_leaves_off(
    spans_: list[tuple[int, int]], at: int
) -> None:
    """Checked point by point: every instant from `at` to the end is in some span, and the end
    is in none (within a step of the grid the spans are drawn on)."""
    quiet = spans(silence(i, start, end) for i, (start, end) in enumerate(spans_))
    covered = {t for start, end in spans_ for t in range(start, end)}
    until = silenced_until(at, [quiet])
    if at not in covered:
        assert until is None
        return
    end = at
    while end in covered:
        end += 1
    assert until == end


# What decide does with it ---------------------------------------------------------------------


def test_an_alert_during_a_silence_opens_an_incident_that_pages_nobody_until_its_end() -> None:
    state, notes = decide(silenced(silence(1, T0, T0 + HOUR)), Alert("down"), T0 + 60, POLICY)
    incident = state.incident
    assert notes == ()
    assert incident is not None and incident.silenced and incident.level == 0
    assert incident.deadline == T0 + HOUR and incident.opened_at == T0 + 60
    state, notes = decide(state, Alert("still"), T0 + 120, POLICY)
    assert notes == () and state.incident is not None and state.incident.alerts == 2
    early = decide(state, Timeout(1, 1, 0), T0 + 1800, POLICY)
    assert early == (state, ())  # still silenced: held to the same end, nothing changes
    state, notes = decide(state, Timeout(1, 1, 0), T0 + HOUR, POLICY)
    assert targets(notes) == ["email:alice@example.com"]
    assert state.incident is not None and not state.incident.silenced
    assert (state.incident.round, state.incident.level) == (1, 1)
    assert state.incident.deadline == T0 + HOUR + 300  # its own ack timeout, from then


def test_healthy_during_the_silence_closes_the_incident_quietly() -> None:
    state, _ = decide(silenced(silence(1, T0, T0 + HOUR)), Alert(), T0, POLICY)
    state, notes = decide(state, Healthy(), T0 + 60, POLICY)
    assert state.healthy and notes == ()
    assert decide(state, Timeout(1, 1, 0), T0 + HOUR, POLICY) == (state, ())


def test_an_ack_during_the_silence_ends_the_hold_with_the_escalation() -> None:
    state, _ = decide(silenced(silence(1, T0, T0 + HOUR)), Alert(), T0, POLICY)
    state, _ = decide(state, Ack("bob"), T0 + 60, POLICY)
    assert state.incident is not None and state.incident.deadline is None
    assert not state.incident.silenced
    assert decide(state, Timeout(1, 1, 0), T0 + HOUR, POLICY) == (state, ())


def test_an_incident_paging_when_a_silence_starts_escalates_no_further_until_its_end() -> None:
    state, notes = decide(ServiceState("api"), Alert(), T0, POLICY)
    assert targets(notes) == ["email:alice@example.com"]
    state, notes = decide(state, StartSilence(silence(1, T0 + 60, T0 + HOUR)), T0 + 60, POLICY)
    assert notes == ()
    assert state.incident is not None and state.incident.deadline == T0 + 300  # not due yet
    state, notes = decide(state, Timeout(1, 1, 1), T0 + 300, POLICY)
    assert notes == ()  # level 2 held; level 1's page stays sent
    assert state.incident is not None and state.incident.silenced
    assert (state.incident.level, state.incident.deadline) == (1, T0 + HOUR)
    state, notes = decide(state, Timeout(1, 1, 1), T0 + HOUR, POLICY)
    assert targets(notes) == ["email:lead@example.com"]


def test_ending_a_silence_early_pages_the_held_step_at_once() -> None:
    state, _ = decide(silenced(silence(7, T0, T0 + HOUR)), Alert(), T0, POLICY)
    state, notes = decide(state, EndSilence(7, "carol"), T0 + 600, POLICY)
    assert targets(notes) == ["email:alice@example.com"]
    ended = state.silences[0]
    assert (ended.until, ended.ended_by) == (T0 + 600, "carol")
    assert decide(state, EndSilence(7), T0 + 700, POLICY) == (state, ())  # over already
    with pytest.raises(Rejected) as refused:
        decide(state, EndSilence(8), T0 + 700, POLICY)
    assert refused.value.code == "not_found"


def test_a_second_silence_extends_the_hold_and_ending_one_of_two_keeps_the_other() -> None:
    state, _ = decide(silenced(silence(1, T0, T0 + HOUR)), Alert(), T0, POLICY)
    state, notes = decide(state, StartSilence(silence(2, T0 + 10, T0 + 3 * HOUR)), T0 + 10, POLICY)
    assert notes == () and state.incident is not None
    assert state.incident.deadline == T0 + 3 * HOUR  # moved at once: the status says so
    state, notes = decide(state, EndSilence(1), T0 + 20, POLICY)
    assert notes == () and state.incident is not None
    assert state.incident.deadline == T0 + 3 * HOUR
    state, notes = decide(state, EndSilence(2), T0 + 30, POLICY)
    assert targets(notes) == ["email:alice@example.com"]


def test_windows_hold_pages_as_silences_do() -> None:
    def sundays(at: float) -> float | None:
        return T0 + 7200 if T0 <= at < T0 + 7200 else None

    state, notes = decide(ServiceState("api"), Alert(), T0 + 1, POLICY, windows=sundays)
    assert notes == () and state.incident is not None and state.incident.deadline == T0 + 7200
    state, notes = decide(state, Timeout(1, 1, 0), T0 + 7200, POLICY, windows=sundays)
    assert targets(notes) == ["email:alice@example.com"]


def test_nonsensical_silences_are_refused_and_change_nothing() -> None:
    state = silenced(silence(1, T0, T0 + HOUR))
    for wrong, code in [
        (silence(2, T0 - 100, T0), "bad_request"),  # over by now
        (silence(3, T0 + 10, T0 + 10), "bad_request"),  # ends as it starts
        (silence(1, T0, T0 + 60), "bad_request"),  # an id already there
    ]:
        with pytest.raises(Rejected) as refused:
            decide(state, StartSilence(wrong), T0, POLICY)
        assert refused.value.code == code


def test_a_service_has_at_most_max_silences_to_come_and_those_over_make_room() -> None:
    full = silenced(*(silence(i, T0 + i, T0 + HOUR) for i in range(MAX_SILENCES)))
    with pytest.raises(Rejected) as refused:
        decide(full, StartSilence(silence(MAX_SILENCES, T0, T0 + 60)), T0, POLICY)
    assert refused.value.code == "too_many_silences"
    later, _ = decide(full, StartSilence(silence(MAX_SILENCES, T0 + HOUR, T0 + 2 * HOUR)),
                      T0 + HOUR, POLICY)  # fmt: skip
    assert [s.id for s in later.silences] == [MAX_SILENCES]  # the others are over: dropped


def test_exhausting_needs_no_page_so_it_is_not_held() -> None:
    one = Policy((Level((ALICE,), 300.0),))
    state, _ = decide(ServiceState("api"), Alert(), T0, one)
    state, _ = decide(state, StartSilence(silence(1, T0, T0 + HOUR)), T0, one)
    state, notes = decide(state, Timeout(1, 1, 1), T0 + 300, one)
    assert notes == () and state.incident is not None
    assert state.incident.exhausted and not state.incident.silenced
    assert state.incident == attrs.evolve(state.incident, deadline=None)


# Recurring maintenance windows as a source -----------------------------------------------------

LONDON = zoneinfo.ZoneInfo("Europe/London")
windows_drawn = st.lists(
    st.builds(
        lambda days, start, length, zone: Weekly(
            (Window(frozenset(days), start, length),), zoneinfo.ZoneInfo(zone)
        ),
        st.sets(st.integers(0, 6), min_size=1),
        st.sampled_from([0, 60, 90, 120, 1320, 1410]),
        st.sampled_from([30, 60, 120, 480, 1440]),
        st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(deadline=None)  # a few thousand wall-clock conversions an example
@given(
    windows=windows_drawn,
    at=st.floats(T0 - 8 * 86400, T0 + 8 * 86400),
    offset=st.sampled_from([0.0, -3600.0, 12.5]),
)
def test_recurring_windows_silence_exactly_where_a_window_is_in_force_until_their_run_ends(
    windows: list[Weekly], at: float, offset: float
) -> None:
    """`recurring` asked at `at` of a frame `offset` behind the wall clock: None where no window
    covers the wall time; else an end in the same frame, up to which some window covers every
    wall time (checked ten minutes apart: windows start and end on half hours), and after which
    none does at once."""
    quiet = recurring(windows, offset)
    assert quiet is not None
    wall = at + offset
    until = quiet(at)
    covered = any(w.covers(wall) for w in windows)
    assert (until is not None) == covered
    if until is None:
        return
    assert until > at
    end = until + offset
    t = wall
    while t < min(end, wall + 2 * 86400):
        assert any(w.covers(t) for w in windows)
        t += 600
    if end - wall < LONGEST_RUN:
        assert not any(w.covers(end) for w in windows)


def test_no_windows_is_no_source() -> None:
    assert recurring(()) is None


def test_windows_in_force_every_hour_are_followed_only_so_far_ahead() -> None:
    """The hold's end is far ahead, and asked again there it goes on: nothing pages early, and
    a look costs two reads of the windows, not `MAX_CHAIN`."""
    always = recurring([Weekly((Window(frozenset(range(7)), 0, 1440),), LONDON)])
    until = silenced_until(T0, [always])
    assert until is not None and MAX_AHEAD < until - T0 <= MAX_AHEAD + LONGEST_RUN
    again = silenced_until(until, [always])
    assert again is not None and again > until


def test_an_alert_in_a_sunday_window_in_london_is_held_until_it_ends() -> None:
    # 2027-01-17 is a Sunday; 02:00 to 04:00 in London is 02:00 to 04:00 UTC in January.
    sunday = dt.datetime(2027, 1, 17, 2, 30, tzinfo=dt.UTC).timestamp()
    windows = recurring([Weekly((Window.of(["sun"], "02:00", "04:00"),), LONDON)], offset=100.0)
    state, notes = decide(ServiceState("api"), Alert(), sunday - 100, POLICY, windows=windows)
    assert notes == () and state.incident is not None and state.incident.silenced
    end = dt.datetime(2027, 1, 17, 4, 0, tzinfo=dt.UTC).timestamp() - 100  # in the frame
    assert state.incident.deadline == end
    state, notes = decide(state, Timeout(1, 1, 0), end, POLICY, windows=windows)
    assert targets(notes) == ["email:alice@example.com"]
