"""The `Core` port in a front process: each call one message on the channel to the core, many in
flight at once, each answered by its id (so a slow commit holds up only its own request).

A writer task sends whatever is queued in one write (the front's HTTP counts since the last
write with it); a reader task hands each answer to the request waiting for it. When the core
has gone (the channel closed), every request waiting gets `CoreUnavailable`, and `gone` is set:
the front stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from pagerd.config.http import FrontConfig
from pagerd.front.core import CoreUnavailable, Outcome, OverRate, Submission
from pagerd.front.http.asgi import Response
from pagerd.front.http.channel import (
    Answered,
    Block,
    BrokenChannel,
    Configure,
    Counts,
    Drain,
    Failed,
    Forward,
    History,
    Limited,
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
    WrongKey,
    encode,
    front_config,
    outcomes_of,
    to_front,
    to_wire,
)
from pagerd.front.http.limits import MAX_ADDRESSES
from pagerd.front.http.routes import Call, Route, Signed
from pagerd.operations.metrics import Counter

__all__ = ["Blocked", "RemoteCore"]

log = logging.getLogger("pagerd.http.front")

GONE: Final = "the core of pagerd is not running"


class _Waiter:
    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.answer: ToFront | None = None


class Blocked:
    """Addresses the core said wait, until when (this process's clock): at most
    `MAX_ADDRESSES`, the one due first forgotten first."""

    def __init__(self, size: int = MAX_ADDRESSES) -> None:
        self._until: dict[str, float] = {}
        self._size = size

    def block(self, address: str, seconds: int) -> None:
        if address not in self._until and len(self._until) >= self._size:
            del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[address] = trio.current_time() + seconds

    def retry_after(self, address: str) -> int | None:
        until = self._until.get(address)
        if until is None:
            return None
        left = until - trio.current_time()
        if left <= 0:
            del self._until[address]
            return None
        return max(1, round(left))


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
        stream: trio.SocketStream,
        requests: Counter,
        auth_failures: Counter,
        refused: Counter,
        configured: Callable[[FrontConfig], None] | None = None,
    ) -> None:
        """The core at the other end of `stream`. `requests`, `auth_failures` and `refused` (the
        events refused on their own) are this front's HTTP counters, whose gains are sent to the
        core; `configured` is told of each config after the first (a reload)."""
        self._stream = stream
        self._out: list[bytes] = []
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
        self.blocked = Blocked()
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
                nursery.start_soon(self._write)
                await self._read(nursery.cancel_scope, task_status)
        finally:
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
        answer = await self._ask(Ready)
        if isinstance(answer, ReadyAnswer):
            return answer.why
        raise self._unexpected(answer)

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

    async def wrong_key(self, address: str) -> None:
        """Tell the core `address` presented a wrong key; back once the core has counted it (and
        told every front to block the address, if that was one too many)."""
        await self._ask(lambda id: WrongKey(id, address))

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
        waiter = self._waiting[id] = _Waiter()
        self._send(encode(message(id)))
        try:
            await waiter.event.wait()
        finally:
            del self._waiting[id]  # answered, or given up on: a late answer is dropped
        if waiter.answer is None:
            raise CoreUnavailable(GONE)
        return waiter.answer

    def _send(self, line: bytes) -> None:
        self._out.append(line)
        if len(self._out) == 1:
            self._wake.unpark()

    async def _write(self) -> None:
        while True:
            while not (self._out or self._counted):
                await self._wake.park()
            if self._counted:
                self._counted = False
                requests = [(route, code, n) for (route, code), n in self._requests.gained()]
                failures = [(kind, n) for (kind,), n in self._auth_failures.gained()]
                refused = [(name, why, n) for (name, why), n in self._refused.gained()]
                if requests or failures or refused:
                    self._out.append(encode(Counts(requests, failures, refused)))
            out, self._out = self._out, []
            self._sending = True
            try:
                await self._stream.send_all(b"".join(out))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the reader sees the end, and stops the rest
            finally:
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
        elif isinstance(message, Block):
            self.blocked.block(message.address, message.seconds)
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
