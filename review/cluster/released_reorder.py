"""Attack (round 7): `Inbox._read` drops the rows of every event released from flight while the
read was under way (`_released`): meant for events committed meanwhile (their rows may predate
the commit). But `_release` is also called for an event whose commit FAILED (`unavailable`:
a statement timeout, a lock, a lost connection): its row is still there, to be taken again; the
read drops it all the same, its service is no longer in flight, and the service's LATER rows
of the same read are handed over ahead of it. The dropped event is taken again by a later read,
after them: a service's events applied out of the order they were stored.

Two nodes, X holding service S, Y a front. A session of ours holds `LOCK TABLE incidents IN
EXCLUSIVE MODE` (writes wait: an operator's ALTER TABLE, a VACUUM FULL; any lock that outlasts
`statement_timeout`, 3 s here). Through Y: S's alert (E1: X takes it, its commit waits), S's
`healthy` (E2: behind E1), then a stream of alerts of another service T of X (inbox
notifications: X reads its inbox again and again). After 3 s E1's commit is cancelled
(`unavailable`), released while a read is under way: that read drops E1 and hands E2 over; the
lock goes at 3.4 s; E2 commits (a resolve of nothing), then E1 is taken again and opens an
incident. Expected: alert then resolve: S ends closed. Exits 1 if S is left with an open
incident (its alert applied after its later resolve). A race: tried --tries times.

Held, seen: the cancelled commit is `StoreUnavailable` (unknown outcome), so `Commits._write`
reloads the shard (`Ownership.reload`): S's shard is dropped (the read's rows of S are skipped,
not held) and adopted again, and the first read hands E1 and E2 over together, in order. The
hole needs a failed commit answered `unavailable` WITHOUT a reload (a `StoreError` that is not
`StoreUnavailable`, of a batch of one waiter): not produced here.

Run: .venv/bin/python -m review.cluster.released_reorder [--tries N] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from review.cluster.common import database
from tests import cluster as harness


def fire(node: harness.Node, request: dict, out: list) -> None:
    out.append(node.ask(request, timeout=30))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=6)
    parser.add_argument("--hold", type=float, default=3.4)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    services = [f"r-{i}" for i in range(40)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=2, lease_ttl=10.0, ack_timeout="60s") as c,
    ):
        c.wait_owned(within=60)
        x, y = c.nodes
        mine = [s for s in services if c.owner(s) == x.name]
        t_service = mine[0]
        found = None
        for k in range(min(args.tries, len(mine) - 1)):
            s = mine[k + 1]
            stop = threading.Event()
            replies: list = []

            def stream(stop: threading.Event = stop) -> None:
                conns = []
                i = 0
                while not stop.is_set():
                    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    line = {"op": "alert", "service": t_service, "message": f"t {i}"}
                    try:
                        conn.connect(str(y.socket))
                        conn.sendall(json.dumps(line).encode() + b"\n")
                    except OSError:
                        conn.close()  # the front refused a connection: the stream goes on
                    else:
                        conns.append(conn)
                    i += 1
                    time.sleep(0.004)
                time.sleep(6)
                for conn in conns:
                    conn.close()

            with psycopg.connect(dsn) as locker:
                locker.execute("LOCK TABLE incidents IN EXCLUSIVE MODE")
                t0 = time.monotonic()
                e1 = threading.Thread(
                    target=fire, args=(y, {"op": "alert", "service": s, "message": "E1"}, replies)
                )
                e1.start()
                time.sleep(0.3)
                e2 = threading.Thread(
                    target=fire, args=(y, {"op": "healthy", "service": s}, replies)
                )
                e2.start()
                time.sleep(0.2)
                streamer = threading.Thread(target=stream)
                streamer.start()
                time.sleep(max(0.0, t0 + args.hold - time.monotonic()))
                stop.set()
                locker.rollback()
            e1.join()
            e2.join()
            streamer.join()
            try:
                c.settle(within=30)
            except AssertionError as exc:
                print("  not settled:", exc)
            open_ = c.query(
                "SELECT number, level FROM incidents WHERE service = %s AND closed_at IS NULL", s
            )
            every = c.query("SELECT number, closed_at IS NULL FROM incidents WHERE service = %s", s)
            print(
                f"try {k + 1}: {s}: E1/E2 answered {[r.get('ok') for r in replies]};"
                f" incidents (number, open) {every}"
            )
            if open_:
                found = (s, open_, replies)
                break
        for ln in x.log().splitlines():
            if (found and found[0] in ln) or (args.verbose and "r-" in ln and " t " not in ln):
                print("   ", x.name, "|", ln[:240])
        if args.verbose:
            for n in c.nodes:
                for ln in n.log().splitlines():
                    if ("ERROR" in ln or "WARNING" in ln) and "r-0" not in ln:
                        print("   ", n.name, "|", ln[:300])
        if found is not None:
            s, open_, replies = found
            print(
                f"OUT OF ORDER: {s}'s alert then its `healthy`, stored in that order, answered"
                f" {replies}; {s} is left with open incident(s) {open_}: the alert (its commit"
                " cancelled while a read was under way, dropped by that read as 'released')"
                " was applied after the resolve stored behind it"
            )
            return 1
        print("held: every try ended closed (the alert decided before the resolve)")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
