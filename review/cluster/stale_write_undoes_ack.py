"""Attack: a write whose outcome pagerd took as unknown lands later and undoes an
acknowledgement that was answered ok and committed after it.

The owner's pooled connections to PostgreSQL freeze (one middlebox flow each stuck: they
accept and forward nothing), while new connections pass. The escalation to level 2 (write W1)
goes out on a frozen connection; pagerd cuts it after statement_timeout + 2 s and, since the
outcome is unknown, reloads the shard from the store (`Ownership.reload`) on fresh connections
and decides again: level 2 is paged (W2). The on-call acks: answered ok, committed (W3). Then
the stuck flow recovers and delivers W1 (BEGIN, the fence, the upserts, COMMIT): the fence
passes (same run, same epoch: renewals keep it, the lease never lapsed) and W1's upsert of the
incident row, from the state before the ack, overwrites it. The database now says the incident
is not acknowledged, escalating, with a deadline; the owner's memory says acknowledged. When the
owner goes (killed here), the next owner loads that and pages again after the ack.

`reload` assumes a write of unknown outcome is either committed or still in flight at the
server, where the next claim waits for its lock. A write still on the way to the server (a
stuck flow, a middlebox's buffer) is neither: nothing stops it committing after the reload.

Exits 1 while the ack is undone (and paging resumes after it).
Run: .venv/bin/python -m review.cluster.stale_write_undoes_ack
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness


def incident(c: harness.Cluster, svc: str) -> list[tuple[object, ...]]:
    return c.query(
        "SELECT number, round, level, acknowledged_at IS NOT NULL, acknowledged_by,"
        " round(deadline - extract(epoch FROM clock_timestamp()))"
        " FROM incidents WHERE service = %s AND closed_at IS NULL",
        svc,
    )


def main() -> int:
    services = [f"svc-{i}" for i in range(16)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=2, lease_ttl=16.0, ack_timeout="25s") as c,
    ):
        c.wait_owned(within=60)
        owner, other = c.nodes
        svc = c.fresh(owner.name)
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        r = owner.ask({"op": "alert", "service": svc, "message": "outage"})
        print(at(), f"alert {svc} via its owner {owner.name}: ok={r['ok']}; db:", incident(c, svc))
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{svc}#") for p in ps), 10, "level 1")
        time.sleep(1.0)
        proxy = owner.proxy
        print(at(), f"freeze {owner.name}'s {proxy.freeze()} open connections (new ones pass)")
        r = owner.ask({"op": "alert", "service": svc, "message": "still failing"}, timeout=40)
        print(at(), f"second alert (W1) via {owner.name}: {r}")
        # Wait for the shard's reload from the store, then ack (on fresh connections).
        harness.wait_for(lambda: "adopted 1 shard" in owner.log(), 30, "the shard reloaded")
        time.sleep(0.5)
        r = owner.ask({"op": "ack", "service": svc, "by": "alice"})
        print(at(), f"ack via {owner.name}: ok={r['ok']}; db:", incident(c, svc))
        acked_before = incident(c, svc)[0][3]
        print(at(), "thaw the stuck flows")
        proxy.thaw()
        time.sleep(3)
        after = incident(c, svc)
        print(at(), "db after the thaw:", after)
        reloads = owner.log().count("write of unknown outcome")
        print(f"{owner.name} logged 'write of unknown outcome' {reloads} time(s)")
        for line in owner.log().splitlines():
            if " WARNING " in line or " ERROR " in line or "adopted" in line:
                print("   ", owner.name, "|", line[:240])
        undone = bool(r["ok"]) and acked_before and after and not after[0][3]
        if undone:
            n_before = len(c.receiver.of(svc))
            print(at(), f"kill -9 {owner.name}; {other.name} takes over from the database")
            owner.kill()
            c.wait_owned(within=60, by={other.name})
            time.sleep(12)
            later = c.receiver.of(svc)[n_before:]
            for p in later:
                print(f"  paged after the ack: {p.id} {p.path} by {p.node}")
            print("db:", incident(c, svc))
            print("ACK ANSWERED OK AND COMMITTED, THEN UNDONE BY A STALE WRITE")
            return 1
        print("held: the ack stands")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
