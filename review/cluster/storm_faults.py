"""Attack: a storm of alerts through random nodes of three, while one node at a time is killed
(-9) and restarted, paused (SIGSTOP) past its lease and resumed, cut from PostgreSQL (its proxy
dropped, or stalled) and healed, or stopped cleanly and started again.

Each service is alerted once (one `pager alert`-like request to a random node). Checked at the
end, once every node is back and nothing is pending: each service whose alert was answered ok
has exactly one incident, and its level-1 page arrived; no service has two incidents; each page
arrived once (a double with the same idempotency key is counted apart: the documented
ambiguous-send window; one with two keys, or an incident paged twice under two ids, is not).

Exits 1 on a lost page, a second incident or a page doubled outside the documented window.
Run: .venv/bin/python -m review.cluster.storm_faults [--rounds N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness

FAULTS = ("kill", "pause", "drop", "stall", "stop")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--services", type=int, default=400)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"seed {args.seed}")
    services = [f"s{i:04d}" for i in range(args.services)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=3, lease_ttl=3.0, ack_timeout="1h") as c,
    ):
        c.wait_owned(within=40)
        replies: dict[str, str] = {}
        lock = threading.Lock()
        stop = threading.Event()
        pending = list(services)

        def sender() -> None:
            srng = random.Random(args.seed + 1)
            while pending and not stop.is_set():
                svc = pending.pop(0)
                live = [n for n in c.nodes if n.ready and not n.paused]
                node = srng.choice(live or c.nodes)
                try:
                    r = node.ask({"op": "alert", "service": svc, "message": "storm"}, timeout=20)
                    outcome = "ok" if r.get("ok") else f"error:{r.get('error', {}).get('code')}"
                except Exception as exc:
                    outcome = f"exc:{type(exc).__name__}"
                with lock:
                    replies[svc] = f"{outcome}@{node.name}"
                time.sleep(srng.uniform(0.0, 0.08))

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        for k in range(args.rounds):
            victim = rng.choice(c.nodes)
            fault = rng.choice(FAULTS)
            print(f"round {k}: {fault} {victim.name} (sent so far {len(replies)})", flush=True)
            if fault == "kill":
                victim.kill()
                time.sleep(rng.uniform(0.5, 3))
                victim.start()
            elif fault == "pause":
                victim.pause()
                time.sleep(c.lease_ttl + rng.uniform(1, 3))
                victim.resume()
            elif fault in ("drop", "stall"):
                getattr(victim.proxy, fault)()
                time.sleep(rng.uniform(2, 6))
                victim.proxy.heal()
            else:
                victim.terminate()
                time.sleep(rng.uniform(0.5, 2))
                victim.start()
            time.sleep(rng.uniform(0.5, 3))
        thread.join(timeout=120)
        stop.set()
        c.wait_owned(within=40)
        try:
            c.settle(within=90)
        except AssertionError as exc:
            print(f"NOT SETTLED: {exc}")
        time.sleep(2)
        pages = c.receiver.pages()
        by_service: dict[str, list[harness.Page]] = defaultdict(list)
        for p in pages:
            by_service[p.id.split("#")[0]].append(p)
        incidents = Counter(s for (s,) in c.query("SELECT service FROM incidents"))
        outcomes = Counter(v.split("@")[0] for v in replies.values())
        print(f"replies: {dict(outcomes)}; pages received: {len(pages)}")
        bad = []
        same_key_doubles = 0
        for svc in services:
            reply = replies.get(svc, "unsent")
            ps = by_service.get(svc, [])
            ids = Counter(p.id for p in ps)
            if incidents[svc] > 1:
                bad.append(f"{svc}: {incidents[svc]} incidents ({reply})")
            if reply.startswith("ok") and not ps:
                bad.append(f"{svc}: answered {reply}, never paged")
            if len(ids) > 1:
                bad.append(f"{svc}: paged under {len(ids)} ids: {sorted(ids)} ({reply})")
            for id, n in ids.items():
                if n > 1:
                    keys = {p.key for p in ps if p.id == id}
                    nodes = [p.node for p in ps if p.id == id]
                    if len(keys) == 1:
                        same_key_doubles += 1
                        print(f"  double (same key) {id} from {nodes}")
                    else:
                        bad.append(f"{svc}: {id} sent {n} times under keys {keys} by {nodes}")
        print(f"doubles within the documented window (same key): {same_key_doubles}")
        for line in bad:
            print("BAD", line)
        if bad:
            return 1
        print("held")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
