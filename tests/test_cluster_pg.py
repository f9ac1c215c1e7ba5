"""Three real `pagerd` processes on one real PostgreSQL (`tests/postgres.py`): an alert sent to
a node that does not own its service pages once (a webhook receiver on loopback), an ack through
a third node stops the escalation, and the nodes stop cleanly, leaving no lease behind. A node
refuses a database whose schema `pagerd migrate` has not made. Waits are on observed events."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pager.shards import preferred, shard_of
from tests import postgres
from tests.processes import PAGERD, Pagerd, pager, wait_for
from tests.servers import HttpServer, SmtpServer, free_port

pytestmark = pytest.mark.e2e

NODES = ("n1", "n2", "n3")
NODE = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[storage]
backend = "postgresql"
dsn = "{dsn}"

[cluster]
node_name = "{node}"
lease_ttl = "3s"
"""
"""What every node of these tests runs: its own socket and state, the shared database."""

CONFIG = (
    NODE
    + """
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
)


PD_KEY = "pd-key-for-the-cluster-0123456789"
HTTP = """
[http]
listen = "127.0.0.1:{port}"
workers = 0  # HTTP in each node's own process: three nodes start on two cores

[integrations.pd]
type = "events-v2"
key_file = "pd.key"
service_label = "source"
"""


def configure(folder: Path, node: str, dsn: str, url: str, port: int | None = None) -> Path:
    folder.mkdir()
    config = folder / "pager.toml"
    text = CONFIG.format(dsn=dsn, node=node, url=url)
    if port is not None:
        text += HTTP.format(port=port)
        key = folder / "pd.key"
        key.write_text(PD_KEY + "\n")
        key.chmod(0o600)
    config.write_text(text)
    return config


def status(node: Pagerd, service: str) -> dict[str, Any]:
    reply = pager(node.socket, "--json", "status", service)
    assert reply.returncode == 0, reply.stderr
    return json.loads(reply.stdout)  # type: ignore[no-any-return]


def paths(receiver: HttpServer) -> list[str]:
    with receiver.lock:
        return [request.path for request in receiver.requests]


PORTS: dict[str, int] = {}
"""Each node's HTTP port, in a test that asked for them (`http_nodes`)."""


@pytest.fixture
def http_nodes(tmp_path: Path) -> Iterator[tuple[dict[str, Pagerd], HttpServer, str]]:
    PORTS.clear()
    PORTS.update({name: free_port() for name in NODES})
    yield from _nodes(tmp_path, PORTS)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[dict[str, Pagerd], HttpServer, str]]:
    yield from _nodes(tmp_path, {})


def _nodes(
    tmp_path: Path, ports: dict[str, int]
) -> Iterator[tuple[dict[str, Pagerd], HttpServer, str]]:
    with postgres.migrated() as dsn, HttpServer() as receiver:
        started: dict[str, Pagerd] = {}
        try:
            for name in NODES:
                config = configure(tmp_path / name, name, dsn, receiver.url, ports.get(name))
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


def enqueue(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/enqueue",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_a_non_owner_answers_as_the_owner_would(
    http_nodes: tuple[dict[str, Pagerd], HttpServer, str],
) -> None:
    """Silences listed and ended, the status table, and an Events v2 resolve naming only its
    dedup_key: each through a node that does not hold the service (issue 17: any node)."""
    started, receiver, _ = http_nodes
    owner = preferred(shard_of("api"), list(NODES))
    assert owner is not None
    wait_for(
        lambda: all(status(n, "api")["owner"]["node"] == owner for n in started.values()),
        30,
        f"api owned by {owner}, as every node sees it",
    )
    one, other = [started[name] for name in NODES if name != owner]
    # Triggered through one non-owner over Events v2, with its dedup_key.
    trigger = {
        "routing_key": PD_KEY,
        "event_action": "trigger",
        "dedup_key": "disk-1",
        "payload": {"summary": "disk full", "source": "api", "severity": "critical"},
    }
    code, body = enqueue(PORTS[one_name(started, one)], trigger)
    assert code == 202, body
    wait_for(lambda: paths(receiver) == ["/first"], 15, "the first level paged")
    # The whole cluster's open incidents on a node that holds none of them, its owner shown.
    table = pager(other.socket, "status")
    assert table.returncode == 0, table.stderr
    heading, shown = table.stdout.split("\n\n", 1)
    assert heading.startswith(f"node {one_name(started, other)}: owns "), table.stdout
    assert heading.endswith(
        f"; other nodes alive: {', '.join(sorted(set(NODES) - {one_name(started, other)}))}"
    ), table.stdout
    header, *rows = shown.splitlines()
    assert header.split()[0] == "SERVICE" and header.split()[-1] == "OWNER", table.stdout
    [api] = [row.split() for row in rows if row.split()[0] == "api"]
    assert api[1] == "unhealthy" and api[2] == "api#1" and api[-1] == owner, table.stdout
    # A silence started on the owner: listed and ended through a non-owner.
    silenced = pager(started[owner].socket, "--json", "silence", "api", "--for", "1h",
                     "--reason", "disk swap")  # fmt: skip
    assert silenced.returncode == 0, silenced.stderr
    number = json.loads(silenced.stdout)["silence"]["id"]
    listed = pager(other.socket, "--json", "silence", "list")
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)["silences"]] == [number]
    ended = pager(one.socket, "--json", "silence", "end", str(number))
    assert ended.returncode == 0, ended.stderr
    assert json.loads(ended.stdout)["silence"]["ended_by"], ended.stdout
    again = pager(started[owner].socket, "--json", "silence", "list")
    assert json.loads(again.stdout)["silences"] == [], again.stdout
    unknown = pager(other.socket, "silence", "end", "999999")
    assert unknown.returncode != 0 and "999999" in unknown.stderr
    # Resolved through the other non-owner by its dedup_key alone: the owner closes it.
    resolve = {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": "disk-1"}
    code, body = enqueue(PORTS[one_name(started, other)], resolve)
    assert code == 202, body
    wait_for(lambda: status(started[owner], "api")["incident"] is None, 15, "api closed")
    assert status(other, "api")["state"] == "healthy"


def one_name(started: dict[str, Pagerd], node: Pagerd) -> str:
    return next(name for name, each in started.items() if each is node)


LINKS = (
    NODE
    + """
[delivery]
workers = 0

[http]
listen = "127.0.0.1:{port}"
public_url = "http://pager.example.com/"
workers = 0

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {smtp}
sender = "pager@example.com"
security = "none"
timeout = "5s"

[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "1h"

[services.api]
policy = "oncall"
"""
)


def test_an_acknowledge_link_signed_by_the_owner_answers_on_a_node_that_is_not(
    tmp_path: Path,
) -> None:
    """The balancer may send the person paged to any node: a link in a page the owner sent
    shows its incident (read from the store) and acknowledges it (through the inbox) on a node
    that does not hold the service, its signing key copied as docs/cluster.md says."""
    names = ("n1", "n2")
    ports = {name: free_port() for name in names}
    with postgres.migrated() as dsn, SmtpServer() as smtp:
        started: dict[str, Pagerd] = {}
        try:
            for name in names:
                folder = tmp_path / name
                (folder / "state").mkdir(parents=True, mode=0o700)
                if started:  # the first node's key, before the next one first starts
                    key = folder / "state" / "signing.key"
                    key.write_bytes((tmp_path / names[0] / "state" / "signing.key").read_bytes())
                    key.chmod(0o600)
                config = folder / "pager.toml"
                text = LINKS.format(dsn=dsn, node=name, port=ports[name], smtp=smtp.port)
                config.write_text(text)
                node = Pagerd(config, folder / "run" / "pager.sock", tmp_path / f"{name}.log")
                node.start()
                started[name] = node
            owner = preferred(shard_of("api"), list(names))
            assert owner is not None
            other = next(name for name in names if name != owner)
            wait_for(
                lambda: all(status(n, "api")["owner"]["node"] == owner for n in started.values()),
                30,
                f"api owned by {owner}, as every node sees it",
            )
            assert pager(started[owner].socket, "alert", "api", "disk full").returncode == 0
            smtp.wait_for(1, within=20)
            payload = smtp.received[0].message.get_payload(decode=True)
            assert isinstance(payload, bytes)
            token = re.search(r"http://pager\.example\.com/ack/(\S+)", payload.decode())
            assert token is not None, payload
            with httpx.Client(base_url=f"http://127.0.0.1:{ports[other]}", timeout=30) as client:
                shown = client.get(f"/ack/{token.group(1)}")
                assert shown.status_code == 200, shown.text
                assert "Acknowledge api#1?" in shown.text
                done = client.post("/ack", data={"token": token.group(1)})
                assert done.status_code == 200, done.text
                assert "api#1 is acknowledged" in done.text
            incident = status(started[owner], "api")["incident"]
            assert incident["acknowledged"] is True, incident
            history = pager(started[owner].socket, "history", "api").stdout
            assert "acknowledged by email:alice@example.com via link" in history, history
        finally:
            for node in started.values():
                node.stop()
