"""The HTTP server: hypercorn's Trio protocol handling on listeners pagerd bound (or systemd
passed), with pagerd's own accept loop around it.

The loop is ours, not `hypercorn.trio.serve`'s, for three things hypercorn does not do: a cap on
open connections (one over it gets 503 at once and is closed: no queue, no memory held), TLS
whose certificate is read again on reload and used for every new connection, and a drain the
daemon's shutdown drives (stop accepting, finish the requests in flight, close idle connections).
Parsing HTTP, keep-alive and timeouts stay hypercorn's (`TCPServer`, HTTP/1.1 and HTTP/2).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Final

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework

from pagerd.config.http import HttpLimits
from pagerd.operations.accepting import serve_listeners

log = logging.getLogger("pagerd.http")

BUSY_TIMEOUT: Final = 1.0
MAX_HEADERS: Final = 16 * 1024
"""Bytes of a request's head (its line and headers): past it, hypercorn answers 400 and closes."""


class HttpServer:
    def __init__(
        self,
        app: ASGIFramework,
        limits: HttpLimits,
        tls: Callable[[], ssl.SSLContext | None],
        busy: Callable[[], None],
        what: str = "HTTP connections",
    ) -> None:
        """`tls()` gives the context for a new connection (None: plain HTTP); `busy()` is told of
        each connection refused over the cap."""
        self._app = ASGIWrapper(app)
        self._tls = tls
        self._busy_count = busy
        self._what = what
        self._config = HypercornConfig()
        self._config.errorlog = log
        self._config.accesslog = None
        self._config.h11_max_incomplete_size = MAX_HEADERS
        self._config.h2_max_concurrent_streams = 16
        self._config.include_server_header = False
        self.limits = limits
        self._context = WorkerContext(None)
        self._accepting = trio.CancelScope()
        self.open_connections = 0
        self.ports: list[int] = []
        """The port of each listener, once serving (the one bound for port 0)."""
        self.closed = trio.Event()

    @property
    def limits(self) -> HttpLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: HttpLimits) -> None:
        """New limits (a reload): timeouts apply from each connection's next wait."""
        self._limits = limits
        self._config.keep_alive_timeout = limits.keep_alive_timeout
        self._config.read_timeout = limits.read_timeout  # type: ignore[assignment]  # a float
        self._config.ssl_handshake_timeout = limits.read_timeout

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until `drain()`, then return once every connection has finished."""
        self.ports = [listener.socket.getsockname()[1] for listener in listeners]
        try:
            async with trio.open_nursery() as connections:
                with self._accepting:
                    await serve_listeners(
                        self._handle,
                        listeners,
                        what=self._what,
                        handler_nursery=connections,
                        task_status=task_status,
                    )
                for listener in listeners:  # new connections are refused, not left waiting
                    await listener.aclose()
                # Idle keep-alive connections close now; busy ones after their response.
                await self._context.terminated.set()
        finally:
            self.closed.set()

    def drain(self) -> None:
        self._accepting.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.open_connections >= self.limits.max_connections:
            await self._refuse(stream)
            return
        self.open_connections += 1
        try:
            context = self._tls()
            served: trio.abc.Stream = stream
            if context is not None:
                served = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
            await TCPServer(self._app, self._config, self._context, {}, served)  # type: ignore[arg-type]
        finally:
            self.open_connections -= 1

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Over the cap: 503 at once (plain HTTP; a TLS one is closed), and close."""
        self._busy_count()
        body = b'{"ok":false,"error":{"code":"busy","message":"too many connections; try again"}}\n'
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        async with stream:
            if self._tls() is None:
                with (
                    trio.move_on_after(BUSY_TIMEOUT),
                    contextlib.suppress(trio.BrokenResourceError),
                ):
                    await stream.send_all(head + body)
