"""One task holding every escalation deadline, so that a service needs no live task to be paged.

Entries are never removed: when a deadline passes, its `Timeout` goes to the service's actor and
the pure core ignores it if it has gone stale (acknowledged, recovered, escalated already). That
keeps this module free of any knowledge of incidents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

import trio

from pager.domain import ServiceState, Timeout
from pagerd.clock import Clock
from pagerd.timers import Timers

# A timeout that finds its service's inbox full is offered again this much later.
RETRY_DELAY: Final = 0.01

# Hands a due timeout to the service; False if it cannot take it now.
Deliver = Callable[[str, Timeout], bool]


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # (service, incident, round, level): the Timeout is made only when it is due.
        self._timers: Timers[tuple[str, int, int, int]] = Timers(clock)

    def __len__(self) -> int:
        return len(self._timers)

    def schedule(self, state: ServiceState) -> None:
        """Remember `state`'s escalation deadline, if it has one."""
        for deadline, item in _timeouts((state,)):
            self._timers.push(deadline, item)

    def schedule_all(self, states: Iterable[ServiceState]) -> None:
        """`schedule` each of `states`, in linear time (a restart can bring 100,000)."""
        self._timers.push_many(_timeouts(states))

    async def run(self, deliver: Deliver) -> None:
        """Hand each timeout to `deliver` when its deadline passes; runs until cancelled."""
        while True:
            now = self._clock.now()
            handed = 0
            refused = False
            while (item := self._timers.due(now)) is not None:
                service, incident, round, level = item
                if not deliver(service, Timeout(incident, round, level)):
                    refused = True  # busy: leave it (and everything after it) for a moment
                    break
                self._timers.pop()
                handed += 1
                if handed % 256 == 0:
                    # A restart can find thousands overdue: let the actors and clients run too.
                    await trio.lowlevel.checkpoint()
                    now = self._clock.now()
            if refused:
                await trio.sleep(RETRY_DELAY)
            else:
                await self._timers.wait()


def _timeouts(states: Iterable[ServiceState]) -> Iterator[tuple[float, tuple[str, int, int, int]]]:
    for state in states:
        incident = state.incident
        if incident is not None and incident.deadline is not None:
            yield incident.deadline, (state.name, incident.number, incident.round, incident.level)
