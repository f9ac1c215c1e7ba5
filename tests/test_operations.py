"""Running pagerd as a service: incident history, metrics, reload, and who may talk to it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pager import cli
from pager.domain import Timeout
from pagerd.access.peers import Access, Peer
from pagerd.config import Config, load
from pagerd.storage.sqlite.store import database_file
from tests.harness import (
    CHANNELS,
    ONCALL,
    Connection,
    connect,
    metric_samples,
    notifications,
    running,
    settle,
    write_config,
)
from tests.http import raw_get

DAY = 24 * 3600.0


# History -------------------------------------------------------------------------------


async def test_history_tells_the_whole_story_with_who_did_what(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="p99 > 2s")
            await trio.sleep(1)
            await conn.request("alert", service="api", message="still")
            await trio.sleep(300)  # level 2
            await conn.request("ack", service="api", by="bob")
            await conn.request("healthy", service="api")
            await settle()
            latest = await conn.request("history", service="api")
            by_id = await conn.request("history", incident="api#1")
            none = await conn.request("history", service="web")
            missing = await conn.request("history", incident="api#9")
            bad = await conn.request("history", incident="api-9")
    assert latest == by_id
    assert latest["incident"] == "api#1" and latest["message"] == "p99 > 2s"
    assert latest["closed_at"] is not None
    events = [(e["event"], e.get("level"), e.get("outcome")) for e in latest["timeline"]]
    assert events == [
        ("alert", None, None),
        ("notification", 1, None),
        ("notification", 1, None),
        ("delivery", 1, "sent"),
        ("delivery", 1, "sent"),
        ("alert", None, None),
        ("timeout", None, None),
        ("notification", 2, None),
        ("delivery", 2, "sent"),
        ("ack", None, None),
        ("healthy", None, None),
        ("closed", None, None),
    ]
    first, ack = latest["timeline"][0], latest["timeline"][9]
    assert first["peer"]["uid"] == os.getuid() and first["peer"]["pid"] == os.getpid()
    assert first["detail"] == "p99 > 2s"
    assert ack["by"] == "bob" and ack["peer"]["user"] is not None
    assert latest["timeline"][6]["detail"] == "escalated to level 2 round 1"
    assert none["error"]["code"] == "not_found"
    assert missing["error"]["code"] == "not_found"
    assert bad["error"]["code"] == "bad_request"


async def test_history_past_keep_history_is_pruned_and_incident_numbers_continue(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async def found(conn: Connection, incident: str) -> bool:
        reply = await conn.request("history", incident=incident)
        assert reply.get("error", {}).get("code") in (None, "not_found"), reply
        return "error" not in reply

    everything = ["api#1", "api#2", "api#3", "web#1"]
    with trio.fail_after(10 * DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            for service in ("api", "api", "web"):
                await conn.request("alert", service=service, message="down")
                await trio.sleep(1)
                await conn.request("healthy", service=service)
            await conn.request("alert", service="api")  # api#3: open, and api's latest
            await trio.sleep(DAY)
            assert [await found(conn, i) for i in everything] == [True] * 4  # unset: keep all
            daemon.apply(attrs.evolve(daemon.config, keep_history=DAY / 2))
            await trio.sleep(3600)
            # Only api's old, closed incidents go; web#1 is closed and old too, but it is web's
            # latest: web's next incident takes its number from it.
            assert [await found(conn, i) for i in everything] == [False, False, True, True]
            await conn.request("healthy", service="api")
            metrics = (await conn.request("metrics"))["text"]
        # After a restart, numbering continues from what the database kept.
        async with running(config), connect(config.socket) as conn:
            reopened = [await conn.request("alert", service=s) for s in ("api", "web")]
            await settle()
    assert [r["incident"]["id"] for r in reopened] == ["api#4", "web#2"]
    assert "\npagerd_history_pruned_incidents_total 2\n" in metrics
    with closing(sqlite3.connect(database_file(config.state_dir))) as db:
        left = [
            db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
            for table, where in [
                ("events", "service = 'api' AND incident < 3"),
                ("notifications", "service = 'api' AND incident < 3"),
                ("delivery_attempts", "notification < 'api#3'"),
                ("incidents", "service = 'api' AND number < 3"),
                ("events", "service = 'web' AND incident = 1"),
                ("delivery_attempts", "notification LIKE 'web#1/%'"),
            ]
        ]
    assert left[:4] == [0, 0, 0, 0]
    assert left[4:] == [2, 2]  # web#1 kept whole: alert and healthy; two pages sent


def test_history_renders_as_a_timeline() -> None:
    text = cli.render(
        "history",
        {
            "incident": "api#1",
            "message": "p99 > 2s",
            "closed_at": None,
            "timeline": [
                {
                    "at": "2027-01-15T08:00:00.000Z",
                    "event": "alert",
                    "detail": "p99 > 2s",
                    "peer": {"uid": 1000, "user": "nagios", "pid": 42},
                },
                {"at": "2027-01-15T08:01:00.000Z", "event": "ack", "by": "bob"},
                {"at": "2027-01-15T08:02:00.000Z", "event": "ack", "by": "+1415", "via": "sms"},
                {"at": "2027-01-15T08:03:00.000Z", "event": "healthy", "by": "al", "via": "web"},
            ],
        },
    )
    assert text.splitlines() == [
        "api#1: p99 > 2s, open",
        "  2027-01-15T08:00:00.000Z  alert from nagios (pid 42): p99 > 2s",
        "  2027-01-15T08:01:00.000Z  acknowledged by bob",
        "  2027-01-15T08:02:00.000Z  acknowledged by +1415 via sms",
        "  2027-01-15T08:03:00.000Z  healthy by al via web",
    ]


# Metrics -------------------------------------------------------------------------------


async def test_metrics_count_events_notifications_and_commits(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await conn.request("ack", service="web")
            await conn.request("alert", service="nope")
            await conn.send(b"garbage\n")
            await conn.receive()
            await settle()
            text = (await conn.request("metrics"))["text"]
    samples = metric_samples(text)
    assert samples['pagerd_events_total{op="alert",result="ok"}'] == 1
    assert samples['pagerd_events_total{op="ack",result="no_open_incident"}'] == 1
    assert samples['pagerd_events_total{op="alert",result="unknown_service"}'] == 1
    assert samples['pagerd_events_total{op="invalid",result="bad_request"}'] == 1
    assert samples['pagerd_notifications_total{channel="email",outcome="sent"}'] == 1
    assert samples['pagerd_notifications_total{channel="sms",outcome="sent"}'] == 1
    assert samples["pagerd_open_incidents"] == 1
    assert samples["pagerd_unacknowledged_incidents"] == 1
    assert samples["pagerd_services"] == 2
    assert samples["pagerd_store_commit_seconds_count"] >= 1
    assert samples["pagerd_store_commit_batch_size_count"] >= 1
    assert samples["pagerd_delivery_latency_seconds_count"] == 2
    assert samples["pagerd_history_pruned_incidents_total"] == 0
    assert samples["pagerd_database_bytes"] > 4096  # the database, and its WAL
    assert "# TYPE pagerd_events_total counter" in text


async def test_metrics_over_http(tmp_path: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    path = tmp_path / "pager.toml"
    path.write_text(
        CHANNELS + ONCALL + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[services.api]\npolicy = "oncall"\n'
    )
    config = load(path)
    with trio.fail_after(30):
        async with running(config, offload=None):
            ok = await raw_get(port, path="/metrics")
            missing = await raw_get(port, path="/")
    assert ok.startswith(b"HTTP/1.1 200 ")  # hypercorn sends no reason phrase (optional)
    assert b"Content-Type: text/plain; version=0.0.4" in ok
    assert b"\npagerd_services 1\n" in ok
    assert missing.startswith(b"HTTP/1.1 404")


def test_metrics_listen_must_be_host_and_port(tmp_path: Path) -> None:
    from pagerd.config import ConfigError

    path = tmp_path / "pager.toml"
    path.write_text(
        CHANNELS + ONCALL + '\n[services.api]\npolicy = "oncall"\n[metrics]\nlisten = "9464"\n'
    )
    with pytest.raises(ConfigError) as excinfo:
        load(path)
    assert excinfo.value.errors == ['metrics.listen: expected HOST:PORT, like "127.0.0.1:9464"']


# Reload --------------------------------------------------------------------------------


async def test_reload_applies_policies_services_and_channels(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            # The level-2 target changes, web goes, db comes, notifications go to another file.
            new_policy = ONCALL.replace("lead@example.com", "new-lead@example.com")
            text = (CHANNELS + new_policy).replace(
                "state/notifications.jsonl", "state/after-reload.jsonl"
            )
            text += '\n[services.api]\npolicy = "oncall"\n[services.db]\npolicy = "oncall"\n'
            config.path.write_text(text)
            assert await daemon.reload() is True
            status = await conn.request("status", service="api")
            web = await conn.request("alert", service="web")
            db = await conn.request("alert", service="db")
            await trio.sleep(301)
            config.path.write_text("this is not TOML")
            assert await daemon.reload() is False  # the old config keeps running
            still = await conn.request("alert", service="db")
    assert status["incident"]["level"] == 1 and status["incident"]["alerts"] == 1
    assert web["error"]["code"] == "unknown_service"
    assert db["ok"] is True and still["ok"] is True
    before = [(n["service"], n["level"]) for n in notifications(config)]
    assert sorted(before) == [("api", 1), ("api", 1)]
    after = [
        (n["service"], n["level"], n["target"])
        for n in notifications(attrs.evolve(config, log_path=tmp_path / "state/after-reload.jsonl"))
    ]
    assert ("api", 2, "new-lead@example.com") in after  # the open incident, new policy
    assert sorted(x[:2] for x in after) == [("api", 2), ("db", 1), ("db", 1), ("db", 2)]


# Access --------------------------------------------------------------------------------


def test_access_rules() -> None:
    alice = Peer(pid=1, uid=1000, gid=1000, user="alice", groups=frozenset({"alice", "oncall"}))
    root = Peer(pid=1, uid=0, gid=0, user="root")
    me = Peer(pid=1, uid=4242, gid=4242, user="pager")
    assert Access(own_uid=4242).allows(alice)  # nothing configured: the socket mode decides
    assert not Access(users=frozenset({"bob"}), own_uid=4242).allows(alice)
    assert Access(users=frozenset({"alice"}), own_uid=4242).allows(alice)
    assert Access(groups=frozenset({"oncall"}), own_uid=4242).allows(alice)
    assert not Access(groups=frozenset({"dba"}), own_uid=4242).allows(alice)
    assert Access(users=frozenset(), own_uid=4242).allows(root)
    assert Access(users=frozenset(), own_uid=4242).allows(me)


NOBODY_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"op": "alert", "service": "api"}).encode() + b"\\n")
print(s.makefile().readline().strip())
"""


async def _as_nobody(socket_path: Path) -> dict[str, Any]:
    import json

    result = await trio.run_process(
        ["/usr/bin/python3", "-c", NOBODY_CLIENT, str(socket_path)],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_stdout=True,
        capture_stderr=True,
    )
    reply: dict[str, Any] = json.loads(result.stdout)
    return reply


needs_root = pytest.mark.skipif(
    os.getuid() != 0 or not Path("/usr/bin/python3").exists() or shutil.which("su") is None,
    reason="runs a client as user nobody: needs root and /usr/bin/python3",
)


@needs_root
@pytest.mark.parametrize(
    ("daemon", "allowed"),
    [
        ('allow_users = ["daemon"]', False),
        ('allow_users = ["nobody"]', True),
        ('allow_groups = ["nogroup"]', True),
        ('allow_groups = ["root"]', False),
    ],
)
async def test_peers_are_checked_by_their_kernel_credentials(
    open_folder: Path, daemon: str, allowed: bool
) -> None:
    path = open_folder / "pager.toml"
    path.write_text(
        CHANNELS.replace('state_dir = "state"', f'state_dir = "state"\n{daemon}')
        + ONCALL
        + '\n[services.api]\npolicy = "oncall"\n'
    )
    config = load(path)
    with trio.fail_after(30):
        async with running(config, offload=None):
            config.socket.chmod(0o666)  # let nobody reach the socket: the daemon must decide
            reply = await _as_nobody(config.socket)
            async with connect(config.socket) as conn:  # root is always let in
                status = await conn.request("status", service="api")
                history = await conn.request("history", service="api") if allowed else None
    if allowed:
        assert reply["ok"] is True, reply
        assert history is not None and history["timeline"][0]["peer"]["user"] == "nobody"
    else:
        assert reply["error"]["code"] == "forbidden"
        assert "uid=65534 user=nobody" in reply["error"]["message"]
        assert status["state"] == "healthy"


def test_forbidden_makes_pager_exit_77(tmp_path: Path) -> None:
    import socket
    import threading

    path = tmp_path / "fake.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b'{"ok": false, "error": {"code": "forbidden", "message": "no"}}\n')

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pager.cli", "--socket", str(path), "alert", "api"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    finally:
        thread.join()
        server.close()
    assert result.returncode == 77
    assert "forbidden" in result.stderr


async def test_a_service_removed_and_added_back_before_its_incident_is_closed_escalates_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # Two reloads with no checkpoint between them: the incident of the service removed by the
    # first was not closed yet when the second brought it back (see test_removed_services.py for
    # a removal that lasts).
    config = write_config(tmp_path)
    without_api = attrs.evolve(config, services={"web": "oncall"})
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            await trio.sleep(290)
            daemon.services.reconfigure(without_api)
            daemon.services.reconfigure(config)
            await trio.sleep(600)
            status = await conn.request("status", service="api")
    assert sorted(n["level"] for n in notifications(config)) == [1, 1, 2]
    assert status["incident"]["level"] == 2


async def test_events_queued_for_a_service_a_reload_removes_are_dropped_cleanly(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    without_api = attrs.evolve(config, services={"web": "oncall"})
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            # A due timeout is queued for api, and before its actor runs, api is removed.
            assert daemon.services.offer("api", Timeout(1, 1, 1))
            daemon.services.reconfigure(without_api)
            await settle()
            alert = await conn.request("alert", service="api")
    assert alert["error"]["code"] == "unknown_service"
    assert "actor failed" not in caplog.text
    assert sorted(n["level"] for n in notifications(config)) == [1, 1]
