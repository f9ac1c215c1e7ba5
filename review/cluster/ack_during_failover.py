"""Attack: an acknowledgement accepted by a non-owner (answered ok, stored in the inbox) while
the owner is dead does not stop the escalation whose deadline came after the ack.

Two nodes, lease_ttl 8 s, ack_timeout 4 s. An alert for a service node-2 owns pages level 1;
node-2 is killed (-9) at once; one second later the on-call acks through node-1: the ack is
stored in the inbox (durable, client told ok, "queued") two seconds before level 1's deadline.
node-1 takes the shard over when node-2's lease runs out (after the deadline), arms the overdue
escalation and only then reads the inbox: level 2 is paged although the ack was stored, and
answered ok, before the deadline.

Exits 1 while level 2 is paged after an ack accepted before its deadline.
Run: .venv/bin/python -m review.cluster.ack_during_failover
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness


def main() -> int:
    services = [f"svc-{i}" for i in range(16)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=2, lease_ttl=8.0, ack_timeout="4s") as c,
    ):
        c.wait_owned(within=40)
        first, second = c.nodes
        svc = c.fresh(second.name)
        t0 = time.monotonic()
        r = second.ask({"op": "alert", "service": svc, "message": "outage"})
        print(f"alert {svc} via its owner {second.name}: ok={r['ok']}")
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{svc}#") for p in ps), 10, "level 1")
        print(f"level 1 paged at +{time.monotonic() - t0:.1f}s; killing {second.name}")
        second.kill()
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        ta = time.monotonic()
        r = first.ask({"op": "ack", "service": svc, "by": "alice"}, timeout=30)
        print(
            f"ack via {first.name} sent at +{ta - t0:.1f}s (deadline +4.0s), answered at"
            f" +{time.monotonic() - t0:.1f}s: {r}"
        )
        stored = c.query("SELECT count(*) FROM inbox WHERE service = %s", svc)[0][0]
        print(f"ack stored in the inbox (still waiting for an owner): {stored}")
        c.wait_owned(within=30, by={first.name})
        time.sleep(4)
        pages = c.receiver.of(svc)
        for p in pages:
            since = p.at - (time.time() - (time.monotonic() - t0))
            print(f"  page {p.id} {p.path} from {p.node} at +{since:.1f}s")
        acked = c.query(
            "SELECT acknowledged_at IS NOT NULL, acknowledged_by FROM incidents WHERE service = %s",
            svc,
        )
        print(f"incident acknowledged: {acked}")
        second_level = [p for p in pages if p.path.endswith("/second")]
        if r.get("ok") and second_level:
            print("ACK ACCEPTED (ok) BEFORE THE DEADLINE, LEVEL 2 PAGED ANYWAY")
            return 1
        print("held: no level 2 after the ack")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
