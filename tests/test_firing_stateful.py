"""The firing set of `decide` against a plain model, over any sequence of alerts and resolves
from two integrations, socket alerts, acks and `healthy`: a socket alert holds the incident
open, so that no integration's resolve closes it (only `healthy` does)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pager.domain import (
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
sources = st.builds(Source, st.sampled_from(["prom", "pd"]), st.sampled_from(["a", "b", "c"]))


class FiringMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ServiceState("svc")
        self.firing: set[Source] = set()
        self.open = False
        self.held = False  # a socket alert came while open: only `healthy` closes
        self.incidents = 0
        self.alerts = 0
        self.pages = 0

    def feed(self, event: Event) -> int:
        try:
            self.state, notes = decide(self.state, event, T0, POLICY)
        except Rejected as rejected:
            return -1 if rejected.code == "no_open_incident" else -2
        self.pages += len(notes)
        return len(notes)

    @rule(source=sources, message=st.sampled_from(["disk full", "down"]))
    def alert(self, source: Source, message: str) -> None:
        before = self.state
        sent = self.feed(Alert(message, source))
        if source in self.firing:
            assert self.state == before and sent == 0, "a resend changes nothing"
            return
        self.firing.add(source)
        self.held = self.held and self.open
        self.alerts = self.alerts + 1 if self.open else 1
        assert sent == (0 if self.open else 1)
        self.incidents += not self.open
        self.open = True

    @rule()
    def socket_alert(self) -> None:
        sent = self.feed(Alert("from the socket"))
        self.held = True
        self.alerts = self.alerts + 1 if self.open else 1
        assert sent == (0 if self.open else 1)
        self.incidents += not self.open
        self.open = True

    @rule(source=sources)
    def resolve(self, source: Source) -> None:
        before = self.state
        self.feed(Resolve(source))
        if source not in self.firing:
            assert self.state == before
            return
        self.firing.discard(source)
        if self.held:
            assert self.state.incident is not None, "a resolve closed what a socket alert holds"
        if not self.firing and not self.held:
            self.open = False

    @rule(source=st.none() | sources)
    def ack(self, source: Source | None) -> None:
        result = self.feed(Ack("someone", source))
        if source is not None and source not in self.firing:
            assert result == 0
        elif not self.open:
            assert result == -1

    @rule()
    def healthy(self) -> None:
        self.feed(Healthy())
        self.firing.clear()
        self.open = False
        self.held = False

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.state.firing == self.firing
        assert (self.state.incident is not None) == self.open
        assert self.state.last_incident == self.incidents
        assert self.pages == self.incidents, "one page an incident (a one-step policy)"
        if self.state.incident is not None:
            assert self.state.incident.alerts == self.alerts
            assert self.state.incident.held_by_alert == self.held

    @invariant()
    def firing_only_while_open(self) -> None:
        assert not self.state.firing or self.state.incident is not None


FiringMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestFiringMachine = FiringMachine.TestCase
