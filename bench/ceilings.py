"""The ceilings pagerd is measured against, run as their own processes on the same machine:

- `groupcommit SOCKET DB`: a bare Trio server that parses the same request lines and writes each
  to SQLite (WAL, synchronous=FULL) in group-committed transactions, replying after the commit.
- `pggroupcommit SOCKET DSN`: the same, writing to the PostgreSQL database `DSN` names (a
  database of its own on the server pagerd is measured on): each group one `INSERT` of all its
  rows (one round trip, one transaction), through psycopg 3's synchronous API in one worker
  thread, as pagerd's PostgreSQL store is used.
- `echo SOCKET`: a bare Trio line echo server, for request/response.
- `http200 -`: pagerd's HTTP server (`pagerd.front.http.serve.HttpServer`, hypercorn's Trio
  protocol inside pagerd's accept loop) with an ASGI application that reads the body and answers
  a fixed 200: the HTTP front's own cost, without pagerd behind it. Prints its loopback port.

Nothing here is pagerd (but `http200`'s server): these are what the hardware and the stack allow
for the same work.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def _serve(path: str, handle: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1024)

    async def guarded(stream: trio.SocketStream) -> None:
        # The client may leave mid-request: the benchmark's clients stop on a deadline.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await handle(stream)

    await trio.serve_listeners(guarded, [trio.SocketListener(sock)])


async def _lines(stream: trio.SocketStream) -> AsyncIterator[list[bytearray]]:
    buffer = bytearray()
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffer += data
        *lines, rest = buffer.split(b"\n")
        buffer = bytearray(rest)
        if lines:
            yield lines


async def echo(path: str) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async for lines in _lines(stream):
            await stream.send_all(b"".join(line + b"\n" for line in lines))

    await _serve(path, handle)


Rows = list[tuple[str, str, str]]


async def groupcommit(path: str, db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (service TEXT, op TEXT, message TEXT)")

    def write(rows: Rows) -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")

    await _group_commit(path, write)


async def pggroupcommit(path: str, dsn: str) -> None:
    # One connection, used by one worker thread at a time (the limiter), as psycopg wants. In
    # autocommit mode one statement is one transaction: the fewest round trips a group can take.
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS events (service text, op text, message text)")

    def write(rows: Rows) -> None:
        columns = [list(column) for column in zip(*rows, strict=True)]
        conn.execute(
            "INSERT INTO events SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])", columns
        )

    try:
        await _group_commit(path, write)
    finally:
        conn.close()


async def _group_commit(path: str, write: Callable[[Rows], None]) -> None:
    """Serve request lines on `path`, each connection's read lines written together with every
    other connection's waiting (`write`, one call a group, in one worker thread), each line
    answered once its group is committed."""
    send, receive = trio.open_memory_channel[tuple[Rows, trio.Event]](1024)
    limiter = trio.CapacityLimiter(1)

    async def writer() -> None:
        while True:
            batch = [await receive.receive()]
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            rows = [row for items, _ in batch for row in items]
            await trio.to_thread.run_sync(write, rows, limiter=limiter)
            for _, done in batch:
                done.set()

    async def handle(stream: trio.SocketStream) -> None:
        async for lines in _lines(stream):
            rows = []
            for line in lines:
                request = json.loads(line)
                rows.append((request["service"], request["op"], request.get("message", "")))
            done = trio.Event()
            await send.send((rows, done))
            await done.wait()
            await stream.send_all(b'{"ok":true}\n' * len(lines))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await _serve(path, handle)


async def http200() -> None:
    from pagerd.config.http import HttpLimits
    from pagerd.front.http.serve import HttpServer

    body = b'{"ok":true}\n'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"12")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    server = HttpServer(app, HttpLimits(rate=math.inf), lambda: None, lambda: None)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await server.serve(listeners)


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "echo":
        trio.run(echo, path)
    elif mode == "groupcommit":
        trio.run(groupcommit, path, str(Path(sys.argv[3])))
    elif mode == "pggroupcommit":
        trio.run(pggroupcommit, path, sys.argv[3])
    elif mode == "http200":
        trio.run(http200)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
