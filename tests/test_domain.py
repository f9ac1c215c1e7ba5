"""The rules, one example each: what the core decides for each event in each state."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given

from pager.domain import (
    Ack,
    Alert,
    Event,
    Healthy,
    Heartbeat,
    HeartbeatMissed,
    Level,
    Monitor,
    Notify,
    Policy,
    Rejected,
    Resolve,
    ServiceState,
    Source,
    Target,
    Timeout,
    decide,
)
from tests.strategies import heartbeat_intervals, messages, monitors, times, unhealthy_states

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
    # An alert on an incident a missed heartbeat opened makes it an alert's: no check-in closes it;
    # and a plain alert holds it until `healthy`: no integration's resolve closes it.
    counted = attrs.evolve(
        state.incident, alerts=state.incident.alerts + 1, heartbeat_only=False, held_by_alert=True
    )
    assert after == attrs.evolve(state, incident=counted)
    assert notes == ()


# Heartbeats ----------------------------------------------------------------------------------

FIVE = 300.0


def checked_in(at: float = T0, interval: float = FIVE) -> ServiceState:
    state, notes = decide(ServiceState("cron"), Heartbeat(), at, POLICY, interval)
    assert notes == ()
    return state


def missed(state: ServiceState, at: float | None = None) -> tuple[ServiceState, tuple[Notify, ...]]:
    assert state.heartbeat is not None and state.heartbeat.due_at is not None
    due = state.heartbeat.due_at
    return decide(state, HeartbeatMissed(due), due if at is None else at, POLICY, FIVE)


def test_the_first_check_in_arms_the_monitor_and_each_moves_its_deadline() -> None:
    state = checked_in()
    assert state.heartbeat == Monitor(FIVE, T0 + FIVE, T0)
    assert state.healthy
    state, notes = decide(state, Heartbeat("cron-job"), T0 + 100, POLICY, FIVE)
    assert state.heartbeat == Monitor(FIVE, T0 + 400, T0 + 100) and notes == ()


def test_a_check_in_without_a_heartbeat_configured_is_refused() -> None:
    with pytest.raises(Rejected) as refused:
        decide(ServiceState("api"), Heartbeat(), T0, POLICY, None)
    assert refused.value.code == "bad_request"
    assert "api has no heartbeat configured" in refused.value.message


def test_a_miss_opens_an_incident_that_pages_level_1_and_waits_for_the_next_check_in() -> None:
    state, notes = missed(checked_in())
    assert state.incident is not None and state.incident.heartbeat_only
    assert state.incident.message == "no heartbeat for 5m"
    assert state.incident.deadline == T0 + FIVE + 300
    assert targets_of(notes) == [ALICE, PHONE]
    assert state.heartbeat == Monitor(FIVE, None, T0)
    assert state.heartbeat.missed
    back, notes = decide(state, Heartbeat(), T0 + 1000, POLICY, FIVE)
    assert back.healthy and notes == ()
    assert back.heartbeat == Monitor(FIVE, T0 + 1000 + FIVE, T0 + 1000)
    assert back.last_incident == 1


def test_a_miss_early_stale_or_no_longer_configured_pages_nobody() -> None:
    state = checked_in()
    early, notes = decide(state, HeartbeatMissed(T0 + FIVE), T0 + FIVE - 0.001, POLICY, FIVE)
    assert (early, notes) == (state, ())
    stale, notes = decide(state, HeartbeatMissed(T0 + 1), T0 + 3600, POLICY, FIVE)
    assert (stale, notes) == (state, ())
    disarmed, notes = decide(state, HeartbeatMissed(T0 + FIVE), T0 + 1, POLICY, None)
    assert disarmed == attrs.evolve(state, heartbeat=None) and notes == ()
    once, _ = missed(state)
    twice, notes = decide(once, HeartbeatMissed(T0 + FIVE), T0 + 3600, POLICY, FIVE)
    assert (twice, notes) == (once, ())  # one silence pages once


def test_a_miss_on_an_open_incident_counts_on_it_and_a_check_in_leaves_it_open() -> None:
    state, _ = decide(checked_in(), Alert("disk full"), T0 + 1, POLICY, FIVE)
    state, notes = missed(state)
    assert notes == ()
    assert state.incident is not None
    assert (state.incident.alerts, state.incident.heartbeat_only) == (2, False)
    state, _ = decide(state, Heartbeat(), T0 + 400, POLICY, FIVE)
    assert state.incident is not None and state.incident.number == 1
    assert state.heartbeat == Monitor(FIVE, T0 + 400 + FIVE, T0 + 400)


def test_an_acknowledged_miss_is_still_closed_by_the_next_check_in() -> None:
    state, _ = missed(checked_in())
    state, _ = decide(state, Ack("bob"), T0 + 310, POLICY, FIVE)
    state, _ = decide(state, Heartbeat(), T0 + 320, POLICY, FIVE)
    assert state.healthy


def test_healthy_after_a_miss_watches_again_from_then_with_the_interval_configured_now() -> None:
    state, _ = missed(checked_in())
    healed, _ = decide(state, Healthy(), T0 + 1000, POLICY, 60.0)
    assert healed.healthy
    assert healed.heartbeat == Monitor(60.0, T0 + 1060, T0)
    gone, _ = decide(state, Healthy(), T0 + 1000, POLICY, None)
    assert gone.heartbeat is None
    armed = checked_in()
    assert decide(armed, Healthy(), T0 + 1, POLICY, FIVE)[0].heartbeat == armed.heartbeat


def test_a_changed_interval_applies_from_the_next_check_in() -> None:
    state = checked_in()
    # Reloaded to 1h meanwhile: the deadline and the words are those of the check-in's 5m.
    state, _ = decide(state, HeartbeatMissed(T0 + FIVE), T0 + FIVE, POLICY, 3600.0)
    assert state.incident is not None and state.incident.message == "no heartbeat for 5m"
    state, _ = decide(state, Heartbeat(), T0 + 400, POLICY, 3600.0)
    assert state.heartbeat == Monitor(3600.0, T0 + 4000, T0 + 400)


@given(state=unhealthy_states, interval=heartbeat_intervals, now=times)
def test_a_check_in_closes_an_incident_only_when_a_miss_alone_opened_it(
    state: ServiceState, interval: float, now: float
) -> None:
    assert state.incident is not None
    after, notes = decide(state, Heartbeat(), now, POLICY, interval)
    assert notes == ()
    assert after.heartbeat == Monitor(interval, now + interval, now)
    expected = None if state.incident.heartbeat_only else state.incident
    assert after == attrs.evolve(state, incident=expected, heartbeat=after.heartbeat)


@given(monitor=monitors, now=times)
def test_a_miss_changes_nothing_unless_it_is_for_the_current_deadline_and_due(
    monitor: Monitor, now: float
) -> None:
    state = ServiceState("cron", heartbeat=monitor)
    for due_at in (now - 1, now, now + 1):
        after, notes = decide(state, HeartbeatMissed(due_at), now, POLICY, FIVE)
        fires = monitor.due_at == due_at and due_at <= now
        assert (after != state) == fires
        assert (len(notes) == 2) == fires


def test_the_last_resolve_leaves_what_a_missed_heartbeat_holds_to_the_check_in() -> None:
    """An alert an integration resolves joined the incident a miss opened: its resolve ends
    that alert, not the incident, which the heartbeat still missing holds open (heartbeat_only
    again); the check-in closes it and leaves nothing firing behind."""
    state, _ = missed(checked_in())
    source = Source("prom", "fp1")
    state, _ = decide(state, Alert("disk full", source), T0 + 400, POLICY, FIVE)
    assert state.incident is not None and not state.incident.heartbeat_only
    state, _ = decide(state, Resolve(source), T0 + 500, POLICY, FIVE)
    assert state.incident is not None and state.incident.heartbeat_only
    assert state.firing == frozenset() and state.heartbeat is not None and state.heartbeat.missed
    state, _ = decide(state, Heartbeat(), T0 + 2000, POLICY, FIVE)
    assert state.healthy and state.firing == frozenset()
    assert state.heartbeat == Monitor(FIVE, T0 + 2000 + FIVE, T0 + 2000)


def test_the_last_resolve_closes_once_the_check_in_came() -> None:
    """The sender checked in again while the integration's alert fired: its resolve closes."""
    state, _ = missed(checked_in())
    source = Source("prom", "fp1")
    state, _ = decide(state, Alert("disk full", source), T0 + 400, POLICY, FIVE)
    state, _ = decide(state, Heartbeat(), T0 + 450, POLICY, FIVE)
    assert state.incident is not None
    state, _ = decide(state, Resolve(source), T0 + 500, POLICY, FIVE)
    assert state.healthy and state.firing == frozenset()
    assert state.heartbeat == Monitor(FIVE, T0 + 450 + FIVE, T0 + 450)


def test_a_missed_monitor_of_a_service_no_longer_watched_holds_nothing() -> None:
    """The heartbeat was taken out of the config: its check-ins are refused, so its miss must
    not hold the incident; the last resolve closes it and disarms the monitor."""
    state, _ = missed(checked_in())
    source = Source("prom", "fp1")
    state, _ = decide(state, Alert("disk full", source), T0 + 400, POLICY, FIVE)
    state, _ = decide(state, Resolve(source), T0 + 500, POLICY, None)
    assert state.healthy and state.heartbeat is None


@pytest.mark.parametrize("plain_first", [True, False])
def test_an_integration_s_resolve_never_closes_what_a_plain_alert_holds(plain_first: bool) -> None:
    """guarantees.md: "An integration's resolve closes only what nothing else holds open." A
    plain alert (socket, REST, cron) opened the incident or came to it: the integration's last
    resolve ends its own alert, not the incident, which `healthy` closes."""
    am, pd = Source("prom", "f1"), Source("pd", "k1")
    plain: list[Event] = [Alert("disk full")]
    sourced: list[Event] = [Alert("am", am), Alert("pd", pd)]
    state = ServiceState("api")
    for event in plain + sourced if plain_first else sourced + plain:
        state, _ = decide(state, event, T0, POLICY)
    assert state.incident is not None and state.incident.held_by_alert
    state, _ = decide(state, Resolve(am), T0 + 1, POLICY)
    state, _ = decide(state, Resolve(pd), T0 + 2, POLICY)
    assert state.incident is not None and state.firing == frozenset()
    assert state.incident.held_by_alert and state.incident.deadline is not None  # still escalates
    state, _ = decide(state, Healthy(), T0 + 3, POLICY)
    assert state.healthy
    # The next incident, an integration's alone, is closed by its resolve again.
    state, notes = decide(state, Alert("am", am), T0 + 4, POLICY)
    assert notes and state.incident is not None and not state.incident.held_by_alert
    state, _ = decide(state, Resolve(am), T0 + 5, POLICY)
    assert state.healthy
