"""Attack: inbox rows the owner cannot read (a row from another pagerd version during the
rolling upgrade docs/cluster.md allows "for the minutes of the upgrade", a bug, a hand edit).

`Inbox._take` reads `take(held, after=0, limit=TAKE=256)`: the first 256 rows of every shard the
node holds, by id, every time. A row it cannot decode is logged and skipped, never answered and
never deleted. So 256 such rows on a node's shards are the whole of every read from then on:
every later event for any service of that node is stored, its client told `ok` with
`"queued": true` after 5 s, and it is never decided (no incident, no page) while the node
holds the shards; the log gets 256 errors every 2 s.

Run: .venv/bin/python -m review.cluster.poison_inbox
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pager.shards import shard_of
from review.cluster.common import database
from tests import cluster as harness

SERVICES = [f"svc-{i}" for i in range(16)]
POISON = b'["not an event"]'


def main() -> int:
    with (
        database() as dsn,
        tempfile.TemporaryDirectory() as tmp,
        harness.running(Path(tmp), dsn, SERVICES, nodes=2, ack_timeout="30s") as c,
    ):
        c.wait_owned()
        first, second = c.nodes
        before = c.fresh(second.name)
        r = first.ask({"op": "alert", "service": before, "message": "control"})
        print(
            f"control: alert for {before} (owned by {second.name}) via {first.name}:",
            r["ok"],
            "queued" if r.get("queued") else "answered by owner",
        )
        victim = c.fresh(second.name)
        bad = c.fresh(second.name)
        # The poison: 256 rows the owner cannot read, for a service it holds.
        c.query(
            "INSERT INTO inbox (shard, service, event, at, node) SELECT %s, %s, %s,"
            " extract(epoch FROM now()), 'elsewhere' FROM generate_series(1, 256) RETURNING id",
            shard_of(bad),
            bad,
            POISON,
        )
        time.sleep(3)
        t0 = time.monotonic()
        r = first.ask({"op": "alert", "service": victim, "message": "real outage"})
        print(
            f"alert for {victim} via {first.name} after the poison: ok={r['ok']}"
            f" queued={r.get('queued')} in {time.monotonic() - t0:.1f}s"
        )
        time.sleep(20)
        pages = c.receiver.of(victim)
        inbox = c.query("SELECT count(*) FROM inbox WHERE service = %s", victim)[0][0]
        incidents = c.query("SELECT count(*) FROM incidents WHERE service = %s", victim)[0][0]
        print(
            f"after 20 s: pages of {victim}: {len(pages)}, incidents: {incidents},"
            f" its events still in the inbox: {inbox}"
        )
        errors = second.log().count("inbox: cannot read event")
        print(f"{second.name} logged 'cannot read event' {errors} times")
        lost = r["ok"] and not pages
        print("ANSWERED OK, NEVER DECIDED" if lost else "decided")
        return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
