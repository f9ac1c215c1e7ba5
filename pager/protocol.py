"""The wire protocol: one JSON object per line each way, over a Unix stream socket.

Shared by the daemon and the `pager` client; pure (no sockets here), so both sides agree on one
definition of what is a valid request and what a reply looks like.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Annotated, Any, Final

import attrs
import msgspec

from pager.domain import (
    SERVICE_NAME_RE,
    Ack,
    Alert,
    Event,
    Healthy,
    Heartbeat,
    ServiceState,
    incident_id,
    is_service_name,
)
from pager.silences import MAX_REASON, Silence, holder, live
from pager.text import clip, repair
from pager.timefmt import duration, isoformat, parse_duration, parse_time

# A line's bound is in bytes, and holds whatever the fields below can hold once cut to their
# length, even escaped (6 bytes a character at most): a longer line is refused as `too_large`.
MAX_LINE: Final = 64 * 1024
MAX_TEXT: Final = 4096  # characters of `message`: longer is cut, with a marker
MAX_BY: Final = 256  # characters of `by`: longer is cut, with a marker

EVENT_OPS: Final = frozenset({"alert", "ack", "healthy", "heartbeat"})
SILENCE_OPS: Final = frozenset({"silence", "silence_end"})
"""Ops that change a service's silences: decided by its actor, as events are."""
SCHEDULE_OPS: Final = frozenset({"override", "overrides", "override_remove", "oncall"})
OPS: Final = (
    EVENT_OPS
    | SILENCE_OPS
    | {"status", "ping", "history", "metrics", "reload", "silences", "simulate"}
    | SCHEDULE_OPS
)
MAX_ROUNDS: Final = 1000  # `simulate`'s `rounds`, at most
MAX_NEXT: Final = 50
"""Hand-offs `oncall` lists at most after the one in force (`next`)."""
_NEEDS_SERVICE: Final = EVENT_OPS | {"silence", "simulate"}

# Fields each op accepts besides "op"; anything else is a bad request, so a typo is not silent.
_FIELDS: Final[dict[str, frozenset[str]]] = {
    "alert": frozenset({"service", "message"}),
    "ack": frozenset({"service", "by"}),
    "healthy": frozenset({"service"}),
    "heartbeat": frozenset({"service"}),
    "status": frozenset({"service"}),
    "ping": frozenset(),
    "history": frozenset({"service", "incident"}),
    "metrics": frozenset(),
    "reload": frozenset(),
    "override": frozenset({"schedule", "by", "for", "from", "until"}),
    "overrides": frozenset({"schedule"}),
    "override_remove": frozenset({"id"}),
    "oncall": frozenset({"schedule", "at", "next"}),
    "silence": frozenset({"service", "reason", "for", "until", "from", "by"}),
    "silence_end": frozenset({"id", "by"}),
    "silences": frozenset({"service"}),
    "simulate": frozenset({"service", "at", "ack_after", "rounds"}),
}


class ProtocolError(Exception):
    """A request that cannot be served, with the stable `code` clients match on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class Request:
    op: str
    service: str | None = None
    message: str | None = None
    by: str | None = None
    incident: tuple[str, int] | None = None  # (service, number), from "NAME#N"
    # A silence's (`silence`, `silence_end`), and a simulation's (`simulate`): times are on the
    # wall clock, in seconds since the epoch; durations in seconds. An override's (`override`)
    # "from" and "until" are `starts_at` and `ends_at` too.
    reason: str | None = None
    starts_at: float | None = None  # "from"
    ends_at: float | None = None  # "until"
    duration: float | None = None  # "for", a silence's
    id: int | None = None  # a silence's, an override's
    at: float | None = None  # when `simulate` starts, when `oncall` asks about
    ack_after: float | None = None
    rounds: int | None = None
    # The schedule ops' (`override`, `overrides`, `override_remove`, `oncall`).
    schedule: str | None = None
    for_: str | None = None  # "for": whom an override stands in for
    next: int | None = None  # how many hand-offs `oncall` lists


def parse_request(line: bytes) -> Request:
    """Decode one request line (without its newline); raises `ProtocolError` on bad input."""
    if len(line) > MAX_LINE:
        raise ProtocolError("too_large", f"request line is over {MAX_LINE} bytes")
    # Events are most of the traffic: a typed decode checks a valid one in a third of the time.
    # Anything it does not take goes the whole way, which also words every error.
    try:
        event = _decode_event(line)
    except (ValueError, RecursionError):  # msgspec.DecodeError, or UnicodeDecodeError
        return _parse(line)
    if isinstance(event, _Alert):
        message = None if event.message is msgspec.UNSET else event.message
        if message is not None and "\x00" in message:
            return _parse(line)
        return Request("alert", event.service, message=message)
    if isinstance(event, _Ack):
        by = None if event.by is msgspec.UNSET else event.by
        if by is not None and "\x00" in by:
            return _parse(line)
        return Request("ack", event.service, by=by)
    return Request("healthy", event.service)


def _parse(line: bytes) -> Request:
    try:
        data = _decode(line)
    except (ValueError, RecursionError):  # msgspec.DecodeError, or UnicodeDecodeError
        data = _decode_leniently(line)
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "request must be a JSON object")
    op = data.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", 'request needs "op", a string')
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op[:64]!r} (expected one of {_ops()})")
    extra = sorted(set(data) - _FIELDS[op] - {"op"})
    if extra:
        raise ProtocolError("bad_request", f"{op} does not take {', '.join(map(repr, extra))}")
    service = _text(data, "service", MAX_TEXT, required=op in _NEEDS_SERVICE)
    if service is not None and not is_service_name(service):
        raise ProtocolError(
            "bad_request",
            '"service" must be 1 to 128 letters, digits, ".", "_" or "-"',
        )
    incident = _incident(_text(data, "incident", MAX_TEXT))
    if op == "history" and (service is None) == (incident is None):
        raise ProtocolError("bad_request", 'history needs "service" or "incident", not both')
    if op in SCHEDULE_OPS:
        return _schedule_request(op, data)
    request = Request(
        op=op,
        service=service,
        message=_free_text(data, "message", MAX_TEXT),
        by=_free_text(data, "by", MAX_BY),
        incident=incident,
        reason=_free_text(data, "reason", MAX_REASON),
        starts_at=_time(data, "from"),
        ends_at=_time(data, "until"),
        duration=_duration(data, "for"),
        id=_integer(data, "id", 1, 2**62),
        at=_time(data, "at"),
        ack_after=_duration(data, "ack_after"),
        rounds=_integer(data, "rounds", 1, MAX_ROUNDS),
    )
    if op == "silence":
        _check_silence(request)
    elif op == "silence_end" and request.id is None:
        raise ProtocolError("bad_request", 'silence_end needs "id", the silence\'s number')
    return request


def _check_silence(request: Request) -> None:
    if request.reason is None or not request.reason.strip():
        raise ProtocolError(
            "bad_request", 'a silence needs a "reason": whoever wonders why nobody was paged'
        )
    if (request.duration is None) == (request.ends_at is None):
        raise ProtocolError(
            "bad_request", 'a silence needs "for" (a duration) or "until", not both'
        )


def _time(data: dict[str, Any], key: str) -> float | None:
    """A time on the wire: ISO 8601 with its zone."""
    text = _text(data, key, 64)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ProtocolError("bad_request", f'"{key}": {exc}') from None


def _duration(data: dict[str, Any], key: str) -> float | None:
    """A duration on the wire, as the config writes one: `2h`, `1h30m`."""
    text = _text(data, key, 64)
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ProtocolError("bad_request", f'"{key}": {exc}') from None


def _schedule_request(op: str, data: dict[str, Any]) -> Request:
    """`override`, `overrides`, `override_remove`, `oncall`: names, instants and numbers."""
    # `overrides` without a schedule: every schedule's.
    schedule = _name(data, "schedule", required=op == "override")
    by = _name(data, "by", required=op == "override")
    for_ = _name(data, "for")
    starts_at = _instant(data, "from", required=op == "override")
    ends_at = _instant(data, "until", required=op == "override")
    at = _instant(data, "at")
    number = _integer(data, "id", 1, 2**53, required=op == "override_remove")
    count = _integer(data, "next", 0, MAX_NEXT)
    return Request(
        op, schedule=schedule, by=by, for_=for_, starts_at=starts_at, ends_at=ends_at,
        id=number, at=at, next=count,
    )  # fmt: skip


def _name(data: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = _text(data, key, MAX_TEXT, required=required)
    if value is not None and not is_service_name(value):
        raise ProtocolError(
            "bad_request", f'"{key}" must be a name: 1 to 128 letters, digits, ".", "_" or "-"'
        )
    return value


def _instant(data: dict[str, Any], key: str, *, required: bool = False) -> float | None:
    value = _text(data, key, 64, required=required)
    if value is None:
        return None
    try:
        return instant_of(value)
    except ValueError as exc:
        raise ProtocolError("bad_request", f'"{key}": {exc}') from None


def instant_of(text: str) -> float:
    """An ISO 8601 time with its offset (`2024-05-01T09:00:00+01:00`, `...Z`) -> seconds
    since the epoch; a `ValueError` if it is not one (a time without an offset is ambiguous
    on the wire: the client resolves the reader's local time before sending)."""
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time with its offset, like 2024-05-01T09:00+01:00; got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no offset (add Z or +HH:MM)")
    if not 1971 <= parsed.year <= 9000:
        raise ValueError(f"{text!r} is out of range (1971 to 9000)")
    return parsed.timestamp()


def _integer(
    data: dict[str, Any], key: str, low: int, high: int, *, required: bool = False
) -> int | None:
    if key not in data:
        if required:
            raise ProtocolError("bad_request", f'request needs "{key}", an integer')
        return None
    value = data[key]
    if type(value) is not int or not low <= value <= high:  # not a bool either
        raise ProtocolError("bad_request", f'"{key}" must be a whole number from {low} to {high}')
    return value


def event_of(request: Request) -> Event:
    """The event an `alert`, `ack`, `healthy` or `heartbeat` request is (the socket's, and the
    HTTP front's REST)."""
    if request.op == "alert":
        return Alert(request.message or "")
    if request.op == "ack":
        return Ack(request.by)
    if request.op == "heartbeat":
        return Heartbeat()
    return Healthy()


def _decode_leniently(line: bytes) -> Any:
    """JSON whose text is not all valid: bytes that are not UTF-8 and lone surrogate escapes
    (`"\\ud800"`) become U+FFFD, so an alert is not lost for a stray byte in its message. A
    service name holding one is still refused, as no service has such a name."""
    try:
        data = json.loads(line.decode("utf-8", "replace"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        # Not JSON, a number out of range, nesting too deep.
        raise ProtocolError("bad_request", "request is not valid JSON") from None
    if isinstance(data, dict):
        return {
            repair(k): repair(v) if isinstance(v, str) else v
            for k, v in data.items()
            if isinstance(k, str)
        }
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_incident_id(text: str) -> tuple[str, int] | None:
    """`payments-api#3` -> ("payments-api", 3); None if it is not an incident id."""
    service, sep, number = text.rpartition("#")
    if not sep or not is_service_name(service) or re.fullmatch(r"[0-9]{1,18}", number) is None:
        return None
    return service, int(number)


def _incident(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    parsed = parse_incident_id(text)
    if parsed is None:
        raise ProtocolError("bad_request", '"incident" must be an incident id like "api#3"')
    return parsed


def _ops() -> str:
    return ", ".join(sorted(OPS))


def _text(data: dict[str, Any], key: str, limit: int, *, required: bool = False) -> str | None:
    if key not in data:
        if required:
            raise ProtocolError("bad_request", f'request needs "{key}", a string')
        return None
    value = data[key]
    # null is not "absent": a client that sends it for "service" of a status meant one service,
    # not all of them, so it is told rather than guessed at.
    if value is None:
        raise ProtocolError("bad_request", f'"{key}" must be a string, not null (or left out)')
    if not isinstance(value, str):
        raise ProtocolError("bad_request", f'"{key}" must be a string')
    if len(value) > limit:
        raise ProtocolError("bad_request", f'"{key}" is longer than {limit} characters')
    if "\x00" in value:
        raise ProtocolError("bad_request", f'"{key}" must not contain NUL')
    return value


def _free_text(data: dict[str, Any], key: str, limit: int) -> str | None:
    """A field of free text (an alert's message, who acks): kept whatever it holds, cut to
    `limit` characters with a marker, NUL replaced."""
    if key in data and isinstance(data[key], str):
        return clip(repair(data[key]), limit)
    return _text(data, key, limit)


# msgspec decodes a line 6 to 10 times faster than `json`: it is most of the cost of a request.
_decode = msgspec.json.Decoder().decode

# The events, as `_parse` takes them: a service name, and text of a bounded length.
_Service = Annotated[str, msgspec.Meta(pattern=rf"^(?:{SERVICE_NAME_RE.pattern})\Z")]


class _Alert(msgspec.Struct, tag="alert", tag_field="op", forbid_unknown_fields=True):
    service: _Service
    # UNSET, not None: null goes the whole way, which refuses it by name.
    message: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | msgspec.UnsetType = msgspec.UNSET


class _Ack(msgspec.Struct, tag="ack", tag_field="op", forbid_unknown_fields=True):
    service: _Service
    by: Annotated[str, msgspec.Meta(max_length=MAX_BY)] | msgspec.UnsetType = msgspec.UNSET


class _Healthy(msgspec.Struct, tag="healthy", tag_field="op", forbid_unknown_fields=True):
    service: _Service


_decode_event = msgspec.json.Decoder(_Alert | _Ack | _Healthy).decode
_encode = msgspec.json.Encoder().encode


def encode(obj: dict[str, Any]) -> bytes:
    """One line of compact JSON, newline-terminated."""
    return _encode(obj) + b"\n"


def request_line(op: str, **fields: str | int | None) -> bytes:
    return encode({"op": op, **{k: v for k, v in fields.items() if v is not None}})


def ok_reply(**fields: Any) -> bytes:
    return encode({"ok": True, **fields})


def error_reply(code: str, message: str) -> bytes:
    return encode({"ok": False, "error": {"code": code, "message": message}})


def unknown_service(service: str) -> bytes:
    return error_reply("unknown_service", f"no service named {service!r} is configured")


def service_status(
    state: ServiceState,
    failed_deliveries: int = 0,
    deliveries: list[dict[str, Any]] | None = None,
    offset: float = 0.0,
    heartbeat: float | None = None,
    now: float | None = None,
    silenced_until: float | None = None,
    maintenance: tuple[float, list[str]] | None = None,
) -> dict[str, Any]:
    """The status object of one service, as `pager status --json SERVICE` prints it.

    `failed_deliveries` counts notifications of the open incident that could not be delivered;
    `deliveries`, when given, lists each notification of the open incident and where it stands.
    `offset` is added to each time shown: the state's times are in the daemon's frame, which a
    step of the wall clock leaves behind (see `pagerd.clock`). `heartbeat`, the service's
    configured heartbeat interval, adds its monitor (`heartbeat_status`). With `now`, the
    silences in force or to come then are listed (`silences`), and `silenced_until`, the end of
    the quiet in force, is given if there is one: neither field is there when it would be empty.
    `maintenance`, when a recurring maintenance window is in force, is when the quiet of the
    service's windows ends and the windows in force (`{"until", "windows"}` in the status). An
    incident whose next step is held (`silenced`) says by what, with `now`: `held_by`,
    `"silence"` or `"maintenance window"`.
    """
    incident = state.incident
    if incident is None:
        healthy: dict[str, Any] = {"service": state.name, "state": "healthy", "incident": None}
        if heartbeat is not None:
            healthy["heartbeat"] = heartbeat_status(state, heartbeat, offset)
        _silenced(healthy, state, now, silenced_until, offset, maintenance)
        return healthy
    status: dict[str, Any] = {
        "service": state.name,
        "state": "unhealthy",
        "incident": {
            "id": incident_id(state.name, incident.number),
            "level": incident.level,
            "round": incident.round,
            "acknowledged": incident.acknowledged,
            "acknowledged_by": incident.acknowledged_by,
            "acknowledged_at": _iso(incident.acknowledged_at, offset),
            "acknowledged_via": incident.acknowledged_via,
            "alerts": incident.alerts,
            "message": incident.message,
            "opened_at": isoformat(incident.opened_at + offset),
            "next_escalation_at": _iso(incident.deadline, offset),
            # Acknowledged, the deadline is the acknowledgement's expiry (`ack_expiry`): said
            # by its own name, so that nobody reads it as the next page of the escalation.
            "ack_expires_at": _iso(incident.deadline, offset) if incident.acknowledged else None,
            "exhausted": incident.exhausted,
            "silenced": incident.silenced,
            "failed_deliveries": failed_deliveries,
        },
    }
    if incident.silenced and now is not None:
        # What holds its next step, in words: a durable silence in force, else a window.
        status["incident"]["held_by"] = holder(state.silences, now)
    if deliveries is not None:
        status["incident"]["notifications"] = deliveries
    if heartbeat is not None:
        status["heartbeat"] = heartbeat_status(state, heartbeat, offset)
    _silenced(status, state, now, silenced_until, offset, maintenance)
    return status


def _silenced(
    status: dict[str, Any],
    state: ServiceState,
    now: float | None,
    until: float | None,
    offset: float,
    maintenance: tuple[float, list[str]] | None = None,
) -> None:
    if until is not None:
        status["silenced_until"] = isoformat(until + offset)
    if maintenance is not None:
        ends, windows = maintenance
        status["maintenance"] = {"until": isoformat(ends + offset), "windows": windows}
    shown = [] if now is None else live(state.silences, now)
    if shown:
        status["silences"] = [silence_object(state.name, s, offset) for s in shown]


def silence_object(service: str, silence: Silence, offset: float = 0.0) -> dict[str, Any]:
    """One silence as `pager silence list --json` and the status show it: `id`, `service`,
    `from`, `until` (when it stops silencing: its end, or when it was ended), `reason`, `by`,
    `created_at`, and `ended_at`, `ended_by` (null unless it was ended early)."""
    return {
        "id": silence.id,
        "service": service,
        "from": isoformat(silence.starts_at + offset),
        "until": isoformat(silence.until + offset),
        "reason": silence.reason,
        "by": silence.by,
        "created_at": isoformat(silence.created_at + offset),
        "ended_at": _iso(silence.ended_at, offset),
        "ended_by": silence.ended_by,
    }


def heartbeat_status(state: ServiceState, interval: float, offset: float = 0.0) -> dict[str, Any]:
    """The service's heartbeat monitor: `every` (the configured interval), `due_at` (when the
    next check-in is due; null before the first check-in and after a miss), `last_at` (the
    last check-in) and `missed`."""
    monitor = state.heartbeat
    return {
        "every": duration(interval),
        "due_at": None if monitor is None else _iso(monitor.due_at, offset),
        "last_at": None if monitor is None else _iso(monitor.last_at, offset),
        "missed": monitor is not None and monitor.missed,
    }


def _iso(ts: float | None, offset: float = 0.0) -> str | None:
    return None if ts is None else isoformat(ts + offset)
