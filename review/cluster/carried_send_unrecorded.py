"""Attack: a send that goes on through a reload (`Outbox.drop` keeps it, `reloading`) has its
attempt record refused, because the reload's claim bumped the epoch (`claim(..., anew=)`).

The level-1 page of an incident is in flight (the provider holds its answer). Meanwhile the
owner's pooled connections to PostgreSQL freeze (new ones pass) and a second alert for the
same service is written on one of them: pagerd cuts it (statement_timeout + 2 s), takes its
outcome as unknown and reloads the shard (`Ownership.reload`): the send goes on (`_carried`),
the shard is claimed under a NEW epoch and adopted again, skipping the carried row. Then the
provider answers: the page was delivered. Its record carries the term it started under (the
old epoch, `pending.term`); the committer compares it with the shard's term now (the new
epoch) and refuses it (`Stale`, a `Fenced`): "delivery of ... not recorded here", and the
notification is forgotten. The database keeps it undelivered (`pending`) with no node sending
it: the next owner (a failover, a restart) pages it again.

Exits 1 while the page delivered is left unrecorded and paged a second time.
Run: .venv/bin/python -m review.cluster.carried_send_unrecorded
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness
from tests.servers import Answer


def main() -> int:
    # The webhook waits for its answer long enough to outlive the reload.
    harness.NODE = harness.NODE.replace('timeout = "2s"', 'timeout = "40s"')
    services = [f"svc-{i}" for i in range(16)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=2, lease_ttl=30.0, ack_timeout="120s") as c,
    ):
        c.wait_owned(within=90)
        owner, other = c.nodes
        svc = c.fresh(owner.name)
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        hold = threading.Event()
        with c.receiver.server.lock:
            c.receiver.server.answers.append(Answer(200, {"id": "p1"}, hold=hold))
        r = owner.ask({"op": "alert", "service": svc, "message": "outage"})
        print(at(), f"alert {svc} via its owner {owner.name}: ok={r['ok']}")
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{svc}#") for p in ps), 10, "level 1")
        print(at(), "level 1 reached the provider, which holds its answer")
        epoch0 = c.epoch(svc)
        proxy = owner.proxy
        print(at(), f"freeze {owner.name}'s {proxy.freeze()} open connections (new ones pass)")
        r = owner.ask({"op": "alert", "service": svc, "message": "still failing"}, timeout=60)
        print(at(), f"second alert via {owner.name}: {r}")
        harness.wait_for(lambda: "adopted 1 shard" in owner.log(), 40, "the shard reloaded")
        print(at(), f"shard reloaded; epoch {epoch0} -> {c.epoch(svc)}")
        proxy.thaw()
        hold.set()
        print(at(), "the provider answers level 1 (delivered)")
        time.sleep(3)
        rows = c.query(
            "SELECT id, state, attempts FROM notifications WHERE id LIKE %s ORDER BY id",
            f"{svc}#%",
        )
        for row in rows:
            print("   db:", row)
        for line in owner.log().splitlines():
            if any(w in line for w in (" WARNING ", " ERROR ", "adopted", "notified")):
                print("   ", owner.name, "|", line[:260])
        first = [row for row in rows if row[1] in ("pending", "retrying")]
        n_before = len(c.receiver.of(svc))
        print(at(), f"kill -9 {owner.name}; {other.name} takes over")
        owner.kill()
        c.wait_owned(within=90, by={other.name})
        time.sleep(5)
        pages = c.receiver.of(svc)
        for p in pages:
            print(f"  page {p.id} {p.path} by {p.node}")
        counts = c.receiver.counts()
        doubled = [i for i, k in counts.items() if i.startswith(f"{svc}#") and k > 1]
        if first and doubled and len(pages) > n_before:
            print(f"PAGE DELIVERED, NOT RECORDED (left {first[0][1]}), PAGED AGAIN: {doubled}")
            return 1
        if first:
            print(f"PAGE DELIVERED, LEFT {first[0][1]} IN THE DATABASE")
            return 1
        print("held: the carried send was recorded")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
