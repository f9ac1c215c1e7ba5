"""`busy` makes `pager` exit 75, never 69: pagerd replies `busy` and closes without reading the
request, so the client's send may fail (EPIPE, ECONNRESET) with the reply already waiting to be
read. Most runs of `pager ping` at `max_connections` exited 69 ("cannot reach pagerd: Broken
pipe") before the client read the reply after a failed send."""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest
import trio

from pager import cli
from pagerd.config import load
from tests.harness import CHANNELS, ONCALL, running

PAGER = str(Path(sys.executable).with_name("pager"))
BUSY = {"ok": False, "error": {"code": "busy", "message": "too many connections; try again"}}


def test_a_reply_sent_before_the_daemon_closed_is_read_even_if_the_send_failed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def busy_once() -> None:
        conn, _ = listener.accept()
        with conn:  # replies and closes, reading nothing, as pagerd's busy path does
            conn.sendall(json.dumps(BUSY).encode() + b"\n")

    server = threading.Thread(target=busy_once)
    server.start()
    try:
        # Far more than a socket's buffer holds: the send cannot complete, whenever the server
        # closes, so it always fails (EPIPE or ECONNRESET) and the reply is there to read.
        line = b'{"op": "ping", "pad": "' + b"x" * 4_000_000 + b'"}\n'
        reply = cli.call(str(path), line, 10)
    finally:
        server.join(10)
        listener.close()
    assert reply == BUSY


async def test_pager_exits_75_when_pagerd_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "pager.toml"
    text = CHANNELS.replace('idle_timeout = "48h"', 'idle_timeout = "48h"\nmax_connections = 1')
    path.write_text(text + ONCALL + '\n[services.api]\npolicy = "oncall"\n')
    config = load(path)
    runs: list[tuple[int, str]] = []
    with trio.fail_after(60):
        async with running(config, offload=None):
            holder = await trio.open_unix_socket(str(config.socket))  # the one slot
            async with holder:
                await holder.send_all(b'{"op": "ping"}\n')
                assert b'"ok":true' in await holder.receive_some(65536)  # it holds the slot
                for _ in range(5):
                    done = await trio.run_process(
                        [PAGER, "--socket", str(config.socket), "ping"],
                        capture_stdout=True,
                        capture_stderr=True,
                        check=False,
                    )
                    runs.append((done.returncode, done.stderr.decode().strip()))
    assert [code for code, _ in runs] == [75] * 5, runs


def test_a_full_queue_of_connections_is_busy_not_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A socket with a timeout is non-blocking underneath: connecting to a listener whose
    backlog is full failed at once with EAGAIN, and `pager` exited 69, "cannot reach"."""
    path = tmp_path / "full.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)  # and never accepts
    held: list[socket.socket] = []
    try:
        while True:
            queued = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            queued.setblocking(False)
            try:
                queued.connect(str(path))
            except BlockingIOError:
                queued.close()
                break
            held.append(queued)
        assert cli.main(["--socket", str(path), "--timeout", "0.2", "ping"]) == cli.EXIT_TEMPFAIL
    finally:
        for queued in held:
            queued.close()
        listener.close()
    err = capsys.readouterr().err
    assert err.startswith("pager: busy: ") and "queue of connections is full" in err
