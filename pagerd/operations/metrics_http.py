"""`GET /metrics` (and `HEAD`) over HTTP, on `[metrics] listen`: hypercorn's Trio server with an
ASGI application of a few lines (no thread, no framework). A scrape is one short request,
answered from memory, and the connection is closed after it.

It keeps an address of its own rather than joining the HTTP front door: a scrape takes no key,
and the front door's addresses are the ones reached from other machines."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import hypercorn.trio
import trio
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

log = logging.getLogger("pagerd.metrics_http")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ALLOW: Final = "GET, HEAD"
READ_TIMEOUT: Final = 10


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
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.errorlog = log
    config.accesslog = None
    config.read_timeout = READ_TIMEOUT
    config.include_server_header = False
    log.info("metrics on http://%s:%d/metrics", host, port)
    await hypercorn.trio.serve(MetricsApp(render), config, task_status=task_status)
