"""A clean stop (SIGTERM: `systemctl restart`) lets the sends in progress finish and be
recorded before pagerd exits, so the restart does not send them again. The real `pagerd`
process and a slow webhook receiver on loopback; waits are on observed events."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.processes import Pagerd, pager, wait_for
from tests.servers import Answer, HttpServer

pytestmark = pytest.mark.e2e

WEBHOOK = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[channels.webhook]
transport = "webhook"
timeout = "10s"

[policies.hook]
[[policies.hook.levels]]
targets = ["webhook:{url}/hooks/pager"]
ack_timeout = "1h"

[services.api]
policy = "hook"
"""


def states(folder: Path) -> list[str]:
    conn = sqlite3.connect(folder / "state" / "pager.db")
    try:
        return [row[0] for row in conn.execute("SELECT state FROM notifications")]
    finally:
        conn.close()


def test_sigterm_during_a_send_lets_it_finish_and_the_restart_does_not_resend(
    tmp_path: Path,
) -> None:
    with HttpServer() as receiver:
        receiver.default = Answer(200, {}, hang=2.0)  # slow: SIGTERM lands mid-send
        config = tmp_path / "pager.toml"
        config.write_text(WEBHOOK.replace("{url}", receiver.url))
        daemon = Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")
        try:
            daemon.start()
            assert pager(daemon.socket, "alert", "api", "down").returncode == 0
            wait_for(lambda: len(receiver.requests) == 1, 10, "the webhook is being sent")
            assert daemon.terminate(within=30) == 0
            assert states(tmp_path) == ["sent"], daemon.stderr()
            daemon.start()
            reply = pager(daemon.socket, "--json", "status", "api")
            (note,) = json.loads(reply.stdout)["incident"]["notifications"]
            assert (note["state"], note["attempts"]) == ("sent", 1)
            assert pager(daemon.socket, "ping").returncode == 0
        finally:
            daemon.stop()
    assert len(receiver.requests) == 1
