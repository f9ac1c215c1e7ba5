"""`GET /metrics` (and `HEAD`) over HTTP, on `[metrics] listen`: the front door's server
(hypercorn's protocol handling, pagerd's accept loop) with an ASGI application of a few lines. A
scrape is one short request, answered from memory, and the connection is closed after it.

It keeps an address of its own rather than joining the HTTP front door: a scrape takes no key,
and the front door's addresses are the ones reached from other machines. A scraper needs a
connection or two, so at most `MAX_CONNECTIONS` are served at once, each for at most
`READ_TIMEOUT`, and any beyond are refused at once: a flood of idle connections to this port once
took every file descriptor the process had, and with them the socket clients' and the
deliveries'."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from pagerd.config.http import HttpLimits
from pagerd.front.http.serve import HttpServer
from pagerd.operations.open_files import METRICS_CONNECTIONS

log = logging.getLogger("pagerd.metrics_http")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ALLOW: Final = "GET, HEAD"
READ_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = METRICS_CONNECTIONS


class MetricsApp:
    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope["method"]
        if scope["path"] != "/metrics":
            status, body, content_type, extra = 404, "try /metrics\n", "text/plain", []
        elif method not in ("GET", "HEAD"):
            status, body, content_type = 405, "GET or HEAD\n", "text/plain"
            extra = [(b"Allow", ALLOW.encode())]
        else:
            try:
                status, body, content_type, extra = 200, self._render(), CONTENT_TYPE, []
            except Exception:
                # A scrape must never take paging down: answer 500, the server goes on.
                log.exception("metrics: cannot render")
                status, body, content_type, extra = 500, "error\n", "text/plain", []
        payload = body.encode()
        headers = [
            (b"Content-Type", content_type.encode()),
            (b"Content-Length", str(len(payload)).encode()),
            *extra,
            (b"Connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # HEAD: the same headers as GET (Content-Length included), no body.
        await send(
            {
                "type": "http.response.body",
                "body": b"" if method == "HEAD" else payload,
                "more_body": False,
            }
        )


async def serve_metrics(
    host: str,
    port: int,
    render: Callable[[], str],
    *,
    max_connections: int = MAX_CONNECTIONS,
    read_timeout: float = READ_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    limits = HttpLimits(
        max_body_bytes=0,
        read_timeout=read_timeout,
        keep_alive_timeout=read_timeout,
        max_connections=max_connections,
    )
    server = HttpServer(
        MetricsApp(render), limits, lambda: None, lambda: None, "metrics connections"
    )
    listeners = await trio.open_tcp_listeners(port, host=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    await server.serve(listeners, task_status=task_status)
