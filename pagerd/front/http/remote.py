"""The `Core` port in a front process: each call one message on the channel to the core, many in
flight at once, each answered by its id (so a slow commit holds up only its own request).

A writer task sends whatever is queued in one write (the front's HTTP counts since the last
write with it); a reader task hands each answer to the request waiting for it, and answers the
core's `Ping` at once. When the core has gone (the channel closed), every request waiting gets
`CoreUnavailable`, and `gone` is set: the front stops.

What waits to be written is bounded (`MAX_QUEUED` messages, `MAX_QUEUED_BYTES`): while the core
does not read (stopped, overloaded), a request past the bound is answered 503 busy at once
(`Busy`) rather than held in memory (found by review: a flood of large Alertmanager payloads
grew each front to 390 MB while the core was stopped). A request given up on (its client went,
its patience ran out) takes its message back if it has not been written yet, so the core never
commits what nobody waits for; one being written is left whole.

`ready()` asks the core once for every request that asks at the same time, and its answer
serves for `READY_FOR` seconds: a flood of `GET /-/ready` costs the core one question a second
from each front.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from pagerd.config.http import FrontConfig
from pagerd.front.core import Busy, CoreUnavailable, Outcome, OverRate, Submission
from pagerd.front.http.asgi import Response
from pagerd.front.http.channel import (
    Answered,
    BrokenChannel,
    Configure,
    Counts,
    Drain,
    Failed,
    Forward,
    History,
    Limited,
    Ping,
    Pong,
    Reader,
    Ready,
    ReadyAnswer,
    Replied,
    Serving,
    Status,
    Submit,
    ToCore,
    ToFront,
    WireRoute,
    encode,
    front_config,
    outcomes_of,
    to_front,
    to_wire,
)
from pagerd.front.http.routes import Call, Route, Signed
from pagerd.operations.metrics import Counter

__all__ = ["RemoteCore"]

log = logging.getLogger("pagerd.http.front")

GONE: Final = "the core of pagerd is not running"
MAX_QUEUED: Final = 1024
"""Requests waiting to be written to the core at once; past it, 503 busy."""
MAX_QUEUED_BYTES: Final = 16 * 1024 * 1024
"""Their bytes (and those being written); past it, 503 busy (one request alone always goes:
it is within `http.max_body_bytes`)."""
BUSY: Final = "pagerd's core is not keeping up; try again"
READY_FOR: Final = 1.0
"""Seconds the core's answer to `ready` serves every request that asks."""


class _Waiter:
    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.answer: ToFront | None = None


class _Shipped:
    """What of a counter has been sent to the core already, to send only what it has gained."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._sent: dict[tuple[str, ...], float] = {}

    def gained(self) -> list[tuple[tuple[str, ...], int]]:
        found = []
        for labels, value in self._counter.items():
            more = int(value - self._sent.get(labels, 0.0))
            if more:
                found.append((labels, more))
                self._sent[labels] = value
        return found


class RemoteCore:
    def __init__(
        self,
        stream: trio.abc.Stream,
        requests: Counter,
        auth_failures: Counter,
        refused: Counter,
        configured: Callable[[FrontConfig], None] | None = None,
    ) -> None:
        """The core at the other end of `stream`. `requests`, `auth_failures` and `refused` (the
        events refused on their own) are this front's HTTP counters, whose gains are sent to the
        core; `configured` is told of each config after the first (a reload)."""
        self._stream = stream
        self._out: dict[int, bytes] = {}  # by when it was queued: in order
        self._queued = itertools.count()
        self._queued_bytes = 0
        self._writing = 0  # bytes being written
        self.max_queued = MAX_QUEUED
        self.max_queued_bytes = MAX_QUEUED_BYTES
        self._wake = trio.lowlevel.ParkingLot()
        self._sending = False
        self._sent = trio.lowlevel.ParkingLot()
        self._waiting: dict[int, _Waiter] = {}
        self._next_id = 0
        self._config: FrontConfig | None = None
        self.in_core: list[WireRoute] = []
        """The routes served in the core, from the first config."""
        self._first = trio.Event()
        self._requests = _Shipped(requests)
        self._auth_failures = _Shipped(auth_failures)
        self._refused = _Shipped(refused)
        self._counted = False
        self.configured = configured
        self._nursery: trio.Nursery | None = None
        self._ready: tuple[float, str | None] | None = None  # when answered, and the answer
        self._asking_ready: trio.Event | None = None
        self.drain = trio.Event()
        """Set when the core asks for a clean stop."""
        self.gone = trio.Event()
        """Set when the channel has closed: the core is not running."""

    def config(self) -> FrontConfig:
        assert self._config is not None, "run() gives back only once configured"
        return self._config

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and write the channel until it closes (then `gone`); started once the first
        config has come."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write)
                await self._read(nursery.cancel_scope, task_status)
        finally:
            self._nursery = None
            self.gone.set()
            self._sent.unpark_all()
            for waiter in self._waiting.values():
                waiter.event.set()  # no answer: CoreUnavailable

    def serving(self) -> None:
        self._send(encode(Serving(os.getpid())))

    async def flush(self) -> None:
        """Until everything queued (the last counts too) is written, or the channel closed."""
        while (self._out or self._counted or self._sending) and not self.gone.is_set():
            await self._sent.park()

    def counted(self) -> None:
        """The HTTP counters have changed: send what they gained with the next write."""
        if not self._counted:
            self._counted = True
            self._wake.unpark()

    async def submit(
        self, integration: str, events: Sequence[Submission], *, terse: bool = False
    ) -> list[Outcome]:
        wire = [to_wire(submission) for submission in events]
        answer = await self._ask(lambda id: Submit(id, integration, wire, terse))
        if isinstance(answer, Replied):
            return outcomes_of(answer)
        raise self._unexpected(answer)

    async def status(self, integration: str, service: str | None) -> Outcome:
        return self._one(await self._ask(lambda id: Status(id, integration, service)))

    async def history(self, integration: str, service: str) -> Outcome:
        return self._one(await self._ask(lambda id: History(id, integration, service)))

    async def ready(self) -> str | None:
        """The core's answer, asked once for every request that asks meanwhile (by a task of
        its own: a request that gives up does not take the question with it), and served for
        `READY_FOR` seconds; once the core has gone, that it has, whatever was cached (a front
        outliving its core, killed, must not say a restarted pagerd is ready while its listener
        still holds the port)."""
        while True:
            if self.gone.is_set():
                return GONE
            if self._ready is not None:
                at, why = self._ready
                if trio.current_time() - at < READY_FOR:
                    return why
            if self._asking_ready is None:
                if self._nursery is None:
                    raise CoreUnavailable(GONE)
                self._asking_ready = trio.Event()
                self._nursery.start_soon(self._ask_ready, self._asking_ready)
            await self._asking_ready.wait()

    async def _ask_ready(self, asked: trio.Event) -> None:
        try:
            answer = await self._ask(Ready)
            why = answer.why if isinstance(answer, ReadyAnswer) else str(self._unexpected(answer))
        except (CoreUnavailable, Busy) as exc:
            why = str(exc)
        except Exception as exc:  # a task of the channel's: it must not take the front down
            log.exception("http front: cannot ask the core whether it is ready")
            why = f"cannot ask the core: {exc}"
        self._ready = (trio.current_time(), why)
        self._asking_ready = None
        asked.set()

    def forwarded(self) -> list[Route]:
        """The routes served in the core, each handled here by forwarding its request whole (a
        provider's signature is checked there, with the secret only the core has)."""
        return [
            Route(
                r.method, r.pattern, _forwarding(self, r), auth=r.auth,
                key_in_path=r.key_in_path, body=r.body, max_body=r.max_body,
                signed=None if r.signed is None else Signed(r.signed, _checked_in_core),
                over_rate=r.over_rate, doc=r.doc,
            )
            for r in self.in_core
        ]  # fmt: skip

    async def forward(self, route: WireRoute, call: Call) -> Response:
        """`call` for `route`, answered by the core's handler."""
        name = None if call.integration is None else call.integration.name
        answer = await self._ask(
            lambda id: Forward(
                id, call.method, route.pattern, call.path, dict(call.params),
                dict(call.headers), call.body, name, call.address, call.query,
            )
        )  # fmt: skip
        if isinstance(answer, Answered):
            return Response(answer.status, answer.body, answer.content_type, tuple(answer.headers))
        raise self._unexpected(answer)

    def _one(self, answer: ToFront) -> Outcome:
        if isinstance(answer, Replied) and len(answer.outcomes) == 1:
            return outcomes_of(answer)[0]
        raise self._unexpected(answer)

    def _unexpected(self, answer: ToFront) -> Exception:
        if isinstance(answer, Limited):
            return OverRate(answer.integration, answer.retry_after)
        if isinstance(answer, Failed):
            return RuntimeError("the core failed to serve the request")
        return RuntimeError(f"the core answered {type(answer).__name__}")

    async def _ask(self, message: Callable[[int], ToCore]) -> ToFront:
        if self.gone.is_set():
            raise CoreUnavailable(GONE)
        self._next_id += 1
        id = self._next_id
        line = encode(message(id))
        pending = self._queued_bytes + self._writing
        if len(self._out) >= self.max_queued or (
            pending and pending + len(line) > self.max_queued_bytes
        ):
            raise Busy(BUSY)
        waiter = self._waiting[id] = _Waiter()
        queued = self._send(line)
        try:
            await waiter.event.wait()
        finally:
            del self._waiting[id]  # answered, or given up on: a late answer is dropped
            if not waiter.event.is_set():
                self._take_back(queued)
        if waiter.answer is None:
            raise CoreUnavailable(GONE)
        return waiter.answer

    def _send(self, line: bytes) -> int:
        """Queue `line`; the number it is queued as."""
        queued = next(self._queued)
        self._out[queued] = line
        self._queued_bytes += len(line)
        if len(self._out) == 1:
            self._wake.unpark()
        return queued

    def _take_back(self, queued: int) -> None:
        """The message queued as `queued`, given up on: out of the queue if not yet written."""
        line = self._out.pop(queued, None)
        if line is not None:
            self._queued_bytes -= len(line)

    async def _write(self) -> None:
        while True:
            while not (self._out or self._counted):
                await self._wake.park()
            out = list(self._out.values())
            self._out.clear()
            self._writing, self._queued_bytes = self._queued_bytes, 0
            if self._counted:
                self._counted = False
                requests = [(route, code, n) for (route, code), n in self._requests.gained()]
                failures = [(kind, n) for (kind,), n in self._auth_failures.gained()]
                refused = [(name, why, n) for (name, why), n in self._refused.gained()]
                if requests or failures or refused:
                    out.append(encode(Counts(requests, failures, refused)))
            self._sending = True
            try:
                await self._stream.send_all(b"".join(out))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reader sees the end, and stops the rest
            finally:
                self._writing = 0
                self._sending = False
                self._sent.unpark_all()

    async def _read(self, scope: trio.CancelScope, task_status: trio.TaskStatus[None]) -> None:
        reader = Reader(self._stream, to_front)
        try:
            while messages := await reader.receive():
                for message in messages:
                    self._take(message, task_status)
        except BrokenChannel as exc:
            log.error("http front: the channel to the core broke: %s", exc)
        scope.cancel()

    def _take(self, message: ToFront, task_status: trio.TaskStatus[None]) -> None:
        if isinstance(message, Configure):
            first = self._config is None
            self._config = front_config(message)
            if first:
                self.in_core = message.routes
                task_status.started()
            elif self.configured is not None:
                self.configured(self._config)
        elif isinstance(message, Ping):
            self._send(encode(Pong(message.id)))
        elif isinstance(message, Drain):
            self.drain.set()
        else:
            waiter = self._waiting.get(message.id)
            if waiter is not None:
                waiter.answer = message
                waiter.event.set()


def _checked_in_core(call: Call) -> Response | None:
    return None  # the core checks the signature when the request is forwarded to it


def _forwarding(core: RemoteCore, route: WireRoute) -> Callable[[Call], Awaitable[Response]]:
    async def forward(call: Call) -> Response:
        return await core.forward(route, call)

    return forward
