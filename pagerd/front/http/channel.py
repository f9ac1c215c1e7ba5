"""The private channel between the core and one front process: its messages and their framing.

One message a line of JSON, as on the socket (encoded and decoded by msgspec, each message a
compact array whose first item names it). The channel is one end of a socketpair the core made
for that front and handed to it at its start: nothing else can connect to it, so whatever comes
in on it is from pagerd's own front, and an integration named in it is the one whose key the
front checked.

Front to core: `Serving` once it accepts; `Submit`, `Status`, `History`, `Ready` and `Forward`
(a whole request for a route served in the core) (each with an id, answered by id, many in
flight at once); `Counts` (its HTTP metrics since the last); `Pong` (a `Ping`'s answer). Core to
front: `Configure` (first, then on each reload), `Replied`, `Limited`, `ReadyAnswer`,
`Answered`, `Failed` (the answers), `Ping` (is the front alive? answered at once, or it is
replaced) and `Drain` (a clean stop). Wrong keys do not cross it: every front counts them in the
file they share (`shared.py`).

Keys cross it in `Configure`, and nowhere else; no message is ever logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar

import msgspec
import trio

from pager.wire import WireEvent, from_wire, to_wire
from pagerd.config.channels import Secret
from pagerd.config.http import FrontConfig, HttpConfig, HttpLimits, Integration
from pagerd.front.core import Outcome
from pagerd.front.http.routes import Route

MAX_MESSAGE: Final = 256 * 1024 * 1024
"""A message longer than this breaks the channel (a bug, never a client's doing: a front sends
what it parsed from bodies of at most `http.max_body_bytes`). Large, because a `Configure`
names every service and a `status` of every service answers for each."""
RECEIVE_SIZE: Final = 1 << 20

T = TypeVar("T")

__all__ = ["WireEvent", "from_wire", "to_wire"]  # the events' codec, `pager.wire`, as it was here


class Serving(msgspec.Struct, tag="serving", array_like=True):
    pid: int


class Submit(msgspec.Struct, tag="submit", array_like=True):
    id: int
    integration: str
    events: list[WireEvent]
    terse: bool = False


class Status(msgspec.Struct, tag="status", array_like=True):
    id: int
    integration: str
    service: str | None


class History(msgspec.Struct, tag="history", array_like=True):
    id: int
    integration: str
    service: str


class Ready(msgspec.Struct, tag="ready", array_like=True):
    id: int


class Forward(msgspec.Struct, tag="forward", array_like=True):
    """A request for a route served in the core (`WireRoute`), authenticated and read whole by
    the front: the core's handler answers it."""

    id: int
    method: str
    pattern: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    integration: str | None
    address: str
    query: str


class Counts(msgspec.Struct, tag="counts", array_like=True):
    """Increments since the last `Counts`: HTTP answers by (route, code), wrong keys by the
    integration type asked for, and events refused on their own by (integration, reason)."""

    requests: list[tuple[str, str, int]]
    auth_failures: list[tuple[str, int]]
    refused: list[tuple[str, str, int]] = []


class Pong(msgspec.Struct, tag="pong", array_like=True):
    """The answer to `Ping` `id`."""

    id: int


ToCore: TypeAlias = Serving | Submit | Status | History | Ready | Forward | Counts | Pong


class WireIntegration(msgspec.Struct, array_like=True):
    name: str
    type: str
    key: str
    service: str | None
    service_label: str | None
    services: list[str] | None
    heartbeat_alert: str | None


class WireRoute(msgspec.Struct, array_like=True):
    """A route served in the core (`Route` but its handler): the front routes, authenticates
    and reads a request for it as for any, then forwards it whole (`Forward`)."""

    method: str
    pattern: str
    auth: str | None
    key_in_path: bool
    body: bool
    max_body: int | None
    signed: str | None
    """The provider whose signature authenticates it (checked in the core), if any."""
    over_rate: int
    doc: dict[str, Any]


class Configure(msgspec.Struct, tag="configure", array_like=True):
    tls: tuple[str, str] | None
    public_url: str | None
    limits: tuple[int, float, float, int, float, int]
    integrations: list[WireIntegration]
    services: list[str]
    routes: list[WireRoute] = []
    """The routes served in the core: read at the front's start (a reload does not change
    them)."""


class Replied(msgspec.Struct, tag="replied", array_like=True):
    """The outcomes of a `Submit` (one an event, in its order), or of a `Status` or `History`
    (one): each reply line as the socket sends it (without its newline), and its result."""

    id: int
    outcomes: list[tuple[msgspec.Raw, str]]


class Limited(msgspec.Struct, tag="limited", array_like=True):
    id: int
    integration: str
    retry_after: int


class Failed(msgspec.Struct, tag="failed", array_like=True):
    """The core could not serve the request (a bug of its own): an internal error."""

    id: int


class Answered(msgspec.Struct, tag="answered", array_like=True):
    """The core's answer to a `Forward`."""

    id: int
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]]


class ReadyAnswer(msgspec.Struct, tag="ready_answer", array_like=True):
    id: int
    why: str | None


class Ping(msgspec.Struct, tag="ping", array_like=True):
    """Answer `Pong(id)` now: a front that does not is hung, and is replaced."""

    id: int


class Drain(msgspec.Struct, tag="drain", array_like=True):
    """Stop accepting; answer what is in flight; then exit."""


ToFront: TypeAlias = Configure | Replied | Limited | Failed | ReadyAnswer | Answered | Ping | Drain

_encoder = msgspec.json.Encoder()


def encode(message: ToCore | ToFront) -> bytes:
    return _encoder.encode(message) + b"\n"


def replied(id: int, outcomes: Sequence[Outcome]) -> bytes:
    """`Replied`, encoded: each reply line spliced in as it is, never decoded and encoded again."""
    return encode(Replied(id, [(msgspec.Raw(line.rstrip(b"\n")), r) for line, r in outcomes]))


def outcomes_of(message: Replied) -> list[Outcome]:
    return [(bytes(raw) + b"\n", result) for raw, result in message.outcomes]


def wire_route(route: Route) -> WireRoute:
    return WireRoute(
        route.method,
        route.pattern,
        route.auth,
        route.key_in_path,
        route.body,
        route.max_body,
        None if route.signed is None else route.signed.provider,
        route.over_rate,
        dict(route.doc),
    )


def configure(front: FrontConfig, routes: Sequence[Route] = ()) -> Configure:
    """What a front is sent of `front` (the keys included, the services by name), and the
    routes served in the core."""
    http, limits = front.http, front.http.limits
    return Configure(
        tls=None if http.tls is None else (str(http.tls[0]), str(http.tls[1])),
        public_url=http.public_url,
        limits=(
            limits.max_body_bytes,
            limits.read_timeout,
            limits.keep_alive_timeout,
            limits.max_connections,
            limits.rate,
            limits.burst,
        ),
        integrations=[
            WireIntegration(
                i.name,
                i.type,
                i.key.value,
                i.service,
                i.service_label,
                None if i.services is None else sorted(i.services),
                i.heartbeat_alert,
            )
            for i in front.integrations.values()
        ],
        services=list(front.services),
        routes=[wire_route(route) for route in routes],
    )


def front_config(message: Configure) -> FrontConfig:
    """The `FrontConfig` a `Configure` carries."""
    tls = None if message.tls is None else (Path(message.tls[0]), Path(message.tls[1]))
    body, read, keep_alive, connections, rate, burst = message.limits
    http = HttpConfig(
        tls=tls,
        public_url=message.public_url,
        limits=HttpLimits(body, read, keep_alive, connections, rate, burst),
    )
    integrations = {
        i.name: Integration(
            name=i.name,
            type=i.type,
            key=Secret(i.key),
            service=i.service,
            service_label=i.service_label,
            services=None if i.services is None else frozenset(i.services),
            heartbeat_alert=i.heartbeat_alert,
        )
        for i in message.integrations
    }
    return FrontConfig.of(http, integrations, frozenset(message.services))


class BrokenChannel(Exception):
    """What came in on the channel is not a message: the other end is broken."""


class Reader(Generic[T]):
    """Messages off one end of the channel, as they come: whole lines only."""

    def __init__(self, stream: trio.abc.ReceiveStream, decoder: msgspec.json.Decoder[T]) -> None:
        self._stream = stream
        self._decode_lines = decoder.decode_lines
        self._pending: list[bytes | bytearray] = []  # the start of a line, in the pieces it came in
        self._pending_size = 0

    async def receive(self) -> list[T]:
        """The messages of the next lines that came in whole; none at the end (the other end
        closed, or the channel broke). `BrokenChannel` for what is no message."""
        while True:
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return []
            if not data:
                return []
            end = data.rfind(b"\n") + 1
            if not end:
                self._pending.append(data)
                self._pending_size += len(data)
                if self._pending_size > MAX_MESSAGE:
                    raise BrokenChannel(f"a message over {MAX_MESSAGE} bytes")
                continue
            # Most reads end on a line's end, with nothing before: decoded as they are.
            whole = data if end == len(data) else data[:end]
            if self._pending:
                whole = b"".join([*self._pending, whole])
                self._pending.clear()
                self._pending_size = 0
            if end < len(data):
                self._pending.append(data[end:])
                self._pending_size = len(data) - end
            try:
                return self._decode_lines(whole)
            except (msgspec.DecodeError, ValueError) as exc:
                raise BrokenChannel(f"not a message: {exc}") from None


to_core: Final = msgspec.json.Decoder(ToCore)
to_front: Final = msgspec.json.Decoder(ToFront)
