"""Schedule resolution (`pager/schedules.py`, `pager/weekly.py`): examples on the days the clocks
change, and Hypothesis over random rotations, restrictions, overrides and zones, against a slow
model of the same rules written another way (a linear walk over hand-offs, minute by minute
through the clocks' gaps)."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.ical import feed
from pager.schedules import (
    Layer,
    Override,
    Rotation,
    Schedule,
    boundaries,
    gaps,
    on_call,
    override_problem,
    parse_shift,
    segments,
    shifts,
    upcoming,
)
from pager.weekly import Status, Weekly, Window, instant, maintenance, wall

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
ZONES = [LONDON, NEW_YORK, LORD_HOWE, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def weekly(start: dt.datetime, people: tuple[str, ...] = ("alice", "bob")) -> Rotation:
    return Rotation(people, start, 1, "weeks")


# Examples: the hand-off stays at its wall-clock time. ----------------------------------------


def test_a_weekly_handoff_at_nine_stays_at_nine_across_both_changes_in_london() -> None:
    rotation = weekly(dt.datetime(2024, 3, 24, 9, 0))
    # 31 March 2024: 01:00 GMT becomes 02:00 BST; 27 October: 02:00 BST becomes 01:00 GMT.
    assert rotation.handoff(1, LONDON) == utc(2024, 3, 31, 8, 0)  # 09:00 BST
    assert rotation.handoff(0, LONDON) == utc(2024, 3, 24, 9, 0)  # 09:00 GMT
    autumn = weekly(dt.datetime(2024, 10, 20, 9, 0))
    assert autumn.handoff(1, LONDON) == utc(2024, 10, 27, 9, 0)  # 09:00 GMT
    schedule = Schedule("s", LONDON, (Layer(rotation),))
    assert on_call(schedule, utc(2024, 3, 31, 7, 59)) == "alice"
    assert on_call(schedule, utc(2024, 3, 31, 8, 0)) == "bob"


def test_a_handoff_in_the_gap_happens_when_the_clocks_jump() -> None:
    # New York, 10 March 2024: 02:00 EST becomes 03:00 EDT; 02:30 is never shown.
    rotation = Rotation(("alice", "bob"), dt.datetime(2024, 3, 9, 2, 30), 1, "days")
    assert rotation.handoff(1, NEW_YORK) == utc(2024, 3, 10, 7, 0)  # 03:00 EDT
    assert instant(dt.datetime(2024, 3, 10, 2, 30), NEW_YORK) == utc(2024, 3, 10, 7, 0)


def test_a_handoff_in_the_fold_happens_at_its_first_occurrence() -> None:
    # New York, 3 November 2024: 01:00 to 02:00 is shown twice, first EDT (UTC-4).
    rotation = Rotation(("alice", "bob"), dt.datetime(2024, 11, 2, 1, 30), 1, "days")
    assert rotation.handoff(1, NEW_YORK) == utc(2024, 11, 3, 5, 30)
    schedule = Schedule("s", NEW_YORK, (Layer(rotation),))
    # The second 01:30 (EST, 06:30 UTC) is bob's, as is everything after the first.
    assert on_call(schedule, utc(2024, 11, 3, 6, 30)) == "bob"


def test_lord_howe_moves_its_clocks_by_half_an_hour() -> None:
    # Lord Howe, 6 October 2024: 02:00 (+10:30) becomes 02:30 (+11).
    rotation = Rotation(("alice", "bob"), dt.datetime(2024, 10, 5, 2, 15), 1, "days")
    assert rotation.handoff(1, LORD_HOWE) == instant(dt.datetime(2024, 10, 6, 2, 30), LORD_HOWE)
    twelve = Rotation(("a", "b"), dt.datetime(2024, 10, 5, 21, 0), 12, "hours")
    schedule = Schedule("s", LORD_HOWE, (Layer(twelve),))
    found = segments(schedule, twelve.handoff(0, LORD_HOWE), twelve.handoff(2, LORD_HOWE))
    # 21:00 to 09:00 that night is 11.5 hours of real time.
    assert [s.end - s.start for s in found] == [11.5 * 3600, 12 * 3600]


def test_business_hours_layer_wins_where_it_covers_and_the_base_elsewhere() -> None:
    base = Layer(weekly(dt.datetime(2024, 1, 1, 9, 0), ("night-owl",)))
    day = Layer(
        weekly(dt.datetime(2024, 1, 1, 9, 0), ("alice", "bob")),
        Weekly((Window.of(["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00"),), LONDON),
    )
    schedule = Schedule("s", LONDON, (base, day))
    assert on_call(schedule, utc(2024, 1, 2, 10, 0)) == "alice"  # Tuesday 10:00
    assert on_call(schedule, utc(2024, 1, 2, 18, 0)) == "night-owl"
    assert on_call(schedule, utc(2024, 1, 6, 10, 0)) == "night-owl"  # Saturday
    assert on_call(schedule, utc(2024, 1, 9, 10, 0)) == "bob"  # the next week


def test_follow_the_sun_over_three_rotations_leaves_no_gap() -> None:
    start = dt.datetime(2024, 1, 1, 0, 0)
    regions = [("emea", "07:00", "15:00"), ("amer", "15:00", "23:00"), ("apac", "23:00", "07:00")]
    layers = tuple(
        Layer(
            weekly(start, (f"{name}-1", f"{name}-2")),
            Weekly((Window.of(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], a, b),), UTC),
        )
        for name, a, b in regions
    )
    schedule = Schedule("sun", UTC, layers)
    span = (utc(2024, 1, 1, 7, 0), utc(2024, 1, 15, 7, 0))
    assert gaps(schedule, *span) == []
    assert on_call(schedule, utc(2024, 1, 3, 3, 0)) == "apac-1"
    assert on_call(schedule, utc(2024, 1, 10, 16, 0)) == "amer-2"


def test_an_override_replaces_for_where_for_is_on_call_and_fills_a_gap_without_for() -> None:
    rotation = Rotation(("alice", "bob"), dt.datetime(2024, 1, 1, 9, 0), 1, "days")
    hours = Weekly((Window.of(["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00"),), UTC)
    schedule = Schedule("s", UTC, (Layer(rotation, hours),))
    swap = Override(1, "s", "carol", "alice", utc(2024, 1, 1, 0), utc(2024, 1, 3, 0))
    assert on_call(schedule, utc(2024, 1, 1, 10), [swap]) == "carol"
    assert on_call(schedule, utc(2024, 1, 2, 10), [swap]) == "bob"  # not alice's day
    assert on_call(schedule, utc(2024, 1, 1, 20), [swap]) is None  # a gap stays a gap
    cover = Override(2, "s", "dave", None, utc(2024, 1, 1, 17), utc(2024, 1, 2, 9))
    assert on_call(schedule, utc(2024, 1, 1, 20), [swap, cover]) == "dave"
    assert gaps(schedule, utc(2024, 1, 1, 9), utc(2024, 1, 2, 17), [cover]) == []


def test_a_later_override_for_the_same_person_applies_over_an_earlier_where_they_overlap() -> None:
    """bob for alice 09-17, then carol for alice 12-20: bob 09-12, carol 12-20 (the docs' rule),
    and the second is no override "that would change nothing". An override for bob then takes
    the shift the first gave him."""
    rotation = Rotation(("alice",), dt.datetime(2024, 1, 1, 0, 0), 1, "weeks")
    schedule = Schedule("s", UTC, (Layer(rotation),))
    first = Override(1, "s", "bob", "alice", utc(2024, 1, 2, 9), utc(2024, 1, 2, 17))
    now = utc(2024, 1, 2, 0)
    assert override_problem(
        schedule, "carol", "alice", utc(2024, 1, 2, 12), utc(2024, 1, 2, 20), now, [first]
    ) is None  # fmt: skip
    second = Override(2, "s", "carol", "alice", utc(2024, 1, 2, 12), utc(2024, 1, 2, 20))
    assert [(s.start, s.end, s.person) for s in segments(
        schedule, utc(2024, 1, 2, 8), utc(2024, 1, 2, 21), [first, second]
    )] == [
        (utc(2024, 1, 2, 8), utc(2024, 1, 2, 9), "alice"),
        (utc(2024, 1, 2, 9), utc(2024, 1, 2, 12), "bob"),
        (utc(2024, 1, 2, 12), utc(2024, 1, 2, 20), "carol"),
        (utc(2024, 1, 2, 20), utc(2024, 1, 2, 21), "alice"),
    ]  # fmt: skip
    # A second override for alice over exactly the first's window: not refused, and it wins.
    assert override_problem(
        schedule, "dave", "alice", utc(2024, 1, 2, 9), utc(2024, 1, 2, 17), now, [first]
    ) is None  # fmt: skip
    again = Override(3, "s", "dave", "alice", utc(2024, 1, 2, 9), utc(2024, 1, 2, 17))
    assert on_call(schedule, utc(2024, 1, 2, 10), [first, again]) == "dave"
    # bob hands on the hours the first override gave him.
    assert override_problem(
        schedule, "erin", "bob", utc(2024, 1, 2, 9), utc(2024, 1, 2, 12), now, [first]
    ) is None  # fmt: skip
    handed = Override(4, "s", "erin", "bob", utc(2024, 1, 2, 9), utc(2024, 1, 2, 12))
    assert on_call(schedule, utc(2024, 1, 2, 10), [first, handed]) == "erin"
    assert on_call(schedule, utc(2024, 1, 2, 13), [first, handed]) == "bob"
    # Still refused: an override for somebody never on call there, even through an override.
    problem = override_problem(
        schedule, "erin", "carol", utc(2024, 1, 2, 9), utc(2024, 1, 2, 12), now, [first]
    )
    assert problem is not None and "change nothing" in problem


def test_override_problems_are_refused_with_the_reason() -> None:
    rotation = Rotation(("alice", "bob"), dt.datetime(2024, 1, 1, 9, 0), 1, "weeks")
    schedule = Schedule("s", UTC, (Layer(rotation),))
    now = utc(2024, 1, 1, 12)
    problem = override_problem(schedule, "carol", None, now + 10, now, now)
    assert problem is not None and "ends before it starts" in problem
    problem = override_problem(schedule, "carol", "bob", now, now + 3600, now)
    assert problem is not None and "bob is not on call" in problem
    assert override_problem(schedule, "carol", "alice", now, now + 3600, now) is None
    problem = override_problem(schedule, "carol", None, now - 7200, now - 3600, now)
    assert problem is not None and "over already" in problem


def test_upcoming_lists_the_shift_in_force_and_the_next_handoffs() -> None:
    rotation = Rotation(("alice", "bob", "carol"), dt.datetime(2024, 1, 1, 9, 0), 1, "days")
    schedule = Schedule("s", UTC, (Layer(rotation),))
    found = upcoming(schedule, utc(2024, 1, 1, 12), 3)
    assert [s.person for s in found] == ["alice", "bob", "carol", "alice"]
    assert found[1].start == utc(2024, 1, 2, 9)


def test_shift_lengths_parse_strictly() -> None:
    assert parse_shift("12h") == (12, "hours")
    assert parse_shift("1w") == (1, "weeks")
    for bad in ("", "h", "1.5d", "-1d", "0d", "1m", "1 d"):
        with pytest.raises(ValueError):
            parse_shift(bad)


def test_a_weekly_window_says_when_it_ends_and_when_the_next_starts() -> None:
    sunday = Weekly((Window.of(["sun"], "02:00", "04:00"),), LONDON)
    during = sunday.status(utc(2024, 1, 7, 3, 0))
    assert during.in_force and during.ends_at == utc(2024, 1, 7, 4, 0)
    assert during.next_start == utc(2024, 1, 14, 2, 0)
    before = sunday.status(utc(2024, 1, 6, 12, 0))
    assert not before.in_force and before.ends_at is None
    assert before.next_start == utc(2024, 1, 7, 2, 0)
    # 31 March 2024: 01:00 GMT becomes 02:00 BST, so the window runs 02:00-04:00 BST.
    spring = sunday.status(utc(2024, 3, 31, 1, 30))
    assert spring.in_force and spring.ends_at == utc(2024, 3, 31, 3, 0)
    overnight = Weekly((Window.of(["fri"], "22:00", "06:00"),), UTC)
    assert overnight.status(utc(2024, 1, 6, 5, 0)).ends_at == utc(2024, 1, 6, 6, 0)


def test_window_words_are_checked() -> None:
    for days, start, until in ((["sunday"], "02:00", "04:00"), ([], "02:00", "04:00"),
                               (["sun"], "2am", "04:00"), (["sun"], "24:00", "04:00"),
                               (["sun"], "02:60", "04:00")):  # fmt: skip
        with pytest.raises(ValueError):
            Window.of(days, start, until)
    assert Window.of(["sun"], "00:00", "24:00").length == 24 * 60
    assert Window.of(["sun"], "09:00", "09:00").length == 24 * 60


# The model: the same rules, computed another way. --------------------------------------------

UTC = ZoneInfo("UTC")


def model_instant(local: dt.datetime, zone: dt.tzinfo) -> float:
    """Wall time -> instant by trying each offset the zone has around it, and, in a gap,
    walking minute by minute to the first instant whose wall time is later."""
    naive = local.replace(tzinfo=dt.UTC).timestamp()
    offsets = set()
    for hours in range(-30, 31, 3):
        probe = naive + hours * 3600
        offset = dt.datetime.fromtimestamp(probe, zone).utcoffset()
        assert offset is not None
        offsets.add(offset.total_seconds())
    valid = [naive - off for off in offsets if wall(naive - off, zone) == local]
    if valid:
        return min(valid)
    t = naive - max(offsets)
    t -= t % 60
    while wall(t, zone) < local:
        t += 60
    return t


def model_turn(rotation: Rotation, t: float, zone: dt.tzinfo) -> int | None:
    if t < model_instant(rotation.start, zone):
        return None
    k = 0
    while model_instant(rotation.start + (k + 1) * rotation.step, zone) <= t:
        k += 1
    return k


def model_covers(restrict: Weekly, t: float) -> bool:
    day = wall(t, restrict.zone).date()
    for offset in (-2, -1, 0, 1):
        d = day + dt.timedelta(days=offset)
        for w in restrict.windows:
            if d.weekday() not in w.days:
                continue
            begin = dt.datetime.combine(d, dt.time()) + dt.timedelta(minutes=w.start)
            a = model_instant(begin, restrict.zone)
            b = model_instant(begin + dt.timedelta(minutes=w.length), restrict.zone)
            if a <= t < b:
                return True
    return False


def model_base(schedule: Schedule, t: float) -> str | None:
    for layer in reversed(schedule.layers):
        if layer.restrict is not None and not model_covers(layer.restrict, t):
            continue
        k = model_turn(layer.rotation, t, schedule.zone)
        if k is not None:
            return layer.rotation.people[k % len(layer.rotation.people)]
    return None


def model_on_call(schedule: Schedule, t: float, overrides: list[Override]) -> str | None:
    """The docs' rule, read literally: an override `for` X applies where X would be on call
    without it (by the layers, or by an earlier override); the latest that applies wins."""
    return model_would_be(schedule, t, overrides)[-1]


def model_would_be(schedule: Schedule, t: float, overrides: list[Override]) -> list[str | None]:
    """Everyone who would be on call at `t` but for a later override, in the order made."""
    found: list[str | None] = [model_base(schedule, t)]
    for o in sorted(overrides, key=lambda o: o.id):
        applies = o.start <= t < o.end and (o.for_ is None or o.for_ in found)
        if applies:
            found.append(o.by)
    return found


# Random schedules around the days the clocks change. ----------------------------------------

PEOPLE = ["alice", "bob", "carol", "dave"]
# Around the changes of 2024: London and New York in March and October/November, Lord Howe in
# April and October: starts within a couple of weeks before, instants within weeks after.
CHANGES = {
    "America/New_York": [dt.datetime(2024, 3, 10), dt.datetime(2024, 11, 3)],
    "Europe/London": [dt.datetime(2024, 3, 31), dt.datetime(2024, 10, 27)],
    "Australia/Lord_Howe": [dt.datetime(2024, 4, 7), dt.datetime(2024, 10, 6)],
    "UTC": [dt.datetime(2024, 3, 31)],
    "Asia/Kolkata": [dt.datetime(2024, 10, 27)],
}


TRICKY = {"America/New_York": [1, 2], "Europe/London": [1], "Australia/Lord_Howe": [1, 2]}
"""Hours of the gaps and folds of each zone's changes."""


@st.composite
def windows(draw: st.DrawFn) -> Window:
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    start = draw(st.sampled_from([0, 60, 90, 105, 120, 150, 540, 1020, 1380]))
    length = draw(st.sampled_from([30, 60, 480, 600, 1440]))
    return Window(frozenset(days), start, length)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Schedule, dt.datetime]:
    zone = draw(st.sampled_from(ZONES))
    change = draw(st.sampled_from(CHANGES[str(zone)]))
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        people = tuple(draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3, unique=True)))
        # Mostly at the hours the clocks skip or repeat in this zone.
        hour = draw(st.sampled_from(TRICKY.get(str(zone), []) * 3 + [0, 9, 21]))
        start = change - dt.timedelta(days=draw(st.integers(0, 10)))
        start = start.replace(hour=hour, minute=draw(st.sampled_from([0, 15, 30, 45])))
        unit = draw(st.sampled_from(["hours", "days", "weeks"]))
        every = draw(st.sampled_from([1, 2, 8, 12] if unit == "hours" else [1, 2]))
        restrict = None
        if draw(st.booleans()):
            restrict = Weekly(tuple(draw(st.lists(windows(), min_size=1, max_size=2))), zone)
        layers.append(Layer(Rotation(people, start, every, unit), restrict))  # type: ignore[arg-type]
    return Schedule("s", zone, tuple(layers)), change


@st.composite
def overrides(draw: st.DrawFn, around: float) -> list[Override]:
    found: list[Override] = []
    for i in range(draw(st.integers(0, 3))):
        start = around + draw(st.integers(-3 * 86400, 3 * 86400))
        end = start + draw(st.integers(1, 3 * 86400))
        for_ = draw(st.none() | st.sampled_from(PEOPLE))
        over_an_earlier: bool = draw(st.booleans())
        if found and over_an_earlier:
            # Over an earlier one, often: for the same person, or for the one it put on call.
            earlier = draw(st.sampled_from(found))
            start = earlier.start + draw(st.integers(-3600, 3600))
            end = max(start + 1, earlier.end + draw(st.integers(-3600, 3600)))
            for_ = draw(st.sampled_from([earlier.for_, earlier.by]))
        found.append(Override(i + 1, "s", draw(st.sampled_from(PEOPLE)), for_, start, end))
    return found


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_on_call_is_exactly_what_the_model_says(data: st.DataObject) -> None:
    schedule, change = data.draw(schedules())
    around = instant(change, schedule.zone)
    given_overrides = data.draw(overrides(around))
    near = st.sampled_from([-3600, -1800, -1, 0, 0.5, 1, 899, 1799.999, 3600])
    for _ in range(12):
        if data.draw(st.booleans()):
            t = around + data.draw(st.integers(-5 * 86400, 12 * 86400)) + data.draw(near)
        else:
            # Just around a hand-off, or a restriction's edge, as the model places it: where a
            # wrong reading of a gap or a fold would show.
            layer = data.draw(st.sampled_from(schedule.layers))
            rotation = layer.rotation
            # The hand-offs around the change, mostly.
            at_change = (change - rotation.start) // rotation.step
            k = max(0, at_change + data.draw(st.sampled_from([0, 1, 1, 2]) | st.integers(-40, 40)))
            local = rotation.start + k * rotation.step
            if layer.restrict is not None and data.draw(st.booleans()):
                w = data.draw(st.sampled_from(layer.restrict.windows))
                day = change.date() + dt.timedelta(days=data.draw(st.integers(-3, 3)))
                local = dt.datetime.combine(day, dt.time()) + dt.timedelta(
                    minutes=w.start + data.draw(st.sampled_from([0, w.length]))
                )
            t = model_instant(local, schedule.zone) + data.draw(near)
        assert on_call(schedule, t, given_overrides) == model_on_call(schedule, t, given_overrides)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_an_override_for_somebody_is_refused_exactly_when_they_would_never_be_on_call(
    data: st.DataObject,
) -> None:
    """`override_problem` says "would change nothing" exactly when, at every moment of the window
    (sampled on its cuts, where who is on call may change), the person is neither the layers'
    nor any earlier override's: so a second override for the same person is never refused."""
    schedule, change = data.draw(schedules())
    around = instant(change, schedule.zone)
    given_overrides = data.draw(overrides(around))
    start = around + data.draw(st.integers(-2 * 86400, 2 * 86400))
    end = start + data.draw(st.integers(60, 2 * 86400))
    person = data.draw(st.sampled_from(PEOPLE))
    by = data.draw(st.sampled_from([p for p in PEOPLE if p != person]))
    problem = override_problem(schedule, by, person, start, end, start, given_overrides)
    cuts = boundaries(schedule, start, end, given_overrides)
    would = any(
        person in model_would_be(schedule, a, given_overrides)
        for a, b in itertools.pairwise(cuts)
        if b > a
    )
    assert (problem is None) == would, problem
    if would:
        added = Override(99, "s", by, person, start, end)
        assert any(
            on_call(schedule, a, [*given_overrides, added]) == by
            for a, b in itertools.pairwise(cuts)
            if b > a
        )


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_shifts_and_gaps_are_where_resolution_finds_someone_and_no_one(
    data: st.DataObject,
) -> None:
    schedule, change = data.draw(schedules())
    around = instant(change, schedule.zone)
    given_overrides = data.draw(overrides(around))
    start = around + data.draw(st.integers(-3 * 86400, 3 * 86400))
    end = start + data.draw(st.integers(1, 10 * 86400))
    found = segments(schedule, start, end, given_overrides)
    # A partition of [start, end), neighbours different, each constant throughout.
    assert found[0].start == start and found[-1].end == end
    for a, b in itertools.pairwise(found):
        assert a.end == b.start and a.person != b.person
    for segment in found:
        assert segment.start < segment.end
        for t in (segment.start, (segment.start + segment.end) / 2, segment.end - 1e-3):
            if segment.start <= t < segment.end:
                assert on_call(schedule, t, given_overrides) == segment.person
    on = shifts(schedule, start, end, given_overrides)
    off = gaps(schedule, start, end, given_overrides)
    assert sorted(on + off, key=lambda s: s.start) == found
    assert all(s.person is not None for s in on) and all(s.person is None for s in off)
    for _ in range(5):
        t = data.draw(st.floats(min_value=start, max_value=end, exclude_max=True))
        inside = [s for s in on if s.start <= t < s.end]
        who = on_call(schedule, t, given_overrides)
        assert (inside[0].person if inside else None) == who


def test_maintenance_joins_a_services_windows_across_zones() -> None:
    london = Weekly((Window.of(["sun"], "02:00", "04:00"),), LONDON)
    new_york = Weekly((Window.of(["sat"], "23:00", "00:00"),), NEW_YORK)  # 04:00-05:00 UTC Sun
    sunday = utc(2024, 1, 7, 3, 0)
    status = maintenance([london, new_york], sunday)
    assert status.in_force and status.ends_at == utc(2024, 1, 7, 5, 0)
    assert status.next_start == utc(2024, 1, 14, 2, 0)
    assert maintenance([], sunday) == Status(False, None, None)
    before = maintenance([london, new_york], utc(2024, 1, 6, 0, 0))
    assert not before.in_force and before.next_start == utc(2024, 1, 7, 2, 0)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_feed_lists_exactly_the_shifts_resolution_computes(data: st.DataObject) -> None:
    """Parsed back with icalendar's own parser, the feed is the shifts, no more, no less."""
    schedule, change = data.draw(schedules())
    around = instant(change, schedule.zone)
    start = float(round(around + data.draw(st.integers(-3 * 86400, 3 * 86400))))
    end = start + data.draw(st.integers(3600, 14 * 86400))
    person = data.draw(st.none() | st.sampled_from(PEOPLE))
    found = shifts(schedule, start, end, person=person)
    calendar = icalendar.Calendar.from_ical(feed(schedule, found, start, person))
    events = [
        (
            e.decoded("dtstart").timestamp(),
            e.decoded("dtend").timestamp(),
            str(e.get("summary")).split(" on call")[0],
        )
        for e in calendar.walk("VEVENT")
    ]
    # Shifts begin and end on whole seconds (hand-offs and windows are whole minutes).
    assert events == [(s.start, s.end, s.person) for s in found]
    assert len({str(e.get("uid")) for e in calendar.walk("VEVENT")}) == len(found)
