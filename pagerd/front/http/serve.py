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
import math
import ssl
from collections.abc import Callable
from typing import Final, Protocol

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework

from pager.protocol import error_reply
from pagerd.config.http import HttpLimits
from pagerd.operations.accepting import serve_listeners

log = logging.getLogger("pagerd.http")

BUSY_TIMEOUT: Final = 1.0
MAX_HEADERS: Final = 16 * 1024
"""Bytes of a request's head (its line and headers): past it, hypercorn answers 400 and closes."""


class _TCPServer(TCPServer):
    """hypercorn's connection, closed as soon as its client has gone while idle.

    hypercorn, on the client's end of stream (a one-shot `curl` closing), still waits for its
    keep-alive timer before it closes its side, and the connection would hold its slot under
    `http.max_connections` for `keep_alive_timeout`: a few one-shot senders a second made
    everyone else busy (found by review). The idle timer runs only while no request is in flight
    (hypercorn stops it for each request and starts it again after the response), so a client gone
    with the timer running has nothing left to be answered: close now; one gone in the middle of
    a request gets its response written (or tried), then the connection closes instead of
    waiting idle.
    """

    _gone = False
    gone: Callable[[], None] = staticmethod(lambda: None)  # told once, when the client has gone

    def _went(self) -> None:
        if not self._gone:
            self._gone = True
            self.gone()

    async def _read_data(self) -> None:
        # hypercorn's, but for `_gone`, set before hypercorn hears of the end
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or math.inf):
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            if data == b"":
                self._went()
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        self._went()  # the client's end of stream (or a read that failed or timed out)
        await self.protocol.handle(Closed())
        if self.idle_task._handle is not None:  # idle now (hypercorn 0.18's TrioSingleTask)
            await self._close_idle()

    async def protocol_send(self, event: Event) -> None:
        if self._gone and isinstance(event, Updated) and event.idle:
            await self._close_idle()  # the response went out; nobody is left to keep alive
            return
        await super().protocol_send(event)

    async def _close_idle(self) -> None:
        await self.idle_task.stop()
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


class Seats(Protocol):
    """The open connections `http.max_connections` caps: this server's alone, or those of
    every front process (`pagerd/front/http/shared.py`)."""

    def take(self, limit: int) -> bool:
        """One more connection, if fewer than `limit` are open; whether it was taken."""
        ...

    def give_back(self) -> None:
        """A connection taken has closed."""
        ...

    def __len__(self) -> int:
        """Connections open now, of all that share the cap."""
        ...


class OwnSeats:
    """`Seats` of one server alone."""

    def __init__(self) -> None:
        self._open = 0

    def take(self, limit: int) -> bool:
        if self._open >= limit:
            return False
        self._open += 1
        return True

    def give_back(self) -> None:
        self._open -= 1

    def __len__(self) -> int:
        return self._open


class HttpServer:
    def __init__(
        self,
        app: ASGIFramework,
        limits: HttpLimits,
        tls: Callable[[], ssl.SSLContext | None],
        busy: Callable[[], None],
        what: str = "HTTP connections",
        seats: Seats | None = None,
    ) -> None:
        """`tls()` gives the context for a new connection (None: plain HTTP); `busy()` is told of
        each connection refused over the cap; `seats` counts the connections the cap applies
        to (this server's alone, unless given)."""
        self._app = ASGIWrapper(app)
        self._seats: Seats = seats if seats is not None else OwnSeats()
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
        self.ports: list[int] = []
        """The port of each listener, once serving (the one bound for port 0)."""
        self.closed = trio.Event()

    @property
    def open_connections(self) -> int:
        return len(self._seats)

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
        if not self._seats.take(self.limits.max_connections):
            await self._refuse(stream)
            return
        counted = True

        def release() -> None:  # once: when the client has gone, or the connection ended
            nonlocal counted
            if counted:
                counted = False
                self._seats.give_back()

        try:
            context = self._tls()
            served: trio.abc.Stream = stream
            if context is not None:
                served = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
            server = _TCPServer(self._app, self._config, self._context, {}, served)  # type: ignore[arg-type]
            server.gone = release
            await server
        finally:
            release()

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Over the cap: 503 at once (plain HTTP; a TLS one is closed), and close."""
        self._busy_count()
        body = error_reply("busy", "too many connections; try again")
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
