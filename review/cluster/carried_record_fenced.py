"""Attack (round 4): the record of a send carried through a reload is written under the OLD
epoch while the reload's claim, queued before it at the server, raises the epoch. The record is
fenced; the committer takes the shard for lost (`Committer._fenced` -> `Ownership.lose`,
reason=fenced), which drops `_superseded`, `_reload_after` and the outbox's `_carried` and
cancels the send's scope, so the record is never written ("not recorded here" / "cut short").
This run held the lease all along: its next round claims the shard again (same epoch), adopts
it, reads the page as undelivered, and sends it a second time: the same node pages the same
notification twice, with nothing crashed and no other node involved.

How (deterministic, by the order in which the server grants the lease row's lock):
1. level 1 of an incident is in flight (the provider holds its answer);
2. the shard's lease row is locked at the server (`SELECT ... FOR UPDATE`, held ~5 s, as a
   stalled transaction or a slow server holds it): a second alert's write for the service
   waits on it and is cancelled by statement_timeout: outcome unknown, the shard is reloaded;
3. the reload's claim (anew) queues on the lock;
4. the provider answers: the page is delivered; its record is written at once under the lease
   as the node has it (the old epoch: the claim has not been answered), and queues behind the
   claim;
5. the lock goes: the claim raises the epoch, then the record's fence finds the new epoch.

Exits 1 while the delivered page is sent again (or left unrecorded).
Run: .venv/bin/python -m review.cluster.carried_record_fenced
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import psycopg

from pager.shards import shard_of
from review.cluster.common import database
from tests import cluster as harness
from tests.servers import Answer


def waiting(c: harness.Cluster, text: str, since: float = 0.0) -> list[tuple]:
    """Backends of the nodes waiting on a lock in a statement containing `text`, started after
    `since` (epoch seconds, the database's clock)."""
    return c.query(
        "SELECT pid, extract(epoch FROM query_start)::float8 FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND query LIKE %s AND extract(epoch FROM query_start) > %s",
        f"%{text}%",
        since,
    )


def main() -> int:
    harness.NODE = harness.NODE.replace('timeout = "2s"', 'timeout = "40s"')
    services = [f"svc-{i}" for i in range(16)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=2, lease_ttl=30.0, ack_timeout="120s") as c,
    ):
        c.wait_owned(within=90)
        owner, _other = c.nodes
        svc = c.fresh(owner.name)
        shard = shard_of(svc)
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        hold = threading.Event()
        with c.receiver.server.lock:
            c.receiver.server.answers.append(Answer(200, {"id": "p1"}, hold=hold))
        r = owner.ask({"op": "alert", "service": svc, "message": "outage"})
        print(at(), f"alert {svc} (shard {shard}) via its owner {owner.name}: ok={r['ok']}")
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{svc}#") for p in ps), 10, "level 1")
        print(at(), "level 1 reached the provider, which holds its answer")
        epoch0 = c.epoch(svc)
        with psycopg.connect(dsn) as locker:
            locker.execute("SELECT epoch FROM leases WHERE shard = %s FOR UPDATE", (shard,))
            print(at(), f"lease row of shard {shard} locked at the server (epoch {epoch0})")
            second: dict[str, object] = {}

            def alert() -> None:
                second["r"] = owner.ask(
                    {"op": "alert", "service": svc, "message": "still failing"}, timeout=60
                )

            thread = threading.Thread(target=alert)
            thread.start()
            harness.wait_for(lambda: "reloading 1 shard" in owner.log(), 30, "the reload")
            since = c.query("SELECT extract(epoch FROM clock_timestamp())::float8")[0][0] - 0.3
            thread.join()
            print(at(), f"second alert: {second.get('r')}")
            print(at(), "the shard is being reloaded; waiting for its claim to queue on the lock")
            harness.wait_for(lambda: waiting(c, "WITH locked AS", since), 10, "the claim waits")
            print(at(), "the reload's claim waits on the lock: the provider answers level 1")
            hold.set()
            harness.wait_for(lambda: waiting(c, "pagerd_fence", since), 5, "the record waits")
            print(at(), "the page's record waits behind the claim: the lock goes")
            locker.rollback()
        harness.wait_for(lambda: c.epoch(svc) > epoch0, 10, "the new epoch")
        print(at(), f"epoch {epoch0} -> {c.epoch(svc)}")
        time.sleep(10)
        rows = c.query(
            "SELECT id, state, attempts FROM notifications WHERE id LIKE %s ORDER BY id",
            f"{svc}#%",
        )
        for row in rows:
            print("   db:", row)
        for line in owner.log().splitlines():
            if any(w in line for w in (" WARNING ", " ERROR ", "adopted 1", "notified", "fenced")):
                print("   ", owner.name, "|", line[:230])
        pages = c.receiver.of(svc)
        for p in pages:
            print(f"  page {p.id} {p.path} by {p.node} key=...{p.key[-12:]}")
        counts = c.receiver.counts()
        doubled = {i: k for i, k in counts.items() if i.startswith(f"{svc}#") and k > 1}
        unrecorded = [row for row in rows if row[0] in counts and row[1] in ("pending", "retrying")]
        if doubled:
            print(f"A CARRIED PAGE'S RECORD WAS FENCED; THE SAME NODE PAGED IT AGAIN: {doubled}")
            return 1
        if unrecorded:
            print(f"A DELIVERED PAGE IS LEFT {unrecorded[0][1]} IN THE DATABASE")
            return 1
        print("held: the carried record was written (or the order was not obtained: see above)")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
