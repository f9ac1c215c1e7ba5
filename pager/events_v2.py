"""PagerDuty's Events API v2 (`POST /v2/enqueue`), read into events, with PagerDuty's rules.

A `trigger` is an `Alert` whose source is its `dedup_key` (one is made for a trigger without
one, from the integration and the event itself, and returned: see `content_key`); a `resolve`
is a `Resolve` of it, so the service is healthy again once every open `dedup_key` of it from
this integration is resolved; an `acknowledge` acknowledges the incident, by the integration,
while that `dedup_key` is open. As at PagerDuty, an acknowledge or resolve of a `dedup_key`
that is not open is accepted and changes nothing.

The body is checked field by field rather than decoded into a struct, so that a bad event gets
every error at once, in PagerDuty's words (`errors` of its 400 answer).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Container
from typing import Any, Final

import attrs
import msgspec

from pager.domain import Ack, Alert, Event, Resolve, Source
from pager.integrations import EVENTS_V2_FIELDS, IntegrationRoute, Refused, Routed
from pager.protocol import MAX_TEXT
from pager.text import clip, repair

ACTIONS: Final = ("trigger", "acknowledge", "resolve")
SEVERITIES: Final = ("critical", "error", "warning", "info")
MAX_DEDUP_KEY: Final = 255
MAX_SUMMARY: Final = 1024
INVALID: Final = "Event object is invalid"


@attrs.frozen
class Enqueued:
    """An accepted event: its service (None: an acknowledge or resolve, for the integration
    whose service is chosen by `service_label`: it goes to the service that has its `dedup_key`
    open, if any) and the key to answer with."""

    service: str | None
    event: Event
    dedup_key: str

    def routed(self) -> Routed:
        assert self.service is not None
        return Routed(self.service, self.event)


def decode(body: bytes) -> dict[str, Any] | Refused:
    """The body as a JSON object, or PagerDuty's answer to one that is not."""
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return Refused(400, INVALID, "invalid event", ("Invalid JSON in request body",))
    if not isinstance(data, dict):
        return Refused(400, INVALID, "invalid event", ("Event object must be a JSON object",))
    return data


def routing_key(data: dict[str, Any]) -> str | Refused:
    """The `routing_key`: which integration the event is for (its key)."""
    key = data.get("routing_key")
    if not isinstance(key, str) or not key:
        return Refused(400, INVALID, "invalid event", ("'routing_key' is missing or blank",))
    return key


def _text(
    data: dict[str, Any], field: str, errors: list[str], *, required: bool = False, where: str = ""
) -> str | None:
    value = data.get(field)
    name = f"{where}{field}"
    if value is None or value == "":
        if required:
            errors.append(f"'{name}' is missing or blank")
        return None
    if not isinstance(value, str):
        errors.append(f"'{name}' must be a string")
        return None
    return value


def _timestamp(value: str, errors: list[str]) -> None:
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")


def _list_of_objects(data: dict[str, Any], field: str, required: str, errors: list[str]) -> None:
    value = data.get(field)
    if value is None:
        return
    if not isinstance(value, list):
        errors.append(f"'{field}' must be an array")
        return
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get(required), str):
            errors.append(f"'{field}[{i}].{required}' is missing or not a string")


def _service_value(route: IntegrationRoute, payload: dict[str, Any] | None) -> str | None:
    label = route.service_label
    if label is None or payload is None:
        return None
    if label in EVENTS_V2_FIELDS:
        value = payload.get(label)
    else:
        details = payload.get("custom_details")
        value = details.get(label) if isinstance(details, dict) else None
    return value if isinstance(value, str) else None


def content_key(integration: str, data: dict[str, Any]) -> str:
    """The `dedup_key` of a trigger sent without one: 32 hex digits (as PagerDuty's are) of the
    SHA-256 of the integration's name and the event's canonical JSON (keys sorted), without its
    `routing_key` (a rotated key is the same integration).

    The same event gets the same key: a sender that retries a trigger whose answer it never got
    (its timeout, a 503 while the commit was slow, which commits all the same) sends the same
    alert again, not a second one it can never resolve; and two identical triggers without a
    `dedup_key` are one alert, as a retry would be. A random key made the retry a second
    alert, which kept the incident open after the sender resolved the key it was given."""
    fields = {
        name: value for name, value in data.items() if name not in ("routing_key", "dedup_key")
    }
    canonical = msgspec.json.encode([integration, fields], order="sorted")
    return hashlib.sha256(canonical).hexdigest()[:32]


def events(
    data: dict[str, Any],
    route: IntegrationRoute,
    known: Container[str],
    new_key: Callable[[], str] | None = None,
) -> Enqueued | Refused:
    """The event of one Events v2 body whose `routing_key` is `route`'s; the `dedup_key` of a
    trigger that has none is `content_key`'s (or `new_key()`'s, given one: tests)."""
    errors: list[str] = []
    action = _text(data, "event_action", errors, required=True)
    if action is not None and action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup_key = _text(data, "dedup_key", errors, required=action in ("acknowledge", "resolve"))
    if dedup_key is not None and len(dedup_key) > MAX_DEDUP_KEY:
        errors.append(
            f"Length of 'dedup_key' is incorrect (should be at most {MAX_DEDUP_KEY} characters)"
        )
    payload = data.get("payload")
    if payload is not None and not isinstance(payload, dict):
        errors.append("'payload' must be an object")
        payload = None
    summary = None
    if action == "trigger":
        if payload is None:
            errors.append("'payload' is missing")
        else:
            summary = _text(payload, "summary", errors, required=True, where="payload.")
            _text(payload, "source", errors, required=True, where="payload.")
            severity = _text(payload, "severity", errors, required=True, where="payload.")
            if severity is not None and severity not in SEVERITIES:
                errors.append(
                    f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})"
                )
            timestamp = _text(payload, "timestamp", errors, where="payload.")
            if timestamp is not None:
                _timestamp(timestamp, errors)
            for field in ("component", "group", "class"):
                _text(payload, field, errors, where="payload.")
        _list_of_objects(data, "links", "href", errors)
        _list_of_objects(data, "images", "src", errors)
        _text(data, "client", errors)
        _text(data, "client_url", errors)
    if errors:
        return Refused(400, INVALID, "invalid event", tuple(errors))
    assert action is not None
    service: str | None = None
    # An acknowledge or resolve is for whichever service has its dedup_key open, whatever
    # payload it carries (PagerDuty ignores it; Alertmanager's sends its trigger's again).
    if action == "trigger" or route.service is not None:
        found = route.service_for(_service_value(route, payload), known)
        if isinstance(found, Refused):
            return Refused(400, INVALID, "invalid event", (found.message,))
        service = found
    if action == "trigger":
        assert summary is not None
        key = dedup_key or (content_key(route.name, data) if new_key is None else new_key())
        text = clip(repair(summary), min(MAX_SUMMARY, MAX_TEXT))
        return Enqueued(service, Alert(text, Source(route.name, key)), key)
    assert dedup_key is not None
    source = Source(route.name, dedup_key)
    event: Event = Resolve(source) if action == "resolve" else Ack(route.name, source)
    return Enqueued(service, event, dedup_key)


def parse(
    body: bytes,
    route: IntegrationRoute,
    known: Container[str],
    new_key: Callable[[], str] | None = None,
) -> Enqueued | Refused:
    """`decode`, then `events` (for a body already known to be for `route`)."""
    data = decode(body)
    if isinstance(data, Refused):
        return data
    return events(data, route, known, new_key)
