"""Attack (round 6): the first read of an adopted shard (`Inbox._take`, round 5's fix) pages
through its inbox with a cursor (`after`), handing each page's events to `_route`. `_route`
leaves an event behind only while its service is in flight *now*: once the service's first
batch is answered (mid-read), the next page's events of that service are handed over although
the events of the pages read in between were left behind. They are handed over later, by the
ordinary takes: the service's events are applied out of the order they were stored (the docs:
"the owner applies each event once, in the order they were stored").

Two nodes, long lease and ack_timeout (no escalation in play). Node-1 (X's owner) is killed
(-9). Through node-2: N (--backlog, 20000) alerts on X, then `healthy` of X (a resolve), all
stored in the inbox while no node holds X's shard. Node-2 adopts the shard. In order: the
alerts open one incident (one page), the resolve closes it: one incident, closed. Seen: the
resolve is applied before thousands of the alerts stored ahead of it, and those open a second
incident, paged, for a service whose last word was "healthy".

Exits 1 if X ends with an open incident / more than one incident (events applied out of order).
Run: .venv/bin/python -m review.cluster.first_read_order [--backlog N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from review.cluster.common import database
from review.cluster.first_read_backlog import burst, storm
from tests import cluster as harness


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=8000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ttl", type=float, default=40.0)
    args = parser.parse_args()
    services = [f"x-{i}" for i in range(8)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp), dsn, services, nodes=2, lease_ttl=args.ttl, ack_timeout="600s"
        ) as c,
    ):
        c.wait_owned(within=60)
        by_name = {n.name: n for n in c.nodes}
        victim = by_name[c.owner("x-0")]  # type: ignore[index]
        other = next(n for n in c.nodes if n is not victim)
        x = next(s for s in services if c.owner(s) == victim.name)
        wall0 = time.time()
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        victim.kill()
        print(at(), f"{victim.name} killed (-9); {x} is its")
        y = next(s for s in services if s != x and c.owner(s) == victim.name)
        answers: dict[str, dict] = {}
        # X: one page of alerts and one more (TAKE is 256), in one commit, in this order.
        burst(other, [x], 257, answers)
        # Y, another service of the dead node: a storm that the first read pages through.
        for each in storm([other], y, args.backlog, args.clients, answers):
            each.join()
        stored = c.query("SELECT count(*), max(id) FROM inbox WHERE service = %s", x)[0]
        ys = c.query("SELECT count(*) FROM inbox WHERE service = %s", y)[0][0]
        print(at(), f"{stored[0]} alerts of {x} stored (last id {stored[1]}), then {ys} of {y}")
        r = other.ask({"op": "healthy", "service": x}, timeout=60)
        last = c.query("SELECT max(id) FROM inbox WHERE service = %s", x)[0][0]
        print(at(), f"healthy of {x} stored, id {last}, answered {r}")
        if c.owner(x) == other.name:
            print(at(), "the shard was adopted before the storm was stored: raise --ttl")
            return 2
        # The drain, watched: X's resolve (its last id) must be the last of X's rows to go.
        gaps: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ids = [i for (i,) in c.query("SELECT id FROM inbox WHERE service = %s ORDER BY id", x)]
            if not ids:
                break
            if ids[-1] != last:
                gaps.append(f"{at()} {x}'s resolve (id {last}) handled; left: ids {ids}")
            time.sleep(0.01)
        for line in gaps[:8]:
            print("  ", line)
        print(at(), f"{x}'s inbox drained by {other.name}")
        time.sleep(2)
        incidents = c.query(
            "SELECT number, closed_at IS NOT NULL FROM incidents WHERE service = %s ORDER BY 1", x
        )
        pages = [p for p in c.receiver.pages() if p.at > wall0 and p.id.startswith(f"{x}#")]
        print(f"  {x} incidents (number, closed): {incidents}")
        for p in pages:
            print(f"  page {p.id} {p.path} by {p.node} at +{p.at - wall0:.1f}s")
        for ln in other.log().splitlines():
            if "adopted" in ln or "inbox" in ln or f"service={x} " in ln:
                print("   ", other.name, "|", ln[:200])
        if gaps or len(incidents) != 1 or not incidents[0][1]:
            print(
                f"OUT OF ORDER: {stored[0]} alerts, {ys} of another service, then a resolve,"
                " stored in that order, left"
                f" {x} with incidents {incidents}: the resolve was applied before alerts stored"
                " ahead of it (the first read hands a later page over once the service's first"
                " batch is answered, the pages in between left behind)"
            )
            return 1
        print("held: one incident, closed by the resolve")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
