"""One event from HTTP to its service's actor, answered only once it is committed.

The way a route reaches the core for one event: checked here against the config the front
serves (is the service configured, may the integration send to it), then handed to the core
through its port (`pagerd/front/core.py`), which routes it as the socket routes its events and
answers after the commit. REST and heartbeats submit their events here (Alertmanager and Events
v2, several at once, through `pagerd.front.integrations`), named by integration, so history says
which one sent each. Past the integration's rate, `OverRate` goes up to the HTTP application.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pager.domain import Event
from pager.protocol import error_reply, unknown_service
from pagerd.config.http import Integration
from pagerd.front.core import Core

STATUS: Final[dict[str, int]] = {
    "bad_request": 400,
    "unknown_op": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "unknown_service": 404,
    "not_found": 404,
    "no_open_incident": 409,
    "unknown_schedule": 404,
    "unknown_person": 404,
    "too_many": 409,
    "too_many_silences": 409,
    "too_large": 413,
    "too_complex": 422,
    "busy": 503,
    "unavailable": 503,
    "internal": 500,
}
"""The socket protocol's error codes as HTTP statuses; a code not listed is a 500."""


def status_of(result: str) -> int:
    """The HTTP status of a socket protocol reply whose result is `result` (`ok`, or its error
    code)."""
    return 200 if result == "ok" else STATUS.get(result, 500)


async def submit(
    core: Core, service: str, event: Event, integration: Integration
) -> tuple[bytes, str]:
    """Hand `event` for `service` to the core as sent through `integration`, and give back its
    reply line and result once decided and committed (`{"ok": true, ...}` with the service's
    status, or the error: `unknown_service`, `forbidden` if the integration may not send to the
    service, `no_open_incident`, `unavailable` if the commit failed, ...).

    The HTTP request may be cancelled meanwhile (its client went away, a shutdown): the event
    was handed over all the same, and is decided and committed like any other."""
    if service not in core.config().services:
        return unknown_service(service), "unknown_service"
    if not integration.may_send_to(service):
        message = f"integration {integration.name!r} may not send to {service!r} (services)"
        return error_reply("forbidden", message), "forbidden"
    [outcome] = await core.submit(integration.name, [(service, event)])
    return outcome


def decoded(line: bytes) -> dict[str, Any]:
    """A reply line as its JSON object (empty if it is none)."""
    try:
        reply = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return {}
    return reply if isinstance(reply, dict) else {}
