"""`GET /metrics` (and `HEAD`) over HTTP, served by Trio itself (no thread, no framework): a
scrape is one short request, answered from memory.

A scraper needs a connection or two, so at most `MAX_CONNECTIONS` are served at once, each for
at most `READ_TIMEOUT`, and any beyond are closed as soon as they are accepted: a flood of idle
connections to this port once took every file descriptor the process had, and with them the
socket clients' (`pager alert` timed out) and the deliveries'.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Final

import trio

from pagerd.operations.accepting import serve_listeners

log = logging.getLogger("pagerd.metrics_http")

MAX_REQUEST: Final = 8192
READ_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 32
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ALLOW: Final = "GET, HEAD"


async def serve_metrics(
    host: str,
    port: int,
    render: Callable[[], str],
    *,
    max_connections: int = MAX_CONNECTIONS,
    read_timeout: float = READ_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    serving = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal serving
        if serving >= max_connections:
            await trio.aclose_forcefully(stream)  # at once: holding it is what a flood wants
            return
        serving += 1
        try:
            await answer(stream)
        finally:
            serving -= 1

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(read_timeout):
                request = await _read_head(stream)
                if request is None:
                    return
                method, _, rest = request.partition(" ")
                path = rest.split(" ", 1)[0].split("?", 1)[0]
                if path != "/metrics":
                    await _respond(stream, "404 Not Found", "try /metrics\n", "text/plain")
                    return
                if method not in ("GET", "HEAD"):
                    await _respond(
                        stream,
                        "405 Method Not Allowed",
                        "GET or HEAD\n",
                        "text/plain",
                        extra=f"Allow: {ALLOW}\r\n",
                    )
                    return
                try:
                    body = render()
                except Exception:
                    # A scrape must never take paging down: a handler's error would end the
                    # server's nursery, and with it the daemon.
                    log.exception("metrics: cannot render")
                    await _respond(stream, "500 Internal Server Error", "error\n", "text/plain")
                    return
                # HEAD: the same headers as GET (Content-Length included), no body.
                await _respond(stream, "200 OK", body, CONTENT_TYPE, head_only=method == "HEAD")

    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    await serve_listeners(handle, listeners, what="metrics", task_status=task_status)


async def _read_head(stream: trio.SocketStream) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        try:
            chunk = await stream.receive_some(4096)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST:
            return None
    return data.split(b"\n", 1)[0].decode("latin-1").strip()


async def _respond(
    stream: trio.SocketStream,
    status: str,
    body: str,
    content_type: str,
    *,
    extra: str = "",
    head_only: bool = False,
) -> None:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n"
    )
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(head.encode() + (b"" if head_only else payload))
