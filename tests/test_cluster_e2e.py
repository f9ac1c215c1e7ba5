"""Three real pagerd nodes on one PostgreSQL (issue 17 §3): an event sent to any node, failover
after `kill -9`, a node paused past its lease, a node cut from the database, the database
restarted, nodes joining and leaving. Every page is counted at one webhook receiver
(`tests.cluster`): each step must arrive once.

Leases last 2 s, the policy's levels 2 s each; every wait is for a condition, bounded. Waiting
for something *not* to happen (a page after an ack) is bounded by when it would have happened.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pagerd.storage.postgresql.schema import SCHEMA_VERSION, migrate
from tests import postgres
from tests.cluster import LEASE_TTL, Cluster, Page, running
from tests.processes import wait_for

SERVICES = [f"svc-{i}" for i in range(24)]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Cluster]:
    """One cluster for the tests that leave it whole: starting three nodes takes seconds."""
    with running(tmp_path_factory.mktemp("cluster"), pg_dsn, SERVICES) as cluster:
        yield cluster


@pytest.fixture
def cluster(shared: Cluster) -> Cluster:
    """The shared cluster, every node up and holding its share; each test takes services of
    its own (`Cluster.fresh`). Pages are checked once each across all of its tests."""
    for node in shared.nodes:
        if node.paused:
            node.resume()
        node.proxy.heal()
        if not node.ready:
            node.start()
    shared.wait_owned(within=30)
    return shared


pg_dsn = postgres.pg_dsn


def owner_name(status: dict[str, Any]) -> str | None:
    """The node a service's status names as its owner."""
    owner = status.get("owner")
    if isinstance(owner, dict):
        node = owner.get("node")
        return None if node is None else str(node)
    return None if owner is None else str(owner)


def step(service: str, level: int, number: int = 1, round: int = 1) -> str:
    """An escalation step as the tests name it: `service#number/round/level` (a notification's
    id without its target, whose address the id shows shortened)."""
    return f"{service}#{number}/{round}/{level}"


def step_of(page: Page) -> str:
    return "/".join(page.id.split("/")[:3])


def steps(pages: list[Page]) -> list[str]:
    return [step_of(p) for p in pages]


def sent(cluster: Cluster, notification: str) -> bool:
    """Its delivery is recorded: no new owner will send it again (no ambiguous window)."""
    rows = cluster.query("SELECT state FROM notifications WHERE id LIKE %s", notification + "/%")
    return len(rows) == 1 and rows[0][0] == "sent"


def paged(notification: str, pages: list[Page]) -> bool:
    return notification in steps(pages)


def others(cluster: Cluster, name: str) -> list[str]:
    return [n.name for n in cluster.nodes if n.name != name]


def assert_once(pages: list[Page]) -> None:
    """Every notification arrived once, with one idempotency key."""
    doubled: dict[str, list[Page]] = {}
    for page in pages:
        doubled.setdefault(page.id, []).append(page)
    assert {i: [(p.node, p.key) for p in ps] for i, ps in doubled.items() if len(ps) > 1} == {}


def test_an_event_sent_to_any_node_pages_once_and_an_ack_through_a_third_stops_it(
    cluster: Cluster,
) -> None:
    owner = cluster.nodes[0].name
    service = cluster.fresh(owner)
    sender, acker = (cluster.node(n) for n in others(cluster, owner))

    epoch = cluster.epoch(service)
    reply = sender.ask({"op": "alert", "service": service, "message": "disk full"})
    assert reply["ok"] and not reply.get("queued"), reply
    first = step(service, 1)
    cluster.receiver.wait(partial(paged, first), 10, "level 1 paged")
    owners = {owner}
    if cluster.epoch(service) != epoch:
        # A loaded machine starved a lease renewal (2 s leases) and the shard moved: the page
        # may then be the new owner's; the promise (once, by an owner) is the same.
        cluster.wait_owned()
        owner = cluster.owner(service) or owner
        owners.add(owner)
    assert cluster.receiver.of(service)[0].node in owners

    reply = acker.ask({"op": "ack", "service": service, "by": "alice"})
    assert reply["ok"] and reply["incident"]["acknowledged"], reply
    for node in cluster.nodes:
        # The answer is the database's (written in the owner's commit, read by the acker at
        # once); the owner's memory takes the commit's state a moment later, when its actor
        # resumes: a status read in between may be that moment behind, never more.
        wait_for(
            lambda node=node: node.ask({"op": "status", "service": service})["incident"][
                "acknowledged"
            ],
            10,
            f"{node.name} shows the ack",
        )
        status = node.ask({"op": "status", "service": service})
        assert status["ok"] and status["incident"]["acknowledged"], (node.name, status)
        listed = node.ask({"op": "status"})
        (mine,) = [s for s in listed["services"] if s["service"] == service]
        assert mine["incident"]["acknowledged"], (node.name, mine)
        # Each names the owner: the one the database says (read around the statuses, so a
        # starved renewal moving the shard meanwhile is seen, not taken for a wrong answer).
        for shown in (status, mine):
            named = owner_name(shown)
            if named != owner:
                cluster.wait_owned()
                owner = cluster.owner(service) or owner
                moved = cluster.epoch(service) != epoch
                assert named in (None, owner) and moved, (node.name, shown)

    # Level 2 would have been due 2 s after the alert: past that (and a lease), nothing more.
    time.sleep(2.0 + LEASE_TTL)
    assert steps(cluster.receiver.of(service)) == [first]


def test_kill_9_of_the_owner_a_survivor_pages_the_due_level_once(cluster: Cluster) -> None:
    owner = cluster.node(cluster.nodes[0].name)
    service = cluster.fresh(owner.name)
    assert owner.ask({"op": "alert", "service": service})["ok"]
    first, second = step(service, 1), step(service, 2)
    wait_for(lambda: sent(cluster, first), 10, "level 1 sent and recorded")
    ((due,),) = cluster.query(
        "SELECT deadline FROM incidents WHERE service = %s AND number = 1", service
    )
    owner.kill()
    killed = time.time()

    cluster.receiver.wait(partial(paged, second), 30, "level 2 paged")
    (page,) = [p for p in cluster.receiver.of(service) if step_of(p) == second]
    assert page.node != owner.name
    print(
        f"failover: level 2 due {due - killed:+.2f}s after the kill, paged by {page.node}"
        f" {page.at - killed:.2f}s after it, {page.at - due:.2f}s after it was due"
        f" (lease_ttl {LEASE_TTL:g}s)"
    )
    cluster.settle()
    assert_once(cluster.receiver.pages())
    assert steps(cluster.receiver.of(service)) == [first, second]


def test_a_node_paused_past_its_lease_sends_nothing_for_the_shards_it_lost_and_rejoins(
    cluster: Cluster,
) -> None:
    paused = cluster.node(cluster.nodes[1].name)
    service = cluster.fresh(paused.name)
    assert paused.ask({"op": "alert", "service": service})["ok"]
    first, second = step(service, 1), step(service, 2)
    wait_for(lambda: sent(cluster, first), 10, "level 1 sent and recorded")

    paused.pause()  # level 2 falls due while it sleeps: its timer is overdue when it wakes
    wait_for(lambda: cluster.owner(service) not in (None, paused.name), 15, "taken over")
    cluster.receiver.wait(partial(paged, second), 15, "level 2 paged")
    resumed = time.time()
    paused.resume()

    cluster.wait_owned(within=20)  # it rejoins: all three hold shards again
    cluster.settle()
    assert_once(cluster.receiver.pages())
    assert steps(cluster.receiver.of(service)) == [first, second]
    late = [p for p in cluster.receiver.pages() if p.node == paused.name and p.at >= resumed]
    assert late == []
    # And it works again: an alert for a service it holds now pages.
    again = cluster.fresh(paused.name)
    assert cluster.nodes[0].ask({"op": "alert", "service": again})["ok"]
    cluster.receiver.wait(partial(paged, step(again, 1)), 10, "paged after")
    assert cluster.receiver.of(again)[-1].node == paused.name


@pytest.mark.parametrize("cut", ["drop", "stall"])
def test_a_node_cut_from_postgresql_stops_within_its_lease_others_take_over_it_rejoins(
    cluster: Cluster, cut: str
) -> None:
    node = cluster.node(cluster.nodes[2].name)
    service = cluster.fresh(node.name)
    assert node.ask({"op": "alert", "service": service})["ok"]
    first, second = step(service, 1), step(service, 2)
    wait_for(lambda: sent(cluster, first), 10, "level 1 sent and recorded")

    getattr(node.proxy, cut)()
    at = time.time()
    wait_for(lambda: cluster.owner(service) not in (None, node.name), 15, "taken over")
    cluster.receiver.wait(partial(paged, second), 15, "level 2 paged")
    # While cut, an alert to another of its services (sent to a node that reaches the
    # database) is handled by the new owner.
    other = cluster.fresh(cluster.owner(service) or "")
    assert cluster.node(others(cluster, node.name)[0]).ask({"op": "alert", "service": other})["ok"]
    cluster.receiver.wait(partial(paged, step(other, 1)), 10, "paged while cut")
    healed = time.time()
    node.proxy.heal()

    cluster.wait_owned(within=30)
    cluster.settle()
    assert_once(cluster.receiver.pages())
    assert steps(cluster.receiver.of(service)) == [first, second]
    late = [p for p in cluster.receiver.pages() if p.node == node.name and at + LEASE_TTL < p.at]
    assert [p for p in late if p.at < healed] == []


def test_postgresql_restart_and_failover_pause_paging_and_lose_or_double_nothing(
    tmp_path: Path,
) -> None:
    with postgres.own_server() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            migrate(conn, SCHEMA_VERSION)
        with running(tmp_path, server.dsn, SERVICES) as cluster:
            cluster.wait_owned()
            expected: list[str] = []
            for mode, service in (("fast", "svc-1"), ("immediate", "svc-2")):
                node = cluster.node(cluster.owner(service) or "")
                assert node.ask({"op": "alert", "service": service})["ok"]
                first, second = step(service, 1), step(service, 2)
                wait_for(partial(sent, cluster, first), 10, "level 1 recorded")
                server.stop(mode)  # a restart (fast), then as a failover's crash (immediate)
                down = time.time()
                # Down past the level 2's deadline and every node's leases.
                time.sleep(2.0 + LEASE_TTL)
                during = [p for p in cluster.receiver.pages() if p.at > down + LEASE_TTL]
                server.start()
                assert during == [], f"paged with the database down ({mode}): {during}"
                cluster.receiver.wait(partial(paged, second), 30, "resumed")
                cluster.wait_owned(within=30)
                expected += [first, second]
            # Paging works as before.
            assert cluster.nodes[0].ask({"op": "alert", "service": "svc-3"})["ok"]
            expected.append(step("svc-3", 1))
            cluster.receiver.wait(partial(paged, expected[-1]), 10, "after")
            cluster.settle()
            assert_once(cluster.receiver.pages())
            got = set(steps(cluster.receiver.pages()))
            assert set(expected) <= got
            assert not [i for i in got - set(expected) if not i.startswith("svc-3#")]


def test_nodes_joining_and_leaving_rebalance_shards_while_paging_goes_on(
    tmp_path: Path,
) -> None:
    with (
        postgres.migrated() as dsn,
        running(tmp_path, dsn, SERVICES, nodes=2, start=False) as cluster,
    ):
        cluster.start()
        cluster.wait_owned()
        rng = random.Random(17)
        stop = threading.Event()
        answers: list[tuple[str, str, str, dict[str, Any]]] = []  # node, service, op, reply

        def storm() -> None:
            while not stop.is_set():
                node = rng.choice([n for n in cluster.nodes if n.ready])
                service = rng.choice(SERVICES)
                op = rng.choice(["alert", "alert", "ack", "healthy"])
                try:
                    reply = node.ask({"op": op, "service": service})
                except OSError as e:  # the node chosen is stopping: not answered
                    reply = {"ok": False, "error": {"code": type(e).__name__}}
                answers.append((node.name, service, op, reply))
                stop.wait(0.05)

        thread = threading.Thread(target=storm, daemon=True)
        thread.start()
        try:
            time.sleep(1.0)
            joined = cluster.add("node-3")
            joined.start()
            cluster.wait_owned(by={"node-1", "node-2", "node-3"}, within=20)
            time.sleep(1.0)
            assert cluster.nodes[0].terminate() == 0
            cluster.wait_owned(by={"node-2", "node-3"}, within=20)
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(timeout=30)
        cluster.settle(escalations=True, within=60)
        ok = [a for a in answers if a[3].get("ok")]
        assert len(ok) > 30
        # Refused: an ack with nothing open; or, sent to the node as it stopped, unanswered.
        wrong = [
            a
            for a in answers
            if not a[3].get("ok")
            and not (a[2] == "ack" and a[3]["error"]["code"] == "no_open_incident")
            and not (a[0] == "node-1" and a[3]["error"]["code"] in ("ConnectionError", "busy"))
        ]
        assert wrong == []
        assert_once(cluster.receiver.pages())
        # Every incident escalated through both levels unless acknowledged or closed first.
        rows = cluster.query(
            "SELECT i.service, i.number, i.acknowledged_at IS NULL AND i.closed_at IS NULL,"
            " array_agg(n.level ORDER BY n.level) FROM incidents i"
            " LEFT JOIN notifications n ON n.service = i.service AND n.incident = i.number"
            " GROUP BY 1, 2, 3"
        )
        paged = cluster.receiver.counts()
        for service, number, unanswered, levels in rows:
            assert levels[0] == 1, (service, number, levels)
            if unanswered:
                assert levels == [1, 2], (service, number, levels)
        decided = {r[0] for r in cluster.query("SELECT id FROM notifications WHERE state = 'sent'")}
        assert decided == set(paged)
