"""`/openapi.json`: an OpenAPI 3.1 document made from the route table itself, so that every
route served is documented and nothing documented is not served (tests/test_http_openapi.py
holds the document to what the server answers)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pager import __version__
from pager.domain import SERVICE_NAME_RE
from pager.protocol import MAX_BY, MAX_TEXT
from pager.silences import MAX_REASON
from pagerd.front.http.routes import Route

DESCRIPTIONS: Final = {
    "200": "Done: the event is committed, or what was asked for",
    "202": "Accepted: the event is committed",
    "303": "See Other: go to the page in Location (the web console)",
    "400": "bad_request: the body or a parameter is not what this endpoint takes",
    "401": "unauthorized: no key, or a wrong one (Authorization: Bearer KEY)",
    "403": "forbidden: the integration may not send to this service (its services list), a "
    "provider's callback is not signed by it, or a link's resolve the policy does not allow",
    "404": "unknown_service (or not_found: no such incident, a wrong key in the path, a "
    "provider's callback that is not set up, a link's token that is not pagerd's)",
    "408": "timeout: the body took too long to arrive",
    "409": "no_open_incident: nothing to acknowledge (a link: acknowledged already, by whom; "
    "too_many_silences: end some first)",
    "410": "gone: the link's incident is closed (its token no longer does anything)",
    "413": "too_large: the body is over the limit",
    "415": "bad_request: the body is not of the type this endpoint takes (a link's form: not "
    "application/x-www-form-urlencoded)",
    "422": "too_complex: too much to compute (a schedule's feed, who is on call next, an "
    "override's check): ask for less",
    "429": "busy: the integration is over its rate, or this address sent too many wrong keys; "
    "retry after Retry-After seconds",
    "503": "busy or unavailable: retry (nothing was committed)",
}

_SERVICE: Final = {"type": "string", "pattern": rf"^(?:{SERVICE_NAME_RE.pattern})$"}
_EVENTS: Final[dict[str, dict[str, Any]]] = {
    "alert": {"service": _SERVICE, "message": {"type": "string", "maxLength": MAX_TEXT}},
    "ack": {"service": _SERVICE, "by": {"type": "string", "maxLength": MAX_BY}},
    "healthy": {"service": _SERVICE},
    "silence": {
        "service": _SERVICE,
        "reason": {"type": "string", "maxLength": MAX_REASON},
        "for": {"type": "string", "description": "a duration: 30m, 2h, 1d12h"},
        "until": {"type": "string", "format": "date-time"},
        "from": {"type": "string", "format": "date-time"},
        "by": {"type": "string", "maxLength": MAX_BY},
    },
}
_REQUIRED: Final[dict[str, list[str]]] = {"silence": ["service", "reason"]}
_REPLY: Final = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        },
    },
    "required": ["ok"],
}


def document(routes: Iterable[Route], public_url: str | None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "pagerd", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Reply": _REPLY},
        },
    }
    if public_url is not None:
        doc["servers"] = [{"url": public_url}]
    return doc


def _operation(route: Route) -> dict[str, Any]:
    reply: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/Reply"}}}
    if route.doc.get("content") is not None:  # a page for a person (a link, the web console)
        reply = {route.doc["content"]: {"schema": {"type": "string"}}}
    codes = tuple(route.doc.get("responses", ("200",)))
    if route.auth is not None:
        # Every keyed route refuses a wrong key, and slows an address that keeps sending them.
        codes += tuple(code for code in ("401", "429") if code not in codes)
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()} {route.pattern}",
        "summary": route.doc.get("summary", ""),
        "responses": {
            code: {"description": DESCRIPTIONS[code], "content": reply} for code in codes
        },
    }
    parameters = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for part in route.pattern.split("/")
        if part.startswith("{")
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.doc.get("tags"):
        operation["tags"] = list(route.doc["tags"])
    if route.auth is not None:
        operation["security"] = [] if route.key_in_path else [{"bearer": []}]
        operation["x-integration-type"] = route.auth
    if route.signed is not None:
        operation["x-signed-by"] = route.signed.provider
    form = route.doc.get("form")
    if route.body and form:
        schema = {
            "type": "object",
            "properties": {name: {"type": "string"} for name in form},
            "required": list(form),
            "additionalProperties": False,
        }
        operation["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    op = route.doc.get("op")
    if route.body and op in _EVENTS:
        schema = {
            "type": "object",
            "properties": _EVENTS[op],
            "required": _REQUIRED.get(op, ["service"]),
            "additionalProperties": False,
        }
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation
