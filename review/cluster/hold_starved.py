"""Attack (round 6): round 5's fix holds the due timeouts of a service whose stored events wait
behind its earlier ones (`Inbox._behind`) "as long as each hand-over comes within 2 s"; but a
hand-over of that service only happens when the ordinary take (`take(held, 0, TAKE)`: the 256
OLDEST rows of every shard held) reaches its rows. Rows of another service stored before them
(a storm, mostly left behind by the first read: it hands a page over only when that service is
idle) fill every take while they are worked through, 256 at a time: the service's hold gets no
hand-over, runs out after 2 s, and its overdue escalation fires before its ack, stored before
the deadline, is read.

Two nodes, lease_ttl --ttl (80 s), ack_timeout --ack (55 s: before the lease can run out,
renewed every ttl/4). At +0 an incident of B (node-1's) pages level 1; at +0.5 node-1 is killed.
Through node-2: a storm of N (--backlog, 25000) alerts on A (another service of node-1), then
300 alerts of B (its alert repeated; one burst), then an ack of B, all stored well before
B's deadline. Node-2 adopts the shards after the lease; B's level 2 is overdue by then.
Expected: the ack was stored before the deadline: no level 2. Exits 1 if level 2 goes out.

Run: .venv/bin/python -m review.cluster.hold_starved [--backlog N]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from review.cluster.common import database
from review.cluster.first_read_backlog import burst, storm
from tests import cluster as harness


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=25000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ttl", type=float, default=80.0)
    parser.add_argument("--ack", type=float, default=55.0)
    args = parser.parse_args()
    services = [f"x-{i}" for i in range(8)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp), dsn, services, nodes=2, lease_ttl=args.ttl, ack_timeout=f"{args.ack:g}s"
        ) as c,
    ):
        c.wait_owned(within=60)
        by_name = {n.name: n for n in c.nodes}
        victim = by_name[c.owner("x-0")]  # type: ignore[index]
        other = next(n for n in c.nodes if n is not victim)
        mine = [s for s in services if c.owner(s) == victim.name]
        b, a = mine[0], mine[1]
        wall0 = time.time()
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        r = victim.ask({"op": "alert", "service": b, "message": "outage"})
        assert r["ok"], r
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{b}#") for p in ps), 10, "level 1")
        print(at(), f"{b}: level 1 paged (level 2 due at +{args.ack:.1f}s)")
        time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
        victim.kill()
        print(at(), f"{victim.name} killed (-9)")
        answers: dict[str, dict] = {}
        for each in storm([other], a, args.backlog, args.clients, answers):
            each.join()
        print(at(), f"{args.backlog} alerts of {a} stored through {other.name}")
        burst(other, [b], 300, answers)
        print(at(), f"300 alerts of {b} stored")
        ack = other.ask({"op": "ack", "service": b, "by": "alice"}, timeout=60)
        ack_id = c.query("SELECT max(id) FROM inbox WHERE service = %s", b)[0][0]
        stored_at = time.monotonic() - t0
        print(at(), f"ack of {b} stored (id {ack_id}), answered {ack}")
        if stored_at >= args.ack or c.owner(b) == other.name:
            print("too slow: the ack was stored after the deadline or the adoption; --backlog less")
            return 2
        level2_at = None
        ack_gone = None
        adopted = None
        deadline = time.monotonic() + args.ttl + 90
        while time.monotonic() < deadline:
            if adopted is None and c.owner(b) == other.name:
                adopted = at()
            if level2_at is None and any(
                p.id.startswith(f"{b}#") and p.path.endswith("/second") for p in c.receiver.pages()
            ):
                level2_at = at()
                left = c.query("SELECT count(*) FROM inbox WHERE service = %s", a)[0][0]
                print(level2_at, f"level 2 of {b} paged; {a}'s rows left: {left}")
            if ack_gone is None and not c.query("SELECT 1 FROM inbox WHERE id = %s", ack_id):
                ack_gone = at()
                print(ack_gone, f"ack of {b} decided")
            waited = time.monotonic() - t0 > args.ttl + 20
            if ack_gone is not None and (level2_at is not None or waited):
                break
            time.sleep(0.05)
        print(f"  adopted by {other.name} at {adopted}")
        pages = [p for p in c.receiver.pages() if p.at > wall0 and p.id.startswith(f"{b}#")]
        for p in pages:
            print(f"  page {p.id} {p.path} by {p.node} at +{p.at - wall0:.1f}s")
        print(
            f"  {b} incidents:",
            c.query("SELECT number, acknowledged_by, level FROM incidents WHERE service = %s", b),
        )
        for ln in other.log().splitlines():
            if re.search(r"adopted|escalat|acknowledged", ln):
                print("   ", other.name, "|", ln[:200])
        if level2_at is not None and ack.get("ok"):
            print(
                f"LEVEL 2 PAGED AFTER AN ACK STORED BEFORE ITS DEADLINE (+{stored_at:.1f}s <"
                f" +{args.ack:g}s): {b}'s hold got no hand-over while the take served {a}'s"
                " older rows, and ran out after 2 s"
            )
            return 1
        print("held: the ack was decided before level 2")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
