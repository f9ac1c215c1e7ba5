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
    EndSilence,
    Event,
    Healthy,
    Heartbeat,
    HeartbeatMissed,
    Policy,
    Rejected,
    Resolve,
    ServiceState,
    Source,
    StartSilence,
    Timeout,
    decide,
)
from pager.silences import Silence
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
        self.step = -1  # the last step notified: -1 before the first (held by a silence)
        self.due = 0.0
        self.alerts = 0
        # Silences: id -> [start, end, ended_at]; `kept` the ids the service's state keeps.
        self.silences: dict[int, list[float | None]] = {}
        self.kept: list[int] = []
        self.held = False
        # The heartbeat: the configured interval (None: none), the monitor's state.
        self.interval: float | None = None
        self.armed = False  # a monitor exists
        self.heartbeat_due: float | None = None  # None while armed: missed
        self.heartbeat_only = False
        # What integrations report firing, and whether a plain alert holds the incident open.
        self.firing: set[Source] = set()
        self.held_by_alert = False

    @property
    def exhausted(self) -> bool:
        return self.step >= len(self.steps)

    def until(self, number: int) -> float:
        start, end, ended = self.silences[number]
        assert start is not None and end is not None
        return end if ended is None else min(end, ended)

    def quiet(self, now: float) -> float | None:
        """The end of the merged span (overlapping or touching silences as one) holding `now`."""
        merged: list[list[float]] = []
        for start, end in sorted(
            (s[0], self.until(n)) for n, s in self.silences.items() if s[0] is not None
        ):
            if end <= start:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return next((end for start, end in merged if start <= now < end), None)

    def current(self) -> tuple[int, int, int]:
        """(incident, round, level) of the step last notified, level 0 before the first."""
        return (self.incident, 1, 0) if self.step < 0 else (self.incident, *self.steps[self.step])

    def advance(self, now: float) -> list[Sent]:
        """The next step is due: held while silenced, else notified (or nothing is left)."""
        if self.step + 1 >= len(self.steps):
            self.step += 1
            self.held = False
            return []
        quiet = self.quiet(now)
        if quiet is not None:
            self.held, self.due = True, quiet
            return []
        self.step += 1
        self.held = False
        return self.notify(now)

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
        self.open, self.acked, self.step, self.alerts = True, False, -1, 1
        self.heartbeat_only, self.held_by_alert = heartbeat_only, held
        return self.advance(now)

    def close(self, now: float) -> None:
        self.open, self.held_by_alert, self.held = False, False, False
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
                self.held_by_alert = self.held_by_alert or event.source is None
                return []
            return self.open_incident(now, heartbeat_only=False, held=event.source is None)
        if isinstance(event, Resolve):
            if event.source not in self.firing:
                return []
            self.firing.discard(event.source)
            if self.firing or self.held_by_alert:
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
                self.open, self.held_by_alert, self.held = False, False, False
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
            self.acked, self.held = True, False
            return []
        if isinstance(event, StartSilence):
            new = event.silence
            if new.ends_at <= now or new.ends_at <= new.starts_at:
                return "bad_request"
            self.kept = [n for n in self.kept if not self.over(n, now)] + [new.id]
            self.silences[new.id] = [new.starts_at, new.ends_at, new.ended_at]
            return self.reconsider(now)
        if isinstance(event, EndSilence):
            if event.id not in self.kept:
                return "not_found"
            if self.over(event.id, now):
                return []
            self.silences[event.id][2] = now
            return self.reconsider(now)
        if isinstance(event, Healthy):
            self.close(now)
            return []
        assert isinstance(event, Timeout)
        if not self.open or self.acked or self.exhausted or (now < self.due and not self.held):
            return []
        if (event.incident, event.round, event.level) != self.current():
            return []
        return self.advance(now)

    def over(self, number: int, now: float) -> bool:
        start = self.silences[number][0]
        assert start is not None
        return self.until(number) <= now or self.until(number) <= start

    def reconsider(self, now: float) -> list[Sent]:
        if self.open and self.held:
            return self.advance(now)
        return []


class PagerMachine(RuleBasedStateMachine):
    @initialize(policy=strategies.policies)
    def start(self, policy: Policy) -> None:
        self.policy = policy
        self.model = Model(policy)
        self.state = ServiceState("svc")
        self.now = T0
        self.sent: set[Sent] = set()
        self.silence_ids = 0

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
        if got:
            assert self.model.quiet(self.now) is None, "paged while silenced"
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

    @rule(
        start=st.sampled_from([0.0, 0.0, 30.0, 600.0, 1800.0]),
        length=st.sampled_from([0.0, 1.0, 60.0, 900.0, 3600.0]),
    )
    def start_silence(self, start: float, length: float) -> None:
        """A silence from now or later, for a while (an empty one is refused)."""
        self.silence_ids += 1
        begins = self.now + start
        self.feed(StartSilence(Silence(self.silence_ids, begins, begins + length, "r", None, 0.0)))

    @rule(pick=st.integers(0, 10))
    def end_silence(self, pick: int) -> None:
        """End a silence, whichever: in force, to come, over, or never seen."""
        self.feed(EndSilence(pick, "bob"))

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
        assert incident.held_by_alert == self.model.held_by_alert
        assert incident.silenced == self.model.held
        if not incident.exhausted:
            assert (incident.number, incident.round, incident.level) == self.model.current()
        if incident.silenced:
            assert incident.deadline == self.model.due

    @invariant()
    def silences_agree_with_model(self) -> None:
        assert [s.id for s in self.state.silences] == self.model.kept
        for silence in self.state.silences:
            assert silence.until == self.model.until(silence.id)

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
