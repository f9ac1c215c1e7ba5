"""One task holding every escalation deadline, so that a service needs no live task to be paged.

Entries are never removed: when a deadline passes, its `Timeout` goes to the service's actor and
the pure core ignores it if it has gone stale (acknowledged, recovered, escalated already). That
keeps this module free of any knowledge of incidents.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Final

import trio

from pager.domain import ServiceState, Timeout
from pagerd.clock import Clock

# A timeout that finds its service's inbox full is offered again this much later.
RETRY_DELAY: Final = 0.01

# Hands a due timeout to the service; False if it cannot take it now.
Deliver = Callable[[str, Timeout], bool]


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, str, Timeout]] = []
        self._seq = 0
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, state: ServiceState) -> None:
        """Remember `state`'s escalation deadline, if it has one."""
        incident = state.incident
        if incident is None or incident.deadline is None:
            return
        timeout = Timeout(incident.number, incident.round, incident.level)
        self._push(incident.deadline, state.name, timeout)

    def _push(self, at: float, service: str, timeout: Timeout) -> None:
        earliest = self._heap[0][0] if self._heap else math.inf
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, service, timeout))
        if at < earliest:
            self._changed.set()

    async def run(self, deliver: Deliver) -> None:
        """Hand each timeout to `deliver` when its deadline passes; runs until cancelled."""
        while True:
            now = self._clock.now()
            handed = 0
            refused = False
            while self._heap and self._heap[0][0] <= now:
                _, _, service, timeout = self._heap[0]
                if not deliver(service, timeout):
                    refused = True  # busy: leave it (and everything after it) for a moment
                    break
                heapq.heappop(self._heap)
                handed += 1
                if handed % 256 == 0:
                    # A restart can find thousands overdue: let the actors and clients run too.
                    await trio.lowlevel.checkpoint()
                    now = self._clock.now()
            if refused:
                await trio.sleep(RETRY_DELAY)
                continue
            self._changed = trio.Event()
            wake = self._clock.trio_deadline(self._heap[0][0]) if self._heap else math.inf
            with trio.move_on_at(wake):
                await self._changed.wait()
