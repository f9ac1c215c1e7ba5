"""The PostgreSQL store's round trips, counted on the wire (libpq's protocol trace: each Sync
or simple query the client sends is one wait for the server): a fenced write is one, whatever
its batch, and a read of one statement is one; a connection the server dropped is replaced
before it is lent, without a round trip to find out while it is sound. Against a real server
(tests/postgres.py).

Why it matters: on a server across a network (and on a busy machine, where each wait is also a
hand-over of the GIL between the worker thread and the event loop) a commit costs its round
trips, and a group commit's throughput is one over its time."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import pq

from pager.domain import Incident, Notify, ServiceState, Target
from pager.shards import shard_of
from pagerd.storage.cluster import Fenced
from pagerd.storage.port import Attempt, Fence, Handled, StoreUnavailable, Transition
from pagerd.storage.postgresql.store import Store
from tests.postgres import clean_pg, pg_dsn

__all__ = ["clean_pg", "pg_dsn"]  # fixtures

HOUR: Final = 3600.0
NODE: Final = "node-a"
RUN: Final = "run-a"


def opened(service: str, at: float = 1000.0) -> Transition:
    incident = Incident(1, at, "down", deadline=at + 60)
    note = Notify(service, 1, 1, 1, Target("email", "a@example.com"), "down", at)
    return Transition(ServiceState(service), ServiceState(service, 1, incident), (note,), at)


@pytest.fixture
def store(clean_pg: str) -> Iterator[Store]:
    opened_store = Store.open(clean_pg, node=NODE, pool_size=1)
    yield opened_store
    opened_store.close()


@contextmanager
def syncs(store: Store) -> Iterator[Callable[[], int]]:
    """The round trips of the store's (one) connection in the block: the Syncs it sends (the
    extended protocol's end of a request) and its simple queries (each a request of its own)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace"
        with path.open("w") as out:
            with store._pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                yield lambda: sum(
                    1
                    for line in path.read_text().splitlines()
                    if line.split()[:1] == ["F"] and line.split()[2:3] in (["Sync"], ["Query"])
                )
            finally:
                with store._pool.connection() as conn:
                    conn.pgconn.untrace()


def test_a_fenced_write_is_one_round_trip_whatever_its_batch(store: Store) -> None:
    services = [f"svc-{i}" for i in range(50)]
    epochs = store.claim(NODE, {shard_of(s) for s in services}, HOUR, run=RUN)
    with syncs(store) as count:
        store.write([opened(s) for s in services], Fence(NODE, epochs, RUN))
        assert count() == 1
    pending = store.undelivered(100)
    assert len(pending) == 50
    store.put(NODE, "svc-0", b"event", 1000.0)
    (queued,) = store.take(epochs, 0, 10)
    # Attempts and an inbox event handled: their shards are found in the same round trip.
    with syncs(store) as count:
        store.write(
            [*(Attempt(p.notify.id, 1001.0, "sent") for p in pending), Handled(queued.id, "{}")],
            Fence(NODE, epochs, RUN),
        )
        assert count() == 1
    assert store.undelivered(100) == []
    assert store.answers([queued.id]) == {queued.id: "{}"}


def test_a_read_and_a_put_are_one_round_trip_each(store: Store) -> None:
    epochs = store.claim(NODE, [shard_of("api")], HOUR, run=RUN)
    with syncs(store) as count:
        store.put(NODE, "api", b"event", 1000.0)
        assert count() == 1
        store.take(epochs, 0, 10)
        assert count() == 2
        store.undelivered(10, shards=epochs)
        assert count() == 3


def test_a_batch_of_puts_is_one_round_trip_its_ids_in_its_order(store: Store) -> None:
    items = [(f"svc-{i % 7}", b"event %d" % i, 1000.0 + i) for i in range(40)]
    with syncs(store) as count:
        ids = store.put_many(NODE, items)
        assert count() == 1
    assert ids == sorted(ids) and len(set(ids)) == 40
    taken = store.take(range(256), 0, 100)
    assert [(q.id, q.service, q.event, q.at) for q in taken] == [
        (id, service, event, at) for id, (service, event, at) in zip(ids, items, strict=True)
    ]


def test_a_fenced_write_refused_leaves_its_connection_ready_for_the_next(store: Store) -> None:
    epochs = store.claim(NODE, [shard_of("api")], HOUR, run=RUN)
    with pytest.raises(Fenced) as lost:
        store.write([opened("api")], Fence(NODE, {}, RUN))
    assert lost.value.shards == {shard_of("api")}
    with pytest.raises(Fenced):
        store.write([opened("api")])  # no fence at all
    assert store.load_states() == {}
    store.write([opened("api")], Fence(NODE, epochs, RUN))  # the pool's one connection, sound
    assert list(store.load_states()) == ["api"]


def test_a_session_that_lost_the_fence_function_is_replaced_and_the_write_retried(
    store: Store,
) -> None:
    """Something between pagerd and the server reset the session (a transaction-pooling
    proxy's `DISCARD ALL`): the write fails as unavailable, which is retried, not as an error
    for ever, and its connection is replaced by one with the function."""
    epochs = store.claim(NODE, [shard_of("api")], HOUR, run=RUN)
    with store._pool.connection() as conn:
        conn.execute("DISCARD TEMP")
    with pytest.raises(StoreUnavailable, match="lost pagerd's fence function"):
        store.write([opened("api")], Fence(NODE, epochs, RUN))
    store.write([opened("api")], Fence(NODE, epochs, RUN))
    assert list(store.load_states()) == ["api"]


def test_a_connection_the_server_dropped_is_replaced_before_it_is_lent(clean_pg: str) -> None:
    """As by a server restart: every connection of the pool ended by the server; the next
    call gets a new one rather than failing on the old."""
    store = Store.open(clean_pg, node=NODE, pool_size=2)
    try:
        epochs = store.claim(NODE, [shard_of("api")], HOUR, run=RUN)
        with psycopg.connect(clean_pg, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'pagerd ' || %s AND datname = current_database()",
                (NODE,),
            ).fetchone()
            assert ended == (2,)
            deadline = time.monotonic() + 10  # the backends' exit, asked of the server
            while admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'pagerd ' || %s AND datname = current_database()",
                (NODE,),
            ).fetchone() != (0,):
                assert time.monotonic() < deadline, "the backends did not end"
                time.sleep(0.01)
        store.write([opened("api")], Fence(NODE, epochs, RUN))
        assert list(store.load_states()) == ["api"]
    finally:
        store.close()
