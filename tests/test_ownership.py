"""The leases a node keeps (`pagerd.engine.ownership`), against the in-memory cluster under
MockClock: renewal, expiry by the node's own clock before the database's, a pause past the
lease, handover to a node that joins, orphans of a node that died, the database down and back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any, get_args

import pytest
import trio
import trio.lowlevel
import trio.testing

from pager.shards import SHARDS, share
from pagerd.engine.ownership import DropReason, Ownership, margin_of
from pagerd.operations.metrics import Metrics
from pagerd.storage.cluster import Fenced
from pagerd.storage.commits import Term
from pagerd.storage.offload import inline
from pagerd.storage.port import Fence, StoreUnavailable
from tests.fake_cluster import FakeCluster

TTL = 10.0


class Link:
    """One node's connection to the shared fake database: cut, every call fails (a partition,
    or a node killed with `kill -9`, which says nothing more to anybody)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self._cluster = cluster
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._cluster, name)

        def checked(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StoreUnavailable("cut from the database (the test)")
            return call(*args, **kwargs)

        return checked


class Recorder:
    """An adopter that records what it is told, and checks it is never told twice."""

    def __init__(self) -> None:
        self.have: set[int] = set()
        self.loaded: list[frozenset[int]] = []
        self.dropped: list[frozenset[int]] = []
        self.started: list[frozenset[int]] = []
        self.fail = False

    async def adopt(self, shards: frozenset[int]) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise StoreUnavailable("cannot load (the test)")
        self.have |= shards
        self.loaded.append(shards)

    def adopted(self, shards: frozenset[int]) -> None:
        assert shards <= self.have, "started before it was loaded"
        self.started.append(shards)

    def drop(self, shards: frozenset[int]) -> None:
        self.have -= shards
        self.dropped.append(shards)


class Node:
    def __init__(
        self, name: str, cluster: FakeCluster, run: str | None = None, config: str = ""
    ) -> None:
        self.link = Link(cluster)
        self.metrics = Metrics()
        self.config = config
        self.ownership = Ownership(
            name, self.link, inline, TTL, self.metrics,
            run=run or f"run-{name}", config=lambda: self.config,
        )  # fmt: skip
        self.recorder = Recorder()
        self.ownership.add(self.recorder)
        self.scope = trio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            await self.ownership.run()

    def kill(self) -> None:
        """As `kill -9`: nothing more reaches the database, not even a `leave`."""
        self.link.cut = True
        self.scope.cancel()


@asynccontextmanager
async def nodes(cluster: FakeCluster, *names: str) -> AsyncIterator[list[Node]]:
    started = [Node(name, cluster) for name in names]
    async with trio.open_nursery() as nursery:
        for node in started:
            nursery.start_soon(node.run)
        yield started
        nursery.cancel_scope.cancel()


def overlap(a: Node, b: Node) -> set[int]:
    return set(a.ownership.held()) & set(b.ownership.held())


async def test_one_node_owns_every_shard_and_renews_without_a_new_epoch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        held = a.ownership.held()
        assert len(held) == SHARDS and set(held.values()) == {1}
        assert a.recorder.have == set(range(SHARDS))
        assert a.ownership.holds("api")
        assert a.ownership.fence().node == "a" and a.ownership.fence().epochs == held
        await trio.sleep(10 * TTL)
        assert a.ownership.held() == held  # renewed all along, the same epochs
        assert a.recorder.dropped == []
        assert a.ownership.rounds >= 10 * 4
        assert a.ownership.statistics().renewed_age is not None
        assert a.ownership.statistics().renewed_age <= TTL / 4 + 0.1  # type: ignore[operator]


async def test_a_node_cut_from_the_database_stops_before_its_lease_could_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        a.link.cut = True
        # Until the database's lease ends, the node must have stopped on its own.
        lease_ends = trio.current_time() + min(lease.remaining for lease in cluster.leases())
        while True:
            if not a.ownership.held():
                break
            await trio.sleep(0.01)
        stopped = trio.current_time()
        assert stopped <= lease_ends - margin_of(TTL) + 0.02
        assert a.recorder.have == set()
        assert a.ownership.failures > 0
        assert a.metrics.render().count('pagerd_cluster_shards_dropped_total{reason="expired"}')
        # Back: it takes every shard again, adopted afresh (what it had was forgotten).
        a.link.cut = False
        await trio.sleep(TTL)
        assert len(a.ownership.held()) == SHARDS
        assert a.recorder.have == set(range(SHARDS))
        assert len(a.recorder.loaded) == 2


async def test_after_a_pause_past_its_lease_a_node_holds_nothing_before_any_task_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        assert a.ownership.holds("api")
        autojump_clock.jump(2 * TTL)  # SIGSTOP ... SIGCONT: no task ran meanwhile
        # The very first look, before any checkpoint: nothing held, an empty fence.
        assert not a.ownership.holds("api")
        assert a.ownership.fence().epochs == {}
        await trio.lowlevel.checkpoint()
        await trio.sleep(0.1)
        assert a.recorder.dropped and a.recorder.dropped[0] == frozenset(range(SHARDS))
        await trio.sleep(TTL)
        assert len(a.ownership.held()) == SHARDS  # nobody else: taken again


async def test_a_node_that_joins_is_handed_its_share_and_no_shard_has_two_owners(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        assert len(a.ownership.held()) == SHARDS
        b = Node("b", cluster)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run)
            for _ in range(int(2 * TTL / 0.05)):
                assert overlap(a, b) == set()
                await trio.sleep(0.05)
            assert set(a.ownership.held()) == share("a", ["a", "b"])
            assert set(b.ownership.held()) == share("b", ["a", "b"])
            handed = share("b", ["a", "b"])
            assert frozenset().union(*a.recorder.dropped) == handed
            assert b.recorder.have == handed
            assert a.metrics.render().count(
                f'pagerd_cluster_shards_dropped_total{{reason="handover"}} {len(handed)}'
            )
            # A clean stop of b: a takes its share back at its next round, not after lease_ttl.
            b.scope.cancel()
            await trio.sleep(TTL / 4 + 0.2)
            assert len(a.ownership.held()) == SHARDS
            nursery.cancel_scope.cancel()


async def test_the_shards_of_a_node_killed_are_taken_within_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a", "b", "c") as (a, b, c):
        await trio.sleep(2 * TTL)
        mine = set(b.ownership.held())
        assert mine == share("b", ["a", "b", "c"])
        renewed = trio.current_time() - b.ownership.statistics().renewed_age  # type: ignore[operator]
        b.kill()
        while True:
            if mine <= set(a.ownership.held()) | set(c.ownership.held()):
                break
            await trio.sleep(0.01)
        taken = trio.current_time()
        assert taken - renewed <= TTL + 0.5, taken - renewed
        assert overlap(a, c) == set()
        assert len(a.ownership.held()) + len(c.ownership.held()) == SHARDS


async def test_an_orphan_is_taken_by_a_node_that_does_not_prefer_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A shard free for longer than lease_ttl/2 is claimed by whoever sees it so (their views
    of who is alive may differ): here a shard whose preferred node, alive, never claims it."""
    cluster = FakeCluster(trio.current_time)
    stuck = min(share("b", ["a", "b"]))

    class Refusing(Link):
        """b's link, which never claims `stuck` (as if b saw another node alive)."""

        def __getattr__(self, name: str) -> Any:
            call = super().__getattr__(name)
            if name != "claim":
                return call

            def claim(node: str, shards: Collection[int], ttl: float) -> dict[int, int]:
                result: dict[int, int] = call(node, set(shards) - {stuck}, ttl)
                return result

            return claim

    async with nodes(cluster, "a") as (a,):
        b = Node("b", cluster)
        b.link = Refusing(cluster)
        b.ownership._cluster = b.link
        await trio.sleep(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run)
            await trio.sleep(3 * TTL)
            assert stuck in a.ownership.held()  # handed over, left free, taken back
            assert overlap(a, b) == set()
            nursery.cancel_scope.cancel()


async def test_an_adoption_that_fails_is_tried_again_and_holds_nothing_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    a = Node("a", cluster)
    a.recorder.fail = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        await trio.sleep(TTL)
        assert a.ownership.held() == {}
        assert not a.ownership.holds("api")
        a.recorder.fail = False
        await trio.sleep(TTL / 2)
        assert len(a.ownership.held()) == SHARDS
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("ttl", [2.0, 10.0, 300.0])
def test_the_margin_is_at_least_a_second_and_a_fifth_of_the_lease(ttl: float) -> None:
    assert margin_of(ttl) >= 1.0
    assert margin_of(ttl) >= ttl / 5
    assert margin_of(ttl) <= ttl / 2


async def test_a_reload_drops_shards_at_once_and_adopts_them_again_after_a_later_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A write of unknown outcome (`Ownership.reload`): its shards stop counting as held at
    once (no decision: their term has no adoption; the fence keeps their epoch, for the
    records of the sends that go on), keep their lease, and are adopted again from the store
    under the next epoch (the write of unknown outcome, were it still on its way, is fenced
    out), never on the strength of a claim sent before the reload (the store's claim waits
    for a write in flight on its shards: only a later one vouches for what adoption reads)."""
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        ownership, recorder = a.ownership, a.recorder
        epoch = ownership.held()[7]
        ownership.reload([7])
        assert 7 not in ownership.held() and ownership.fence().epochs[7] == epoch
        assert ownership.terms([7]) == {7: Term(epoch)} and ownership.reloading(7)
        assert recorder.dropped == [frozenset({7})] and 7 not in recorder.have
        assert a.metrics.render().count('pagerd_cluster_shards_dropped_total{reason="reload"} 1')
        await trio.sleep(0.5)  # the round it woke adopts it again: same lease, a new epoch
        assert ownership.held()[7] == epoch + 1 and 7 in recorder.have
        assert ownership.held()[8] == epoch  # the others' renewed, as they were
        adopted = ownership.terms([7])[7]
        assert adopted.epoch == epoch + 1 and adopted.adoption is not None
        with pytest.raises(Fenced):  # a write of the old term, arriving now: refused
            cluster.check(Fence("a", {7: epoch}, ownership.run_id), [7])
        assert not ownership.reloading(7)
        assert recorder.loaded[-1] == frozenset({7}) and recorder.started[-1] == frozenset({7})

        # Now the reload comes while a claim is in flight (sent before it).
        claims: list[int] = []
        claim = cluster.claim

        def claiming(
            node: str, shards: Collection[int], ttl: float, *, run: str, anew: Collection[int] = ()
        ) -> dict[int, int]:
            got = claim(node, shards, ttl, run=run, anew=anew)
            claims.append(ownership.rounds)
            if len(claims) == 1:
                ownership.reload([9])
            return got

        cluster.claim = claiming  # type: ignore[method-assign]
        adopted_in: list[int] = []
        real_adopt = recorder.adopt

        async def adopt(shards: frozenset[int]) -> None:
            adopted_in.append(ownership.rounds)
            await real_adopt(shards)

        recorder.adopt = adopt  # type: ignore[method-assign]
        await trio.sleep(TTL / 2)
        assert ownership.held()[9] == ownership.held()[8] + 1
        # Adopted in a round after the one whose claim was in flight, not in it.
        assert adopted_in and adopted_in[0] > claims[0] + 1, (adopted_in, claims)


async def test_every_drop_reason_is_exported_at_zero_before_any_drop() -> None:
    """Prometheus' `increase()` misses the first increment of a series that appears with it:
    an alert on `reason="expired"` must see the first expiry."""
    metrics = Metrics()
    Ownership("a", FakeCluster(lambda: 0.0), inline, TTL, metrics, run="r-a")
    rendered = metrics.render()
    for reason in get_args(DropReason):
        assert f'pagerd_cluster_shards_dropped_total{{reason="{reason}"}} 0\n' in rendered
    assert 'pagerd_cluster_node_info{node="a"} 1\n' in rendered


def _messages(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pagerd.ownership" and r.levelno == level and r.getMessage().startswith(start)
    ]


async def test_routine_drops_are_info_and_adoptions_say_whom_they_came_from(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A handover and a clean stop are the routine of nodes joining and leaving (INFO); a
    lease lost is a WARNING. An adoption names the node it came from and whether it released
    its lease (a rebalance) or its lease ran out (a takeover)."""
    caplog.set_level(logging.INFO, logger="pagerd.ownership")
    cluster = FakeCluster(trio.current_time)
    async with nodes(cluster, "a") as (a,):
        await trio.sleep(1)
        assert not a.ownership.alive
        b = Node("b", cluster)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run)
            await trio.sleep(2 * TTL)
            assert a.ownership.alive == ("b",) and b.ownership.alive == ("a",)
            handed = share("b", ["a", "b"])
            assert _messages(caplog, logging.INFO, "dropped") == [
                f"dropped {len(handed)} shard(s) reason=handover node=a: {_listed(handed)}"
            ]
            assert _messages(caplog, logging.INFO, "adopted")[-1] == (
                f"adopted {len(handed)} shard(s) node=b: from a, released (rebalance):"
                f" {_listed(handed)}"
            )
            caplog.clear()
            b.kill()
            await trio.sleep(2 * TTL)
            assert len(a.ownership.held()) == SHARDS
            assert _messages(caplog, logging.INFO, "adopted") == [
                f"adopted {len(handed)} shard(s) node=a: from b, its lease expired (takeover):"
                f" {_listed(handed)}"
            ]
            assert not a.ownership.alive
            # A lease lost unawares: a WARNING.
            a.link.cut = True
            await trio.sleep(TTL)
            assert a.ownership.held() == {}
            assert a.ownership.round_error == "cut from the database (the test)"
            assert _messages(caplog, logging.WARNING, "dropped") == [
                f"dropped {SHARDS} shard(s) reason=expired node=a: {_listed(range(SHARDS))}"
            ]
            a.link.cut = False
            await trio.sleep(TTL)
            assert a.ownership.round_error is None
            caplog.clear()
            nursery.cancel_scope.cancel()
    assert _messages(caplog, logging.INFO, "dropped") == [
        f"dropped {SHARDS} shard(s) reason=stop node=a: {_listed(range(SHARDS))}"
    ]
    assert not _messages(caplog, logging.WARNING, "dropped")


def _listed(shards: Collection[int]) -> str:
    shown = sorted(shards)
    return ",".join(map(str, shown[:16])) + (f",... ({len(shown)})" if len(shown) > 16 else "")
