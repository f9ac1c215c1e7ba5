"""Two findings of the cluster's adversarial review (`review/cluster/`), against three real
pagerd nodes on a real PostgreSQL (`tests.cluster`), each on a database of its own:

1. Two processes given one `node_name` were both taken for the owner of every shard: an ack
   answered ok by one was overwritten by the other's stale state, which paged the next level.
   Now the owner of a lease is a run: the second process waits for the first's row, and stops
   with a clear error since that run goes on; a restart after a `kill -9` (the same picture,
   until the old row expires) comes up within about `lease_ttl` and takes over.
3. A node whose config lacked a service closed that service's open incident (as "removed from
   the config") on adopting its shard: its next level was never paged. Now a service missing
   from a node's config is closed as removed only while every live node runs the same config;
   a rolling change of the config never closes an incident, and leaves no shard unowned.

Every wait is for a condition, bounded; a wait for something *not* to happen is bounded by
when it would have happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pager.shards import preferred, shard_of
from tests import postgres
from tests.cluster import Cluster, Node, running
from tests.processes import wait_for
from tests.tcpproxy import TcpProxy

SERVICES = [f"svc-{i}" for i in range(64)]


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres.migrated() as found:
        yield found


def _open(c: Cluster) -> list[tuple[str, int]]:
    return [(str(s), int(n)) for s, n in c.query(
        "SELECT service, number FROM incidents WHERE closed_at IS NULL ORDER BY service"
    )]  # fmt: skip


def test_a_second_process_with_a_node_s_name_does_not_start_and_never_pages(
    tmp_path: Path, dsn: str
) -> None:
    with running(tmp_path, dsn, SERVICES, start=False, nodes=1, ack_timeout="15s") as c:
        (a,) = c.nodes
        a.start()
        c.wait_owned(by={a.name})
        service = SERVICES[0]
        assert a.ask({"op": "alert", "service": service, "message": "down"})["ok"]
        level_2_due = time.time() + 15
        c.receiver.wait(lambda p: any(x.path == "/first" for x in p), 10, "level 1 paged")
        # Another process, another folder, the same node_name (a copied config).
        twin = Node(a.name, tmp_path / "twin", _proxy(c), (a.folder / "pager.toml").read_text())
        c.nodes.append(twin)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited 1") as failed:
            twin.start()
        took = time.monotonic() - started
        assert f"another pagerd runs as node '{a.name}'" in str(failed.value)
        assert "node_name must differ on every node" in str(failed.value)
        # It waited about twice the lease (the first run renewing all along), not for ever.
        assert took < 2 * c.lease_ttl + 20
        # The first run kept every shard under its first epoch: no second owner ever was.
        assert c.query("SELECT DISTINCT epoch FROM leases") == [(1,)]
        ack = a.ask({"op": "ack", "service": service, "by": "alice"})
        assert ack["ok"] and ack["incident"]["acknowledged"]
        acked = time.time()
        assert acked < level_2_due - 2, "the twin took too long to give up"
        time.sleep(level_2_due + 2 * c.lease_ttl - time.time())  # past level 2's deadline
        assert [p.path for p in c.receiver.of(service)] == ["/first"]
        assert c.query("SELECT acknowledged_by FROM incidents WHERE service = %s", service) == [
            ("alice",)
        ]
        assert all(p.at < acked for p in c.receiver.of(service))


def test_a_restart_after_kill_9_under_the_same_name_comes_up_within_the_lease(
    tmp_path: Path, dsn: str
) -> None:
    with running(tmp_path, dsn, SERVICES, start=False, nodes=1, ack_timeout="4s") as c:
        (a,) = c.nodes
        a.start()
        c.wait_owned(by={a.name})
        service = SERVICES[1]
        assert a.ask({"op": "alert", "service": service, "message": "down"})["ok"]
        c.receiver.wait(lambda p: any(x.path == "/first" for x in p), 10, "level 1 paged")
        epoch = c.epoch(service)
        a.kill()
        killed = time.monotonic()
        a.start()  # a new run of the same node: it waits for the old run's row to expire
        assert time.monotonic() - killed < c.lease_ttl + 20
        # (Whether it had to wait depends on how long its start took: about lease_ttl either
        # way. The wait itself: tests/test_node_runs.py.)
        c.wait_owned(by={a.name})
        assert c.epoch(service) == epoch + 1  # a change of owner: the old run's fence is dead
        c.receiver.wait(lambda p: any(x.path == "/second" for x in p), 20, "level 2 paged")
        assert [p.path for p in c.receiver.of(service)].count("/second") == 1


def test_a_node_lacking_a_service_leaves_its_open_incident_to_the_others(
    tmp_path: Path, dsn: str
) -> None:
    """The review's `stale_config_node`: node-3 joins without `victim`, takes its shard, and
    is stopped; level 2 is paged all the same, by a node that has it."""
    names = {"node-1", "node-2", "node-3"}
    victim = next(s for s in SERVICES if preferred(shard_of(s), names) == "node-3")
    with running(tmp_path, dsn, SERVICES, start=False, nodes=3, ack_timeout="12s") as c:
        one, two, three = c.nodes
        _without(three, victim)
        one.start()
        two.start()
        c.wait_owned()
        assert one.ask({"op": "alert", "service": victim, "message": "db down"})["ok"]
        c.receiver.wait(lambda p: any(x.path == "/first" for x in p), 10, "level 1")
        three.start()
        c.wait_owned(within=20)
        # The handover of victim's shard to node-3 (which prefers it) takes its rounds.
        wait_for(lambda: c.owner(victim) == "node-3", 20, "node-3 takes victim's shard")
        wait_for(
            lambda: not three.ask({"op": "status"})["cluster"]["config_agreed"], 10,
            "node-3 sees the configs differ",
        )  # fmt: skip
        status = three.ask({"op": "status"})["cluster"]
        assert len(set(status["configs"].values())) == 2, status
        assert "the nodes run different configs" in three.log()
        assert _open(c) == [(victim, 1)]  # not closed by the node that lacks it
        three.terminate()
        c.wait_owned(within=20)
        c.receiver.wait(lambda p: any(x.path == "/second" for x in p), 30, "level 2 paged")
        assert [p.path for p in c.receiver.of(victim)] == ["/first", "/second"]
        assert not [ln for ln in three.log().splitlines() if victim in ln and "closed" in ln]


def test_a_rolling_config_change_closes_no_incident_and_leaves_no_shard_unowned(
    tmp_path: Path, dsn: str
) -> None:
    """Three nodes move one by one (stop, new file, start) from a config with `gone` to one
    without it and with a new service. While they differ, nothing is closed, every shard is
    owned after each step; once all three agree, `gone`'s
    incident is closed as removed, as on a single node."""
    gone, kept = SERVICES[2], SERVICES[3:9]
    with running(tmp_path, dsn, SERVICES, nodes=3, ack_timeout="60s") as c:
        c.wait_owned()
        for service in [gone, *kept]:
            assert c.nodes[0].ask({"op": "alert", "service": service, "message": "x"})["ok"]
        opened = sorted((s, 1) for s in [gone, *kept])
        wait_for(lambda: _open(c) == opened, 10, "every incident open")
        for node in c.nodes[:-1]:
            node.terminate()
            _without(node, gone, add="svc-new")
            node.start()
            c.wait_owned(within=20)
            time.sleep(c.lease_ttl)  # rounds of every node: each reads the others' configs
            assert _open(c) == opened, f"closed while the configs differ, after {node.name}"
            assert all(not n.ask({"op": "status"})["cluster"]["config_agreed"] for n in c.nodes)
        last = c.nodes[-1]
        last.terminate()
        _without(last, gone, add="svc-new")
        last.start()
        c.wait_owned(within=20)
        wait_for(lambda: _open(c) == sorted((s, 1) for s in kept), 20, "gone's incident closed")
        assert all(n.ask({"op": "status"})["cluster"]["config_agreed"] for n in c.nodes)
        assert c.query(
            "SELECT count(*) FROM incidents WHERE service <> %s AND closed_at IS NOT NULL", gone
        ) == [(0,)]


def _without(node: Node, service: str, add: str | None = None) -> None:
    """Take `service` out of `node`'s config file (and put `add` in)."""
    path = node.folder / "pager.toml"
    text = path.read_text()
    changed = text.replace(f'[services.{service}]\npolicy = "fast"\n', "")
    assert changed != text
    if add is not None:
        changed += f'[services.{add}]\npolicy = "fast"\n'
    path.write_text(changed)


def _proxy(c: Cluster) -> TcpProxy:
    """A proxy of its own for a node added by hand (its config may name another's)."""
    return TcpProxy(c.upstream)
