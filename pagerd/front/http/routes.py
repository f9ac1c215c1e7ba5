"""The route table: which method and path is served by which handler, with which key, and what
the OpenAPI document says of it. One table, so the document cannot drift from the server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

import attrs

from pagerd.config.http import Integration
from pagerd.front.core import Busy, CoreUnavailable, OverRate
from pagerd.front.http.asgi import Response, error

log = logging.getLogger("pagerd.http")


@attrs.frozen
class Call:
    """A request as a handler sees it: authenticated, its body read whole (within limits)."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    integration: Integration | None = None
    address: str = ""
    """The client's IP address (the peer of the connection: a proxy's, behind one): the
    console's sign-in lock-out, trusted proxies and the per-address limits of the routes that
    take no key (links) use it."""
    query: str = ""
    """The query string as sent (without `?`): part of what some providers sign (Twilio)."""

    @property
    def arguments(self) -> Mapping[str, str]:
        """The query string's parameters (the last of a name repeated)."""
        return dict(parse_qsl(self.query))


Handler = Callable[[Call], Awaitable[Response]]


class Refusal(Protocol):
    """How a route words an error it did not answer itself (a wrong key's wait, a body too
    large or too slow, the integration past its rate, the core gone or busy, a bug): the
    socket protocol's `{"ok": false, "error": {...}}` (`asgi.error`), or a sender's own shape
    (PagerDuty's, for `/v2/enqueue`)."""

    def __call__(
        self, status: int, code: str, message: str, *headers: tuple[str, str]
    ) -> Response: ...


@attrs.frozen
class Signed:
    """A route a provider calls, authenticated by its signature over the request rather than
    an integration's key (Twilio's `X-Twilio-Signature`, Slack's `X-Slack-Signature`).

    `check(call)`, once the body is read, gives None if the request is signed, else the
    refusal: a 403 counts as a wrong key from the client's address (slowed down as wrong keys
    are, and counted as `provider`'s auth failure); a 404 says the provider is not set up."""

    provider: str
    check: Callable[[Call], Response | None]


@attrs.frozen
class Route:
    method: str
    pattern: str
    """`/status/{service}`: a `{name}` is one path segment, handed to the handler in `params`."""
    handler: Handler
    auth: str | None = None
    """The integration type whose key it takes; None: it takes none."""
    key_in_path: bool = False
    """The key is the path's `{key}` (a wrong one is 404, as for a path that does not exist)."""
    body: bool = False
    max_body: int | None = None
    """A bound on its body below `http.max_body_bytes` (a form of a few fields)."""
    signed: Signed | None = None
    """A provider's signature is its authentication (see `Signed`); `auth` is then None."""
    over_rate: int = 429
    """The status an integration past its rate gets (with Retry-After): 503 for a sender that
    drops a 429 (Alertmanager retries only a 5xx)."""
    doc: Mapping[str, Any] = attrs.field(factory=dict)
    """Its OpenAPI operation: `summary`, `responses` (codes as strings), and `op`, the socket
    event whose fields the body takes."""
    refuse: Refusal = error
    """How its errors are worded (see `Refusal`)."""

    @property
    def name(self) -> str:
        """What the metrics count it as: the pattern, never the path (which may hold a key)."""
        return self.pattern

    def match(self, path: str) -> dict[str, str] | None:
        want, have = self.pattern.split("/"), path.split("/")
        if len(want) != len(have):
            return None
        params: dict[str, str] = {}
        for pattern, segment in zip(want, have, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not segment:
                    return None
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return params


def find(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for `method` and `path`, its parameters, and whether the path is served at all
    (a path served for other methods is 405, not 404)."""
    known = False
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        known = True
        if route.method == method or (method == "HEAD" and route.method == "GET"):
            return route, params, True
    return None, {}, known


def allowed(routes: list[Route], path: str) -> str:
    methods = {r.method for r in routes if r.match(path) is not None}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def handle(route: Route, call: Call) -> Response:
    """`route`'s answer to `call`: its handler's, or the answer to what the handler raised (the
    integration past its rate, the core gone, a bug: this request's, not the server's)."""
    try:
        return await route.handler(call)
    except OverRate as over:
        # The core keeps every integration's rate, for all the fronts at once.
        retry = ("retry-after", str(over.retry_after))
        return route.refuse(route.over_rate, "busy", str(over), retry)
    except Busy as busy:
        return route.refuse(503, "busy", str(busy), ("retry-after", str(busy.retry_after)))
    except CoreUnavailable as exc:
        return route.refuse(503, "unavailable", str(exc), ("retry-after", "1"))
    except Exception:
        log.exception("http %s %s failed", call.method, route.name)
        return route.refuse(500, "internal", "internal error")
