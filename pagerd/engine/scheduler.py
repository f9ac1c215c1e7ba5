"""One task holding every escalation deadline, so that a service needs no live task to be paged.

A service has at most one deadline armed: that of its open incident's current step. Arming it
again replaces the one before (an entry left behind in the heap is skipped when it comes up), so
an acknowledged or closed incident stops counting as soon as its new state is committed. When a
deadline passes, its `Timeout` goes to the service's actor and stays *handed* until the actor
has committed what it decided: if that commit fails, the actor re-arms it with `retry`, after a
back-off, so that one failed commit never ends an escalation.

The same class holds the heartbeat deadlines, in a second instance (`Scheduler(clock, heartbeat)`):
a service's monitor is one more deadline, whose `HeartbeatMissed` goes to the actor the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

import trio

from pager.domain import AckExpired, HeartbeatMissed, ServiceState, Timeout
from pagerd.timing.clock import Clock
from pagerd.timing.timers import Timers, backoff_ceiling

log = logging.getLogger("pagerd.scheduler")

# Too many actors run for timeouts already: the due ones are offered again this much later.
RETRY_DELAY: Final = 0.01
# A timeout whose commit failed is offered again after RETRY_MIN, doubling to RETRY_MAX while
# its commits keep failing: soon after a brief error, without spinning on a broken disk.
RETRY_MIN: Final = 0.5
RETRY_MAX: Final = 30.0

# Stale entries the heap may hold beyond twice the deadlines armed, before they are dropped.
COMPACT_SLACK: Final = 1024

Due: TypeAlias = Timeout | HeartbeatMissed | AckExpired
# Hands a due timeout to the service; False if it cannot take it now.
Deliver = Callable[[str, Due], bool]
# The event a state's deadline is for (it names the step, so a stale one is recognised), or None.
StepOf: TypeAlias = Callable[[ServiceState], Due | None]


class _Armed:
    """A service's armed deadline: the step it is for, and whether it was handed over."""

    __slots__ = ("handed", "step")

    def __init__(self, step: Due) -> None:
        self.step = step
        self.handed = False


def escalation(state: ServiceState) -> Timeout | AckExpired | None:
    """The timeout of the open incident's current step, if it has one to come; for an
    acknowledged incident, the expiry of its acknowledgement (the policy's `ack_expiry`), which
    is kept in the same deadline: as durable, and moved the same way at a clock step."""
    incident = state.incident
    if incident is None or incident.deadline is None:
        return None
    if incident.acknowledged_at is not None:
        return AckExpired(incident.number, incident.acknowledged_at)
    return Timeout(incident.number, incident.round, incident.level)


def heartbeat(state: ServiceState) -> HeartbeatMissed | None:
    """The miss of the service's next check-in, if its monitor is armed."""
    monitor = state.heartbeat
    if monitor is None or monitor.due_at is None:
        return None
    return HeartbeatMissed(monitor.due_at)


def _at(due: Due, state: ServiceState) -> float:
    if isinstance(due, HeartbeatMissed):
        return due.due_at
    assert state.incident is not None and state.incident.deadline is not None
    return state.incident.deadline


class Scheduler:
    def __init__(self, clock: Clock, step: StepOf = escalation) -> None:
        self._clock = clock
        self._step = step
        self._armed: dict[str, _Armed] = {}
        # The heap holds each _Armed object; one that is no longer the service's is stale.
        self._timers: Timers[tuple[str, _Armed]] = Timers(clock)
        self._failures: dict[str, int] = {}  # consecutive failed commits of a handed timeout

    def __len__(self) -> int:
        """Deadlines waiting: one for each open, unacknowledged incident with a step to come."""
        return len(self._armed)

    def schedule(self, state: ServiceState) -> None:
        """Arm `state`'s escalation deadline in place of the service's previous one, or disarm
        it if `state` has none. `state` must be committed: a deadline follows what is on disk."""
        name = state.name
        self._failures.pop(name, None)
        step = self._step(state)
        if step is None:
            self._armed.pop(name, None)
            return
        armed = self._armed.get(name)
        if armed is not None and armed.step == step and not armed.handed:
            return  # armed already, for this very step
        self._arm(name, step, _at(step, state))

    def schedule_all(self, states: Iterable[ServiceState]) -> None:
        """`schedule` each of `states`, in linear time (a restart can bring 100,000)."""
        entries = []
        for state in states:
            step = self._step(state)
            if step is not None:
                armed = self._armed[state.name] = _Armed(step)
                entries.append((_at(step, state), (state.name, armed)))
        self._timers.push_many(entries)

    def forget(self, names: Iterable[str]) -> None:
        """Disarm the deadlines of `names` (their shard was dropped: another node fires them
        now). Their heap entries are skipped when they come up, as any replaced."""
        for name in names:
            self._armed.pop(name, None)
            self._failures.pop(name, None)

    def hurry(self, state: ServiceState) -> None:
        """Hand `state`'s deadline over now rather than when it is due: what the actor decides
        of it no longer waits for that time (a heartbeat a reload removed, disarmed at once)."""
        step = self._step(state)
        if step is not None:
            self._failures.pop(state.name, None)
            self._arm(state.name, step, self._clock.now())

    def retry(self, state: ServiceState) -> None:
        """The commit of what the service's actor decided failed, and `state` is the service's
        last committed state: if a timeout of its was handed over, offer it again after a
        back-off (growing while commits keep failing). A deadline still waiting is left as
        it was."""
        name = state.name
        step = self._step(state)
        armed = self._armed.get(name)
        if step is None or (armed is not None and armed.step == step and not armed.handed):
            return
        self._back_off(name, step, _at(step, state))

    def _back_off(self, name: str, step: Due, deadline: float) -> None:
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay = backoff_ceiling(RETRY_MIN, RETRY_MAX, failures)
        self._arm(name, step, max(deadline, self._clock.now() + delay))

    def decided(self, state: ServiceState) -> None:
        """The service's actor committed its decisions on a handed timeout (or found nothing to
        commit), and `state` is the result: arm its deadline if it is not armed yet."""
        armed = self._armed.get(state.name)
        if armed is None or armed.handed:
            self.schedule(state)
        else:
            self._failures.pop(state.name, None)

    def _arm(self, name: str, step: Due, at: float) -> None:
        armed = self._armed[name] = _Armed(step)
        self._timers.push(at, (name, armed))
        if len(self._timers) > 2 * len(self._armed) + COMPACT_SLACK:
            # Entries replaced or disarmed leave the heap only when they come up: a storm that
            # opens and closes incidents for hours would otherwise fill it with them.
            self._timers.keep(lambda item: self._armed.get(item[0]) is item[1])

    async def run(self, deliver: Deliver) -> None:
        """Hand each timeout to `deliver` when its deadline passes; runs until cancelled."""
        while True:
            now = self._clock.now()
            handed = 0
            refused = False
            while (item := self._timers.due(now)) is not None:
                name, armed = item
                if self._armed.get(name) is not armed:
                    self._timers.pop()  # replaced or disarmed since it was pushed
                    continue
                try:
                    taken = deliver(name, armed.step)
                except Exception:
                    # A bug must neither take paging down nor drop this deadline.
                    log.exception("cannot hand over the timeout of service=%s", name)
                    self._timers.pop()
                    self._back_off(name, armed.step, now)
                    continue
                if not taken:
                    # Too many actors run for timeouts: this one and those after it wait for
                    # some to finish. A timeout never waits for another service's events.
                    refused = True
                    break
                self._timers.pop()
                armed.handed = True
                handed += 1
                if handed % 256 == 0:
                    # A restart can find thousands overdue: let the actors and clients run too.
                    await trio.lowlevel.checkpoint()
                    now = self._clock.now()
            if refused:
                await trio.sleep(RETRY_DELAY)
            else:
                await self._timers.wait()
