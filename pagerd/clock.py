"""The daemon's one notion of time.

Deadlines are stored as wall-clock seconds so they mean the same after a restart, but the running
daemon measures time with Trio's monotonic clock: a step of the system clock does not fire or delay
every timer at once. In tests Trio's clock is a `MockClock`, so hours pass in milliseconds.
"""

from __future__ import annotations

import time
from typing import Final

import trio

# Wall -> Trio -> wall can lose a float ulp (~0.2 us at today's epoch). Waking this much later
# guarantees the wall-clock reading on waking is not below the deadline it waited for.
_SLACK: Final = 1e-6


class Clock:
    def __init__(self, wall_at_start: float | None = None) -> None:
        """Anchor to the wall clock once; call inside `trio.run`."""
        start = time.time() if wall_at_start is None else wall_at_start
        self._offset = start - trio.current_time()

    def now(self) -> float:
        """Seconds since the epoch, advancing with Trio's clock."""
        return trio.current_time() + self._offset

    def trio_deadline(self, wall: float) -> float:
        """The Trio time at which the wall-clock time `wall` has surely been reached."""
        return wall - self._offset + _SLACK
