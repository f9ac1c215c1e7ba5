"""The socket server: JSON lines in, JSON lines out, replies in request order.

Each connection has a reader, which parses requests and routes events to the actors without
waiting for their outcome, and a writer, which sends each reply as soon as it and every earlier
one are ready. The queue between them is bounded: a client that pipelines faster than pagerd
commits, or that never reads its replies, is simply not read from until it catches up.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from pager import __version__
from pager.domain import Ack, Alert, Event, Healthy
from pager.protocol import (
    MAX_LINE,
    ProtocolError,
    Request,
    error_reply,
    ok_reply,
    parse_request,
)
from pager.timefmt import isoformat
from pagerd.actors import Reply, Services
from pagerd.outbox import Outbox
from pagerd.store import Delivery

log = logging.getLogger(__name__)

MAX_PENDING: Final = 256
RECEIVE_SIZE: Final = 65536


def _done(line: bytes) -> Reply:
    reply = Reply()
    reply.set(line)
    return reply


class Server:
    def __init__(self, services: Services, outbox: Outbox) -> None:
        self._services = services
        self._outbox = outbox
        self._accepting = trio.CancelScope()
        self._readers: set[trio.CancelScope] = set()
        self._draining = False
        self.connections = 0
        self.closed = trio.Event()

    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept until `drain()`, then return once every connection has finished."""
        async with trio.open_nursery() as connections:
            with self._accepting:
                await trio.serve_listeners(
                    self._handle, [listener], handler_nursery=connections, task_status=task_status
                )
        self.closed.set()

    def drain(self) -> None:
        """Stop accepting and reading; replies to requests already read are still sent."""
        self._draining = True
        self._accepting.cancel()
        for reading in self._readers:
            reading.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        reading = trio.CancelScope()
        if self._draining:
            reading.cancel()
        self._readers.add(reading)
        self.connections += 1
        send, receive = trio.open_memory_channel[Reply](MAX_PENDING)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._write_replies, stream, receive, nursery.cancel_scope)
                async with send:
                    with reading:
                        await self._read_requests(stream, send)
        finally:
            self.connections -= 1
            self._readers.discard(reading)

    async def _read_requests(
        self, stream: trio.SocketStream, replies: trio.MemorySendChannel[Reply]
    ) -> None:
        buffer = bytearray()
        while True:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return  # EOF: a trailing partial line was never a request, so it is not acted on
            buffer += data
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if len(line) > MAX_LINE:
                    await replies.send(_too_large())
                    return
                await replies.send(await self._request(line.removesuffix(b"\r")))
            del buffer[:start]
            if len(buffer) > MAX_LINE:
                await replies.send(_too_large())
                return

    async def _write_replies(
        self,
        stream: trio.SocketStream,
        replies: trio.MemoryReceiveChannel[Reply],
        connection: trio.CancelScope,
    ) -> None:
        async with replies:
            async for reply in replies:
                line = await reply.wait()
                try:
                    await stream.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    connection.cancel()  # the client is gone: stop reading from it too
                    return

    async def _request(self, line: bytes) -> Reply:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            return _done(error_reply(exc.code, exc.message))
        if request.op == "ping":
            return _done(ok_reply(pong=True, version=__version__))
        if request.op == "status":
            return _done(await self._status(request.service))
        assert request.service is not None  # parse_request requires it of events
        if request.service not in self._services.config.services:
            return _done(_unknown(request.service))
        reply = Reply()
        await self._services.submit(request.service, _event(request), reply)
        return reply

    async def _status(self, service: str | None) -> bytes:
        services = self._services
        if service is None:
            return ok_reply(
                services=[
                    services.status(services.state(name)) for name in services.config.services
                ]
            )
        if service not in services.config.services:
            return _unknown(service)
        state = services.state(service)
        status = services.status(state)
        if state.incident is not None:
            deliveries = await self._outbox.deliveries(service, state.incident.number)
            status["incident"]["notifications"] = [_delivery(d) for d in deliveries]
        return ok_reply(**status)


def _delivery(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "channel": d.channel,
        "target": d.target,
        "round": d.round,
        "level": d.level,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "provider_id": d.provider_id,
        "sent_at": None if d.sent_at is None else isoformat(d.sent_at),
    }


def _event(request: Request) -> Event:
    if request.op == "alert":
        return Alert(request.message or "")
    if request.op == "ack":
        return Ack(request.by)
    return Healthy()


def _unknown(service: str) -> bytes:
    return error_reply("unknown_service", f"no service named {service!r} is configured")


def _too_large() -> Reply:
    return _done(error_reply("too_large", f"request line is over {MAX_LINE} bytes; closing"))
