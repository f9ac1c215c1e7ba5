"""Attack: `pager status` on a node cut from PostgreSQL "shows what it holds from memory and
says the database is unreachable instead of failing" (the status commit's words). Cut by a
link that forwards nothing (a stall: the proxy accepts, forwards nothing), with the default
`statement_timeout` (30 s), the node's read of the cluster's states is cut only after
statement_timeout + 2 s = 32 s: `pager status` (default --timeout 30 s) gives up first, and
the operator sees no status at all.

Exits 1 while `pager status` on the stalled node fails instead of answering from memory.
Run: .venv/bin/python -m review.cluster.status_stalled
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from review.cluster.common import database
from tests import cluster as harness


def main() -> int:
    harness.NODE = harness.NODE.replace('statement_timeout = "3s"\n', "")  # the default, 30 s
    services = [f"svc-{i}" for i in range(8)]
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, nodes=1, lease_ttl=10.0) as c,
    ):
        c.wait_owned(within=40)
        (node,) = c.nodes
        node.proxy.stall()
        t0 = time.monotonic()
        from tests.processes import pager

        r = pager(node.socket, "status", timeout=60)
        took = time.monotonic() - t0
        print(f"pager status on the stalled node: exit {r.returncode} after {took:.1f}s")
        print("   ", (r.stdout + r.stderr).strip()[-600:])
        node.proxy.heal()
        if r.returncode != 0:
            print("NO STATUS FROM MEMORY: THE CLIENT GAVE UP BEFORE THE NODE DID")
            return 1
        print("held")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
