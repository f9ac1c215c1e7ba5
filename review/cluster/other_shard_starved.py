"""Attack (round 7): the ordinary take reads the OLDEST `TAKE` (256) rows of every shard a node
holds, in id order, in flight or not. A backlog of one service (a storm stored while its shard
had no owner: a failover) fills every take until it is worked through, 256 a hand-over: every
other shard the node held all along is starved. Those services have no hold (`_unread`,
`_behind` cover the adopted shards' services only), so their due timeouts fire while their
events wait unread behind the storm: an ack stored (through another node) seconds before its
deadline loses to it, and level 2 is paged. Alerts of those services, sent through another
node, wait as long (not "on time").

Three nodes, lease_ttl --ttl (110 s), ack_timeout --ack (5 s). Node V holds service A; X is
the node that adopts A's shard when V dies; C is a service X holds from the start. V is killed;
through X and Y (the third node) a storm of --backlog alerts of A is stored while A's shard
has no owner. Once X has adopted it: C's alert through X (its owner: level 1 at once, level 2
due --ack later), then C's ack through Y (stored in the inbox 0.5 s later, far before the
deadline). Expected: the ack is decided before the deadline, no level 2. Exits 1 if C's level
2 is paged after the ack was stored.

Run: .venv/bin/python -m review.cluster.other_shard_starved [--backlog N]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from pager.shards import preferred, shard_of
from review.cluster.common import database
from review.cluster.first_read_backlog import storm
from tests import cluster as harness


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=40000)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--ttl", type=float, default=110.0)
    parser.add_argument("--ack", type=float, default=5.0)
    args = parser.parse_args()
    services = [f"s-{i}" for i in range(24)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp), dsn, services, nodes=3, lease_ttl=args.ttl, ack_timeout=f"{args.ack:g}s"
        ) as c,
    ):
        c.wait_owned(within=90)
        by_name = {n.name: n for n in c.nodes}
        owners = {s: c.owner(s) for s in services}
        victim = by_name["node-1"]
        pick = None
        for a in services:
            if owners[a] != victim.name:
                continue
            x_name = preferred(shard_of(a), {"node-2", "node-3"})
            cs = [s for s in services if owners[s] == x_name]
            if len(cs) >= 2:
                pick = (a, by_name[x_name], cs[0], cs[1])  # type: ignore[index]
                break
        assert pick is not None, owners
        a, x, cserv, dserv = pick
        y = next(n for n in c.nodes if n is not victim and n is not x)
        print(f"A={a} (of {victim.name}, adopted by {x.name}); C={cserv} (of {x.name}); Y={y.name}")
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:5.1f}s"

        victim.kill()
        print(at(), f"{victim.name} killed (-9)")
        answers: dict[str, dict] = {}
        for each in storm([x, y], a, args.backlog, args.clients, answers):
            each.join()
        stored = c.query("SELECT count(*) FROM inbox WHERE service = %s", a)[0][0]
        print(at(), f"{stored} alerts of {a} in the inbox (owner now: {c.owner(a)})")
        while c.owner(a) != x.name:
            if time.monotonic() - t0 > args.ttl * 3:
                print("A's shard not adopted by X in time")
                return 2
            time.sleep(0.05)
        left = c.query("SELECT count(*) FROM inbox WHERE service = %s", a)[0][0]
        print(at(), f"{x.name} adopted {a}'s shard; {left} of its rows left")
        wall0 = time.time()
        r = x.ask({"op": "alert", "service": cserv, "message": "disk full"})
        assert r["ok"], r
        c.receiver.wait(
            lambda ps: any(p.id.startswith(f"{cserv}#") and p.at > wall0 for p in ps), 10, "lvl 1"
        )
        t_alert = time.monotonic()
        print(
            at(),
            f"{cserv}: alert through its owner {x.name}: level 1 paged (level 2 due"
            f" {args.ack:g}s later)",
        )
        time.sleep(0.5)
        holder: dict[str, dict] = {}
        asker = threading.Thread(
            target=lambda: holder.update(
                ack=y.ask({"op": "ack", "service": cserv, "by": "alice"}, timeout=60)
            )
        )
        asker.start()
        d_sent = time.time()
        other = threading.Thread(
            target=lambda: holder.update(
                d=y.ask({"op": "alert", "service": dserv, "message": "cpu"}, timeout=60)
            )
        )
        other.start()
        time.sleep(0.3)
        ack_id = c.query("SELECT max(id) FROM inbox WHERE service = %s", cserv)[0][0]
        stored_after = time.monotonic() - t_alert
        print(
            at(),
            f"ack of {cserv} stored through {y.name} (id {ack_id}),"
            f" {stored_after:.1f}s after level 1",
        )
        level2_at = ack_gone = None
        deadline = time.monotonic() + args.ack + 60
        while time.monotonic() < deadline:
            if level2_at is None and any(
                p.id.startswith(f"{cserv}#") and p.path.endswith("/second")
                for p in c.receiver.pages()
            ):
                level2_at = time.monotonic() - t_alert
                rows = c.query("SELECT count(*) FROM inbox WHERE service = %s", a)[0][0]
                print(at(), f"LEVEL 2 of {cserv} paged; {a}'s rows left: {rows}")
            if (
                ack_gone is None
                and ack_id is not None
                and not c.query("SELECT 1 FROM inbox WHERE id = %s", ack_id)
            ):
                ack_gone = time.monotonic() - t_alert
                print(at(), f"ack of {cserv} decided")
            if ack_gone is not None and (
                level2_at is not None or time.monotonic() - t_alert > args.ack + 3
            ):
                break
            time.sleep(0.05)
        asker.join()
        other.join()
        d_pages = [p for p in c.receiver.pages() if p.id.startswith(f"{dserv}#")]
        print(
            f"  {dserv} (another of {x.name}'s services): alert sent through {y.name},"
            f" level 1 paged {min(p.at for p in d_pages) - d_sent:.1f}s later"
            if d_pages
            else f"  {dserv}: alert through {y.name} not paged yet"
        )
        ack = holder.get("ack", {})
        print("  ack answered:", ack)
        print(
            f"  {cserv} incidents:",
            c.query(
                "SELECT number, acknowledged_by, level FROM incidents WHERE service = %s", cserv
            ),
        )
        for ln in x.log().splitlines():
            if cserv in ln and ("escalat" in ln or "acknowledged" in ln or "level" in ln):
                print("   ", x.name, "|", ln[:220])
        if level2_at is not None and ack.get("ok") and stored_after < args.ack:
            print(
                f"LEVEL 2 PAGED AFTER AN ACK STORED BEFORE ITS DEADLINE: {cserv}'s ack stored"
                f" {stored_after:.1f}s after level 1 (deadline {args.ack:g}s), level 2 at"
                f" {level2_at:.1f}s, the ack decided at"
                f" {'never' if ack_gone is None else f'{ack_gone:.1f}s'}: {x.name}'s takes"
                f" served only {a}'s older rows (another shard's backlog), 256 at a time"
            )
            return 1
        print("held: the ack was decided before level 2")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
