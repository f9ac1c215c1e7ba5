"""Things due at wall-clock times, earliest first, and a wait that wakes when the earliest is due
or when an earlier one is added. The scheduler's escalation deadlines and the outbox's retries are
both kept in one of these."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import trio

from pagerd.timing.clock import Clock

T = TypeVar("T")


def backoff_ceiling(initial: float, maximum: float, attempts: int) -> float:
    """The longest wait before attempt `attempts + 1`: `initial` doubled each time, at most
    `maximum`. The exponent is capped first: `2 ** attempts` alone overflows a float past 1,024
    attempts, and an exception here once took the whole daemon down on every restart."""
    return min(maximum, initial * 2.0 ** min(max(attempts - 1, 0), 64))


class Backoff:
    """Waits between tries of something failing (the database): `minimum`, doubled each time
    up to `maximum`; `reset` once it answers again."""

    def __init__(self, minimum: float, maximum: float) -> None:
        self._minimum = minimum
        self._maximum = maximum
        self.delay = minimum

    async def wait(self) -> None:
        await trio.sleep(self.delay)
        self.delay = min(self.delay * 2, self._maximum)

    def reset(self) -> None:
        self.delay = self._minimum


class Timers(Generic[T]):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0  # ties in time keep insertion order, and items are never compared
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, item: T) -> None:
        earliest = self._heap[0][0] if self._heap else math.inf
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, item))
        if at < earliest:
            self._changed.set()

    def push_many(self, items: Iterable[tuple[float, T]]) -> None:
        """Push many at once, in time linear in the size of the heap: for a restart's 100,000
        deadlines, not for a few."""
        earliest = self._heap[0][0] if self._heap else math.inf
        seq = self._seq
        self._heap += [(at, seq := seq + 1, item) for at, item in items]
        self._seq = seq
        heapq.heapify(self._heap)
        if self._heap and self._heap[0][0] < earliest:
            self._changed.set()

    def due(self, now: float) -> T | None:
        """The earliest item if it is due at `now` (it stays until `pop`), else None."""
        if self._heap and self._heap[0][0] <= now:
            return self._heap[0][2]
        return None

    def pop(self) -> T:
        return heapq.heappop(self._heap)[2]

    def keep(self, wanted: Callable[[T], bool]) -> None:
        """Drop every item not `wanted`, in time linear in the size of the heap."""
        self._heap = [entry for entry in self._heap if wanted(entry[2])]
        heapq.heapify(self._heap)

    async def wait(self) -> None:
        """Until the earliest item is due, or an earlier one is pushed."""
        self._changed = trio.Event()
        wake = self._clock.trio_deadline(self._heap[0][0]) if self._heap else math.inf
        with trio.move_on_at(wake):
            await self._changed.wait()
