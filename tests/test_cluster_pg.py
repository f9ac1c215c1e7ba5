"""Three real `pagerd` processes on one real PostgreSQL (`tests/postgres.py`): an alert sent to
a node that does not own its service pages once (a webhook receiver on loopback), an ack through
a third node stops the escalation, and the nodes stop cleanly, leaving no lease behind. A node
refuses a database whose schema `pagerd migrate` has not made. Waits are on observed events."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pager.shards import preferred, shard_of
from tests import postgres
from tests.processes import PAGERD, Pagerd, pager, wait_for
from tests.servers import HttpServer

pytestmark = pytest.mark.e2e

NODES = ("n1", "n2", "n3")
CONFIG = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[storage]
backend = "postgresql"
dsn = "{dsn}"

[cluster]
node_name = "{node}"
lease_ttl = "3s"

[channels.webhook]
transport = "webhook"
timeout = "10s"

[policies.hook]
[[policies.hook.levels]]
targets = ["webhook:{url}/first"]
ack_timeout = "4s"
[[policies.hook.levels]]
targets = ["webhook:{url}/second"]
ack_timeout = "1h"

[services.api]
policy = "hook"
[services.web]
policy = "hook"
"""


def configure(folder: Path, node: str, dsn: str, url: str) -> Path:
    folder.mkdir()
    config = folder / "pager.toml"
    config.write_text(CONFIG.format(dsn=dsn, node=node, url=url))
    return config


def status(node: Pagerd, service: str) -> dict[str, Any]:
    reply = pager(node.socket, "--json", "status", service)
    assert reply.returncode == 0, reply.stderr
    return json.loads(reply.stdout)  # type: ignore[no-any-return]


def paths(receiver: HttpServer) -> list[str]:
    with receiver.lock:
        return [request.path for request in receiver.requests]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[dict[str, Pagerd], HttpServer, str]]:
    with postgres.migrated() as dsn, HttpServer() as receiver:
        started: dict[str, Pagerd] = {}
        try:
            for name in NODES:
                config = configure(tmp_path / name, name, dsn, receiver.url)
                socket = config.parent / "run" / "pager.sock"
                node = Pagerd(config, socket, tmp_path / f"{name}.log")
                node.start()
                started[name] = node
            yield started, receiver, dsn
        finally:
            for node in started.values():
                node.stop()


def test_an_alert_to_a_non_owner_pages_once_and_an_ack_through_a_third_node_stops_it(
    nodes: tuple[dict[str, Pagerd], HttpServer, str],
) -> None:
    started, receiver, dsn = nodes
    owner = preferred(shard_of("api"), list(NODES))
    assert owner is not None
    # The shards shared out among the three (every node sees the same owner).
    wait_for(
        lambda: all(status(n, "api")["owner"]["node"] == owner for n in started.values()),
        30,
        f"api owned by {owner}, as every node sees it",
    )
    sender, third = [name for name in NODES if name != owner]
    reply = pager(started[sender].socket, "--json", "alert", "api", "disk full")
    assert reply.returncode == 0, reply.stderr
    answer = json.loads(reply.stdout)
    assert answer["incident"]["id"] == "api#1" and "queued" not in answer, answer
    wait_for(lambda: paths(receiver) == ["/first"], 15, "the first level paged")
    acked = pager(started[third].socket, "--json", "ack", "api")
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout)["incident"]["acknowledged"] is True, acked.stdout
    # A witness: web, alerted after api's ack, escalates to its second level; api, whose
    # second level was due before, must not have.
    witness = pager(started[third].socket, "alert", "web", "witness")
    assert witness.returncode == 0, witness.stderr
    wait_for(lambda: paths(receiver).count("/second") >= 1, 30, "web's second level")
    assert sorted(paths(receiver)) == ["/first", "/first", "/second"], paths(receiver)
    incident = status(started[owner], "api")["incident"]
    assert incident["level"] == 1 and incident["acknowledged"] is True, incident
    # A clean stop: every node leaves, and releases its leases at once.
    for node in started.values():
        assert node.terminate(within=30) == 0, node.stderr()
    with psycopg.connect(dsn) as conn:
        live = conn.execute("SELECT count(*) FROM leases WHERE expires_at > now()").fetchone()
        alive = conn.execute("SELECT count(*) FROM nodes").fetchone()
    assert live == (0,) and alive == (0,)


def test_a_node_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    with postgres.empty() as dsn:
        config = configure(tmp_path / "n1", "n1", dsn, "http://127.0.0.1:9")
        run = subprocess.run(
            [*PAGERD, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode != 0
    assert "pagerd migrate" in run.stderr, run.stderr
