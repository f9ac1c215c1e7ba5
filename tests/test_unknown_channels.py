"""A notification row on a channel this pagerd does not know (a newer pagerd wrote it, before a
downgrade) is not left pending for ever, unseen: at start it is recorded as failed, with the
reason, where `pager status` and the history show it; cancelled if its incident is over."""

from __future__ import annotations

import sqlite3

import trio
import trio.testing

from pagerd.config import Config
from pagerd.storage.sqlite.store import database_file
from tests.harness import T0, connect, running, settle

SECRET = "https://api.pushover.example/1/messages?token=SECRET-TOKEN"


def _insert(config: Config, service: str, incident: int, nid: str) -> None:
    conn = sqlite3.connect(database_file(config.state_dir))
    with conn:
        conn.execute(
            "INSERT INTO notifications (id, service, incident, round, level, channel, address,"
            " message, opened_at, created_at) VALUES (?, ?, ?, 1, 1, 'pushover', ?, 'down', ?, ?)",
            (nid, service, incident, SECRET, T0, T0),
        )
    conn.close()


async def test_a_row_of_an_unknown_channel_fails_with_a_reason_at_start(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(3600):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await conn.request("alert", service="web")
            await conn.request("healthy", service="web")
            await settle()
        _insert(config, "api", 1, "api#1/1/1/pushover:...#newer")
        _insert(config, "web", 1, "web#1/1/1/pushover:...#newer")
        async with running(config), connect(config.socket) as conn:
            await settle()
            status = await conn.request("status", service="api")
            history = await conn.request("history", service="web")
    incident = status["incident"]
    assert incident["failed_deliveries"] == 1
    (row,) = [n for n in incident["notifications"] if n["channel"] == "pushover"]
    assert row["state"] == "failed"
    assert "channel 'pushover' is unknown to this pagerd" in row["last_error"]
    assert "SECRET" not in str(status) and "SECRET" not in str(history)
    outcomes = [e.get("outcome") for e in history["timeline"] if e["event"] == "delivery"]
    assert "cancelled" in outcomes  # its incident was closed: not a failure
    check = sqlite3.connect(database_file(config.state_dir))
    left = check.execute(
        "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'retrying')"
    ).fetchone()[0]
    check.close()
    assert left == 0
