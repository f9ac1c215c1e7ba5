"""Attack: heartbeat deadlines moving with the lease in a failover.

Two nodes, lease_ttl 6 s, services with `heartbeat = "4s"`. Every service checks in (through
its owner); 1 s later the owner of some of them is paused (SIGSTOP). At +2.5 s half of the
paused node's services check in again, through the other node (the inbox: no owner answers,
"queued"), before their deadline (+4 s). The deadlines pass while the owner sleeps; the other
node takes the shards over when the lease runs out (after the deadline), then the paused node
is resumed (its timers long due). Expected: each service that did not check in again is paged
once (no heartbeat), by the new owner only; a service whose check-in was stored before its
deadline is not paged at all; the node that slept pages nothing.

Exits 1 if any of these breaks.
Run: .venv/bin/python -m review.cluster.heartbeat_failover
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness


def main() -> int:
    hb = [f"hb-{i}" for i in range(24)]
    extra = "".join(f'[services.{s}]\npolicy = "fast"\nheartbeat = "4s"\n' for s in hb)
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp), dsn, ["plain"], nodes=2, lease_ttl=6.0, ack_timeout="60s", extra=extra
        ) as c,
    ):
        c.wait_owned(within=60)
        nodes = {n.name: n for n in c.nodes}
        owners = {s: c.owner(s) for s in hb}
        t0 = time.time()
        for s in hb:
            r = nodes[owners[s]].ask({"op": "heartbeat", "service": s})  # type: ignore[index]
            assert r["ok"], r
        sleeper, other = nodes["node-1"], nodes["node-2"]
        theirs = [s for s in hb if owners[s] == sleeper.name]
        again, silent = theirs[::2], theirs[1::2]
        print(f"{sleeper.name} owns {len(theirs)}: check in again through {other.name}: {again}")
        time.sleep(max(0.0, t0 + 1.0 - time.time()))
        sleeper.pause()
        print(f"+{time.time() - t0:.1f}s {sleeper.name} paused")
        time.sleep(max(0.0, t0 + 2.5 - time.time()))
        answers: dict[str, tuple[float, float, dict]] = {}

        def check_in(s: str) -> None:
            sent = time.time() - t0
            r = other.ask({"op": "heartbeat", "service": s}, timeout=30)
            answers[s] = (sent, time.time() - t0, r)

        threads = [threading.Thread(target=check_in, args=(s,)) for s in again]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for s, (sent, got, r) in answers.items():
            print(f"  check-in {s} sent +{sent:.1f}s answered +{got:.1f}s: {r}")
        c.wait_owned(within=30, by={other.name})
        print(f"+{time.time() - t0:.1f}s {other.name} owns every shard")
        time.sleep(2)
        sleeper.resume()
        resumed = time.time()
        print(f"+{resumed - t0:.1f}s {sleeper.name} resumed")
        time.sleep(2)
        # Only the first deadline counts: a check-in re-arms the monitor, whose next miss pages
        # again (4 s after it was applied), whoever owns the service by then.
        cutoff = min([t0 + a[1] + 3.5 for a in answers.values()] + [resumed + 2])
        pages = [p for p in c.receiver.pages() if p.at < cutoff]
        print(f"counting the pages until +{cutoff - t0:.1f}s")
        bad = []
        for s in hb:
            mine = [p for p in pages if p.id.startswith(f"{s}#")]
            want = 0 if s in again else 1
            if s in again and not answers[s][2].get("ok"):
                want = -1  # not stored: either is fine
            if want >= 0 and len(mine) != want:
                bad.append(
                    f"{s}: paged {len(mine)} time(s), want {want}:"
                    f" {[(p.id, p.node, round(p.at - t0, 1)) for p in mine]}"
                )
            if s in silent and any(p.node == sleeper.name and p.at > t0 + 1.0 for p in mine):
                bad.append(f"{s}: paged by the node that slept")
        print(f"{len(pages)} pages in all")
        for line in bad:
            print("  ", line)
        if bad:
            print("HEARTBEAT ACROSS A FAILOVER: BROKEN")
            return 1
        print("held: each missed heartbeat paged once, by the new owner; check-ins stored won")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
