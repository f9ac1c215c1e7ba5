"""People and `schedule:` targets in `decide` (pure): a level resolves at the time it is notified,
a person's rule gives delayed steps, and a level that reaches nobody is recorded and skipped at
once, never waited on. Hypothesis: whatever the schedules' gaps, no deadline is ever set on a
level that notified nobody, and every level skipped is told."""

from __future__ import annotations

import datetime as dt

import attrs
from hypothesis import given
from hypothesis import strategies as st

from pager.domain import (
    Ack,
    AckExpired,
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
    # "again" is a word for the reader: the method comes back whether it is written or not.
    assert parse_step("sms again after 5m") == ("sms", "5m")
    assert parse_step("  sms   again  ") == ("sms", None)
    for bad in ("pigeon", "sms later", "email after", "", "again", "sms after 5m again",
                "again sms", "smsagain after 5m", "sms again again"):  # fmt: skip
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


def test_an_expired_ack_pages_whoever_is_on_call_at_the_expiry() -> None:
    """`ack_expiry`'s restart resolves its `schedule:` targets when it is taken: alice was on
    call when she acknowledged; a day later, when the ack expires, it is bob's turn."""
    policy = Policy((level("schedule:primary"),), ack_expiry=86400.0)
    at = T0 + 3600  # Monday 09:00: alice
    state, notes = decide(ServiceState("api"), Alert(), at, policy, resolve=DIRECTORY.resolve)
    assert {n.via for n in notes} == {"schedule:primary → alice"}
    state, _ = decide(state, Ack("alice"), at + 60, policy, resolve=DIRECTORY.resolve)
    expiry = AckExpired(1, at + 60)
    state, notes = decide(state, expiry, at + 60 + 86400, policy, resolve=DIRECTORY.resolve)
    assert [(n.round, n.level, n.target, n.via) for n in notes] == [
        (2, 1, Target("email", "bob@example.com"), "schedule:primary → bob")
    ]


@given(
    gaps=st.lists(st.booleans(), min_size=1, max_size=3),
    repeat=st.integers(0, 2),
    expiry=st.sampled_from([3600.0, 7200.0, 14 * 3600.0, 25 * 3600.0]),
)
def test_an_expired_ack_restarts_as_an_incident_opened_at_the_expiry_would_page(
    gaps: list[bool], repeat: int, expiry: float
) -> None:
    """Whatever the schedules' gaps at the expiry, the restart notifies, skips and exhausts
    exactly as an incident opened then would, its rounds counted from the restart
    (`round_base`): a level with nobody is passed over at once, round after round as `repeat`
    allows, never waited on."""
    targets = ["schedule:business" if gap else "schedule:primary" for gap in gaps]
    policy = Policy(tuple(level(t, ack=600) for t in targets), repeat, ack_expiry=expiry)
    at = T0 + 86400 + 3600  # Tuesday 09:00: bob on primary and on business
    state, notes = decide(ServiceState("api"), Alert(), at, policy, resolve=DIRECTORY.resolve)
    assert notes
    state, _ = decide(state, Ack("bob"), at + 60, policy, resolve=DIRECTORY.resolve)
    assert state.incident is not None
    base = state.incident.round
    now = at + 60 + expiry
    restarted, notes, unreached = decide_with(
        state, AckExpired(1, at + 60), now, policy, resolve=DIRECTORY.resolve
    )
    fresh, fresh_notes, fresh_unreached = decide_with(
        ServiceState("api"), Alert(), now, policy, resolve=DIRECTORY.resolve
    )
    assert [attrs.evolve(n, round=n.round - base, opened_at=now) for n in notes] == list(
        fresh_notes
    )
    assert [attrs.evolve(u, round=u.round - base) for u in unreached] == list(fresh_unreached)
    incident, opened = restarted.incident, fresh.incident
    assert incident is not None and opened is not None
    assert (incident.round - base, incident.level) == (opened.round, opened.level)
    assert (incident.deadline, incident.exhausted) == (opened.deadline, opened.exhausted)
