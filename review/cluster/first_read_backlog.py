"""Attack (round 4): `Inbox.events_first` holds an adopted shard's due timeouts back until "the
first read" of its inbox, but that read takes at most `TAKE` (256) rows, oldest first, across
every shard held. `_take` marks every adopted shard read once that read returns, whether or not
its rows were among the 256. Past 256 rows stored while no node held the shards, an ack or a
check-in stored before its deadline is not among them: the deadline fires first.

Two nodes, lease_ttl 6 s, ack_timeout 6 s; services `hb-*` with heartbeat 5 s. At +0 an
incident of X (node-1's) pages level 1 and node-1's heartbeat services check in. At +0.5
node-1 is killed (-9). Through node-2: a backlog of alerts for node-1's other services (an
alert storm that goes on while its owner is dead), then, before any deadline, an ack of X and a
check-in of each `hb-*` service of node-1 (each stored in the inbox, answered "queued"). The
deadlines pass while no node holds the shards; node-2 adopts them. Expected: the ack and the
check-ins were stored before their deadlines, so no level 2 for X and no missed-heartbeat
page. With --backlog 0 this holds (the fix of round 3); with the default 400 it does not.

Exits 1 while a level 2 or a missed-heartbeat page goes out after its ack/check-in was stored
before the deadline.
Run: .venv/bin/python -m review.cluster.first_read_backlog [--backlog N]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness


def burst(node: harness.Node, services: list[str], n: int, answers: dict) -> None:
    """`n` alerts on one connection (a client's burst: stored in one commit), replies read."""
    lines = b"".join(
        json.dumps(
            {"op": "alert", "service": services[i % len(services)], "message": f"storm {i}"}
        ).encode()
        + b"\n"
        for i in range(n)
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(str(node.socket))
        conn.sendall(lines)
        got = b""
        while got.count(b"\n") < n:
            data = conn.recv(65536)
            if not data:
                break
            got += data
    replies = [json.loads(line) for line in got.splitlines()]
    answers["storm"] = {"ok": all(r.get("ok") for r in replies), "replies": len(replies)}


def storm(
    fronts: list[harness.Node], service: str, total: int, clients: int, answers: dict
) -> list[threading.Thread]:
    """`total` alerts of `service` from `clients` clients at once, client k through
    `fronts[k % len(fronts)]`, each in bursts of at most 500 (a node keeps at most
    MAX_WAITING events waiting): their threads, started."""
    share = -(-total // clients)

    def client(k: int) -> None:
        left = share
        while left > 0:
            burst(fronts[k % len(fronts)], [service], min(500, left), answers)
            left -= 500

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for each in threads:
        each.start()
    return threads


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=400)
    args = parser.parse_args()
    noise = [f"noise-{i}" for i in range(24)]
    hb = [f"hb-{i}" for i in range(12)]
    extra = "".join(f'[services.{s}]\npolicy = "fast"\nheartbeat = "5s"\n' for s in hb)
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(
            Path(tmp),
            dsn,
            ["x-0", "x-1", "x-2", "x-3", *noise],
            nodes=2,
            lease_ttl=6.0,
            ack_timeout="6s",
            extra=extra,
        ) as c,
    ):
        c.wait_owned(within=60)
        by_name = {n.name: n for n in c.nodes}
        victim = by_name[c.owner("x-0")]  # type: ignore[index]
        other = next(n for n in c.nodes if n is not victim)
        xs = [s for s in ("x-0", "x-1", "x-2", "x-3") if c.owner(s) == victim.name]
        theirs = [s for s in noise if c.owner(s) == victim.name]
        hbs = [s for s in hb if c.owner(s) == victim.name]
        assert xs and theirs and hbs, (xs, theirs, hbs)
        x = xs[0]
        wall0 = time.time()
        t0 = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - t0:4.1f}s"

        r = victim.ask({"op": "alert", "service": x, "message": "outage"})
        assert r["ok"], r
        for s in hbs:
            assert victim.ask({"op": "heartbeat", "service": s})["ok"]
        c.receiver.wait(lambda ps: any(p.id.startswith(f"{x}#") for p in ps), 10, "level 1")
        print(
            at(),
            f"{x}: level 1 paged (level 2 due at +6.0s); {len(hbs)} heartbeats of"
            f" {victim.name} checked in (due at +5.0s)",
        )
        time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
        victim.kill()
        print(at(), f"{victim.name} killed (-9)")
        answers: dict[str, dict] = {}

        def ask(key: str, request: dict) -> None:
            try:
                answers[key] = other.ask(request, timeout=60)
            except Exception as exc:
                answers[key] = {"ok": False, "error": repr(exc)}

        storm = [threading.Thread(target=burst, args=(other, theirs, args.backlog, answers))]
        for t in storm:
            t.start()
        harness.wait_for(
            lambda: c.query("SELECT coalesce(max(id), 0) FROM inbox")[0][0] >= args.backlog,
            20,
            "the storm",
        )
        print(
            at(),
            f"{args.backlog} alerts for {len(theirs)} services of {victim.name} stored"
            f" in the inbox through {other.name}",
        )
        late = [
            threading.Thread(target=ask, args=(x, {"op": "ack", "service": x, "by": "alice"})),
            *(
                threading.Thread(target=ask, args=(s, {"op": "heartbeat", "service": s}))
                for s in hbs
            ),
        ]
        for t in late:
            t.start()
        want = 1 + len(hbs)
        harness.wait_for(
            lambda: (
                c.query(
                    "SELECT count(*) FROM inbox WHERE service = %s OR service = ANY(%s)", x, hbs
                )[0][0]
                >= want
            ),
            10,
            "the ack and check-ins stored",
        )
        stored_at = time.monotonic() - t0
        print(
            at(),
            f"ack of {x} and {len(hbs)} check-ins stored in the inbox (before +5.0s:"
            f" {stored_at < 5.0})",
        )
        for t in late + storm:
            t.join()
        print(at(), f"ack answered: {answers[x]}")
        c.wait_owned(within=40, by={other.name})
        owned_at = time.time()
        print(at(), f"{other.name} owns every shard")
        time.sleep(6)
        pages = [p for p in c.receiver.pages() if p.at > wall0]
        second = [p for p in pages if p.id.startswith(f"{x}#") and p.path.endswith("/second")]
        for p in second:
            print(f"  page {p.id} {p.path} by {p.node} at +{p.at - wall0:.1f}s")
        acked = c.query(
            "SELECT number, acknowledged_by, acknowledged_at IS NOT NULL FROM incidents"
            " WHERE service = %s",
            x,
        )
        print(f"  {x} incidents: {acked}")
        missed = {}
        for s in hbs:
            # The first miss only: a check-in applied at the adoption re-arms the monitor, whose
            # next miss is 5 s after that.
            mine = [p for p in pages if p.id.startswith(f"{s}#") and p.at < owned_at + 4.0]
            if mine and answers.get(s, {}).get("ok"):
                missed[s] = [(p.node, round(p.at - wall0, 1)) for p in mine]
        for s, got in missed.items():
            print(f"  {s}: checked in (stored before its deadline), paged as missed: {got}")
        lines = [ln for ln in other.log().splitlines() if "adopted" in ln or "no heartbeat" in ln]
        for ln in lines[:6]:
            print("   ", other.name, "|", ln[:200])
        bad = bool((second and answers[x].get("ok") and stored_at < 5.0) or missed)
        if bad:
            print(
                f"DEADLINES FIRED BEFORE THE ACK/CHECK-INS STORED AHEAD OF THEM (backlog"
                f" {args.backlog} > TAKE 256): level 2 after the ack: {len(second)};"
                f" heartbeats paged as missed: {len(missed)}/{len(hbs)}"
            )
            return 1
        print("held: the ack and the check-ins were decided before their deadlines")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
