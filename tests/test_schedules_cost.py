"""What schedules and windows cost, bounded (found by review: the arithmetic ran on the decision
loop and stalled paging for seconds). The work is counted, never timed: each wall time turned
into an instant (`pager.weekly.instant`, the arithmetic of time zones) is counted, and a
computation that is given a `Budget` stops past it. Hypothesis holds the quicker ways to the
answers they replace: the kept status of a service's windows, the next hand-offs found by a
walk, whatever the times asked about. And the config's limits that keep the worst case bounded
are refused with their reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pager import schedules, weekly
from pager.budget import Budget, Stopped, TooMuch
from pager.domain import Level, Policy, ServiceState, Target
from pager.schedules import (
    Layer,
    Override,
    Rotation,
    Schedule,
    override_problem,
    segments,
    upcoming,
)
from pager.silences import recurring
from pager.simulate import simulate
from pager.weekly import LONGEST_RUN, Maintenance, Status, Weekly, Window, maintenance, merge
from pagerd.config.people import MAX_SCHEDULE_WINDOWS
from tests.harness import CHANNELS, ONCALL, errors_of

LONDON = ZoneInfo("Europe/London")
ZONES = [LONDON, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAY = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
CHANGE = dt.datetime(2024, 3, 31, tzinfo=dt.UTC).timestamp()  # London's clocks go forward


@pytest.fixture
def instants(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """How many wall times have been turned into instants since the last call."""
    count = 0
    real = weekly.instant

    def counting(local: dt.datetime, zone: dt.tzinfo) -> float:
        nonlocal count
        count += 1
        return real(local, zone)

    monkeypatch.setattr(weekly, "instant", counting)
    monkeypatch.setattr(schedules, "instant", counting)

    def taken() -> int:
        nonlocal count
        found, count = count, 0
        return found

    yield taken


def daily(hour: int) -> Weekly:
    return Weekly((Window.of(EVERY_DAY, f"{hour:02d}:10", f"{hour:02d}:20"),), LONDON)


def heaviest() -> Schedule:
    """As heavy as a valid config makes one: ten layers of one-hour shifts, nine of them
    restricted to eleven windows of two minutes every day (99 windows in all)."""
    layers = [Layer(Rotation(("a", "b"), dt.datetime(2024, 1, 1), 1, "hours"))]
    for layer in range(9):
        windows = tuple(
            Window.of(
                EVERY_DAY, f"{2 * w:02d}:{5 * layer + 1:02d}", f"{2 * w:02d}:{5 * layer + 3:02d}"
            )
            for w in range(11)
        )
        rotation = Rotation(("a", "c"), dt.datetime(2024, 1, 1), 1, "hours")
        layers.append(Layer(rotation, Weekly(windows, LONDON)))
    return Schedule("heavy", LONDON, tuple(layers))


# The arithmetic, counted. ------------------------------------------------------------------


def test_a_services_windows_are_worked_out_a_day_once_not_eight_weeks_a_call(
    instants: Callable[[], int],
) -> None:
    # Five windows a day (as the review's config M: 500 services of them), asked about every
    # minute of a day, as every status and every alert's reply asks.
    windows = [daily(hour) for hour in (3, 7, 11, 15, 19)]
    instants()
    for minute in range(24 * 60):
        maintenance(windows, MAY + 60 * minute)
    # A few days of each window (two behind, the day, the next ones), twice an occurrence.
    assert instants() <= 5 * 6 * 2


def test_a_services_status_is_worked_out_again_only_when_a_window_starts_or_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[float] = []

    def counting(windows: list[Weekly], t: float) -> Status:
        looks.append(t)
        return maintenance(windows, t)

    monkeypatch.setattr(weekly, "maintenance", counting)
    kept = Maintenance([daily(hour) for hour in (3, 7, 11, 15, 19)])
    for minute in range(24 * 60):
        kept.status(MAY + 60 * minute)
    assert len(looks) <= 2 * 5 + 1  # each window's start and end, and the first look


def test_a_days_shifts_cost_its_hand_offs_and_windows_not_the_windows_again_each_change(
    instants: Callable[[], int],
) -> None:
    schedule = heaviest()
    found = segments(schedule, MAY, MAY + 86400)
    assert found  # (every layer's people alternate: the day is cut hour by hour)
    # About 30 hand-offs of each layer (worked out for the cuts and for who is on call), and a
    # few days of each window.
    assert instants() <= 10 * 30 * 2 + 99 * 6 * 2
    segments(schedule, MAY, MAY + 86400)
    assert instants() <= 10 * 30 * 2  # the windows' days are kept


def test_an_override_for_somebody_the_schedule_never_puts_on_call_walks_nothing(
    instants: Callable[[], int],
) -> None:
    schedule = heaviest()
    problem = override_problem(schedule, "a", "zed", MAY, MAY + 300 * 86400, MAY)
    assert problem is not None and "zed is not on call in heavy" in problem
    assert instants() == 0


def test_the_next_hand_offs_are_found_by_walking_until_they_are(
    instants: Callable[[], int],
) -> None:
    rotation = Rotation(("a", "b"), dt.datetime(2024, 1, 1, 9), 1, "days")
    schedule = Schedule("daily", LONDON, (Layer(rotation),))
    found = upcoming(schedule, MAY, 3)
    assert [s.person for s in found] == ["a", "b", "a", "b"]
    assert instants() <= 20  # four or five days of hand-offs, not a week's segments and more


# Budgets. ----------------------------------------------------------------------------------


def test_a_walk_past_its_budget_stops_with_the_reason() -> None:
    schedule = heaviest()
    budget = Budget(1000)
    with pytest.raises(TooMuch, match="more than 1,000 steps"):
        segments(schedule, MAY, MAY + 366 * 86400, budget=budget)
    assert budget.spent == 1001  # it stopped at the first step past the limit
    with pytest.raises(TooMuch):
        upcoming(heaviest(), MAY, 50, budget=Budget(10))
    with pytest.raises(TooMuch):
        override_problem(schedule, "b", "c", MAY, MAY + 300 * 86400, MAY, budget=Budget(10))


def test_a_stopped_computation_ends_at_its_next_step() -> None:
    budget = Budget(10**9)
    budget.stop()  # as the shell does from the loop, when the asker is gone
    with pytest.raises(Stopped):
        segments(heaviest(), MAY, MAY + 86400, budget=budget)
    assert budget.spent == 1


def test_a_simulation_past_its_budget_stops() -> None:
    policy = Policy(levels=(Level((Target("email", "a@example.com"),), 60.0),), repeat=1000)
    windows = recurring([daily(hour) for hour in range(24)])
    timeline = simulate(ServiceState("svc"), policy, MAY, windows=windows, budget=Budget(600))
    assert timeline.end == "limit"  # 500 decisions: within the budget
    with pytest.raises(TooMuch):
        simulate(ServiceState("svc"), policy, MAY, windows=windows, budget=Budget(20))


# The quicker ways give the answers they replace. -------------------------------------------


def model_intervals(w: Weekly, start: float, end: float) -> list[tuple[float, float]]:
    """Every window's occurrence on every day that may meet [start, end), straight from
    `Window.occurrences`, merged and cut to it."""
    first = weekly.wall(start, w.zone).date() - dt.timedelta(days=2)
    last = weekly.wall(end, w.zone).date() + dt.timedelta(days=1)
    found = []
    day = first
    while day <= last:
        for window in w.windows:
            occurrence = window.occurrences(day, w.zone)
            if occurrence is not None and occurrence[1] > start and occurrence[0] < end:
                found.append((max(occurrence[0], start), min(occurrence[1], end)))
        day += dt.timedelta(days=1)
    return merge(found)


def model_maintenance(windows: list[Weekly], t: float) -> Status:
    """Where windows stand at `t`, from `LONGEST_RUN` of their occurrences, then up to as much
    after the end of the one in force for the next start."""
    spans = merge(s for w in windows for s in model_intervals(w, t, t + LONGEST_RUN))
    if not spans or spans[0][0] > t:
        return Status(False, None, spans[0][0] if spans else None)
    ends = spans[0][1]
    later = spans[1][0] if len(spans) > 1 else None
    if later is None and ends < t + LONGEST_RUN:
        after = merge(s for w in windows for s in model_intervals(w, ends, ends + LONGEST_RUN))
        later = next((s for s, _ in after if s > ends), None)
    return Status(True, ends, later)


@st.composite
def maintenance_windows(draw: st.DrawFn) -> list[Weekly]:
    found = []
    for _ in range(draw(st.integers(1, 4))):
        days = draw(st.sets(st.sampled_from(EVERY_DAY), min_size=1))
        start = draw(st.sampled_from(["00:00", "00:30", "01:00", "01:30", "02:10", "23:00"]))
        until = draw(st.sampled_from(["00:00", "01:00", "02:30", "03:00", "06:00", "23:59"]))
        found.append(Weekly((Window.of(sorted(days), start, until),), draw(st.sampled_from(ZONES))))
    return found


@settings(max_examples=150, deadline=None)
@given(
    windows=maintenance_windows(),
    steps=st.lists(st.integers(-3 * 3600, 2 * 86400), min_size=1, max_size=12),
    start=st.integers(-10 * 86400, 10 * 86400),
)
def test_the_kept_status_of_windows_is_where_they_stand_at_every_time_asked(
    windows: list[Weekly], steps: list[int], start: int
) -> None:
    kept = Maintenance(windows)
    t = CHANGE + start
    for step in steps:  # forwards mostly, back sometimes
        t += step
        assert kept.status(t) == model_maintenance(windows, t) == maintenance(windows, t)


@settings(max_examples=100, deadline=None)
@given(
    windows=maintenance_windows(),
    times=st.lists(st.integers(-10 * 86400, 10 * 86400), min_size=1, max_size=6),
    spans=st.lists(st.integers(1, 9 * 86400), min_size=1, max_size=6),
)
def test_a_windows_intervals_and_coverage_are_its_occurrences(
    windows: list[Weekly], times: list[int], spans: list[int]
) -> None:
    for w in windows:
        for offset, span in zip(times, spans, strict=False):
            t = CHANGE + offset
            assert w.intervals(t, t + span) == model_intervals(w, t, t + span)
            for near in (t, t - 0.0005, float(round(t / 600) * 600)):
                assert w.covers(near) == bool(model_intervals(w, near, near + 1e-3))


@st.composite
def rotations(draw: st.DrawFn) -> Schedule:
    zone = draw(st.sampled_from(ZONES))
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        people = tuple(draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True)))
        unit = draw(st.sampled_from(["hours", "days", "weeks"]))
        every = draw(st.sampled_from([1, 3, 12] if unit == "hours" else [1, 2]))
        start = dt.datetime(2024, 3, draw(st.integers(1, 30)), draw(st.sampled_from([0, 1, 2, 9])))
        restrict = None
        if draw(st.booleans()):
            restrict = Weekly(tuple(draw(maintenance_windows())[0].windows), zone)
        layers.append(Layer(Rotation(people, start, every, unit), restrict))  # type: ignore[arg-type]
    return Schedule("s", zone, tuple(layers))


@settings(max_examples=100, deadline=None)
@given(
    schedule=rotations(),
    offset=st.integers(-5 * 86400, 60 * 86400),
    count=st.integers(0, 8),
    cover=st.none() | st.tuples(st.integers(0, 3 * 86400), st.integers(1, 86400)),
)
def test_the_next_hand_offs_are_those_of_the_segments_ahead(
    schedule: Schedule, offset: int, count: int, cover: tuple[int, int] | None
) -> None:
    t = CHANGE + offset + 0.25
    overrides = [] if cover is None else [Override(1, "s", "z", None, t + cover[0], t + sum(cover))]
    assert upcoming(schedule, t, count, overrides) == model_upcoming(schedule, t, count, overrides)


def model_upcoming(
    schedule: Schedule, t: float, count: int, overrides: list[Override]
) -> list[schedules.Segment]:
    """A week of segments, then four times as much, up to half a year, until there are more
    than wanted (the last found is cut at the span's end, not a hand-off)."""
    span, horizon = 7 * 86400.0, 26 * 7 * 86400.0
    while True:
        found = segments(schedule, t, t + span, overrides)
        if len(found) > count + 1 or span >= horizon:
            return found[: count + 1]
        span = min(span * 4, horizon)


# The config's limits. ----------------------------------------------------------------------


def test_a_schedule_with_more_restriction_windows_than_the_limit_is_refused(
    tmp_path: Path,
) -> None:
    window = '{ days = ["mon"], from = "09:00", until = "10:00" }'
    layers = "".join(
        '\n[[schedules.big.layers]]\npeople = ["alice"]\nshift = "1d"\nstart = 2024-01-01\n'
        f"restrict = [{', '.join([window] * 34)}]\n"
        for _ in range(3)
    )
    text = CHANNELS + ONCALL + '\n[people.alice]\nemail = "alice@example.com"\n'
    text += '\n[schedules.big]\ntimezone = "UTC"\n' + layers
    text += '\n[services.api]\npolicy = "oncall"\n'
    errors = errors_of(tmp_path, text)
    assert errors == [
        f"schedules.big.layers: 102 restriction windows in all, at most {MAX_SCHEDULE_WINDOWS}"
        " (every change of who is on call is looked at by the calendar feed, pager oncall and"
        " the gap check: join windows, or split the schedule)"
    ]


def test_more_maintenance_windows_in_all_than_the_limit_are_refused(tmp_path: Path) -> None:
    window = (
        '[[services.{name}.maintenance]]\ndays = ["sun"]\nfrom = "02:00"\nuntil = "04:00"\n'
        'timezone = "UTC"\n'
    )
    text = CHANNELS + ONCALL
    for i in range(101):
        text += f'\n[services.s{i}]\npolicy = "oncall"\n' + window.format(name=f"s{i}") * 50
    errors = errors_of(tmp_path, text)
    assert errors == [
        "services: 5050 [[services.X.maintenance]] windows in all, at most 5000 (every status"
        " reads them: give services that share windows fewer, wider ones)"
    ]
