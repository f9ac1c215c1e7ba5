"""An in-memory `Cluster` (`pagerd.storage.cluster`) and a fencing store around any `Storage`,
for unit tests of the engine and the fronts without PostgreSQL: the fakes of our own ports that
the brief allows. The real adapter (`pagerd.storage.postgresql`) passes the same contract
(`tests/test_cluster_contract.py`) against a real server.

Time is the `now` given (the database's clock in the real one): tests pass Trio's clock, so a
lease expires under `MockClock` as it would on the server. Thread-safe, since the engine calls
its store from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

import attrs
import trio

from pager.domain import ServiceState
from pager.shards import shard_of
from pagerd.storage.cluster import (
    ANSWER_CHANNEL,
    INBOX_CHANNEL,
    Fenced,
    Lease,
    Node,
    Queued,
)
from pagerd.storage.port import Attempt, Fence, Handled, Storage, Transition, Undelivered, Write


@attrs.define
class _Lease:
    owner: str | None = None
    epoch: int = 0
    expires: float = float("-inf")
    run: str = ""


@attrs.define
class _Row:
    """A node's row: which run of the name said it is alive, until when, with which config."""

    expires: float
    run: str
    config: str


class FakeCluster:
    """One shared "database": every node of a test gets the same object (or a `FencedStore`
    over it)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self._lock = threading.Condition(threading.RLock())
        self._nodes: dict[str, _Row] = {}
        self._leases: dict[int, _Lease] = {}
        self._inbox: dict[int, Queued] = {}
        self._answers: dict[int, str] = {}
        self._next_id = 1
        self._notes: list[tuple[str, str]] = []
        self._sequences: dict[str, int] = {}
        self.down = False
        """Set by a test: every call raises, as when the database cannot be reached."""

    def _check_up(self) -> None:
        if self.down:
            from pagerd.storage.port import StoreUnavailable

            raise StoreUnavailable("the database cannot be reached (the test cut it)")

    def join(self, node: str, ttl: float, *, run: str, config: str = "") -> list[Node]:
        with self._lock:
            self._check_up()
            now = self.now()
            row = self._nodes.get(node)
            if row is None or row.run == run or row.expires <= now:
                self._nodes[node] = _Row(now + ttl, run, config)
            return [
                Node(n, r.expires - now, r.run, r.config)
                for n, r in sorted(self._nodes.items())
                if r.expires > now
            ]

    def leave(self, node: str, *, run: str) -> None:
        with self._lock:
            self._check_up()
            row = self._nodes.get(node)
            if row is not None and row.run == run:
                del self._nodes[node]
            for lease in self._leases.values():
                if lease.owner == node and lease.run == run:
                    lease.expires = float("-inf")

    def claim(
        self,
        node: str,
        shards: Collection[int],
        ttl: float,
        *,
        run: str,
        anew: Collection[int] = (),
    ) -> dict[int, int]:
        with self._lock:
            self._check_up()
            now = self.now()
            held: dict[int, int] = {}
            for shard in shards:
                lease = self._leases.setdefault(shard, _Lease())
                live = lease.expires > now
                mine = lease.owner == node and lease.run == run
                if live and not mine:
                    continue
                if not (live and mine) or shard in anew:
                    lease.epoch += 1
                lease.owner, lease.run = node, run
                lease.expires = now + ttl
                held[shard] = lease.epoch
            return held

    def release(self, node: str, shards: Collection[int], *, run: str) -> None:
        with self._lock:
            self._check_up()
            for shard in shards:
                lease = self._leases.get(shard)
                if lease is not None and lease.owner == node and lease.run == run:
                    lease.expires = float("-inf")

    def leases(self) -> list[Lease]:
        with self._lock:
            self._check_up()
            now = self.now()
            return [
                Lease(shard, lease.owner, lease.epoch, max(lease.expires - now, -1e9))
                for shard, lease in sorted(self._leases.items())
            ]

    def put(self, node: str, service: str, event: bytes, at: float) -> int:
        with self._lock:
            self._check_up()
            id = self._next_id
            self._next_id += 1
            self._inbox[id] = Queued(id, shard_of(service), service, event, at, node)
            self._notes.append((INBOX_CHANNEL, str(shard_of(service))))
            self._lock.notify_all()
            return id

    def put_many(self, node: str, items: Sequence[tuple[str, bytes, float]]) -> list[int]:
        with self._lock:
            self._check_up()
            return [self.put(node, service, event, at) for service, event, at in items]

    def take(
        self, shards: Collection[int], after: int, limit: int, *, skip: Collection[str] = ()
    ) -> list[Queued]:
        with self._lock:
            self._check_up()
            found = [
                q
                for id, q in sorted(self._inbox.items())
                if id > after and q.shard in shards and q.service not in skip
            ]
            return found[:limit]

    def answers(self, ids: Sequence[int]) -> dict[int, str]:
        with self._lock:
            self._check_up()
            return {id: self._answers[id] for id in ids if id in self._answers}

    def next_ids(self, name: str, count: int) -> range:
        with self._lock:
            self._check_up()
            start = self._sequences.get(name, 1)
            self._sequences[name] = start + count
            return range(start, start + count)

    def wait(self, channels: Collection[str], timeout: float) -> list[tuple[str, str]]:
        """Wall-clock wait (a worker thread's): tests keep `timeout` small."""
        with self._lock:
            self._lock.wait_for(lambda: any(c in channels for c, _ in self._notes), timeout)
            found = [(c, p) for c, p in self._notes if c in channels]
            self._notes = [(c, p) for c, p in self._notes if c not in channels]
            return found

    # The store's side: the fence check and the inbox's handled events, in one "transaction".

    def check(self, fence: Fence | None, shards: Collection[int]) -> None:
        """Raise `Fenced` unless every one of `shards` is leased to the fence's run of its node,
        under the fence's epoch, and not expired. Called with the lock held."""
        now = self.now()
        lost = set()
        for shard in shards:
            lease = self._leases.get(shard)
            if (
                fence is None
                or lease is None
                or lease.owner != fence.node
                or lease.run != fence.run
                or lease.epoch != fence.epochs.get(shard)
                or lease.expires <= now
            ):
                lost.add(shard)
        if lost:
            raise Fenced(lost)

    def handle(self, handled: Sequence[Handled]) -> None:
        for item in handled:
            if self._inbox.pop(item.id, None) is not None:
                self._answers[item.id] = item.answer
                self._notes.append((ANSWER_CHANNEL, str(item.id)))
        if handled:
            self._lock.notify_all()


class FencedStore:
    """`store` (SQLite, say) as a node of a cluster sees a shared store: its writes are fenced
    by `cluster`'s leases and take `Handled` events out of its inbox, all under one lock (one
    "transaction"); `load_states`, `undelivered` and `next_retry_at` take `shards` as the real
    adapter does.
    Every other call goes to `store` as it is."""

    def __init__(self, store: Storage, cluster: FakeCluster) -> None:
        self._store = store
        self._cluster = cluster
        self._services: dict[str, int] = {}  # notification id -> shard, as written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        with self._cluster._lock:
            self._cluster._check_up()
            shards: set[int] = set()
            handled = []
            rest: list[Write] = []
            for item in batch:
                if isinstance(item, Transition):
                    shards.add(shard_of(item.after.name))
                    for n in item.notifications:
                        self._services[n.id] = shard_of(n.service)
                elif isinstance(item, Attempt):
                    shard = self._services.get(item.id)
                    if shard is not None:
                        shards.add(shard)
                elif isinstance(item, Handled):
                    queued = self._cluster._inbox.get(item.id)
                    if queued is not None:
                        shards.add(queued.shard)
                    handled.append(item)
                    continue
                rest.append(item)
            self._cluster.check(fence, shards)
            self._store.write(rest, fence)
            self._cluster.handle(handled)

    def load_states(self, shards: Collection[int] | None = None) -> dict[str, ServiceState]:
        states = self._store.load_states()
        if shards is None:
            return states
        return {name: s for name, s in states.items() if shard_of(name) in shards}

    def undelivered(
        self,
        limit: int,
        channel: str | None = None,
        due_by: float | None = None,
        shards: Collection[int] | None = None,
    ) -> list[Undelivered]:
        if shards is None:
            return self._store.undelivered(limit, channel, due_by)
        every = self._store.undelivered(1 << 30, channel, due_by)
        return [u for u in every if shard_of(u.notify.service) in shards][:limit]

    def next_retry_at(
        self, channel: str, after: float, shards: Collection[int] | None = None
    ) -> float | None:
        if shards is None:
            return self._store.next_retry_at(channel, after)
        every = self._store.undelivered(1 << 30, channel)
        times = [
            u.next_attempt_at
            for u in every
            if shard_of(u.notify.service) in shards
            and u.next_attempt_at is not None
            and u.next_attempt_at > after
        ]
        return min(times, default=None)


class Hub:
    """`LISTEN` under a mock clock (`Inbox(listen=...)`; `FakeCluster.wait` waits in wall-clock
    time): every node hears every notification (the fake cluster has one queue for all),
    looked at every `tick` seconds; `lost` drops them, as while a listening connection
    reconnects."""

    def __init__(self, cluster: FakeCluster, tick: float = 0.001) -> None:
        self._cluster = cluster
        self._tick = tick
        self._queues: list[list[tuple[str, str]]] = []
        self.lost = False

    def listen(self) -> Callable[[Collection[str], float], Any]:
        queue: list[tuple[str, str]] = []
        self._queues.append(queue)

        async def wait(channels: Collection[str], seconds: float) -> list[tuple[str, str]]:
            with trio.move_on_after(seconds):
                while True:
                    notes = self._cluster.wait([INBOX_CHANNEL, ANSWER_CHANNEL], 0)
                    if not self.lost:
                        for each in self._queues:
                            each.extend(notes)
                    if queue:
                        found = [n for n in queue if n[0] in channels]
                        queue.clear()
                        return found
                    await trio.sleep(self._tick)
            return []

        return wait
