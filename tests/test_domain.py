"""The rules, one example each: what the core decides for each event in each state."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given

from pager.domain import (
    Ack,
    Alert,
    Healthy,
    Level,
    Notify,
    Policy,
    Rejected,
    ServiceState,
    Target,
    Timeout,
    decide,
)
from tests.strategies import messages, times, unhealthy_states

T0 = 1_800_000_000.0
ALICE = Target("email", "alice@example.com")
PHONE = Target("sms", "+14155550100")
LEAD = Target("email", "lead@example.com")
POLICY = Policy(levels=(Level((ALICE, PHONE), 300.0), Level((LEAD,), 900.0)))


def opened(policy: Policy = POLICY) -> ServiceState:
    state, _ = decide(ServiceState("api"), Alert("p99 > 2s"), T0, policy)
    return state


def targets_of(notes: tuple[Notify, ...]) -> list[Target]:
    return [n.target for n in notes]


def timeout_of(state: ServiceState) -> Timeout:
    assert state.incident is not None
    return Timeout(state.incident.number, state.incident.round, state.incident.level)


def test_alert_on_healthy_service_opens_incident_and_notifies_level_1() -> None:
    state, notes = decide(ServiceState("api"), Alert("p99 > 2s"), T0, POLICY)
    assert state.incident is not None
    assert state.incident.number == 1
    assert state.incident.level == 1
    assert state.incident.deadline == T0 + 300
    assert targets_of(notes) == [ALICE, PHONE]
    assert {(n.incident, n.round, n.level, n.message) for n in notes} == {(1, 1, 1, "p99 > 2s")}


def test_timeout_notifies_next_level_and_starts_its_timeout() -> None:
    state = opened()
    later = T0 + 300
    state, notes = decide(state, timeout_of(state), later, POLICY)
    assert targets_of(notes) == [LEAD]
    assert state.incident is not None
    assert (state.incident.level, state.incident.deadline) == (2, later + 900)


def test_timeout_after_ack_notifies_nobody_and_sets_no_timeout() -> None:
    state = opened()
    timeout = timeout_of(state)
    state, notes = decide(state, Ack("bob"), T0 + 10, POLICY)
    assert notes == ()
    assert state.incident is not None
    assert state.incident.acknowledged
    assert state.incident.acknowledged_by == "bob"
    assert state.incident.deadline is None
    after, notes = decide(state, timeout, T0 + 300, POLICY)
    assert (after, notes) == (state, ())


def test_alert_while_unhealthy_is_counted_and_pages_nobody() -> None:
    state = opened()
    after, notes = decide(state, Alert("again"), T0 + 5, POLICY)
    assert notes == ()
    assert after.incident is not None and state.incident is not None
    assert after.incident.alerts == 2
    assert after.incident.deadline == state.incident.deadline  # no new timeout
    assert after.incident.message == "p99 > 2s"  # the incident keeps its first message


def test_healthy_closes_incident_and_later_timeout_pages_nobody() -> None:
    state = opened()
    timeout = timeout_of(state)
    state, notes = decide(state, Healthy(), T0 + 20, POLICY)
    assert notes == () and state.healthy and state.last_incident == 1
    after, notes = decide(state, timeout, T0 + 300, POLICY)
    assert (after, notes) == (state, ())


def test_next_alert_after_recovery_opens_a_new_incident() -> None:
    state, _ = decide(opened(), Healthy(), T0 + 20, POLICY)
    state, notes = decide(state, Alert("down again"), T0 + 30, POLICY)
    assert state.incident is not None and state.incident.number == 2
    assert {n.incident for n in notes} == {2}


def test_last_level_timeout_without_repeat_exhausts_the_incident() -> None:
    state = opened()
    state, _ = decide(state, timeout_of(state), T0 + 300, POLICY)
    last = timeout_of(state)
    state, notes = decide(state, last, T0 + 1200, POLICY)
    assert notes == ()
    assert state.incident is not None
    assert state.incident.exhausted and not state.incident.acknowledged
    assert state.incident.deadline is None


def test_repeat_starts_again_at_level_1_for_n_more_rounds() -> None:
    policy = attrs.evolve(POLICY, repeat=1)
    state = opened(policy)
    now = T0
    steps = []
    for _ in range(4):
        assert state.incident is not None and state.incident.deadline is not None
        now = state.incident.deadline
        state, notes = decide(state, timeout_of(state), now, policy)
        steps.append([(n.round, n.level, n.target) for n in notes])
    assert steps == [
        [(1, 2, LEAD)],
        [(2, 1, ALICE), (2, 1, PHONE)],
        [(2, 2, LEAD)],
        [],
    ]
    assert state.incident is not None and state.incident.exhausted


def test_ack_without_incident_is_rejected() -> None:
    with pytest.raises(Rejected) as excinfo:
        decide(ServiceState("api"), Ack(), T0, POLICY)
    assert excinfo.value.code == "no_open_incident"


def test_second_ack_and_healthy_while_healthy_change_nothing() -> None:
    state, _ = decide(opened(), Ack("bob"), T0 + 1, POLICY)
    assert decide(state, Ack("carol"), T0 + 2, POLICY) == (state, ())
    healthy = ServiceState("api", last_incident=3)
    assert decide(healthy, Healthy(), T0, POLICY) == (healthy, ())


@pytest.mark.parametrize(
    "stale",
    [Timeout(0, 1, 1), Timeout(1, 2, 1), Timeout(1, 1, 2)],
    ids=["earlier incident", "other round", "other level"],
)
def test_stale_timeout_never_pages(stale: Timeout) -> None:
    state = opened()
    assert decide(state, stale, T0 + 10_000, POLICY) == (state, ())


def test_timeout_before_its_deadline_pages_nobody() -> None:
    state = opened()
    assert decide(state, timeout_of(state), T0 + 299, POLICY) == (state, ())


def test_target_listed_twice_in_a_level_is_notified_once() -> None:
    policy = Policy(levels=(Level((ALICE, PHONE, ALICE)),))
    _, notes = decide(ServiceState("api"), Alert(), T0, policy)
    assert targets_of(notes) == [ALICE, PHONE]


def test_notification_ids_are_stable_and_distinct_per_step() -> None:
    _, notes = decide(ServiceState("api"), Alert(), T0, POLICY)
    assert [n.id for n in notes] == [
        "api#1/1/1/email:alice@example.com",
        "api#1/1/1/sms:+14155550100",
    ]


def test_policy_shortened_under_an_open_incident_still_ends() -> None:
    state = opened()
    state, _ = decide(state, timeout_of(state), T0 + 300, POLICY)  # level 2 notified
    shorter = Policy(levels=(Level((ALICE,), 300.0),))
    state, notes = decide(state, timeout_of(state), T0 + 1200, shorter)
    assert notes == ()
    assert state.incident is not None and state.incident.exhausted


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("email:alice", "not an email address"),
        ("sms:4155550100", "not an E.164 phone number"),
        ("sms:+0155", "not an E.164 phone number"),
        ("pigeon:x", "unknown channel"),
        ("alice@example.com", "expected CHANNEL:ADDRESS"),
    ],
)
def test_bad_targets_are_explained(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Target.parse(text)


@given(state=unhealthy_states, message=messages, now=times)
def test_an_alert_on_an_open_incident_counts_it_and_changes_nothing_else(
    state: ServiceState, message: str, now: float
) -> None:
    assert state.incident is not None
    after, notes = decide(state, Alert(message), now, POLICY)
    counted = attrs.evolve(state.incident, alerts=state.incident.alerts + 1)
    assert after == attrs.evolve(state, incident=counted)
    assert notes == ()
