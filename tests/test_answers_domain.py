"""The core of answering a page: an ack or a close of one incident, the first ack winning, and
`ack_expiry` (an acknowledgement that outlives it restarts escalation at level 1)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pager.domain import (
    Ack,
    AckExpired,
    Alert,
    EndSilence,
    Event,
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
from pager.silences import Silence

T0 = 1_800_000_000.0
ALICE = Target.parse("email:alice@example.com")
LEAD = Target.parse("email:lead@example.com")
HOUR = 3600.0
POLICY = Policy((Level((ALICE,), 300.0), Level((LEAD,), 900.0)), repeat=1, ack_expiry=4 * HOUR)


def opened(policy: Policy = POLICY) -> ServiceState:
    state, _ = decide(ServiceState("api"), Alert("down"), T0, policy)
    return state


def test_an_ack_of_another_incident_than_the_open_one_is_refused_and_changes_nothing() -> None:
    state = opened()
    with pytest.raises(Rejected) as refused:
        decide(state, Ack("alice", incident=2, via="link"), T0 + 1, POLICY)
    assert refused.value.code == "no_open_incident"
    assert refused.value.message == "api#2 is closed"
    closed, _ = decide(state, Healthy(), T0 + 1, POLICY)
    with pytest.raises(Rejected):
        decide(closed, Ack("alice", incident=1), T0 + 2, POLICY)
    with pytest.raises(Rejected):
        decide(closed, Healthy(by="alice", incident=1), T0 + 2, POLICY)


def test_a_close_of_the_open_incident_by_number_closes_it() -> None:
    state, notes = decide(opened(), Healthy(by="email:alice@example.com", incident=1), T0, POLICY)
    assert state.incident is None and notes == ()


def test_the_first_ack_wins_and_keeps_how_it_came() -> None:
    state, _ = decide(opened(), Ack("alice", via="sms"), T0 + 60, POLICY)
    again, notes = decide(state, Ack("bob", via="link", incident=1), T0 + 61, POLICY)
    assert again == state and notes == ()
    assert state.incident is not None
    assert (state.incident.acknowledged_by, state.incident.acknowledged_via) == ("alice", "sms")


def test_an_ack_with_ack_expiry_keeps_a_deadline_that_restarts_escalation_at_level_1() -> None:
    state = opened()
    acked, _ = decide(state, Ack("alice", via="link"), T0 + 60, POLICY)
    assert acked.incident is not None
    assert acked.incident.deadline == T0 + 60 + 4 * HOUR
    expiry = AckExpired(1, T0 + 60)
    # Early: nothing, even a second before.
    assert decide(acked, expiry, T0 + 60 + 4 * HOUR - 1, POLICY) == (acked, ())
    # A timeout of the step acknowledged, arriving late: nothing (the deadline is the ack's).
    assert decide(acked, Timeout(1, 1, 1), T0 + 60 + 4 * HOUR, POLICY) == (acked, ())
    restarted, notes = decide(acked, expiry, T0 + 60 + 4 * HOUR, POLICY)
    incident = restarted.incident
    assert incident is not None and not incident.acknowledged
    assert (incident.round, incident.level, incident.round_base) == (2, 1, 1)
    assert incident.acknowledged_by is None and incident.acknowledged_via is None
    assert incident.deadline == T0 + 60 + 4 * HOUR + 300
    assert [n.target for n in notes] == [ALICE]
    first = decide(ServiceState("api"), Alert("down"), T0, POLICY)[1]
    assert {n.id for n in notes}.isdisjoint(n.id for n in first)  # ids of their own
    # A stale expiry (another ack, or the same one again) does nothing.
    assert decide(restarted, expiry, T0 + 10 * HOUR, POLICY) == (restarted, ())


def test_repeat_counts_from_the_restart() -> None:
    """repeat = 1: after a restart the escalation goes through every level twice, as a new
    incident's would, then is exhausted."""
    acked, _ = decide(opened(), Ack("alice"), T0, POLICY)
    state, _ = decide(acked, AckExpired(1, T0), T0 + 4 * HOUR, POLICY)
    now = T0 + 4 * HOUR
    steps = []
    while state.incident is not None and state.incident.deadline is not None:
        now = state.incident.deadline
        i = state.incident
        state, notes = decide(state, Timeout(i.number, i.round, i.level), now, POLICY)
        steps += [(n.round, n.level) for n in notes]
    assert steps == [(2, 2), (3, 1), (3, 2)]
    assert state.incident is not None and state.incident.exhausted


def test_an_exhausted_incident_acknowledged_then_forgotten_pages_again() -> None:
    policy = attrs.evolve(POLICY, repeat=0)
    state = opened(policy)
    for level in (1, 2):
        assert state.incident is not None and state.incident.deadline is not None
        state, _ = decide(state, Timeout(1, 1, level), state.incident.deadline, policy)
    assert state.incident is not None and state.incident.exhausted
    acked, _ = decide(state, Ack("lead"), T0 + HOUR, policy)
    restarted, notes = decide(acked, AckExpired(1, T0 + HOUR), T0 + 5 * HOUR, policy)
    assert restarted.incident is not None and not restarted.incident.exhausted
    assert [n.target for n in notes] == [ALICE]


def test_an_expiry_during_a_silence_is_held_and_pages_level_1_when_the_quiet_ends() -> None:
    """The restart is a step like any other: a silence in force holds it (before level 1 of
    its new round), and the quiet's end notifies level 1 then; the repeat still counts from it."""
    acked, _ = decide(opened(), Ack("alice"), T0, POLICY)
    quiet = Silence(1, T0 + HOUR, T0 + 6 * HOUR, "db migration", "bob", T0 + HOUR)
    silenced, notes = decide(acked, StartSilence(quiet), T0 + HOUR, POLICY)
    assert notes == () and silenced.incident is not None and silenced.incident.acknowledged
    held, notes = decide(silenced, AckExpired(1, T0), T0 + 4 * HOUR, POLICY)
    incident = held.incident
    assert notes == () and incident is not None and not incident.acknowledged
    assert (incident.silenced, incident.deadline) == (True, T0 + 6 * HOUR)
    assert (incident.round, incident.level, incident.round_base) == (2, 0, 1)
    # The quiet's end hands over the held step's timeout: level 1 of round 2, then on.
    paged, notes = decide(held, Timeout(1, 2, 0), T0 + 6 * HOUR, POLICY)
    assert [(n.round, n.level, n.target) for n in notes] == [(2, 1, ALICE)]
    assert paged.incident is not None and not paged.incident.silenced
    assert paged.incident.deadline == T0 + 6 * HOUR + 300
    # Ended early, the silence notifies the held restart at once.
    ended, notes = decide(held, EndSilence(1, "bob"), T0 + 5 * HOUR, POLICY)
    assert [(n.round, n.level) for n in notes] == [(2, 1)]
    assert ended.incident is not None and ended.incident.round_base == 1


def test_a_policy_that_lost_ack_expiry_lets_the_ack_hold_for_good() -> None:
    acked, _ = decide(opened(), Ack("alice"), T0, POLICY)
    without = attrs.evolve(POLICY, ack_expiry=None)
    state, notes = decide(acked, AckExpired(1, T0), T0 + 4 * HOUR, without)
    assert notes == () and state.incident is not None
    assert state.incident.acknowledged and state.incident.deadline is None


def test_without_ack_expiry_an_ack_has_no_deadline() -> None:
    policy = attrs.evolve(POLICY, ack_expiry=None)
    acked, _ = decide(opened(policy), Ack("alice"), T0, policy)
    assert acked.incident is not None and acked.incident.deadline is None


# A walk of random events at random times: whatever comes, no page is sent twice under one id,
# an acknowledged incident pages nobody until its expiry, and never before it.
_events = st.one_of(
    st.builds(Ack, by=st.sampled_from(["alice", "bob"]), via=st.sampled_from(["sms", "link"])),
    st.just("due"),  # whatever the scheduler would hand over now
    st.builds(Alert, message=st.just("again")),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(_events, st.floats(min_value=0, max_value=6 * HOUR)), max_size=40),
    expiry=st.sampled_from([60.0, HOUR, 4 * HOUR]),
    repeat=st.integers(min_value=0, max_value=2),
)
def test_acks_and_expiries_page_each_step_once_and_never_early(
    steps: list[tuple[Event | str, float]], expiry: float, repeat: int
) -> None:
    policy = attrs.evolve(POLICY, ack_expiry=expiry, repeat=repeat)
    state = opened(policy)
    seen: set[str] = set()
    now = T0
    for event, wait in steps:
        now += wait
        incident = state.incident
        assert incident is not None
        if event == "due":
            if incident.deadline is None:
                continue
            if incident.acknowledged_at is not None:
                due: Event = AckExpired(incident.number, incident.acknowledged_at)
            else:
                due = Timeout(incident.number, incident.round, incident.level)
            early = now < incident.deadline
            after, notes = decide(state, due, now, policy)
            if early:
                assert (after, notes) == (state, ())
            elif incident.acknowledged:
                assert after.incident is not None and not after.incident.acknowledged
                assert [(n.level, n.round) for n in notes] == [(1, incident.round + 1)]
        else:
            assert not isinstance(event, str)
            after, notes = decide(state, event, now, policy)
            if incident.acknowledged:
                assert notes == ()
        ids = [n.id for n in notes]
        assert seen.isdisjoint(ids), ids
        seen.update(ids)
        state = after
        if isinstance(event, Ack) and after.incident is not None:
            assert after.incident.acknowledged
            assert after.incident.deadline is not None
