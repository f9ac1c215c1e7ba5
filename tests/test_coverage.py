"""Gaps told apart and summarised (`pager/coverage.py`): a whole policy with nobody, a level with
nobody, a schedule's own gaps and those meant (`gaps = "expected"`); Hypothesis over random
schedules (test_schedules' strategies) against `on_call` at random instants; and the summary of
a real team's twenty weeks in a few lines, most severe first."""

from __future__ import annotations

import datetime as dt
import math

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.coverage import Coverage, Hole, _every, coverage, holes, summarise
from pager.domain import Level, Policy, Target
from pager.schedules import Layer, Rotation, Schedule, on_call
from pager.weekly import Weekly, Window, instant
from tests.test_schedules import LONDON, NEW_YORK, overrides, schedules, utc

WEEK = 7 * 86400.0
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def schedule(name: str, zone: dt.tzinfo, days: list[str], start: str, until: str) -> Schedule:
    rotation = Rotation(("alice",), dt.datetime(2024, 1, 1, 9), 1, "weeks")
    layer = Layer(rotation, Weekly((Window.of(days, start, until),), zone))
    return Schedule(name, zone, (layer,))


def level(*targets: str) -> Level:
    return Level(tuple(Target.parse(t) for t in targets))


BUSINESS = schedule("business", LONDON, WEEKDAYS, "09:00", "17:00")
# Follow-the-sun as two schedules, each on its own clock: 07:00-19:00 London, 14:00-02:00 New
# York. In winter they meet at 19:00 London; from the second Sunday of March (New York's
# change) to the last (London's), New York's hours are an hour earlier in London: nobody from
# 06:00 to 07:00 London for two weeks.
EMEA = attrs.evolve(schedule("sre-emea", LONDON, EVERY_DAY, "07:00", "19:00"), expected_gaps=True)
AMER = attrs.evolve(schedule("sre-amer", NEW_YORK, EVERY_DAY, "14:00", "02:00"), expected_gaps=True)
SCHEDULES = {s.name: s for s in (BUSINESS, EMEA, AMER)}
POLICIES = {
    "sun": Policy((level("schedule:sre-emea", "schedule:sre-amer"), level("email:lead@x.org"))),
    "hours": Policy((level("schedule:business"),)),
    "fallback": Policy((level("schedule:business", "email:desk@x.org"),)),
}
MONDAY = utc(2027, 1, 4, 12)  # twenty weeks from here cover March's changes


def test_a_real_team_s_twenty_weeks_are_three_lines_most_severe_first() -> None:
    found = coverage(SCHEDULES, POLICIES, MONDAY, MONDAY + 20 * WEEK)
    assert [(f.kind, f.where) for f in found.findings] == [
        ("policy", "policies.hours"),
        ("level", "policies.sun.levels[0]"),
        ("schedule", "schedule:business"),
        ("expected", "schedule:sre-amer"),
        ("expected", "schedule:sre-emea"),
    ]
    policy, level0, business = (f.text for f in found.findings[:3])
    assert policy == (
        "policies.hours: NO LEVEL REACHES ANYONE 100 times in the next 20 weeks: every Mon-Thu"
        " 17:00 until 09:00 the next day (80 times, Mon 2027-01-04 to Thu 2027-05-20); every Fri"
        " 17:00 until Mon 09:00 (20 times, Fri 2027-01-08 to Fri 2027-05-21), Europe/London (no"
        " level reaches anyone: schedule:business has nobody): an incident then pages nobody at"
        " all"
    )
    assert level0 == (
        "policies.sun.levels[0]: nobody reachable 13 times in the next 20 weeks: every day 06:00"
        " until 07:00 (13 times, Mon 2027-03-15 to Sat 2027-03-27), Europe/London"
        " (schedule:sre-emea and schedule:sre-amer all have nobody); the policy's next level is"
        " paged at once then"
    )
    assert business.startswith("schedule:business: nobody on call 100 times in the next 20")
    assert business.endswith('(if its gaps are meant, say so: gaps = "expected")')
    # A level with an address beside the schedule is never empty: no gap of its own.
    assert not [h for h in found.holes if "fallback" in h.where]
    assert found.count("policy") == 100 and found.places("policy") == 1
    assert found.count("level") == 13 and found.count("expected") > 200


def test_a_level_s_gaps_within_its_policy_s_are_said_once_as_the_policy_s() -> None:
    """Two levels: business hours, then the follow-the-sun pair. Nobody at all only where both
    are empty (06:00-07:00 on weekdays of the two weeks); level 1's nights are its own."""
    both = {
        "p": Policy((level("schedule:business"), level("schedule:sre-emea", "schedule:sre-amer")))
    }
    found = holes(SCHEDULES, both, MONDAY, MONDAY + 20 * WEEK)
    policy = [(h.start, h.end) for h in found if h.kind == "policy"]
    first = [(h.start, h.end) for h in found if h.where == "policies.p.levels[0]"]
    second = [(h.start, h.end) for h in found if h.where == "policies.p.levels[1]"]
    assert len(policy) == 13 and second == []  # every gap of level 2 is one of the policy's
    assert not any(a < e and s < b for a, b in first for s, e in policy)
    # Together, level 1's own and the policy's are exactly business hours' gaps.
    nights = [(h.start, h.end) for h in found if h.where == "schedule:business"]
    assert sum(b - a for a, b in first + policy) == sum(b - a for a, b in nights)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_each_kind_of_gap_is_exactly_where_resolution_finds_nobody(data: st.DataObject) -> None:
    one, change = data.draw(schedules())
    two, _ = data.draw(schedules())
    two = attrs.evolve(two, name="t", expected_gaps=data.draw(st.booleans()))
    found_schedules = {"s": one, "t": two}
    around = instant(change, one.zone)
    made = {"s": data.draw(overrides(around))}
    targets = st.sampled_from(["schedule:s", "schedule:t", "email:desk@x.org"])
    levels = data.draw(st.lists(st.lists(targets, min_size=1, max_size=2), min_size=1, max_size=3))
    policies = {"p": Policy(tuple(level(*ts) for ts in levels))}
    start = around + data.draw(st.integers(-3 * 86400, 3 * 86400))
    end = start + data.draw(st.integers(3600, 10 * 86400))
    found = holes(found_schedules, policies, start, end, made)

    def nobody(name: str, t: float) -> bool:
        return on_call(found_schedules[name], t, made.get(name, ())) is None

    def empty(targets: list[str], t: float) -> bool:
        return all(x.startswith("schedule:") and nobody(x.split(":")[1], t) for x in targets)

    def covered(where: str, t: float) -> bool:
        return any(h.where == where and h.start <= t < h.end for h in found)

    for _ in range(20):
        t = data.draw(st.floats(min_value=start, max_value=end, exclude_max=True))
        assert covered("schedule:s", t) == nobody("s", t)
        assert covered("schedule:t", t) == nobody("t", t)
        everywhere = all(empty(ts, t) for ts in levels)
        assert covered("policies.p", t) == everywhere
        for i, ts in enumerate(levels):
            assert covered(f"policies.p.levels[{i}]", t) == (empty(ts, t) and not everywhere)
    kinds = {h.where: h.kind for h in found}
    assert kinds.get("schedule:t", "expected" if two.expected_gaps else "schedule") == (
        "expected" if two.expected_gaps else "schedule"
    )
    # The summary counts every gap once, in a line per place.
    summary = summarise(found, start, end)
    assert sum(f.count for f in summary) == len(found)
    assert len(summary) == len({(h.kind, h.where) for h in found})
    order = ["policy", "level", "schedule", "expected"]
    assert [order.index(f.kind) for f in summary] == sorted(order.index(f.kind) for f in summary)


def test_days_are_named_as_a_person_reads_them() -> None:
    assert _every(set(range(7))) == "every day"
    assert _every({0, 1, 2, 3}) == "every Mon-Thu"
    assert _every({5, 6, 0}) == "every Sat-Mon"
    assert _every({4}) == "every Fri"
    assert _every({0, 2, 4}) == "every Mon, Wed, Fri"
    assert _every({5, 6}) == "every Sat, Sun"


def test_a_single_gap_is_its_window_and_a_cut_one_counts_with_its_shape() -> None:
    start, end = utc(2027, 1, 4, 3), utc(2027, 1, 20, 3)
    # Every night 17:00-09:00 London (winter: UTC), the first and last cut by the span.
    nights = [Hole("x", start, utc(2027, 1, 4, 9), LONDON)]
    nights += [Hole("x", utc(2027, 1, d, 17), utc(2027, 1, d + 1, 9), LONDON) for d in range(4, 19)]
    nights += [Hole("x", utc(2027, 1, 19, 17), end, LONDON)]
    (night,) = summarise(nights, start, end)
    assert night.count == 17
    assert night.text == (
        "x: nobody on call 17 times in the next 2 weeks: every day 17:00 until 09:00 the next day"
        " (17 times, Mon 2027-01-04 to Tue 2027-01-19), Europe/London (if its gaps are meant, say"
        ' so: gaps = "expected")'
    )
    (once,) = summarise([Hole("y", utc(2027, 1, 6, 9), utc(2027, 1, 8, 9), LONDON)], start, end)
    assert once.text == (
        "y: nobody on call once in the next 2 weeks: from Wed 2027-01-06 09:00 until Fri"
        ' 2027-01-08 09:00, Europe/London (if its gaps are meant, say so: gaps = "expected")'
    )


def test_the_next_level_gap_is_counted_down_and_none_is_infinite() -> None:
    gap = Hole("policies.p.levels[0]", 1000.0, 2000.0, LONDON, kind="level")
    night = Hole("schedule:s", 100.0, 200.0, LONDON)
    found = Coverage(0.0, 5000.0, (night, gap))
    assert found.next_level_gap(400.0) == 600.0
    assert found.next_level_gap(1500.0) == 0.0  # in it
    assert found.next_level_gap(2000.0) == math.inf
    assert Coverage(0.0, 0.0).next_level_gap(0.0) == math.inf
