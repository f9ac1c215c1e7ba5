"""Attack: one node joins with a config that lacks a service the others page (config
management not yet run on that host, a node restored from an old image, a typo in its copy).

Nothing compares the nodes' configs (docs/cluster.md: "must be the same everywhere", checked by
hand with `pager --json ping`'s sha256). The node that lacks service X takes X's shard in the
rebalance at its join, loads X's open incident, and -- as a single node does for a service
removed from its config -- closes it (`REMOVED`) in the shared database. The incident was
unacknowledged and its next level due: that level is never paged, by any node, even after the
shard goes back to a node that has X configured. One wrong node silently ends the other nodes'
escalations.

Run: .venv/bin/python -m review.cluster.stale_config_node
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pager.shards import preferred, shard_of
from review.cluster.common import database
from tests import cluster as harness

NAMES = {"node-1", "node-2", "node-3"}


def main() -> int:
    # A service whose shard node-3 will prefer once it joins.
    services = [f"svc-{i}" for i in range(64)]
    victim = next(s for s in services if preferred(shard_of(s), NAMES) == "node-3")
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, services, start=False, nodes=3, ack_timeout="15s") as c,
    ):
        one, two, three = c.nodes
        text = (three.folder / "pager.toml").read_text()
        stale = text.replace(f'[services.{victim}]\npolicy = "fast"\n', "")
        assert stale != text
        (three.folder / "pager.toml").write_text(stale)
        one.start()
        two.start()
        c.wait_owned()
        r = one.ask({"op": "alert", "service": victim, "message": "db down"})
        print(
            f"alert {victim}: ok={r['ok']} next level at"
            f" {r['incident']['next_escalation_at']} (owner {c.owner(victim)})"
        )
        c.receiver.wait(lambda p: any(x.path == "/first" for x in p), 10, "level 1")
        three.start()  # its config lacks the victim service
        c.wait_owned(within=20)
        print(f"node-3 joined; {victim}'s shard now held by {c.owner(victim)}")
        time.sleep(3)
        three.terminate()  # the mistake is found and the node stopped: too late
        c.wait_owned(within=20)
        print(f"node-3 stopped; {victim}'s shard back with {c.owner(victim)}")
        time.sleep(18)  # well past the level-2 deadline (15 s after the alert)
        row = c.query(
            "SELECT number, closed_at IS NOT NULL, acknowledged_by, level FROM incidents"
            " WHERE service = %s",
            victim,
        )
        print("incident (number, closed, acked_by, level):", row)
        pages = [p.path for p in c.receiver.of(victim)]
        print("pages of", victim, pages)
        print([line for line in three.log().splitlines() if victim in line][:5])
        lost = "/second" not in pages
        print("ESCALATION LOST (unacked incident closed by the stale node)" if lost else "paged")
        return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
