"""The crash torture test: a storm of alert / ack / healthy over many services, with short
acknowledgement timeouts, while the real `pagerd` is killed with `kill -9` at random moments
(during group commits and deliveries, since both never stop in a storm) and restarted, sometimes
after a pause in which deadlines pass. At the end, from the clients' replies, the notification
log and the database:

- every event a client was told `ok` for is in the state (nothing acknowledged is lost);
- no notification is written twice, except in the ambiguous window (written, then killed before
  its delivery was recorded: re-sent on restart), and every decided one was written;
- every escalation whose deadline passed (also while pagerd was down) fired;
- `PRAGMA integrity_check` is ok.

With `--workers N` the pages go to a webhook receiver on loopback, sent by N delivery worker
processes (`[delivery] workers`), instead of the `log` file: the same checks, on what the
receiver received.

    .venv/bin/python -m tests.torture --rounds 50 --services 200     # the long run
    .venv/bin/python -m tests.torture --rounds 50 --services 200 --workers 2
    (the test suite runs quick ones: tests/test_torture.py)
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from pager.timefmt import timestamp
from tests.processes import Pagerd
from tests.servers import HttpServer

CONFIG = """
[daemon]
socket = "pager.sock"
state_dir = "state"
[channels.email]
transport = "log"
[policies.fast]
repeat = 1
[[policies.fast.levels]]
targets = ["email:first@example.com"]
ack_timeout = "700ms"
[[policies.fast.levels]]
targets = ["email:second@example.com"]
ack_timeout = "700ms"
"""

WEBHOOK = """
[daemon]
socket = "pager.sock"
state_dir = "state"
[delivery]
workers = {workers}
[channels.webhook]
transport = "webhook"
timeout = "5s"
concurrency = 16
rate_limit = "1000/s"
burst = 1000
retry_initial = "100ms"
retry_max = "500ms"
[policies.fast]
repeat = 1
[[policies.fast.levels]]
targets = ["webhook:{url}/first"]
ack_timeout = "700ms"
[[policies.fast.levels]]
targets = ["webhook:{url}/second"]
ack_timeout = "700ms"
"""


@attrs.define
class Exchange:
    service: str
    op: str
    reply: dict[str, Any] | None = None  # None: sent, never answered (the daemon died)


@attrs.define
class Report:
    rounds: int = 0
    events_ok: int = 0
    unanswered: int = 0
    notifications: int = 0
    ambiguous_duplicates: int = 0
    problems: list[str] = attrs.Factory(list)

    def summary(self) -> str:
        return (
            f"{self.rounds} kill -9 rounds, {self.events_ok} events acknowledged ok, "
            f"{self.unanswered} unanswered at a kill, {self.notifications} notifications, "
            f"{self.ambiguous_duplicates} re-sent in the ambiguous window, "
            f"{len(self.problems)} problems"
        )


async def _storm(
    sock: Path,
    services: list[str],
    connections: int,
    rng: random.Random,
    log: list[list[Exchange]],
) -> None:
    """Until cancelled: each connection owns a share of the services, pipelines events for them
    and records every reply in order, so each service's history is known exactly."""

    async def client(k: int) -> None:
        mine = services[k::connections]
        exchanges: list[Exchange] = []
        log.append(exchanges)
        try:
            stream = await trio.open_unix_socket(str(sock))
        except OSError:
            return
        async with stream, trio.open_nursery() as nursery:

            async def read() -> None:
                buffer = b""
                answered = 0
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    if not data:
                        return
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        exchanges[answered].reply = json.loads(line)
                        answered += 1

            nursery.start_soon(read)
            try:
                while True:
                    service = rng.choice(mine)
                    op = rng.choices(["alert", "ack", "healthy"], [6, 2, 2])[0]
                    exchanges.append(Exchange(service, op))
                    request = {"op": op, "service": service}
                    await stream.send_all(json.dumps(request).encode() + b"\n")
                    await trio.sleep(rng.uniform(0, 0.004))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for k in range(connections):
            nursery.start_soon(client, k)


async def _round(
    daemon: Pagerd, services: list[str], seconds: float, rng: random.Random
) -> list[list[Exchange]]:
    log: list[list[Exchange]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_storm, daemon.socket, services, 4, rng, log)
        await trio.sleep(seconds)
        daemon.kill()  # in the middle of everything
        await trio.sleep(0.2)  # let the clients see the connections break
        nursery.cancel_scope.cancel()
    return log


def run(folder: Path, rounds: int, services: int, seed: int, workers: int | None = None) -> Report:
    """`rounds` kills of a storm over `services`; the pages written to the `log` file, or, with
    `workers`, posted to a webhook receiver by that many delivery worker processes."""
    if workers is None:
        return _run(folder, rounds, services, seed, None)
    with HttpServer() as receiver:
        return _run(folder, rounds, services, seed, (workers, receiver))


def _run(
    folder: Path,
    rounds: int,
    services: int,
    seed: int,
    webhook: tuple[int, HttpServer] | None,
) -> Report:
    rng = random.Random(seed)
    names = [f"svc-{i}" for i in range(services)]
    config = folder / "pager.toml"
    text = CONFIG
    if webhook is not None:
        text = WEBHOOK.format(workers=webhook[0], url=webhook[1].url)
    config.write_text(text + "".join(f'[services.{n}]\npolicy = "fast"\n' for n in names))
    daemon = Pagerd(config, folder / "pager.sock", folder / "pagerd.log")
    report = Report()
    kills: list[float] = []
    histories: list[list[Exchange]] = []
    try:
        for _ in range(rounds):
            daemon.start()
            histories += trio.run(_round, daemon, names, rng.uniform(0.3, 1.5), rng)
            kills.append(time.time())
            report.rounds += 1
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.2, 2.0))  # down while deadlines pass
        daemon.start()
        _settle(folder / "state" / "pager.db", within=60)
        daemon.terminate()
    finally:
        daemon.stop()
    if webhook is None:
        log = (folder / "state" / "notifications.jsonl").read_text().splitlines()
        pages = [(n["id"], timestamp(n["time"])) for n in map(json.loads, log)]
    else:
        pages = [(r.json()["id"], r.received_at) for r in webhook[1].requests]
    # A connection refused at first by the receiver's full accept queue is tried again 1 s
    # later (TCP's SYN retry): its request arrives that much after the kill.
    _check(folder, histories, kills, pages, report, after_kill=0.0 if webhook is None else 1.5)
    return report


def _settle(db: Path, within: float) -> None:
    """Until every due escalation fired and every notification was delivered."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db, timeout=30)
        try:
            overdue = conn.execute(
                "SELECT COUNT(*) FROM incidents WHERE closed_at IS NULL AND deadline IS NOT NULL"
            ).fetchone()[0]
            undelivered = conn.execute(
                "SELECT COUNT(*) FROM notifications WHERE state NOT IN ('sent', 'cancelled')"
            ).fetchone()[0]
        finally:
            conn.close()
        if overdue == 0 and undelivered == 0:
            return
        time.sleep(0.2)
    raise AssertionError("pagerd did not settle: escalations or deliveries still pending")


def _check(
    folder: Path,
    histories: list[list[Exchange]],
    kills: list[float],
    pages: list[tuple[str, float]],
    report: Report,
    after_kill: float = 0.0,
) -> None:
    """`pages`: (notification id, when it was written or received) of every page, in order;
    `after_kill`: how long after a kill a page on its way may still arrive."""
    conn = sqlite3.connect(folder / "state" / "pager.db")
    check_against(conn, histories, kills, pages, report, after_kill)
    # 4. The database is sound.
    check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        report.problems.append(f"integrity_check: {check}")
    conn.close()


class Connection(Protocol):
    """What the checks read the state through: sqlite3's or psycopg's connection (the queries
    are in the SQL both speak), so a cluster's torture checks its PostgreSQL with them."""

    def execute(self, query: str) -> Any: ...


def check_against(
    conn: Connection,
    histories: list[list[Exchange]],
    kills: list[float],
    pages: list[tuple[str, float]],
    report: Report,
    after_kill: float = 0.0,
) -> None:
    """The checks of the model against a store: `kills`, the moments a page on its way may
    have been cut short and sent again (in a cluster, any change of a shard's owner)."""
    problems = report.problems
    incidents = {
        (s, n): (alerts, acked, closed)
        for s, n, alerts, acked, closed in conn.execute(
            "SELECT service, number, alerts, acknowledged_at IS NOT NULL, closed_at IS NOT NULL"
            " FROM incidents"
        )
    }
    # 1. Nothing a client was told "ok" for is lost.
    for exchanges in histories:
        current: dict[str, int | None] = {}  # service -> open incident number, as last told
        for ex in exchanges:
            if ex.reply is None:
                report.unanswered += 1
                current.clear()  # unknown from here on: something may have been applied
                continue
            if not ex.reply.get("ok"):
                continue
            report.events_ok += 1
            incident = ex.reply.get("incident")
            number = int(incident["id"].rpartition("#")[2]) if incident else None
            if ex.op == "healthy":
                before = current.get(ex.service)
                if before is not None and not incidents.get((ex.service, before), (0, 0, 1))[2]:
                    problems.append(f"{ex.service}#{before} closed by an ok healthy, still open")
            elif number is not None and incident is not None:
                row = incidents.get((ex.service, number))
                told = incident["alerts"]
                if row is None:
                    problems.append(f"{ex.service}#{number} told ok but missing")
                elif row[0] < told:
                    problems.append(f"{ex.service}#{number}: {row[0]} alerts, told {told}")
                elif ex.op == "ack" and not row[1]:
                    problems.append(f"{ex.service}#{number} acknowledged ok, not in the database")
            current[ex.service] = number
    # 2. Each notification written once, but in the ambiguous window; none decided is missing.
    written = Counter(nid for nid, _ in pages)
    first_at: dict[str, float] = {}
    for nid, at in pages:
        first_at.setdefault(nid, at)
    for nid, count in written.items():
        if count == 1:
            continue
        # A page on its way at a kill: written before it; or, posted by a worker just before
        # and read by the receiver just after (a connection waits for the receiver's accept).
        near_a_kill = any(-after_kill <= k - first_at[nid] < 2.0 for k in kills)
        if count == 2 and near_a_kill:
            report.ambiguous_duplicates += 1
        else:
            problems.append(f"{nid} written {count} times, not just before a kill")
    decided = {row[0] for row in conn.execute("SELECT id FROM notifications")}
    report.notifications = len(decided)
    # Not sent because its incident was acknowledged or closed first: only then.
    cancelled = {
        nid: (acked, closed)
        for nid, acked, closed in conn.execute(
            "SELECT n.id, i.acknowledged_at IS NOT NULL, i.closed_at IS NOT NULL"
            " FROM notifications n JOIN incidents i ON i.service = n.service"
            " AND i.number = n.incident WHERE n.state = 'cancelled'"
        )
    }
    wrongly = [nid for nid, (acked, closed) in cancelled.items() if not (acked or closed)]
    if wrongly:
        problems.append(f"{len(wrongly)} cancelled with their incident open, e.g. {min(wrongly)}")
    missing = decided - set(written) - set(cancelled)
    if missing:
        problems.append(f"{len(missing)} decided notifications never written, e.g. {min(missing)}")
    stray = set(written) - decided
    if stray:
        problems.append(f"{len(stray)} written notifications not in the database")
    # 3. Every due escalation fired (the database was settled: no deadline left pending).
    steps = defaultdict(set)
    for service, number, round_, level in conn.execute(
        "SELECT service, incident, round, level FROM notifications"
    ):
        steps[(service, number)].add((round_, level))
    every_step = {(1, 1), (1, 2), (2, 1), (2, 2)}
    exhausted = conn.execute("SELECT service, number FROM incidents WHERE exhausted")
    for service, number in exhausted.fetchall():
        if steps[(service, number)] != every_step:
            done = sorted(steps[(service, number)])
            problems.append(f"{service}#{number} exhausted after only {done}")


def main() -> int:
    parser = argparse.ArgumentParser(description="kill -9 torture test of pagerd")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--workers", type=int, help="pages by webhook, from N worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pagerd-torture-") as folder:
        report = run(Path(folder), args.rounds, args.services, args.seed, args.workers)
    return verdict(args.seed, report.summary(), report.problems)


def verdict(seed: int, summary: str, problems: list[str]) -> int:
    """Print a torture run's outcome; its exit status."""
    print(f"seed {seed}: {summary}")
    for problem in problems[:50]:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
