"""The cluster port's contract (`pagerd.storage.cluster.Cluster`) and the fencing of writes, run
against the in-memory fake (`FakeCluster` with a `FencedStore` over SQLite, what the engine's
tests use) and against the real adapter on PostgreSQL: the same tests, so that the fake stays
true to the real thing.

Leases expire by the database's clock, which a test cannot move: lease times here are either
long (an hour: nothing expires during the test) or given as 0 (expired at once), never a race.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, cast

import attrs
import pytest

from pager.domain import Incident, Notify, ServiceState, Target
from pager.shards import shard_of
from pagerd.storage.cluster import ANSWER_CHANNEL, INBOX_CHANNEL, Cluster, Fenced
from pagerd.storage.port import Attempt, ClockMark, Fence, Handled, Storage, Transition
from pagerd.storage.postgresql.store import Store as PostgresStore
from pagerd.storage.sqlite.store import Store as SqliteStore
from pagerd.timing.clock import Reading
from tests.fake_cluster import FakeCluster, FencedStore
from tests.postgres import clean_pg, pg_dsn

__all__ = ["clean_pg", "pg_dsn"]  # fixtures

HOUR: Final = 3600.0
A, B = "node-a", "node-b"
RUN = {A: "run-a", B: "run-b"}
"""Each node's run (`Storage.origin`): the owner of the leases it takes."""


class Shared(Storage, Cluster, Protocol):
    """A store several nodes share: both ports on one object, as each node holds it."""


@attrs.frozen
class World:
    """Two nodes' views of one shared store, and how to open more."""

    a: Shared
    b: Shared
    blocking_claims: bool
    """Whether a claim really waits (in another thread) for an in-flight fenced write."""


def _fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    cluster = FakeCluster(time.monotonic)
    store = SqliteStore.open(tmp_path / "pager.db")
    a = cast(Shared, _Both(FencedStore(store, cluster), cluster))
    b = cast(Shared, _Both(FencedStore(store, cluster), cluster))
    yield World(a, b, blocking_claims=False)
    store.close()


class _Both:
    """A `FencedStore` (the storage side) with its `FakeCluster` (the cluster side)."""

    def __init__(self, store: FencedStore, cluster: FakeCluster) -> None:
        self._store = store
        self._cluster = cluster

    def __getattr__(self, name: str) -> Any:
        if name in {"join", "leave", "claim", "release", "leases", "put", "put_many", "take",
                    "answers", "next_ids", "wait"}:  # fmt: skip
            return getattr(self._cluster, name)
        return getattr(self._store, name)


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    dsn = request.getfixturevalue("clean_pg")
    a = PostgresStore.open(dsn, node=A, pool_size=2)
    b = PostgresStore.open(dsn, node=B, pool_size=2)
    yield World(cast(Shared, a), cast(Shared, b), blocking_claims=True)
    a.close()
    b.close()


WORLDS: Final[dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[World]]]] = {
    "fake": _fake,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(WORLDS))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from WORLDS[request.param](request, tmp_path)


def opened(service: str, at: float = 1000.0) -> Transition:
    incident = Incident(1, at, "down", deadline=at + 60)
    after = ServiceState(service, 1, incident)
    note = Notify(service, 1, 1, 1, Target("email", "a@example.com"), "down", at)
    return Transition(ServiceState(service), after, (note,), at)


def services_of(shard: int, count: int = 1) -> list[str]:
    """`count` service names that fall in `shard`."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        name = f"svc-{i}"
        if shard_of(name) == shard:
            found.append(name)
        i += 1
    return found


S1: Final = 7
S2: Final = 8
API: Final = services_of(S1)[0]
DB: Final = services_of(S2)[0]


# Nodes and leases. -----------------------------------------------------------------------------


def test_nodes_join_and_leave(world: World) -> None:
    assert [n.name for n in world.a.join(A, HOUR, run=RUN[A])] == [A]
    alive = world.b.join(B, HOUR, run=RUN[B])
    assert [n.name for n in alive] == [A, B]
    # (to a microsecond: `(now + HOUR) - now` can round a float ulp above HOUR)
    assert all(0 < n.remaining <= HOUR + 1e-6 for n in alive)
    world.a.leave(A, run=RUN[A])
    assert [n.name for n in world.b.join(B, HOUR, run=RUN[B])] == [B]


def test_a_node_whose_word_expired_is_not_alive(world: World) -> None:
    world.a.join(A, 0.0, run=RUN[A])
    assert [n.name for n in world.b.join(B, HOUR, run=RUN[B])] == [B]


def test_a_free_shard_is_claimed_with_a_new_epoch_and_renewed_with_the_same(world: World) -> None:
    assert world.a.claim(A, [S1, S2], HOUR, run=RUN[A]) == {S1: 1, S2: 1}
    assert world.a.claim(A, [S1], HOUR, run=RUN[A]) == {S1: 1}  # a renewal keeps the epoch
    lease = {lease.shard: lease for lease in world.b.leases()}[S1]
    assert (lease.owner, lease.epoch) == (A, 1) and 0 < lease.remaining <= HOUR + 1e-6


def test_a_live_lease_is_left_to_its_owner(world: World) -> None:
    world.a.claim(A, [S1], HOUR, run=RUN[A])
    assert world.b.claim(B, [S1, S2], HOUR, run=RUN[B]) == {S2: 1}


def test_an_expired_lease_is_taken_by_another_node_under_a_new_epoch(world: World) -> None:
    world.a.claim(A, [S1], 0.0, run=RUN[A])  # expires at once
    assert world.b.claim(B, [S1], HOUR, run=RUN[B]) == {S1: 2}
    assert world.a.claim(A, [S1], HOUR, run=RUN[A]) == {}


def test_a_released_lease_is_free_at_once_and_its_epoch_goes_up_even_for_its_owner(
    world: World,
) -> None:
    world.a.claim(A, [S1, S2], HOUR, run=RUN[A])
    world.a.release(A, [S1], run=RUN[A])
    assert world.a.claim(A, [S1], HOUR, run=RUN[A]) == {S1: 2}
    world.a.release(A, [S1], run=RUN[A])
    assert world.b.claim(B, [S1], HOUR, run=RUN[B]) == {S1: 3}
    assert world.b.claim(B, [S2], HOUR, run=RUN[B]) == {}  # still A's


def test_leaving_releases_every_lease(world: World) -> None:
    world.a.join(A, HOUR, run=RUN[A])
    world.a.claim(A, [S1, S2], HOUR, run=RUN[A])
    world.a.leave(A, run=RUN[A])
    assert world.b.claim(B, [S1, S2], HOUR, run=RUN[B]) == {S1: 2, S2: 2}
    assert all(lease.remaining <= 0 for lease in world.a.leases() if lease.owner == A)


def test_another_run_of_a_name_is_another_owner_never_a_renewal(world: World) -> None:
    """Two processes given one node_name (review finding 1): the lease is the run's."""
    assert world.a.claim(A, [S1], HOUR, run="first") == {S1: 1}
    assert world.b.claim(A, [S1], HOUR, run="second") == {}  # live: left to its run
    with pytest.raises(Fenced):
        world.b.write([opened(API)], Fence(A, {S1: 1}, "second"))
    world.a.claim(A, [S1], 0.0, run="first")  # over
    assert world.b.claim(A, [S1], HOUR, run="second") == {S1: 2}  # a change of owner
    with pytest.raises(Fenced):
        world.a.write([opened(API)], Fence(A, {S1: 1}, "first"))
    world.a.release(A, [S1], run="first")
    world.a.leave(A, run="first")  # the old run's stop releases nothing of the new one's
    assert world.b.claim(B, [S1], HOUR, run=RUN[B]) == {}
    world.b.write([opened(API)], Fence(A, {S1: 2}, "second"))
    assert list(world.a.load_states()) == [API]


def test_a_name_s_row_is_its_run_s_until_it_expires(world: World) -> None:
    world.a.join(A, HOUR, run="first", config="c1")
    found = world.b.join(A, HOUR, run="second", config="c2")
    assert [(n.name, n.run, n.config) for n in found] == [(A, "first", "c1")]
    world.b.leave(A, run="second")  # not its row: left as it is
    assert [n.run for n in world.b.join(B, HOUR, run=RUN[B])] == ["first", RUN[B]]
    world.a.join(A, 0.0, run="first")  # its word expires (a kill: it says nothing more)
    found = world.b.join(A, HOUR, run="second", config="c2")
    assert [(n.name, n.run, n.config) for n in found] == [(A, "second", "c2"), (B, RUN[B], "")]


# Fencing. --------------------------------------------------------------------------------------


def test_a_fenced_write_of_the_owner_is_written(world: World) -> None:
    epochs = world.a.claim(A, [S1], HOUR, run=RUN[A])
    world.a.write([opened(API)], Fence(A, epochs, RUN[A]))
    assert list(world.b.load_states()) == [API]


def test_a_write_after_losing_the_lease_fails_and_writes_nothing(world: World) -> None:
    epochs = world.a.claim(A, [S1, S2], HOUR, run=RUN[A])
    world.a.release(A, [S1], run=RUN[A])
    world.b.claim(B, [S1], HOUR, run=RUN[B])
    with pytest.raises(Fenced) as lost:
        world.a.write([opened(DB), opened(API)], Fence(A, epochs, RUN[A]))
    assert lost.value.shards == {S1}
    assert world.b.load_states() == {}  # not even DB's, whose shard A still holds


def test_a_write_under_an_old_epoch_fails_even_on_the_same_node(world: World) -> None:
    old = world.a.claim(A, [S1], HOUR, run=RUN[A])
    world.a.release(A, [S1], run=RUN[A])
    world.a.claim(A, [S1], HOUR, run=RUN[A])
    with pytest.raises(Fenced):
        world.a.write([opened(API)], Fence(A, old, RUN[A]))


def test_a_claim_anew_raises_its_own_live_lease_s_epoch_and_fences_the_old_term(
    world: World,
) -> None:
    """A reload after a write of unknown outcome (review: a write stuck in the network arrived
    after the reload and undid a committed ack): the claim that follows raises the epoch of the
    owner's own live lease, so the old write, arriving later, is refused."""
    old = world.a.claim(A, [S1, S2], HOUR, run=RUN[A])
    assert world.a.claim(A, [S1, S2], HOUR, run=RUN[A], anew=[S1]) == {S1: 2, S2: 1}
    with pytest.raises(Fenced) as late:
        world.a.write([opened(API)], Fence(A, old, RUN[A]))
    assert late.value.shards == {S1}
    world.a.write([opened(API)], Fence(A, {S1: 2, S2: 1}, RUN[A]))
    assert world.b.claim(B, [S1], HOUR, run=RUN[B], anew=[S1]) == {}  # A's still: left alone
    assert list(world.b.load_states()) == [API]


def test_a_write_under_an_expired_lease_fails(world: World) -> None:
    epochs = world.a.claim(A, [S1], 0.0, run=RUN[A])
    with pytest.raises(Fenced):
        world.a.write([opened(API)], Fence(A, epochs, RUN[A]))


def test_an_unfenced_write_to_a_shard_fails_but_a_clock_mark_needs_no_fence(world: World) -> None:
    world.a.claim(A, [S1], HOUR, run=RUN[A])
    with pytest.raises(Fenced):
        world.a.write([opened(API)])
    world.a.write([ClockMark(Reading(1.0, 1.0))])


def test_an_attempt_is_fenced_by_its_notification_s_shard(world: World) -> None:
    epochs = world.a.claim(A, [S1], HOUR, run=RUN[A])
    world.a.write([opened(API)], Fence(A, epochs, RUN[A]))
    (pending,) = world.a.undelivered(10)
    world.a.release(A, [S1], run=RUN[A])
    world.b.claim(B, [S1], HOUR, run=RUN[B])
    sent = Attempt(pending.notify.id, 1001.0, "sent")
    with pytest.raises(Fenced):
        world.a.write([sent], Fence(A, epochs, RUN[A]))
    assert [u.notify.id for u in world.b.undelivered(10)] == [pending.notify.id]


def test_reads_take_a_node_s_shards(world: World) -> None:
    epochs = world.a.claim(A, [S1, S2], HOUR, run=RUN[A])
    world.a.write([opened(API), opened(DB)], Fence(A, epochs, RUN[A]))
    assert list(world.a.load_states(shards=[S1])) == [API]
    assert [u.notify.service for u in world.a.undelivered(10, shards=[S2])] == [DB]
    assert world.a.undelivered(10, shards=[]) == []


def test_a_claim_waits_for_an_in_flight_fenced_write(world: World) -> None:
    """A write fenced by S1 holds S1's lease locked (for share) until it commits; another
    node's claim of S1 (its lease expired) waits for it: the write, committed first, is seen by
    the new owner, never made behind its back."""
    if not world.blocking_claims:
        pytest.skip("the fake takes one lock for everything: nothing is ever in flight")
    store = cast(PostgresStore, world.a)
    epochs = world.a.claim(A, [S1], 0.0, run=RUN[A])  # expired at once: B may take it
    claimed: dict[int, int] = {}
    with store._transaction() as conn:
        # What `write` does first: lock the leases of the shards it touches.
        conn.execute("SELECT 1 FROM leases WHERE shard = %s FOR SHARE", (S1,))
        thread = threading.Thread(
            target=lambda: claimed.update(world.b.claim(B, [S1], HOUR, run=RUN[B]))
        )
        thread.start()
        # The claim's session is seen waiting for the lock (not timed: asked of the server).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")  # else read once a transaction
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%%FOR UPDATE%%'"
            ).fetchone()
            if waiting is not None and waiting[0]:
                break
        else:
            pytest.fail("the claim did not wait for the fenced transaction")
        assert thread.is_alive() and claimed == {}
    thread.join(10)
    assert epochs == {S1: 1} and claimed == {S1: 2}


# The inbox. ------------------------------------------------------------------------------------


def test_events_are_put_taken_by_shard_and_in_order_and_handled_with_an_answer(
    world: World,
) -> None:
    first = world.b.put(B, API, b"alert 1", 1000.0)
    other = world.b.put(B, DB, b"alert db", 1000.5)
    second = world.b.put(B, API, b"alert 2", 1001.0)
    assert first < other < second
    taken = world.a.take([S1], 0, 10)
    assert [(q.id, q.service, q.event, q.node) for q in taken] == [
        (first, API, b"alert 1", B),
        (second, API, b"alert 2", B),
    ]
    assert [q.id for q in world.a.take([S1], first, 10)] == [second]
    assert world.a.take([S1], 0, 1) == taken[:1]
    assert world.b.answers([first, second]) == {}
    epochs = world.a.claim(A, [S1], HOUR, run=RUN[A])
    world.a.write([opened(API), Handled(first, "ok 1")], Fence(A, epochs, RUN[A]))
    assert world.b.answers([first, second]) == {first: "ok 1"}
    assert [q.id for q in world.a.take([S1], 0, 10)] == [second]  # handled: gone
    assert [q.id for q in world.a.take([S1, S2], 0, 10, skip=[API])] == [other]


def test_a_batch_of_puts_is_one_transaction_in_order_and_notifies_each_shard(
    world: World,
) -> None:
    assert world.b.put_many(B, []) == []
    world.a.wait([INBOX_CHANNEL], 0.0)  # listening from here on
    before = world.b.put(B, API, b"alert 0", 999.0)
    ids = world.b.put_many(
        B, [(API, b"alert 1", 1000.0), (DB, b"alert db", 1000.5), (API, b"alert 2", 1001.0)]
    )
    assert len(ids) == 3 and before < ids[0] and ids[0] < ids[2]
    assert [(q.id, q.event) for q in world.a.take([S1], before, 10)] == [
        (ids[0], b"alert 1"),
        (ids[2], b"alert 2"),
    ]
    assert [(q.id, q.service, q.event) for q in world.a.take([shard_of(DB)], 0, 10)] == [
        (ids[1], DB, b"alert db")
    ]
    assert _wait_for(world.a, [INBOX_CHANNEL], (INBOX_CHANNEL, str(shard_of(DB))))


def test_handling_an_event_is_fenced_by_its_shard(world: World) -> None:
    queued = world.b.put(B, API, b"alert", 1000.0)
    epochs = world.a.claim(A, [S2], HOUR, run=RUN[A])  # not API's shard
    with pytest.raises(Fenced):
        world.a.write([Handled(queued, "ok")], Fence(A, epochs, RUN[A]))
    assert world.b.answers([queued]) == {}
    assert [q.id for q in world.a.take([S1], 0, 10)] == [queued]


def test_a_put_and_an_answer_are_notified(world: World) -> None:
    world.a.wait([INBOX_CHANNEL, ANSWER_CHANNEL], 0.0)  # listening from here on
    queued = world.b.put(B, API, b"alert", 1000.0)
    assert _wait_for(world.a, [INBOX_CHANNEL], (INBOX_CHANNEL, str(S1)))
    epochs = world.b.claim(B, [S1], HOUR, run=RUN[B])
    world.b.write([Handled(queued, "ok")], Fence(B, epochs, RUN[B]))
    assert _wait_for(world.a, [ANSWER_CHANNEL], (ANSWER_CHANNEL, str(queued)))


def test_waiting_with_nothing_notified_times_out_empty(world: World) -> None:
    assert world.a.wait([INBOX_CHANNEL], 0.05) == []


def _wait_for(node: Shared, channels: Sequence[str], note: tuple[str, str]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if note in node.wait(channels, 1.0):
            return True
    return False


def test_next_ids_are_never_given_twice_and_silences_number_above_the_stored(world: World) -> None:
    assert world.a.next_ids("silence", 3) == range(1, 4)
    assert world.b.next_ids("silence", 2) == range(4, 6)
    assert world.a.next_ids("other", 1) == range(1, 2)
    assert world.a.next_ids("silence", 0) == range(6, 6)
