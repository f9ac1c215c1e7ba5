"""Connection timeouts, kept by one task for every connection.

A connection that sends nothing for `idle_timeout` stops being read; one that does not take its
replies for `write_timeout` is closed. A cancel scope around each read and each write would say
the same, but entering and leaving one costs more than the rest of a small request's handling,
so each connection only notes when it starts and ends waiting, and one task closes whichever has
waited too long, sleeping until the earliest such moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from pagerd.config import Limits


class Watch:
    """One connection's waits: on its client's next bytes, and on its client taking replies."""

    __slots__ = ("connection", "reading", "receiving_since", "writing_since")

    def __init__(self, reading: trio.CancelScope, connection: trio.CancelScope) -> None:
        self.reading = reading  # cancelled when idle: replies already due still go out
        self.connection = connection  # cancelled when a write is stuck: all of it ends
        self.receiving_since: float | None = None
        self.writing_since: float | None = None

    def received(self) -> None:
        self.receiving_since = None

    def written(self) -> None:
        self.writing_since = None


class Watchdog:
    def __init__(self, limits: Callable[[], Limits]) -> None:
        self._limits = limits  # read at each check: a reload may change them
        self._watches: set[Watch] = set()
        self._next = math.inf  # when the task wakes next
        self._sleep = trio.CancelScope()

    def watch(self, reading: trio.CancelScope, connection: trio.CancelScope) -> Watch:
        watch = Watch(reading, connection)
        self._watches.add(watch)
        return watch

    def forget(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def receiving(self, watch: Watch) -> None:
        now = trio.current_time()
        watch.receiving_since = now
        self._by(now + self._limits().idle_timeout)

    def writing(self, watch: Watch) -> None:
        now = trio.current_time()
        watch.writing_since = now
        self._by(now + self._limits().write_timeout)

    def wake(self) -> None:
        """Check now: the limits changed."""
        self._by(-math.inf)

    def _by(self, deadline: float) -> None:
        # Only a wait that ends before the task's next wake-up needs to move it.
        if deadline < self._next:
            self._next = deadline
            self._sleep.deadline = deadline

    async def run(self) -> None:
        """Close stale connections until cancelled."""
        while True:
            self._next = self._check(trio.current_time())
            with trio.CancelScope(deadline=self._next) as self._sleep:
                await trio.sleep_forever()

    def _check(self, now: float) -> float:
        """Stop what has waited too long; when the next wait that is still going would."""
        limits = self._limits()
        earliest = math.inf
        for watch in self._watches:
            if watch.receiving_since is not None:
                due = watch.receiving_since + limits.idle_timeout
                if now >= due:
                    watch.receiving_since = None
                    watch.reading.cancel()
                else:
                    earliest = min(earliest, due)
            if watch.writing_since is not None:
                due = watch.writing_since + limits.write_timeout
                if now >= due:
                    watch.writing_since = None
                    watch.connection.cancel()
                else:
                    earliest = min(earliest, due)
        return earliest
