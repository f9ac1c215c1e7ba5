"""The cluster torture test (issue 17 §3): three real pagerd nodes on one PostgreSQL, a storm of
alert / ack / healthy sent to random nodes, and every few seconds one fault: a node killed with
`kill -9` (and restarted a little later), paused with SIGSTOP past its lease and resumed, or cut
from PostgreSQL through its proxy (connections dropped, or stalled) and healed. At the end,
with every node back and every escalation run out, the model of the events answered ok and the
pages the webhook receiver took are checked (the single-node torture's checks,
`tests.torture.check_against`, on the shared database), and in addition:

- nothing is paged after its incident was acknowledged or closed, beyond one send in flight at
  that moment: a page arriving more than `IN_FLIGHT` after the ack or the close is a problem;
- no node sends while it is cut or paused, past its lease (`LEASE_TTL` after the fault began);
- the inbox is empty (every event a node accepted for another was handled).

A page sent twice counts as the ambiguous window (reported, not a problem) only if it is the
same notification with the same idempotency key, and a fault (or a node's start, which moves
shards back to it) came within a lease after it first arrived: a send in progress when its
shard changed owner, re-sent by the next owner.

    .venv/bin/python -m tests.torture_cluster --rounds 30 --seed 1   # the long run
    (the test suite runs a quick one: tests/test_torture_cluster.py)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio

from tests import postgres
from tests.cluster import LEASE_TTL, Cluster, Node, running
from tests.torture import Exchange, Report, check_against, verdict

IN_FLIGHT = 2.5
"""Seconds after an ack or a close that a page may still arrive: one send handed to its
transport before the ack was committed is not recalled, and lasts at most the webhook channel's
`timeout` (2 s, `tests.cluster.NODE`); the rest is the receiver's and the owner's clock read
apart."""

ACK_TIMEOUT = "700ms"
REQUEST_TIMEOUT = 8.0
"""A client's patience for one reply: past the inbox's 5 s (`queued`), so only a paused or cut
node leaves it unanswered."""


@attrs.define
class ClusterReport(Report):
    faults: dict[str, int] = attrs.Factory(dict)
    details: list[str] = attrs.Factory(list)
    """How each page sent twice came about (printed with the report)."""
    queued: int = 0
    late_after_ack: int = 0

    def summary(self) -> str:
        faults = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items()))
        return (
            f"{self.rounds} faults ({faults}), {self.events_ok} events answered ok"
            f" ({self.queued} queued), {self.unanswered} unanswered, {self.notifications}"
            f" notifications, {self.ambiguous_duplicates} re-sent in the ambiguous window,"
            f" {len(self.problems)} problems"
        )


async def _storm(
    cluster: Cluster, clients: int, rng: random.Random, log: list[list[Exchange]]
) -> None:
    """Until cancelled: each client owns a share of the services and sends one event at a time
    to a random node (a new connection each time it changes node), recording every reply."""

    async def client(k: int) -> None:
        mine = cluster.services[k::clients]
        exchanges: list[Exchange] = []
        log.append(exchanges)
        while True:
            node = rng.choice(cluster.nodes)
            service = rng.choice(mine)
            op = rng.choices(["alert", "ack", "healthy"], [6, 2, 2])[0]
            if not node.running:
                await trio.sleep(0.01)
                continue
            exchange = Exchange(service, op)
            exchanges.append(exchange)
            try:
                with trio.move_on_after(REQUEST_TIMEOUT):
                    stream = await trio.open_unix_socket(str(node.socket))
                    async with stream:
                        request = {"op": op, "service": service}
                        await stream.send_all(json.dumps(request).encode() + b"\n")
                        buffer = b""
                        while not buffer.endswith(b"\n"):
                            data = await stream.receive_some(65536)
                            if not data:
                                break
                            buffer += data
                        if buffer.endswith(b"\n"):
                            exchange.reply = json.loads(buffer)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await trio.sleep(rng.uniform(0, 0.01))

    async with trio.open_nursery() as nursery:
        for k in range(clients):
            nursery.start_soon(client, k)


@attrs.define
class Faults:
    """What the chaos did, and when (wall clock): for the checks."""

    moments: list[float] = attrs.Factory(list)
    """When a shard may have changed owner with a send in flight: each fault, each start, and
    each end of a pause or a cut (the node takes its share back from the others: a handover,
    which cuts their sends of it short)."""
    quiet: list[tuple[str, float, float]] = attrs.Factory(list)
    """(node, from, until): a node that must send nothing then (cut or paused past its
    lease)."""


async def _chaos(
    cluster: Cluster, rounds: int, rng: random.Random, faults: Faults, report: ClusterReport
) -> None:
    """`rounds` faults, one at a time, each on a random node, each undone before the next."""

    async def run(f: Callable[[], Any]) -> Any:
        return await trio.to_thread.run_sync(f)

    for _ in range(rounds):
        await trio.sleep(rng.uniform(0.5, 2.0))
        node: Node = rng.choice(cluster.nodes)
        kind = rng.choice(["kill", "pause", "drop", "stall"])
        report.faults[kind] = report.faults.get(kind, 0) + 1
        report.rounds += 1
        began = time.time()
        faults.moments.append(began)
        if kind == "kill":
            await run(node.kill)
            await trio.sleep(rng.uniform(0.2, LEASE_TTL + 1))
        elif kind == "pause":
            await run(node.pause)
            await trio.sleep(rng.uniform(LEASE_TTL, LEASE_TTL + 2))
            faults.quiet.append((node.name, began + LEASE_TTL, time.time()))
            await run(node.resume)
            faults.moments.append(time.time())
        else:
            await run(getattr(node.proxy, kind))
            await trio.sleep(rng.uniform(LEASE_TTL, LEASE_TTL + 2))
            faults.quiet.append((node.name, began + LEASE_TTL, time.time()))
            await run(node.proxy.heal)
            faults.moments.append(time.time())
        if not node.running:
            await run(node.start)
            faults.moments.append(time.time())


async def _torture(
    cluster: Cluster,
    rounds: int,
    chaos: random.Random,
    storm: random.Random,
    faults: Faults,
    report: ClusterReport,
) -> list[list[Exchange]]:
    log: list[list[Exchange]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_storm, cluster, 6, storm, log)
        await _chaos(cluster, rounds, chaos, faults, report)
        nursery.cancel_scope.cancel()
    return log


def run(folder: Path, rounds: int, services: int, seed: int, dsn: str) -> ClusterReport:
    """`rounds` faults of a three-node cluster on the (migrated, empty) database `dsn`."""
    # The faults from the seed alone (the storm's draws, which depend on timing, apart).
    chaos, storm = random.Random(seed), random.Random(seed + 1)
    names = [f"svc-{i}" for i in range(services)]
    report = ClusterReport()
    faults = Faults()
    with running(folder, dsn, names, ack_timeout=ACK_TIMEOUT, repeat=1) as cluster:
        cluster.wait_owned(within=30)
        histories = trio.run(_torture, cluster, rounds, chaos, storm, faults, report)
        cluster.wait_owned(within=30)
        cluster.settle(within=60, escalations=True)
        pages = cluster.receiver.pages()
        with psycopg.connect(dsn, autocommit=True) as conn:
            check_against(
                conn,
                histories,
                faults.moments,
                [(p.id, p.at) for p in pages],
                report,
                after_kill=LEASE_TTL + 1,
            )
            _check_cluster(conn, cluster, faults, report)
        for exchanges in histories:
            report.queued += sum(1 for e in exchanges if e.reply and e.reply.get("queued"))
    return report


def _check_cluster(
    conn: psycopg.Connection[Any], cluster: Cluster, faults: Faults, report: ClusterReport
) -> None:
    problems = report.problems
    pages = cluster.receiver.pages()
    # Same notification, same key: a re-send; another key would be a second decision.
    keys: dict[str, set[str]] = {}
    for page in pages:
        keys.setdefault(page.id, set()).add(page.key)
    for nid, found in keys.items():
        if len(found) > 1:
            problems.append(f"{nid} sent with {len(found)} idempotency keys: {sorted(found)}")
    # What a page sent twice looks like, for the report: each send's node and time, and the
    # faults around them (a re-send far from any is a problem `check_against` names).
    for nid in sorted(nid for nid in keys if sum(1 for p in pages if p.id == nid) > 1):
        sends = [p for p in pages if p.id == nid]
        first = sends[0].at
        around = [round(m - first, 2) for m in faults.moments if -30 < m - first < 30]
        report.details.append(
            f"{nid}: sent by {[(p.node, round(p.at - first, 2)) for p in sends]};"
            f" faults and starts at {around} s from the first"
        )
    # Nothing paged after an ack or a close, but one send in flight.
    ends = {
        f"{service}#{number}": min(t for t in (acked, closed) if t is not None)
        for service, number, acked, closed in conn.execute(
            "SELECT service, number, acknowledged_at, closed_at FROM incidents"
            " WHERE acknowledged_at IS NOT NULL OR closed_at IS NOT NULL"
        )
    }
    for page in pages:
        incident = page.id.partition("/")[0]
        end = ends.get(incident)
        if end is not None and page.at > end + IN_FLIGHT:
            report.late_after_ack += 1
            problems.append(f"{page.id} paged {page.at - end:.2f}s after its incident's ack/close")
    # A node cut or paused sends nothing past its lease.
    for node, since, until in faults.quiet:
        sent = [p.id for p in pages if p.node == node and since < p.at < until]
        if sent:
            problems.append(f"{node} paged {len(sent)} while cut or paused, e.g. {sent[0]}")
    (left,) = conn.execute("SELECT count(*) FROM inbox").fetchall()[0]
    if left:
        problems.append(f"{left} events left in the inbox")


def main() -> int:
    parser = argparse.ArgumentParser(description="kill -9, SIGSTOP and cut torture of a cluster")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", type=Path, help="keep the nodes' folders and logs here")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pagerd-torture-cluster-") as temporary,
        postgres.migrated() as dsn,
    ):
        folder = Path(temporary) if args.keep is None else args.keep
        folder.mkdir(parents=True, exist_ok=True)
        report = run(folder, args.rounds, args.services, args.seed, dsn)
    for detail in report.details:
        print("  re-sent: " + detail)
    return verdict(args.seed, report.summary(), report.problems)


if __name__ == "__main__":
    sys.exit(main())
