"""Replies, and each connection's queue of them in request order.

A connection's reader puts a reply in the queue as soon as its request is routed; an actor sets
it once its event is decided and committed, and the connection's writer sends every reply at the
head of the queue that is set, all in one write. The writer is woken only when the reply at the
head is set, not once for each reply queued and again for each one set: for a client that sends
one request at a time, that is one wake-up a request instead of two.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio


class Reply:
    """Where one request's answer goes: set once, by an actor or at once for a bad request.

    `op` and `result` (`ok` or the error code) are what the metrics count.
    """

    __slots__ = ("_line", "_queue", "done", "op", "result")
    terse = False  # a socket client is answered with the service's status

    def __init__(self, op: str) -> None:
        self.op = op
        self.result = ""
        self.done = False
        self._line = b""
        self._queue: ReplyQueue | None = None

    def set(self, line: bytes, result: str = "ok") -> None:
        assert not self.done, "a reply is set once"
        self._line = line
        self.result = result
        self.done = True
        if self._queue is not None:
            self._queue.settled(self)

    @property
    def line(self) -> bytes:
        assert self.done, "the reply is not set yet"
        return self._line


class ReplyQueue:
    """A connection's replies in request order, at most `size` of them: a reader with more to
    queue waits (and so stops reading its client) until the writer has sent some."""

    def __init__(self, size: int, count: Callable[[str, str], None] | None = None) -> None:
        self._size = size
        # Told (op, result) of each reply as it is decided, not when it is written: a metric read
        # next on the connection counts the events before it.
        self._count = count or _ignore
        self._replies: deque[Reply] = deque()
        self._writer = trio.lowlevel.ParkingLot()
        self._reader = trio.lowlevel.ParkingLot()
        self._closed = False
        self._unsettled = 0  # replies queued and not set yet
        self._settling = trio.lowlevel.ParkingLot()  # a reader waiting for them all

    async def put(self, reply: Reply) -> None:
        while len(self._replies) >= self._size:
            await self._reader.park()
        if self._closed:
            raise trio.ClosedResourceError("the reply queue is closed")
        reply._queue = self
        self._replies.append(reply)
        if not reply.done:
            self._unsettled += 1
            return
        self._count(reply.op, reply.result)
        if len(self._replies) == 1:
            self._writer.unpark()

    def close(self) -> None:
        """Nothing more will be put: the writer ends once every reply queued is sent."""
        self._closed = True
        self._writer.unpark()

    def settled(self, reply: Reply) -> None:
        self._count(reply.op, reply.result)
        self._unsettled -= 1
        if not self._unsettled:
            self._settling.unpark_all()
        if self._replies and self._replies[0] is reply:
            self._writer.unpark()

    async def wait_settled(self) -> None:
        """Until every reply queued so far is set: their events are decided and committed, so
        a read served next sees them, as its place in the order of replies says it does."""
        while self._unsettled:
            await self._settling.park()

    async def take(self, most: int) -> list[Reply]:
        """The replies at the head that are set, at least one and at most `most`, waiting for
        the first; none once the queue is closed and empty."""
        replies = self._replies
        while not (replies and replies[0].done):
            if self._closed and not replies:
                return []
            await self._writer.park()
        taken: list[Reply] = []
        while replies and replies[0].done and len(taken) < most:
            taken.append(replies.popleft())
        self._reader.unpark()
        return taken


def _ignore(op: str, result: str) -> None:
    pass
