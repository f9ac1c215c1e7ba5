"""Attack: acknowledgements sent through a non-owner while a clean handover moves their
services to a node that joins.

Two nodes run; open incidents on services that node-3 will prefer (they move to it when it
joins), ack_timeout 25 s. node-3 is started; meanwhile every 150 ms one of those incidents is
acknowledged through the node that does not own it (so the ack goes through the inbox),
straddling the handover. Then: an ack answered ok (handled, not just queued) must not be
followed by that incident's level 2; an ack sent at least 1 s before its deadline must win over
it (level 2 not paged); every level-1 page arrives once.

Exits 1 if any of these breaks.
Run: .venv/bin/python -m review.cluster.ack_during_handover
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from pager.shards import preferred, shard_of
from review.cluster.common import database
from tests import cluster as harness

ACK_TIMEOUT = 25.0


def main() -> int:
    names = {"node-1", "node-2", "node-3"}
    services = [f"svc-{i}" for i in range(400)]
    moving = [s for s in services if preferred(shard_of(s), names) == "node-3"][:70]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp), dsn, moving, nodes=2, lease_ttl=4.0, ack_timeout=f"{ACK_TIMEOUT:g}s"
        ) as c,
    ):
        c.wait_owned(within=60)
        third = c.add("node-3")
        nodes = {n.name: n for n in c.nodes}
        opened: dict[str, float] = {}
        for svc in moving:
            owner = c.owner(svc)
            assert owner is not None
            r = nodes[owner].ask({"op": "alert", "service": svc, "message": "down"})
            assert r["ok"], r
            opened[svc] = time.time()
        print(f"{len(moving)} incidents opened over {opened[moving[-1]] - opened[moving[0]]:.1f}s")
        starter = threading.Thread(target=third.start)
        t_start = time.time()
        starter.start()
        acks: dict[str, tuple[float, float, dict]] = {}
        for svc in moving:
            owner = c.owner(svc) or "node-3"
            via = next(n for n in ("node-1", "node-2") if n != owner)
            sent = time.time()
            r = nodes[via].ask({"op": "ack", "service": svc, "by": "alice"}, timeout=30)
            acks[svc] = (sent, time.time(), r)
            time.sleep(0.15)
        starter.join()
        bad: list[str] = []
        first, last = min(a[0] for a in acks.values()), max(a[1] for a in acks.values())
        print(
            f"acks sent from {first - t_start:+.1f}s to {last - t_start:+.1f}s after node-3's start"
        )
        for node in c.nodes:
            for line in node.log().splitlines():
                if "reason=handover" in line or ("adopted" in line and "released" in line):
                    print("  ", node.name, "|", line[:200])
        print(f"node-3 started {time.time() - t_start:.1f}s after its start began")
        c.wait_owned(within=60)
        moved = sum(1 for s in moving if c.owner(s) == "node-3")
        print(f"{moved} of {len(moving)} services owned by node-3 now")
        time.sleep(max(0.0, opened[moving[-1]] + ACK_TIMEOUT + 4 - time.time()))
        unacked = c.query(
            "SELECT service FROM incidents WHERE closed_at IS NULL AND acknowledged_at IS NULL"
        )
        for (svc,) in unacked:
            if acks[svc][2].get("ok"):
                bad.append(f"{svc}: ack answered ok, the incident is not acknowledged")
        pages = c.receiver.pages()
        for svc in moving:
            sent, answered, r = acks[svc]
            deadline = opened[svc] + ACK_TIMEOUT
            second = [p for p in pages if p.id.startswith(f"{svc}#") and p.path.endswith("/second")]
            queued = bool(r.get("queued"))
            if r.get("ok") and second:
                if not queued and any(p.at > answered for p in second):
                    bad.append(
                        f"{svc}: ack handled ok at {answered - t_start:+.1f}s, level 2 after"
                    )
                elif sent < deadline - 1.0:
                    bad.append(
                        f"{svc}: ack sent {deadline - sent:.1f}s before the deadline"
                        f" (ok{', queued' if queued else ''}), level 2 paged by {second[0].node}"
                    )
            if not r.get("ok"):
                print(f"  {svc}: ack answered {r}")
        counts = c.receiver.counts()
        doubled = {i: k for i, k in counts.items() if k > 1}
        owners = {p.node for p in pages if p.path.endswith("/second")}
        print(f"level-2 pages: {sum(1 for p in pages if p.path.endswith('/second'))} by {owners}")
        print(f"acks answered queued: {sum(1 for a in acks.values() if a[2].get('queued'))}")
        for line in bad:
            print("  ", line)
        for i, k in doubled.items():
            print(f"   paged {k} times: {i}")
        if bad or doubled:
            print("ACK DURING A CLEAN HANDOVER: BROKEN")
            return 1
        print("held: acks through a non-owner during a handover")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
