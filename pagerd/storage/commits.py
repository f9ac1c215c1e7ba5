"""Group commit: many actors' writes share one transaction of the store and one fsync.

Actors hand their writes to `commit()` and wait; a single writer task takes everything queued,
writes it in one transaction off the event loop, then wakes each waiter with the outcome. Under
load the batches grow by themselves, so durability does not cap throughput.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Final, Protocol

import attrs
import trio

from pager.shards import shard_of
from pagerd.operations.metrics import Counter, Metrics
from pagerd.storage.cluster import Fenced
from pagerd.storage.offload import Offload
from pagerd.storage.port import (
    Attempt,
    Fence,
    Storage,
    StoreError,
    StoreUnavailable,
    Transition,
    Write,
)

log = logging.getLogger("pagerd.commits")

MAX_BATCH: Final = 1024


class WriteRefused(StoreError):
    """The database refused what was written (a constraint, a value it cannot store), not for
    want of a disk: the same writes fail again, others may well succeed."""


@attrs.frozen
class Term:
    """A shard as this node holds it: under which lease `epoch`, and since which `adoption` (a
    number this process gives each time it adopts a shard, loading its states from the store).

    A decision from the states in memory is valid only under the adoption they were loaded by:
    a shard dropped and taken again keeps its epoch when its lease did not lapse in the
    database (a drop by this node's own clock, a reload after a write of unknown outcome), yet
    its states were loaded again meanwhile, maybe before the decision was written. A delivery
    attempt's record depends on the lease alone (`adoption` None): the send happened under it,
    whatever was reloaded since."""

    epoch: int
    adoption: int | None = None

    def covers(self, other: Term) -> bool:
        """Whether a write carrying `other` (captured when it was decided) may be written while
        the shard's current term is this one."""
        return self.epoch == other.epoch and other.adoption in (None, self.adoption)


class Stale(Fenced):
    """A write decided under a term of `shards` that is not their current one: the shard was
    dropped (and maybe taken again) while it waited to be written. Nothing of it was written;
    like `Fenced`, its events go to whoever owns the service now (this node again, perhaps,
    deciding afresh from the states as the store has them)."""

    def __init__(self, shards: Collection[int]) -> None:
        super().__init__(shards)
        self.args = (
            f"decided while shard(s) {sorted(self.shards)} were held under a lease or an"
            " adoption that is over (dropped since, or taken again)",
        )


class Fencing(Protocol):
    """Who says which shards this node writes for (`pagerd.engine.ownership.Ownership`)."""

    def fence(self) -> Fence:
        """The fence of the shards whose lease this node holds now, for a write about to be
        sent."""
        ...

    def terms(self, shards: Collection[int]) -> dict[int, Term]:
        """The current term of each of `shards` this node holds a lease on now (adopted ones
        with their adoption, others with None); those it does not are left out."""
        ...

    def lose(self, shards: Collection[int]) -> None:
        """A write found `shards` no longer this node's: stop everything of them now."""
        ...

    def raised(self, shards: Collection[int], fence: Fence) -> frozenset[int]:
        """Those of `shards` whose epoch in `fence` this node's own reload has raised since, or
        is raising (its claim in flight), the lease held all along: a write fenced by them was
        refused for that, not because another node has them."""
        ...

    def reload(self, shards: Collection[int]) -> None:
        """A write touching `shards` may or may not have been written (`StoreUnavailable`:
        the connection was lost during its commit): what this node keeps of them may be
        stale. Stop deciding and sending for them now, and load them again from the store."""
        ...


@attrs.define
class _Waiter:
    writes: Sequence[Write]
    shards: frozenset[int] = frozenset()
    """The shards its writes touch (with a `Fencing` only)."""
    terms: Mapping[int, Term] = attrs.Factory(dict)
    """Their terms when its writes were decided (with a `Fencing` only)."""
    done: trio.Event = attrs.Factory(trio.Event)
    error: StoreError | None = None


@attrs.frozen
class CommitStatistics:
    commits: int
    writes: int
    failures: int
    last_batch: int
    stale: int = 0
    """Waiters refused unwritten since start: decided under a term that was over (`Stale`)."""


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
        self._stale = 0
        self._stale_counter: Counter | None = None
        self._fencing: Fencing | None = None

    @property
    def fencing(self) -> Fencing | None:
        """Set on a store shared by several nodes: every write is fenced by it."""
        return self._fencing

    @fencing.setter
    def fencing(self, fencing: Fencing | None) -> None:
        self._fencing = fencing
        if fencing is not None and self._stale_counter is None:
            self._stale_counter = self._metrics.counter(
                "pagerd_cluster_stale_writes_total",
                "Writes refused unwritten because they were decided under a shard's lease or"
                " adoption that was over by the time they were written (the shard dropped, and"
                " maybe taken again, while they waited): their events go to the owner again.",
            )

    async def commit(
        self,
        writes: Sequence[Write],
        *,
        shards: Collection[int] = (),
        terms: Mapping[int, Term] | None = None,
    ) -> None:
        """Return once `writes` are durable; raise `StoreError` if they were not written
        (`Fenced` if they touch shards this node no longer holds, `Stale` if not under the
        terms they were decided under). `shards`: those the writes touch besides their
        transitions' services' (an `Attempt`'s service, say). `terms`: each touched shard's
        term when the writes were decided (`Fencing.terms`, taken then); None: now, on the
        caller's word that nothing was dropped since it decided."""
        touched: frozenset[int] = frozenset()
        if self.fencing is not None:
            touched = frozenset(shards) | {
                shard_of(w.after.name) for w in writes if isinstance(w, Transition)
            }
            if terms is None:
                terms = self.fencing.terms(touched)
        waiter = _Waiter(writes, touched, dict(terms or {}))
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
        fencing = self.fencing
        if fencing is not None:
            batch = self._current(batch, fencing)
            if not batch:
                return
        writes = [w for waiter in batch for w in waiter.writes]
        started = trio.current_time()
        try:
            # Taken now, at write time: a shard dropped while the batch waited is not in it.
            if fencing is None:
                await self._offload(lambda: self._store.write(writes))
            else:
                fence = fencing.fence()
                await self._offload(lambda: self._store.write(writes, fence))
        except Fenced as exc:
            if fencing is not None and await self._fenced(batch, exc, fencing, fence):
                return
            # No waiter says it touches those shards: none can be split off.
            self._failures += 1
            self._metrics.commit_failures.inc()
            log.error("commit of %d write(s) fenced: %s", len(writes), exc)
            for waiter in batch:
                waiter.error = exc
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
            if fencing is not None and isinstance(exc, StoreUnavailable):
                # On a store across a network the batch may have been written all the same
                # (the connection dropped during COMMIT): deciding on from the state before it
                # could repeat what it did (an incident number that exists, refused forever).
                # Its shards are reloaded, before any waiter hears of it and decides again.
                # A waiter that only records delivery attempts leaves no state in memory at
                # stake: the outbox retries its record (fenced by the lease alone), nothing is
                # reloaded for it.
                decided = [waiter.shards for waiter in batch if _decides(waiter)]
                if decided:
                    fencing.reload(frozenset().union(*decided))
            self._fail(batch, writes, exc)
        else:
            self._commits += 1
            self._writes += len(writes)
            self._last_batch = len(batch)
            self._metrics.commit_seconds.observe(trio.current_time() - started)
            self._metrics.commit_batch.observe(len(writes))
        for waiter in batch:
            waiter.done.set()

    def _current(self, batch: list[_Waiter], fencing: Fencing) -> list[_Waiter]:
        """The waiters of `batch` whose terms are their shards' current ones; the others are
        refused (`Stale`) and woken, unwritten. No checkpoint between this and the write: the
        fence the store checks is taken right after, from the same terms."""
        now = fencing.terms(frozenset().union(*(waiter.shards for waiter in batch)))
        current: list[_Waiter] = []
        for waiter in batch:
            stale = frozenset(
                s
                for s in waiter.shards
                if s not in now or s not in waiter.terms or not now[s].covers(waiter.terms[s])
            )
            if not stale:
                current.append(waiter)
                continue
            self._stale += 1
            if self._stale_counter is not None:
                self._stale_counter.inc()
            log.warning(
                "write of %d item(s) refused unwritten: decided under a term of shard(s) %s"
                " that is over",
                len(waiter.writes), sorted(stale),
            )  # fmt: skip
            waiter.error = Stale(stale)
            waiter.done.set()
        return current

    async def _fenced(
        self, batch: list[_Waiter], exc: Fenced, fencing: Fencing, fence: Fence
    ) -> bool:
        """`batch` was refused for touching shards lost: drop them, fail the waiters that touch
        them, write the others again. A shard whose epoch this node's own reload raised meanwhile
        is not lost: its waiters are refused as `Stale` (decided again, or recorded under the
        new epoch: found in review, a delivery's record refused so had its shard dropped, its
        send cut, and the page sent again). False if no waiter says it touches them (nothing to
        split off: the batch fails as a whole)."""
        raised = fencing.raised(exc.shards, fence)
        lost = exc.shards - raised
        if lost:
            fencing.lose(lost)
        out = [w for w in batch if w.shards & exc.shards]
        if not out:
            return False
        log.warning(
            "commit fenced: shard(s) %s are no longer this node's, %s under a new epoch of its"
            " own; %d of %d waiter(s) refused",
            sorted(lost), sorted(raised), len(out), len(batch),
        )  # fmt: skip
        for waiter in out:
            gone = waiter.shards & lost
            waiter.error = Fenced(gone) if gone else Stale(waiter.shards & raised)
            waiter.done.set()
        rest = [w for w in batch if not w.shards & exc.shards]
        if rest:
            await self._write(rest)
        return True

    def _fail(self, batch: list[_Waiter], writes: list[Write], exc: Exception) -> None:
        """Called in the `except` of a failed write."""
        # Disk full, I/O error, a lock held too long (or a bug): nothing of the batch was
        # written, and every waiter is told so rather than "ok". The next batch tries again.
        self._failures += 1
        self._metrics.commit_failures.inc()
        if isinstance(exc, StoreError):
            log.error("commit of %d write(s) failed: %s", len(writes), exc)
        else:
            log.exception("commit of %d write(s) failed", len(writes))
        disk = isinstance(exc, StoreUnavailable)
        # The database's own words name no value; another exception's text (a bug's) may
        # quote what was written, a webhook URL say, and this goes to clients: its kind only.
        said = exc if isinstance(exc, StoreError) else type(exc).__name__
        error = (StoreError if disk else WriteRefused)(
            f"the database could not record this: {said}"
        )
        for waiter in batch:
            waiter.error = error

    def statistics(self) -> CommitStatistics:
        return CommitStatistics(
            self._commits, self._writes, self._failures, self._last_batch, self._stale
        )


def _decides(waiter: _Waiter) -> bool:
    """Whether `waiter` wrote anything but delivery attempts' records (a decision's)."""
    return not all(isinstance(w, Attempt) for w in waiter.writes)
