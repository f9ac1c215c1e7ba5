"""People and `schedule:` targets in `decide` (pure): a level resolves at the time it is notified,
a person's rule gives delayed steps, and a level that reaches nobody is recorded and skipped at
once, never waited on. Hypothesis: whatever the schedules' gaps, no deadline is ever set on a
level that notified nobody, and every level skipped is told."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from pager.domain import (
    Alert,
    Level,
    Policy,
    ServiceState,
    Target,
    Timeout,
    Unreached,
    decide,
    decide_with,
)
from pager.people import Directory, Person, Step, parse_step
from pager.schedules import Layer, Override, Rotation, Schedule
from pager.weekly import Weekly, Window

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, 8, 0, tzinfo=UTC).timestamp()  # Monday 08:00
ALICE = Person(
    "alice",
    (Target("email", "alice@example.com"), Target("sms", "+14155550100")),
    (Step("sms"), Step("email", 120.0), Step("sms", 300.0)),
)
BOB = Person("bob", (Target("email", "bob@example.com"),))
HOURS = Weekly((Window.of(["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00"),), UTC)
DAILY = Schedule(
    "primary", UTC, (Layer(Rotation(("alice", "bob"), dt.datetime(2024, 1, 1, 9), 1, "days")),)
)
BUSINESS = Schedule(
    "business", UTC, (Layer(Rotation(("bob",), dt.datetime(2024, 1, 1, 9), 1, "weeks"), HOURS),)
)
DIRECTORY = Directory({"alice": ALICE, "bob": BOB}, {"primary": DAILY, "business": BUSINESS})
LEAD = Target("email", "lead@example.com")


def level(*targets: str, ack: float = 900.0) -> Level:
    return Level(tuple(Target.parse(t) for t in targets), ack)


def test_a_persons_rule_gives_each_step_its_delay_and_repeats_their_own_id() -> None:
    policy = Policy((level("person:alice"),))
    state, notes = decide(ServiceState("api"), Alert("down"), T0, policy, resolve=DIRECTORY.resolve)
    assert [(n.target.channel, n.not_before, n.step) for n in notes] == [
        ("sms", None, 1),
        ("email", T0 + 120, 1),
        ("sms", T0 + 300, 2),
    ]
    assert len({n.id for n in notes}) == 3 and notes[2].id == notes[0].id + "/2"
    assert {n.via for n in notes} == {"person:alice"}
    assert state.incident is not None and state.incident.deadline == T0 + 900


def test_a_schedule_resolves_when_its_level_is_notified() -> None:
    policy = Policy((level("schedule:primary", ack=3600), level("schedule:primary")))
    # 08:00 Monday: the rotation starts at 09:00, so nobody yet; alice from 09:00 to 09:00.
    state, notes = decide(
        ServiceState("api"), Alert(), T0 + 1800, policy, resolve=DIRECTORY.resolve
    )
    assert notes == ()  # both levels had nobody: exhausted
    state, notes = decide(
        ServiceState("api"), Alert(), T0 + 3600, policy, resolve=DIRECTORY.resolve
    )
    assert (notes[0].target, notes[0].via) == (
        Target("sms", "+14155550100"),
        "schedule:primary → alice",
    )
    incident = state.incident
    assert incident is not None and incident.deadline is not None
    later = incident.deadline + 86400  # a day late: bob's turn
    _, notes = decide(state, Timeout(1, 1, 1), later, policy, resolve=DIRECTORY.resolve)
    assert [n.via for n in notes] == ["schedule:primary → bob"]


def test_an_override_applies_to_the_resolution() -> None:
    swap = Override(1, "primary", "bob", "alice", T0, T0 + 86400)
    directory = DIRECTORY.with_overrides({"primary": (swap,)})
    policy = Policy((level("schedule:primary"),))
    _, notes = decide(ServiceState("api"), Alert(), T0 + 7200, policy, resolve=directory.resolve)
    assert [n.via for n in notes] == ["schedule:primary → bob"]


def test_a_level_with_nobody_is_skipped_at_once_and_told() -> None:
    policy = Policy((level("schedule:business"), level("email:lead@example.com")), repeat=1)
    state, notes, unreached = decide_with(
        ServiceState("api"), Alert(), T0, policy, resolve=DIRECTORY.resolve
    )
    assert [n.target for n in notes] == [LEAD]
    assert unreached == (Unreached(1, 1, ("schedule:business has nobody on call",), skipped=True),)
    assert state.incident is not None and (state.incident.round, state.incident.level) == (1, 2)
    # Its timeout: round 2, level 1 has nobody again, so level 2 is notified at once.
    deadline = state.incident.deadline
    assert deadline is not None
    state, notes, unreached = decide_with(
        state, Timeout(1, 1, 2), deadline, policy, resolve=DIRECTORY.resolve
    )
    assert [(n.round, n.level) for n in notes] == [(2, 2)]
    assert [u.round for u in unreached] == [2]


def test_a_level_partly_reaching_nobody_pages_the_rest_and_tells_the_part() -> None:
    policy = Policy((level("schedule:business", "email:lead@example.com"),))
    _, notes, unreached = decide_with(
        ServiceState("api"), Alert(), T0, policy, resolve=DIRECTORY.resolve
    )
    assert [n.target for n in notes] == [LEAD]
    assert unreached == (Unreached(1, 1, ("schedule:business has nobody on call",), False),)


def test_without_a_resolver_plain_targets_page_as_before_and_references_reach_nobody() -> None:
    policy = Policy((level("person:alice"), level("email:lead@example.com")))
    _, notes, unreached = decide_with(ServiceState("api"), Alert(), T0, policy)
    assert [n.target for n in notes] == [LEAD] and unreached[0].skipped


def test_notify_steps_parse() -> None:
    assert parse_step("sms") == ("sms", None)
    assert parse_step("email after 2m") == ("email", "2m")
    for bad in ("pigeon", "sms later", "email after", ""):
        try:
            parse_step(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@given(
    gaps=st.lists(st.booleans(), min_size=1, max_size=4),
    repeat=st.integers(0, 2),
    when=st.integers(1, 3),
)
def test_no_deadline_is_ever_set_on_a_level_that_notified_nobody(
    gaps: list[bool], repeat: int, when: int
) -> None:
    """Levels of schedules that are empty or not; whatever the mix, the incident waits only on a
    level that notified somebody, and every level it passed over is told."""
    targets = ["schedule:business" if gap else "schedule:primary" for gap in gaps]
    policy = Policy(tuple(level(t, ack=600) for t in targets), repeat)
    now = T0 + when * 86400  # 08:00, Tuesday to Thursday: primary has someone, business not
    state, notes, unreached = decide_with(
        ServiceState("api"), Alert(), now, policy, resolve=DIRECTORY.resolve
    )
    assert bool(notes) == (not all(gaps))
    incident = state.incident
    assert incident is not None
    if notes:
        assert incident.deadline is not None and not incident.exhausted
        assert all((n.round, n.level) == (incident.round, incident.level) for n in notes)
        passed = [(u.round, u.level) for u in unreached if u.skipped]
        assert passed == [(1, i + 1) for i in range(incident.level - 1)]
    else:
        assert incident.exhausted and incident.deadline is None
        assert len(unreached) == len(gaps) * (repeat + 1)
