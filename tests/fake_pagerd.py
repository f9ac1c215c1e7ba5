"""A stand-in for pagerd on a real Unix socket, for tests of the `pager` client alone.

It answers each connection's first line with a reply the test chose, and keeps the line the
client sent, so a test sees both what the client puts on the wire and what it makes of any reply.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs


@attrs.define
class FakePagerd:
    path: Path
    reply: dict[str, Any] = attrs.Factory(
        lambda: {"ok": True, "service": "api", "state": "healthy", "incident": None}
    )
    lines: list[bytes] = attrs.Factory(list)
    # Cleared by a test that must do something after the request arrives and before the reply.
    replying: threading.Event = attrs.Factory(threading.Event)

    def __attrs_post_init__(self) -> None:
        self.replying.set()

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@contextmanager
def fake_pagerd(folder: Path) -> Iterator[FakePagerd]:
    fake = FakePagerd(folder / "fake.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(fake.path))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                fake.lines.append(data.partition(b"\n")[0])
                fake.replying.wait(timeout=10)
                with contextlib.suppress(OSError):  # the client may be gone (a test stopped it)
                    conn.sendall(json.dumps(fake.reply).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
