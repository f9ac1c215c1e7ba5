"""Plain REST: the socket protocol's events and reads over HTTP, with a `rest` integration's key.

`POST /alert`, `/acknowledge`, `/healthy` take the socket request's fields as a JSON object
(the op is the path's): the body is checked by the protocol's own parser, so what the socket
refuses this refuses too, with the same code and sentence, as an HTTP status. Silences too
(`RestSilences`, served in the core, which numbers them): `POST /silences` is the socket's
`silence`, `DELETE /silences/{id}` its `silence_end`, and `GET /silences` its `silences`; a
silence is asked for by the integration unless it says `by`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from pager.domain import Rejected, is_service_name
from pager.protocol import ProtocolError, Request, error_reply, event_of, parse_request
from pagerd.front.core import Core
from pagerd.front.http.asgi import Response
from pagerd.front.http.routes import Call, Route
from pagerd.front.http.submit import status_of, submit
from pagerd.storage.port import StoreError

if TYPE_CHECKING:
    from pagerd.engine.actors import Services
    from pagerd.front.local import LocalCore

EVENT_PATHS: Final = {"/alert": "alert", "/acknowledge": "ack", "/healthy": "healthy"}
EVENT_DOC: Final = {
    "responses": ("200", "400", "401", "403", "404", "408", "409", "413", "429", "503"),
}
READS: Final = ("200", "400", "401", "404", "429", "503")


def parse_event(op: str, body: bytes) -> Request:
    """`body`, a JSON object of the fields `op` takes, as the socket's request; `ProtocolError`
    as the socket gives it for anything wrong. The op is spliced in front of the fields rather
    than the body decoded twice: the protocol's parser is the only one that reads it."""
    text = body.lstrip()
    if not text.startswith(b"{"):
        raise ProtocolError("bad_request", "the body must be a JSON object")
    rest = text[1:]
    comma = b"" if rest.lstrip()[:1] == b"}" else b","
    request = parse_request(b'{"op":"' + op.encode() + b'"' + comma + rest)
    if request.op != op:
        raise ProtocolError("bad_request", 'the body does not take "op": the path names it')
    return request


def answer(line: bytes, result: str) -> Response:
    """A socket protocol reply line as the HTTP response, its status from its `result`."""
    return Response(status_of(result), line)


def refuse(code: str, message: str) -> Response:
    return answer(error_reply(code, message), code)


class Rest:
    def __init__(self, core: Core) -> None:
        self._core = core

    def routes(self) -> list[Route]:
        routes = [
            Route("POST", path, self._event, auth="rest", body=True,
                  doc={**EVENT_DOC, "summary": f"The socket's {op!r} event", "op": op})
            for path, op in EVENT_PATHS.items()
        ]  # fmt: skip
        reads = READS
        return [
            *routes,
            Route("GET", "/status", self._status, auth="rest",
                  doc={"summary": "Every service's state", "responses": reads}),
            Route("GET", "/status/{service}", self._status, auth="rest",
                  doc={"summary": "One service's state and open incident", "responses": reads}),
            Route("GET", "/history/{service}", self._history, auth="rest",
                  doc={"summary": "The service's latest incident's history", "responses": reads}),
        ]  # fmt: skip

    async def _event(self, call: Call) -> Response:
        try:
            request = parse_event(EVENT_PATHS[call.path], call.body)
        except ProtocolError as exc:
            return refuse(exc.code, exc.message)
        service = request.service
        assert service is not None  # the protocol requires it of events
        integration = call.integration
        assert integration is not None  # the route takes a key
        return answer(*await submit(self._core, service, event_of(request), integration))

    async def _status(self, call: Call) -> Response:
        service = call.params.get("service")
        if service is not None and not is_service_name(service):
            return refuse("bad_request", "not a service name")
        integration = call.integration
        assert integration is not None  # the route takes a key
        return answer(*await self._core.status(integration.name, service))

    async def _history(self, call: Call) -> Response:
        service = call.params["service"]
        if not is_service_name(service):
            return refuse("bad_request", "not a service name")
        integration = call.integration
        assert integration is not None  # the route takes a key
        return answer(*await self._core.history(integration.name, service))


class RestSilences:
    """REST's silences, served in the core (with front processes, forwarded to it): a silence is
    numbered and checked against the services' state there (`Services.silence_event`)."""

    def __init__(
        self,
        services: Services,
        core: LocalCore,
        read: Callable[[Request], Awaitable[tuple[bytes, str]]],
    ) -> None:
        self._services = services
        self._core = core
        self._read = read

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/silences", self._silences, auth="rest",
                  doc={"summary": "Every silence in force or to come", "responses": READS}),
            Route("POST", "/silences", self._silence, auth="rest", body=True,
                  doc={**EVENT_DOC, "summary": "Silence a service (the socket's 'silence')",
                       "op": "silence"}),
            Route("DELETE", "/silences/{id}", self._end_silence, auth="rest",
                  doc={"summary": "End a silence now (the socket's 'silence_end')",
                       "responses": ("200", "400", "401", "403", "404", "429", "503")}),
        ]  # fmt: skip

    async def _silence(self, call: Call) -> Response:
        try:
            request = parse_event("silence", call.body)
        except ProtocolError as exc:
            return refuse(exc.code, exc.message)
        return await self._silenced(call, request)

    async def _end_silence(self, call: Call) -> Response:
        number = call.params["id"]
        if re.fullmatch(r"[0-9]{1,18}", number) is None:
            return refuse("bad_request", "not a silence id: a number, as GET /silences shows")
        return await self._silenced(call, Request("silence_end", id=int(number)))

    async def _silenced(self, call: Call, request: Request) -> Response:
        integration = call.integration
        assert integration is not None  # the route takes a key
        try:
            # On a node of a cluster, a silence of a service held elsewhere is in the store.
            service, event = await self._services.find_silence_event(request, integration.name)
        except Rejected as exc:
            return refuse(exc.code, exc.message)
        except StoreError as exc:
            return refuse("unavailable", f"the database could not be read: {exc}")
        return answer(*await submit(self._core, service, event, integration))

    async def _silences(self, call: Call) -> Response:
        integration = call.integration
        assert integration is not None  # the route takes a key
        self._core.admit(integration.name)  # a read takes a token of the rate, as any
        return answer(*await self._read(Request("silences")))
