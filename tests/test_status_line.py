"""systemd's STATUS= line says what is true now, not what was true at the last start or reload."""

from __future__ import annotations

import socket
from pathlib import Path

import trio
import trio.testing

from pagerd.operations.systemd import Notifier
from tests.harness import connect, running, write_config

DAY = 24 * 3600.0


async def test_systemds_status_line_follows_incidents_opened_and_closed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    notifier = Notifier(str(tmp_path / "notify.sock"), None)

    def statuses() -> list[str]:
        found: list[str] = []
        while True:
            try:
                data = notify.recv(4096)
            except BlockingIOError:
                return found
            found += [f[7:] for f in data.decode().splitlines() if f.startswith("STATUS=")]

    try:
        with trio.fail_after(DAY):
            async with running(config, notifier=notifier), connect(config.socket) as conn:
                at_start = statuses()
                await conn.request("alert", service="api")
                await trio.sleep(10)
                opened = statuses()
                await conn.request("healthy", service="api")
                await trio.sleep(10)
                closed = statuses()
    finally:
        notify.close()
        notifier.close()
    assert at_start == ["2 services, 0 open incidents"]
    assert opened == ["2 services, 1 open incidents"]
    assert closed == ["2 services, 0 open incidents"]
