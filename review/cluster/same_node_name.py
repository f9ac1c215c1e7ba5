"""Attack: two pagerd processes with the same `[cluster] node_name` (a copied config with the
line left in, or two hosts cloned from one image whose host names agree, when the line is left
out as docs/cluster.md suggests).

A claim by a node of the same name counts as a renewal (`owner = node`), keeps the epoch, and
the fence (`owner == fence.node and epoch`) passes for both: both processes hold all 256 shards
and both decide and send. Here: node A opens an incident; B (same name) starts; the level-2
deadline fires on both, and the receiver gets level 2 twice, from two processes, with two
different idempotency keys (a provider cannot even deduplicate them).

Run: .venv/bin/python -m review.cluster.same_node_name
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from psycopg import conninfo

from review.cluster.common import database
from tests import cluster as harness
from tests.tcpproxy import TcpProxy

SERVICES = [f"svc-{i}" for i in range(8)]


def add_named(c: harness.Cluster, name: str, folder: str) -> harness.Node:
    """As `Cluster.add`, but a folder of its own for a name that may repeat."""
    proxy = TcpProxy(c.upstream)
    dsn = conninfo.make_conninfo(c.dsn, host="127.0.0.1", port=str(proxy.port), connect_timeout="2")
    policy = c.policy.format(url=c.receiver.url, ack_timeout=c.ack_timeout, repeat="repeat = 0")
    config = harness.NODE.format(dsn=dsn, name=name, lease_ttl_ms=round(c.lease_ttl * 1000))
    config += policy + "".join(f'[services.{s}]\npolicy = "fast"\n' for s in c.services)
    # Each node's channel says which *process* sent (the folder), since the names agree.
    config = config.replace(f'"X-Node" = "{name}"', f'"X-Node" = "{folder}"')
    node = harness.Node(name, c.folder / folder, proxy, config)
    c.nodes.append(node)
    return node


def main() -> int:
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, SERVICES, start=False, nodes=0, ack_timeout="20s") as c,
    ):
        a = add_named(c, "pagerd-1", "process-a")
        b = add_named(c, "pagerd-1", "process-b")
        a.start()
        c.wait_owned(by={"pagerd-1"})
        service = SERVICES[0]
        print("alert via A:", a.ask({"op": "alert", "service": service, "message": "down"}))
        c.receiver.wait(lambda p: any(x.path == "/first" for x in p), 10, "level 1 paged")
        try:
            b.start()  # same node_name, its own process and state dir
        except RuntimeError as exc:  # fixed: B waits for A's row, then exits 1, saying why
            print("B refused to start:", str(exc).strip().splitlines()[-1])
            ack = a.ask({"op": "ack", "service": service, "by": "alice"})
            print("ack via A:", ack["ok"])
            time.sleep(25)  # past the level-2 deadline (20 s after the alert)
            late = [p for p in c.receiver.of(service) if p.path == "/second"]
            print("PAGED AFTER AN OK ACK:" if late else "nothing after the ack", len(late))
            return 1 if late else 0
        for n in (a, b):
            st = n.ask({"op": "status"})["cluster"]
            print(n.folder.name, "holds", st["shards_owned"], "epoch_max", st["epoch_max"])
        # The person acks on A (the balancer sent them there): answered ok, recorded.
        ack = a.ask({"op": "ack", "service": service, "by": "alice"})
        print("ack via A:", ack["ok"], ack.get("incident", {}).get("acknowledged"))
        print(
            "stored ack:",
            c.query("SELECT number, acknowledged_by FROM incidents WHERE service = %s", service),
        )
        # B's copy of the incident (loaded at its start, unacked) reaches its deadline.
        print(f"ack at {time.time():.2f}; waiting past the level-2 deadline")
        c.receiver.wait(lambda p: any(x.path == "/second" for x in p), 30, "level 2 paged")
        time.sleep(3)
        pages = c.receiver.of(service)
        for p in pages:
            print(f"  page {p.id} path={p.path} from={p.node} at={p.at:.2f}")
        after_ack = [p for p in pages if p.path == "/second"]
        print("PAGED AFTER AN OK ACK:" if after_ack else "nothing after the ack", len(after_ack))
        print(
            "stored now:",
            c.query(
                "SELECT number, acknowledged_by, level FROM incidents WHERE service = %s",
                service,
            ),
        )
        # Second symptom: an incident opened through B is unknown to A.
        other = SERVICES[1]
        print("alert via B:", b.ask({"op": "alert", "service": other, "message": "x"})["ok"])
        r = a.ask({"op": "alert", "service": other, "message": "x"})
        print("same alert via A:", r.get("ok"), r.get("error"))
        r = a.ask({"op": "ack", "service": other, "by": "alice"})
        print("ack via A:", r.get("ok"), r.get("error"))
        for n in c.nodes:
            errs = [
                line
                for line in n.log().splitlines()
                if "ERROR" in line or "Traceback" in line or "WARNING" in line
            ]
            print(f"== {n.folder.name} log (warnings/errors): {len(errs)}")
            print("\n".join(errs[:15]))
        return 1 if after_ack else 0


if __name__ == "__main__":
    raise SystemExit(main())
