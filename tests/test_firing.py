"""Alerts that integrations resolve themselves: the firing set of `decide`, by example.

The rules of issue 13: resolved means healthy only when nothing that made the service unhealthy
through an integration is still firing; a resend of an alert still firing pages nobody and
changes nothing; alerts are told apart by their key (fingerprint, dedup_key), never by text.
"""

from __future__ import annotations

import attrs
import pytest

from pager.domain import (
    MAX_FIRING,
    Ack,
    Alert,
    Event,
    Healthy,
    Level,
    Policy,
    Rejected,
    Resolve,
    ServiceState,
    Source,
    Target,
    decide,
)

T0 = 1_800_000_000.0
POLICY = Policy((Level((Target.parse("email:alice@example.com"),), 300.0),))


def run(events: list[Event], state: ServiceState | None = None) -> tuple[ServiceState, int]:
    """The state after `events`, and how many notifications they sent."""
    state = state or ServiceState("api")
    sent = 0
    for event in events:
        state, notes = decide(state, event, T0, POLICY)
        sent += len(notes)
    return state, sent


def am(key: str) -> Source:
    return Source("prom", key)


def test_one_resolved_among_five_firing_closes_nothing() -> None:
    state, sent = run([Alert("disk full", am(f"f{i}")) for i in range(5)])
    assert sent == 1
    assert state.incident is not None and state.incident.alerts == 5
    state, _ = run([Resolve(am("f2"))], state)
    assert state.incident is not None
    assert state.firing == {am(f"f{i}") for i in (0, 1, 3, 4)}


def test_the_last_resolve_closes() -> None:
    state, _ = run([Alert("a", am("f1")), Alert("b", am("f2")), Resolve(am("f2"))])
    assert state.incident is not None
    state, _ = run([Resolve(am("f1"))], state)
    assert state.healthy and state.firing == frozenset()
    assert state.last_incident == 1


def test_a_resend_of_a_firing_alert_changes_nothing() -> None:
    state, _ = run([Alert("disk full", am("f1"))])
    again, sent = run([Alert("disk full", am("f1")), Alert("other text", am("f1"))], state)
    assert again == state and sent == 0


def test_same_text_different_fingerprints_are_two_alerts() -> None:
    state, _ = run([Alert("disk full", am("f1")), Alert("disk full", am("f2"))])
    assert state.incident is not None and state.incident.alerts == 2
    state, _ = run([Resolve(am("f1"))], state)
    assert state.incident is not None


def test_a_repeated_resolve_or_an_unknown_one_changes_nothing() -> None:
    state, _ = run([Alert("a", am("f1")), Alert("b", am("f2")), Resolve(am("f1"))])
    assert run([Resolve(am("f1")), Resolve(am("never"))], state)[0] == state
    healthy = ServiceState("api", 3)
    assert run([Resolve(am("f1"))], healthy)[0] == healthy


def test_the_same_key_from_another_integration_is_another_alert() -> None:
    state, _ = run([Alert("a", am("k")), Alert("a", Source("pd", "k"))])
    state, _ = run([Resolve(am("k"))], state)
    assert state.incident is not None
    state, _ = run([Resolve(Source("pd", "k"))], state)
    assert state.healthy


def test_healthy_closes_and_forgets_what_fires() -> None:
    state, _ = run([Alert("a", am("f1")), Alert("b", am("f2")), Healthy()])
    assert state.healthy and state.firing == frozenset()
    # Still firing at the sender: its next resend opens a new incident and pages.
    state, sent = run([Alert("a", am("f1"))], state)
    assert state.incident is not None and state.incident.number == 2 and sent == 1


def test_an_alert_without_source_is_not_closed_by_a_resolve_of_nothing() -> None:
    state, _ = run([Alert("from the socket"), Resolve(am("f1"))])
    assert state.incident is not None


def test_an_integration_ack_applies_only_to_what_fires() -> None:
    state, _ = run([Alert("a", Source("pd", "k1"))])
    assert run([Ack("pd", Source("pd", "other"))], state)[0] == state
    acked, _ = run([Ack("pd", Source("pd", "k1"))], state)
    assert acked.incident is not None and acked.incident.acknowledged_by == "pd"
    # After it resolved, a late acknowledge is not an error: nothing to do.
    closed, _ = run([Resolve(Source("pd", "k1"))], acked)
    assert run([Ack("pd", Source("pd", "k1"))], closed)[0] == closed


def test_the_firing_set_is_bounded() -> None:
    firing = frozenset(am(f"f{i}") for i in range(MAX_FIRING))
    state, _ = run([Alert("a", am("f0"))])
    state = attrs.evolve(state, firing=firing)
    with pytest.raises(Rejected) as refused:
        decide(state, Alert("a", am("one more")), T0, POLICY)
    assert refused.value.code == "too_many_alerts"
    # What fires already still repeats and resolves.
    assert run([Alert("a", am("f7"))], state)[0] == state
    assert run([Resolve(am("f7"))], state)[0].firing == firing - {am("f7")}
