"""Group commit: many actors' writes share one transaction of the store and one fsync.

Actors hand their writes to `commit()` and wait; a single writer task takes everything queued,
writes it in one transaction off the event loop, then wakes each waiter with the outcome. Under
load the batches grow by themselves, so durability does not cap throughput.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from pagerd.operations.metrics import Metrics
from pagerd.storage.offload import Offload
from pagerd.storage.port import Storage, StoreError, StoreUnavailable, Write

log = logging.getLogger("pagerd.commits")

MAX_BATCH: Final = 1024


@attrs.define
class _Waiter:
    writes: Sequence[Write]
    done: trio.Event = attrs.Factory(trio.Event)
    error: StoreError | None = None


@attrs.frozen
class CommitStatistics:
    commits: int
    writes: int
    failures: int
    last_batch: int


class Committer:
    def __init__(
        self,
        store: Storage,
        offload: Offload,
        metrics: Metrics | None = None,
        queue_size: int = 1024,
    ) -> None:
        self._store = store
        self._offload = offload
        self._metrics = metrics or Metrics()
        self._send, self._receive = trio.open_memory_channel[_Waiter](queue_size)
        self._commits = 0
        self._writes = 0
        self._failures = 0
        self._last_batch = 0

    async def commit(self, writes: Sequence[Write]) -> None:
        """Return once `writes` are durable; raise `StoreError` if they were not written."""
        waiter = _Waiter(writes)
        await self._send.send(waiter)  # a full queue is back-pressure on the actors
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self) -> None:
        """The writer task: runs until cancelled."""
        async with self._receive:
            while True:
                batch = [await self._receive.receive()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._write(batch)

    async def _write(self, batch: list[_Waiter]) -> None:
        writes = [w for waiter in batch for w in waiter.writes]
        started = trio.current_time()
        try:
            await self._offload(lambda: self._store.write(writes))
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, StoreUnavailable):
                # Not the disk (full, I/O error, locked) but what was written: one waiter's
                # bad row must not refuse everybody else's events. Each is written alone.
                log.error(
                    "commit of %d write(s) failed, writing each part alone: %r", len(writes), exc
                )
                for waiter in batch:
                    await self._write([waiter])
                return
            # Disk full, I/O error, a lock held too long (or a bug): nothing of the batch was
            # written, and every waiter is told so rather than "ok". The next batch tries again.
            self._failures += 1
            self._metrics.commit_failures.inc()
            if isinstance(exc, StoreError):
                log.error("commit of %d write(s) failed: %s", len(writes), exc)
            else:
                log.exception("commit of %d write(s) failed", len(writes))
            error = StoreError(f"the database could not record this: {exc}")
            for waiter in batch:
                waiter.error = error
        else:
            self._commits += 1
            self._writes += len(writes)
            self._last_batch = len(batch)
            self._metrics.commit_seconds.observe(trio.current_time() - started)
            self._metrics.commit_batch.observe(len(writes))
        for waiter in batch:
            waiter.done.set()

    def statistics(self) -> CommitStatistics:
        return CommitStatistics(self._commits, self._writes, self._failures, self._last_batch)
