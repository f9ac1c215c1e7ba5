"""Delivery of committed notifications, apart from the actors so that no actor waits on it.

Every notification is first an outbox row written with the decision that made it. This task
hands pending rows to the transport, then marks them sent. A crash after the transport took a
notification and before the mark is committed re-delivers it on restart: at least once, never
zero times; once in every other case.

Memory is bounded: past `capacity` queued notifications, new ones stay only in the database and
are read back from there once the queue has drained.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Final

import trio

from pager.domain import Notify
from pager.ports import Transport
from pagerd.clock import Clock
from pagerd.commits import Committer
from pagerd.offload import Offload
from pagerd.store import Delivered, Store, StoreError

log = logging.getLogger(__name__)

MAX_BATCH: Final = 256
RETRY_MIN: Final = 0.5
RETRY_MAX: Final = 60.0


class Outbox:
    def __init__(
        self,
        store: Store,
        committer: Committer,
        transport: Transport,
        offload: Offload,
        clock: Clock,
        capacity: int = 10_000,
    ) -> None:
        self._store = store
        self._committer = committer
        self._transport = transport
        self._offload = offload
        self._clock = clock
        self._capacity = capacity
        self._queue: deque[Notify] = deque()
        self._known: set[str] = set()  # queued or being delivered: never queued twice
        self._in_database_only = True  # at start, whatever is pending is only in the database
        self._wake = trio.Event()
        self.delivered = 0

    def add(self, notifications: Iterable[Notify]) -> None:
        """Queue committed notifications for delivery; never blocks."""
        for n in notifications:
            if n.id in self._known:
                continue
            if len(self._queue) >= self._capacity:
                self._in_database_only = True
                continue
            self._queue.append(n)
            self._known.add(n.id)
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        backoff = _Backoff()
        while True:
            if not self._queue and self._in_database_only:
                await self._read_back()
            if not self._queue:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
            now = self._clock.now()
            try:
                await self._transport.deliver(batch, now)
            except Exception as exc:
                log.error("delivery of %d notification(s) failed: %s", len(batch), exc)
                await backoff.wait()
                continue
            backoff.reset()
            for n in batch:
                log.info(
                    "notified service=%s incident=%s level=%d round=%d target=%s",
                    n.service,
                    n.incident_id,
                    n.level,
                    n.round,
                    n.target,
                )
            await self._mark_sent(batch, now)
            for _ in batch:
                self._known.discard(self._queue.popleft().id)
            self.delivered += len(batch)

    async def _mark_sent(self, batch: list[Notify], now: float) -> None:
        # Delivered already: retry only the mark, or a failing disk would double every page.
        backoff = _Backoff()
        while True:
            try:
                await self._committer.commit([Delivered(tuple(n.id for n in batch), now)])
                return
            except StoreError as exc:
                log.error("cannot mark %d notification(s) sent: %s", len(batch), exc)
                await backoff.wait()

    async def _read_back(self) -> None:
        # Only ever runs with the queue empty and nothing being delivered, so a row it reads is
        # either new to us or was queued by an actor meanwhile (skipped by `_known`).
        rows = await self._offload(lambda: self._store.pending(0, self._capacity))
        self._in_database_only = len(rows) >= self._capacity
        self.add(n for _, n in rows)


class _Backoff:
    def __init__(self) -> None:
        self._delay = RETRY_MIN

    async def wait(self) -> None:
        await trio.sleep(self._delay)
        self._delay = min(self._delay * 2, RETRY_MAX)

    def reset(self) -> None:
        self._delay = RETRY_MIN
