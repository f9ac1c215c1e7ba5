"""The ASGI application: a request found in the route table, its key checked, its body read
within bounds, then handed to its handler, which reaches the core through its port (`Core`);
every answer counted by route and code.

The same application runs in the core's own process (`http.workers = 0`) and in each front
process: what differs is only the `Core` it is given, and where wrong keys are counted
(`WrongKeys`: here, or in the core for every front at once). An integration's rate is kept by
the core (`OverRate`, answered here with the route's status).

Nothing here keeps a request's bytes past its answer, and nothing waits without a bound but the
commit of an event (which the daemon's own shutdown bounds).
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from pagerd.config.http import Integration
from pagerd.front.core import Busy, Core, CoreUnavailable
from pagerd.front.http.asgi import (
    Disconnected,
    Response,
    TooLarge,
    error,
    header_map,
    read_body,
    send_response,
)
from pagerd.front.http.auth import authenticate, bearer
from pagerd.front.http.limits import HereWrongKeys, WrongKeys
from pagerd.front.http.openapi import document
from pagerd.front.http.routes import Call, Route, allowed, find, handle
from pagerd.operations.metrics import Metrics

__all__ = ["HereWrongKeys", "HttpApp", "WrongKeys"]

log = logging.getLogger("pagerd.http")

READY_TIMEOUT: Final = 2.0
"""Seconds `/-/ready` waits for the core's answer, which it has at once (it never waits on the
database): past it, the core itself is stuck or gone, and the node is not ready."""
UNMATCHED: Final = "(unmatched)"


class HttpApp:
    def __init__(
        self,
        routes: list[Route],
        core: Core,
        metrics: Metrics,
        wrong_keys: WrongKeys | None = None,
    ) -> None:
        """`routes` are the integrations' (REST, ...); `/-/healthy`, `/-/ready` and
        `/openapi.json` are added here. `core.config()` gives the config served now (reloads
        change the integrations and limits). `metrics` counts the answers (a front process's
        are sent to the core's)."""
        self._core = core
        self._metrics = metrics
        self.wrong_keys: WrongKeys = wrong_keys if wrong_keys is not None else HereWrongKeys()
        self.routes: list[Route] = [
            Route("GET", "/-/healthy", self._healthy,
                  doc={"summary": "200 while the process serves", "responses": ("200",)}),
            Route("GET", "/-/ready", self._readiness,
                  doc={"summary": "200 once state is loaded and the database answers",
                       "responses": ("200", "503")}),
            Route("GET", "/openapi.json", self._openapi,
                  doc={"summary": "This document", "responses": ("200",)}),
            *routes,
        ]  # fmt: skip
        self._document = b""
        self._document_url: str | None = None
        self._openapi_document()  # a route that cannot be documented fails the start

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            return  # no websockets, no lifespan: the server is ours and needs none
        method, path = scope["method"], scope["path"]
        route, params, known = find(self.routes, method, path)
        name = route.name if route is not None else UNMATCHED
        try:
            response = await self._respond(route, params, known, scope, receive)
        except Disconnected:
            self._metrics.http_requests.inc(name, "499")
            return
        except Busy as busy:  # the table of wrong keys, held too long by another process
            assert route is not None
            retry = ("retry-after", str(busy.retry_after))
            response = route.refuse(503, "busy", str(busy), retry)
        self._metrics.http_requests.inc(name, str(response.status))
        await send_response(send, response, head_only=method == "HEAD")

    async def _respond(
        self,
        route: Route | None,
        params: dict[str, str],
        known: bool,
        scope: Scope,
        receive: ASGIReceiveCallable,
    ) -> Response:
        assert scope["type"] == "http"
        path = scope["path"]
        if route is None:
            if known:
                allow = allowed(self.routes, path)
                return error(405, "method_not_allowed", f"use {allow}", ("allow", allow))
            return error(404, "not_found", "no such endpoint (see /openapi.json)")
        headers = header_map(scope)
        config = self._core.config()
        integration = None
        client = scope.get("client")
        address = client[0] if client else ""
        if route.auth is not None:
            key = params.pop("key", None) if route.key_in_path else bearer(headers)
            found = await self._authenticate(route, route.auth, key, address)
            if isinstance(found, Response):
                return found
            integration = found
        if route.signed is not None:
            # Before its body is read: `check`, below, decides.
            wait = self.wrong_keys.retry_after(address)
            if wait is not None:
                message = f"too many badly signed requests from this address; retry in {wait}s"
                return route.refuse(
                    429, "busy", message, ("retry-after", str(wait)), ("connection", "close")
                )
        body = b""
        if route.body:
            limits = config.http.limits
            most = min(limits.max_body_bytes, route.max_body or limits.max_body_bytes)
            try:
                body = await read_body(receive, headers, most, limits.read_timeout)
            except TooLarge:
                bound = "http.max_body_bytes" if most == limits.max_body_bytes else "this form"
                message = f"the body is over {most} bytes ({bound})"
                return route.refuse(413, "too_large", message, ("connection", "close"))
            except trio.TooSlowError:
                message = f"the body took over {limits.read_timeout:g}s (http.read_timeout)"
                return route.refuse(408, "timeout", message, ("connection", "close"))
        query = scope.get("query_string", b"").decode("latin-1")
        call = Call(
            scope["method"], path, params, headers, body, integration, address=address, query=query
        )
        if route.signed is not None:
            signed = route.signed
            refused: list[Response] = []

            def right() -> bool:
                found = signed.check(call)
                if found is not None:
                    refused.append(found)
                return found is None or found.status != 403  # a 404: not set up

            wait = await self.wrong_keys.check(address, right)
            if wait is not None:
                message = f"too many badly signed requests from this address; retry in {wait}s"
                return route.refuse(
                    429, "busy", message, ("retry-after", str(wait)), ("connection", "close")
                )
            if refused:
                if refused[0].status == 403:
                    self._metrics.http_auth_failures.inc(signed.provider)
                return refused[0]
        return await handle(route, call)

    async def _authenticate(
        self, route: Route, kind: str, key: str | None, address: str
    ) -> Integration | Response:
        """The integration of type `kind` whose key `key` is, or the refusal: an address that
        presented too many wrong keys waits, whatever it presents now (guessing a key takes
        forever: see `FailedKeys`), and a wrong key closes its connection (one guess each)."""
        integrations = self._core.config().integrations.values()
        found: list[Integration] = []

        def right() -> bool:
            integration = authenticate(integrations, kind, key)
            if integration is not None:
                found.append(integration)
            return integration is not None

        wait = await self.wrong_keys.check(address, right)
        if wait is not None:
            message = f"too many wrong keys from this address; retry in {wait}s"
            return route.refuse(
                429, "busy", message, ("retry-after", str(wait)), ("connection", "close")
            )
        if found:
            return found[0]
        self._metrics.http_auth_failures.inc(kind)
        close = ("connection", "close")  # one guess per connection
        if route.key_in_path:
            return route.refuse(404, "not_found", "no such endpoint (see /openapi.json)", close)
        message = f"this endpoint takes the key of a {kind!r} integration"
        return route.refuse(
            401, "unauthorized", f"missing or wrong key: {message} (Authorization: Bearer)",
            ("www-authenticate", "Bearer"), close,
        )  # fmt: skip

    async def _healthy(self, call: Call) -> Response:
        return Response.json(200, {"ok": True, "healthy": True})

    async def _readiness(self, call: Call) -> Response:
        with trio.move_on_after(READY_TIMEOUT):
            try:
                why = await self._core.ready()
            except CoreUnavailable as exc:
                why = str(exc)
            if why is None:
                return Response.json(200, {"ok": True, "ready": True})
            return error(503, "unavailable", why)
        return error(503, "unavailable", f"pagerd did not answer within {READY_TIMEOUT:g}s")

    async def _openapi(self, call: Call) -> Response:
        return Response(200, self._openapi_document())

    def _openapi_document(self) -> bytes:
        """`/openapi.json`, made again when a reload changed `http.public_url` (its
        `servers`): the routes are the same for the process's life."""
        public_url = self._core.config().http.public_url
        if not self._document or public_url != self._document_url:
            self._document = msgspec.json.encode(document(self.routes, public_url))
            self._document_url = public_url
        return self._document
