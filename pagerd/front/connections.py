"""The open connections: how many there are, stopping them, and their timeouts.

A connection that sends nothing for `idle_timeout` stops being read, and so does one whose line
has taken `request_timeout` of waiting on its client to arrive whole (bytes trickled one at a time
keep a connection from being idle, not from being slow); one that does not take its replies for
`write_timeout` is closed. A cancel scope around each read and each write would say
the same, but entering and leaving one costs more than the rest of a small request's handling,
so each connection only notes when it starts and ends waiting, and one task closes whichever has
waited too long, sleeping until the earliest such moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import trio

from pagerd.config import Limits


class Connection:
    """One connection's cancel scopes, and its waits: on its client's next bytes, and on its
    client taking replies."""

    __slots__ = (
        "asked_at",
        "line_waited",
        "reading",
        "receiving_since",
        "routing",
        "scope",
        "stopped",
        "writing_since",
    )

    def __init__(self) -> None:
        self.reading = trio.CancelScope()  # cancelled when idle: replies already due still go out
        self.scope = trio.CancelScope()  # cancelled when a write is stuck: all of it ends
        self.receiving_since: float | None = None
        self.writing_since: float | None = None
        # How long the line begun and not yet ended has waited on the client, in all: None when
        # no line is begun. Time the reader spends not reading (its replies are not taken yet) is
        # not the client's, so it does not count.
        self.line_waited: float | None = None
        # Between routing events and queueing their replies the reader must not be cancelled:
        # the events would be decided and their replies never sent. `stop` waits for that.
        self.routing = False
        self.stopped = False
        # When it opened or last sent a valid request: a bad or empty line is no request, and
        # does not keep its slot from a client that needs one (`Connections.make_room`).
        self.asked_at = trio.current_time()

    def requested(self) -> None:
        self.asked_at = trio.current_time()

    def stop(self) -> None:
        """Stop reading (a clean stop, a revoked peer): now, unless the reader is routing
        events and queueing their replies; then once it has (it checks `stopped`)."""
        self.stopped = True
        if not self.routing:
            self.reading.cancel()

    def received(self) -> None:
        if self.line_waited is not None and self.receiving_since is not None:
            self.line_waited += trio.current_time() - self.receiving_since
        self.receiving_since = None

    def line(self, begun: bool, ended: bool) -> None:
        """What the bytes just read did: `ended` a line, and whether one is `begun` after."""
        if not begun:
            self.line_waited = None
        elif ended or self.line_waited is None:
            self.line_waited = 0.0

    def written(self) -> None:
        self.writing_since = None

    def expire(self, now: float, limits: Limits) -> float:
        """Stop what has waited too long; when what still waits will have (inf: nothing)."""
        return min(
            _expired(now, self.receiving_since, limits.idle_timeout, self._stop_reading),
            _expired(now, self._line_since(), limits.request_timeout, self._stop_reading),
            _expired(now, self.writing_since, limits.write_timeout, self._close),
        )

    def _line_since(self) -> float | None:
        """When the line would have begun had all its waiting been one wait."""
        if self.line_waited is None or self.receiving_since is None:
            return None
        return self.receiving_since - self.line_waited

    def _stop_reading(self) -> None:
        self.receiving_since = None
        self.reading.cancel()

    def _close(self) -> None:
        self.writing_since = None
        self.scope.cancel()


def _expired(now: float, since: float | None, timeout: float, stop: Callable[[], None]) -> float:
    if since is None:
        return math.inf
    due = since + timeout
    if now < due:
        return due
    stop()
    return math.inf


class Connections:
    def __init__(self, limits: Callable[[], Limits]) -> None:
        self._limits = limits  # read at each check: a reload may change them
        self._open: set[Connection] = set()
        self._next = math.inf  # when the task wakes next
        self._sleep = trio.CancelScope()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._open)

    def open(self) -> Connection:
        connection = Connection()
        self._open.add(connection)
        return connection

    def close(self, connection: Connection) -> None:
        self._open.discard(connection)

    def make_room(self) -> bool:
        """At `max_connections`: stop reading the connection, among those waiting for their
        client's bytes, whose last valid request (or opening) is oldest, if that is over
        `request_timeout`; whether one was. Bad or empty lines are no requests: four clients
        sending a newline every 2 s held every slot.

        Otherwise connections that merely sit idle (opened, or between requests) would hold every
        slot for `idle_timeout` and lock the monitoring hooks out, as tricklers did before
        `request_timeout`. A connection mid-line is already bounded by `request_timeout`, and one
        being served is not waiting on its client: neither is chosen. The one chosen is closed
        the way an idle one is (its replies due go out first), so for that moment there is one
        connection more than the limit."""
        waits = [
            (c.asked_at, c)
            for c in self._open
            if c.receiving_since is not None and c.line_waited is None
        ]
        if not waits:
            return False
        since, oldest = min(waits, key=lambda wait: wait[0])
        if trio.current_time() - since < self._limits().request_timeout:
            return False
        oldest._stop_reading()
        return True

    def receiving(self, connection: Connection) -> None:
        now, limits = trio.current_time(), self._limits()
        connection.receiving_since = now
        if connection.line_waited is None:
            self._by(now + limits.idle_timeout)
        else:
            left = limits.request_timeout - connection.line_waited
            self._by(now + min(limits.idle_timeout, left))

    def writing(self, connection: Connection) -> None:
        now = trio.current_time()
        connection.writing_since = now
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
            limits, now = self._limits(), trio.current_time()
            self._next = min((c.expire(now, limits) for c in self._open), default=math.inf)
            with trio.CancelScope(deadline=self._next) as self._sleep:
                await trio.sleep_forever()
