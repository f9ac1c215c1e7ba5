"""The core against a plain model, over any sequence of events and time passing.

The model is written differently from `decide` on purpose: it walks a precomputed list of
escalation steps instead of computing the next level and round, so the two agreeing means
something.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pager.domain import (
    Ack,
    Alert,
    Event,
    Healthy,
    Heartbeat,
    HeartbeatMissed,
    Policy,
    Rejected,
    Resolve,
    ServiceState,
    Source,
    Timeout,
    decide,
)
from tests import strategies

T0 = 1_800_000_000.0
Step = tuple[int, int]  # (round, level)
Sent = tuple[int, int, int, str]  # (incident, round, level, target)
sources = st.builds(Source, st.sampled_from(["prom", "pd"]), st.sampled_from(["a", "b"]))


class Model:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.steps: list[Step] = [
            (r, lv) for r in range(1, policy.repeat + 2) for lv in range(1, len(policy.levels) + 1)
        ]
        self.incident = 0
        self.open = False
        self.acked = False
        self.step = 0
        self.due = 0.0
        self.alerts = 0
        # The heartbeat: the configured interval (None: none), the monitor's state.
        self.interval: float | None = None
        self.armed = False  # a monitor exists
        self.heartbeat_due: float | None = None  # None while armed: missed
        self.heartbeat_only = False
        # What integrations report firing, and whether a plain alert holds the incident open.
        self.firing: set[Source] = set()
        self.held = False

    @property
    def exhausted(self) -> bool:
        return self.step >= len(self.steps)

    def notify(self, now: float) -> list[Sent]:
        round_, level = self.steps[self.step]
        self.due = now + self.policy.levels[level - 1].ack_timeout
        seen: list[str] = []
        for target in self.policy.levels[level - 1].targets:
            if str(target) not in seen:
                seen.append(str(target))
        return [(self.incident, round_, level, t) for t in seen]

    def open_incident(self, now: float, heartbeat_only: bool, held: bool = False) -> list[Sent]:
        self.incident += 1
        self.open, self.acked, self.step, self.alerts = True, False, 0, 1
        self.heartbeat_only, self.held = heartbeat_only, held
        return self.notify(now)

    def close(self, now: float) -> None:
        self.open, self.held = False, False
        self.firing.clear()
        if self.armed and self.heartbeat_due is None:  # missed: watching again from now
            self.armed = self.interval is not None
            self.heartbeat_due = None if self.interval is None else now + self.interval

    def apply(self, event: Event, now: float) -> list[Sent] | str:
        if isinstance(event, Alert):
            if event.source is not None:
                if event.source in self.firing:
                    return []
                self.firing.add(event.source)
            if self.open:
                self.alerts += 1
                self.heartbeat_only = False
                self.held = self.held or event.source is None
                return []
            return self.open_incident(now, heartbeat_only=False, held=event.source is None)
        if isinstance(event, Resolve):
            if event.source not in self.firing:
                return []
            self.firing.discard(event.source)
            if self.firing or self.held:
                return []
            if self.interval is not None and self.armed and self.heartbeat_due is None:
                self.heartbeat_only = True  # the missed heartbeat still holds it
                return []
            self.close(now)
            return []
        if isinstance(event, Heartbeat):
            if self.interval is None:
                return "bad_request"
            self.armed, self.heartbeat_due = True, now + self.interval
            if self.open and self.heartbeat_only:
                self.open, self.held = False, False
                self.firing.clear()
            return []
        if isinstance(event, HeartbeatMissed):
            if not self.armed or self.heartbeat_due is None or event.due_at != self.heartbeat_due:
                return []
            if self.interval is None:
                self.armed = False
                return []
            if now < self.heartbeat_due:
                return []
            self.heartbeat_due = None
            if self.open:
                self.alerts += 1
                return []
            return self.open_incident(now, heartbeat_only=True)
        if isinstance(event, Ack):
            if not self.open:
                return "no_open_incident"
            self.acked = True
            return []
        if isinstance(event, Healthy):
            self.close(now)
            return []
        assert isinstance(event, Timeout)
        if not self.open or self.acked or self.exhausted or now < self.due:
            return []
        if (event.incident, event.round, event.level) != (self.incident, *self.steps[self.step]):
            return []
        self.step += 1
        return [] if self.exhausted else self.notify(now)


class PagerMachine(RuleBasedStateMachine):
    @initialize(policy=strategies.policies)
    def start(self, policy: Policy) -> None:
        self.policy = policy
        self.model = Model(policy)
        self.state = ServiceState("svc")
        self.now = T0
        self.sent: set[Sent] = set()

    def feed(self, event: Event) -> None:
        expected = self.model.apply(event, self.now)
        try:
            self.state, notes = decide(
                self.state, event, self.now, self.policy, self.model.interval
            )
        except Rejected as rejected:
            assert expected == rejected.code
            return
        got = [(n.incident, n.round, n.level, str(n.target)) for n in notes]
        assert got == expected
        for step in got:
            assert step not in self.sent, f"notified twice: {step}"
            self.sent.add(step)

    @rule(message=strategies.messages)
    def alert(self, message: str) -> None:
        self.feed(Alert(message))

    @rule(source=sources, message=strategies.messages)
    def integration_alert(self, source: Source, message: str) -> None:
        self.feed(Alert(message, source))

    @rule(source=sources)
    def resolve(self, source: Source) -> None:
        held = self.state.incident is not None and self.state.incident.held_by_alert
        self.feed(Resolve(source))
        if held:
            assert self.state.incident is not None, "a resolve closed what a plain alert holds"

    @rule(by=st.none() | st.sampled_from(["bob", "carol"]))
    def ack(self, by: str | None) -> None:
        self.feed(Ack(by))

    @rule()
    def healthy(self) -> None:
        self.feed(Healthy())

    @rule()
    def heartbeat(self) -> None:
        self.feed(Heartbeat())

    @rule(interval=st.none() | st.sampled_from([30.0, 300.0, 3600.0]))
    def reconfigure(self, interval: float | None) -> None:
        """A reload sets, changes or removes the heartbeat: the next decision sees it."""
        self.model.interval = interval

    @rule(seconds=st.floats(min_value=0, max_value=3000, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        """Time passes as in the daemon: each deadline reached fires its own event, on time,
        the earlier first (the escalation's and the heartbeat's are held apart)."""
        until = self.now + seconds
        while True:
            due: list[tuple[float, Event]] = []
            incident = self.state.incident
            if incident is not None and incident.deadline is not None:
                due.append(
                    (incident.deadline, Timeout(incident.number, incident.round, incident.level))
                )
            monitor = self.state.heartbeat
            if monitor is not None and monitor.due_at is not None:
                due.append((monitor.due_at, HeartbeatMissed(monitor.due_at)))
            due = [(at, event) for at, event in due if at <= until]
            if not due:
                break
            at, event = min(due, key=lambda d: d[0])
            self.now = max(self.now, at)
            self.feed(event)
        self.now = until

    @rule(
        offset=st.floats(min_value=-600, max_value=600, allow_nan=False),
        seconds=st.floats(min_value=0, max_value=1000, allow_nan=False),
    )
    def any_heartbeat_missed(self, offset: float, seconds: float) -> None:
        """A miss for any deadline, stale or not, early or late: only the current, due one
        pages, and only once."""
        self.now += seconds
        monitor = self.state.heartbeat
        base = monitor.due_at if monitor is not None and monitor.due_at is not None else T0
        self.feed(HeartbeatMissed(base + offset))

    @precondition(
        lambda self: self.state.heartbeat is not None and self.state.heartbeat.due_at is not None
    )
    @rule()
    def current_heartbeat_missed(self) -> None:
        """The current deadline's miss, whenever it comes (early ones change nothing)."""
        monitor = self.state.heartbeat
        assert monitor is not None and monitor.due_at is not None
        self.feed(HeartbeatMissed(monitor.due_at))

    @rule(
        incident=st.integers(0, 3),
        round_=st.integers(1, 3),
        level=st.integers(1, 3),
        seconds=st.floats(min_value=0, max_value=1000, allow_nan=False),
    )
    def any_timeout(self, incident: int, round_: int, level: int, seconds: float) -> None:
        """A timer from any step, stale or not, early or late: only the due, current one pages."""
        self.now += seconds
        self.feed(Timeout(incident, round_, level))

    @precondition(lambda self: self.state.incident is not None)
    @rule()
    def current_timeout_too_early(self) -> None:
        incident = self.state.incident
        assert incident is not None
        self.feed(Timeout(incident.number, incident.round, incident.level))

    @invariant()
    def agrees_with_model(self) -> None:
        incident = self.state.incident
        assert (incident is not None) == self.model.open
        assert self.state.healthy == (incident is None)
        if incident is None:
            return
        assert incident.number == self.model.incident
        assert incident.alerts == self.model.alerts
        assert incident.acknowledged == self.model.acked
        assert incident.exhausted == self.model.exhausted
        assert incident.heartbeat_only == self.model.heartbeat_only
        assert incident.held_by_alert == self.model.held

    @invariant()
    def firing_agrees_with_model(self) -> None:
        assert self.state.firing == self.model.firing

    @invariant()
    def heartbeat_agrees_with_model(self) -> None:
        monitor = self.state.heartbeat
        assert (monitor is not None) == self.model.armed
        if monitor is not None:
            assert monitor.due_at == self.model.heartbeat_due

    @invariant()
    def a_miss_is_never_forgotten(self) -> None:
        """A monitor that missed waits only while an incident is open to say so; an incident
        open for a miss alone is one whose monitor missed."""
        monitor, incident = self.state.heartbeat, self.state.incident
        if monitor is not None and monitor.missed:
            assert incident is not None
        if incident is not None and incident.heartbeat_only:
            assert monitor is not None and monitor.missed

    @invariant()
    def timeout_pending_exactly_when_unhealthy_unacked_not_exhausted(self) -> None:
        incident = self.state.incident
        pending = incident is not None and incident.deadline is not None
        expected = incident is not None and not incident.acknowledged and not incident.exhausted
        assert pending == expected


PagerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestPagerMachine = PagerMachine.TestCase
