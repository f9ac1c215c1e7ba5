"""The review's findings 1 and 3 on the engine's side, with the fake cluster under a mock clock:
the owner of a lease is a run of pagerd, not a name (two processes given one `node_name` are
two owners, and the second one waits, then stops), and the nodes' configs are compared at each
join, so that a service missing from one node's config is not closed as removed while another
node may page it. The same against real nodes and PostgreSQL: tests/test_cluster_review.py."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from pager.shards import SHARDS
from pagerd.engine.ownership import DUPLICATE_AFTER, DuplicateNode
from tests.fake_cluster import FakeCluster
from tests.test_ownership import TTL, Node


async def test_a_second_run_of_a_live_name_owns_nothing_and_stops_after_twice_the_lease(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = FakeCluster(trio.current_time)
    first = Node("pagerd-1", cluster, run="first")
    second = Node("pagerd-1", cluster, run="second")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await trio.sleep(1)
        held = first.ownership.held()
        assert len(held) == SHARDS
        started = trio.current_time()
        with pytest.raises(DuplicateNode, match="node_name must differ on every node") as caught:
            # `run` raises before it says it started: the daemon does not start.
            await second.ownership.run(task_status=_never_started())
        waited = trio.current_time() - started
        assert DUPLICATE_AFTER * TTL <= waited <= DUPLICATE_AFTER * TTL + TTL
        assert "'pagerd-1'" in str(caught.value) and "first" in str(caught.value)
        # All along, the first run kept every shard under the same epochs, and the second
        # held none: it never claimed.
        assert first.ownership.held() == held
        assert second.ownership.held() == {} and second.recorder.loaded == []
        assert all(lease.epoch == 1 for lease in cluster.leases())
        nursery.cancel_scope.cancel()
    assert "another run of this node (run=first) is alive" in caplog.text


async def test_a_restart_after_a_kill_waits_for_the_old_run_s_row_then_takes_over_in_a_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = FakeCluster(trio.current_time)
    old = Node("pagerd-1", cluster, run="old")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(old.run)
        await trio.sleep(1)
        epochs = old.ownership.held()
        old.kill()  # kill -9: its row and leases stay until they expire
        killed = trio.current_time()
        new = Node("pagerd-1", cluster, run="new")
        extended: list[tuple[float, float, str]] = []
        new.ownership.on_waiting = lambda s, why: extended.append((trio.current_time(), s, why))
        await nursery.start(new.ownership.run)  # started once the old row ended
        came_up = trio.current_time() - killed
        assert came_up <= TTL + 0.5
        # systemd's start timeout was extended past each wait, saying why (an operator: a
        # lease_ttl of 30 s would have had the start killed by the unit's 60 s).
        assert extended and all(why.startswith("waiting for another run") for *_, why in extended)
        assert all(at + seconds >= trio.current_time() for at, seconds, _ in extended[-1:])
        await trio.sleep(TTL / 4 + 0.5)  # the leases end with the row, give or take a round
        held = new.ownership.held()
        assert len(held) == SHARDS
        # Another run is another owner: every epoch went up, and the old fence is refused.
        assert all(held[s] == epochs[s] + 1 for s in held)
        fence = new.ownership.fence()
        assert fence.run == "new" and fence.node == "pagerd-1"
        nursery.cancel_scope.cancel()


async def test_the_nodes_configs_are_compared_at_each_join_and_a_mismatch_is_loud(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = FakeCluster(trio.current_time)
    a = Node("a", cluster, config="c1")
    b = Node("b", cluster, config="c1")
    agreements: list[float] = []
    a.ownership.on_agreement = lambda: agreements.append(trio.current_time())
    async with trio.open_nursery() as nursery:
        assert not a.ownership.agreed()  # nothing known of the others before a join
        nursery.start_soon(a.run)
        nursery.start_soon(b.run)
        await trio.sleep(TTL)
        assert a.ownership.agreed() and b.ownership.agreed() and len(agreements) == 1
        assert _gauge(a, "pagerd_cluster_config_mismatch") == 0
        with caplog.at_level(logging.WARNING, "pagerd.ownership"):
            b.config = "c2"  # b reloads another config: b knows at once, a at its next round
            assert not b.ownership.agreed()
            await trio.sleep(TTL / 2 + 0.5)
        assert not a.ownership.agreed()
        assert a.ownership.configs() == {"a": "c1", "b": "c2"}
        assert a.ownership.statistics().config_agreed is False
        assert _gauge(a, "pagerd_cluster_config_mismatch") == 1
        warned = [r.getMessage() for r in caplog.records if "different configs" in r.getMessage()]
        assert any("a=c1 b=c2" in w for w in warned)
        # Rate-limited: the same mismatch is not said again at every round.
        caplog.clear()
        with caplog.at_level(logging.WARNING, "pagerd.ownership"):
            await trio.sleep(TTL)
        assert caplog.text.count("different configs") <= 2  # a's and b's, at most once each
        # Both nodes keep owning their shares all along: a mismatch moves no shard.
        assert len(a.ownership.held()) + len(b.ownership.held()) == SHARDS
        assert a.ownership.held() and b.ownership.held()
        b.config = "c1"
        with caplog.at_level(logging.INFO, "pagerd.ownership"):
            await trio.sleep(TTL / 2 + 0.5)  # b's next round says it, a's next one reads it
        assert a.ownership.agreed() and len(agreements) == 2
        assert "the nodes run the same config again (c1)" in caplog.text  # said, once over
        nursery.cancel_scope.cancel()


def _gauge(node: Node, name: str) -> float:
    for line in node.metrics.render().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not rendered")


def _never_started() -> trio.TaskStatus[None]:
    class Status:
        def started(self, value: None = None) -> None:
            raise AssertionError("started, though another run of its name is alive")

    return Status()
