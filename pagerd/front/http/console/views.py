"""What the console's pages show, made from the replies the socket and REST give (`status`,
`history`): plain values for the templates, which escape every one of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from pager.replies import escalation_stopped
from pager.text import split_link
from pager.timefmt import timestamp

MAX_INCIDENTS: Final = 50
"""Open incidents shown in full (who was paged) on the overview; past that, listed by name."""
MAX_SERVICES: Final = 500
"""Services listed on the overview; past that, the count (the open ones are always shown)."""


@attrs.frozen
class Paged:
    channel: str
    target: str
    level: int
    round: int
    state: str
    attempts: int


@attrs.frozen
class IncidentView:
    service: str
    number: int
    id: str
    message: str
    """The alert's message, without the link it ends with (`link`)."""
    level: int
    round: int
    opened_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    acknowledged: bool
    next_escalation_at: str | None
    next_escalation_in: str | None
    exhausted: bool
    failed_deliveries: int
    paged: tuple[Paged, ...] = ()
    silenced: bool = False
    """A silence holds its next step: `next_escalation_at` is the silence's end."""
    held_by: str = "silence"
    """What holds it: a silence, or a maintenance window."""
    ack_expires_at: str | None = None
    """Acknowledged under the policy's `ack_expiry`: when the acknowledgement expires (and
    escalation restarts at level 1); `next_escalation_at` is the same time."""
    ack_expires_in: str | None = None
    stopped: str = "escalation stopped"
    """What the acknowledgement did, in words: `escalation stopped until 09:01 UTC (...)`."""
    link: str = ""
    """Where the alert came from (Alertmanager's `generatorURL`): an http(s) URL, or empty."""


@attrs.frozen
class ServiceView:
    name: str
    state: str
    incident: str | None
    acknowledged_by: str | None
    heartbeat_missed: bool
    silenced_until: str | None = None
    silenced_for: str = ""
    """The reasons of the silences in force or to come, for whoever wonders why nobody is paged."""


@attrs.frozen
class Overview:
    services: tuple[ServiceView, ...]
    incidents: tuple[IncidentView, ...]
    more_incidents: tuple[str, ...]
    services_not_shown: int
    count: int
    unhealthy: int


@attrs.frozen
class Entry:
    at: str
    what: str
    who: str
    detail: str
    kind: str


@attrs.frozen
class Timeline:
    id: str
    message: str
    opened_at: str
    closed_at: str | None
    entries: tuple[Entry, ...]
    elided: int
    link: str = ""


def incident_view(status: Mapping[str, Any], now: float) -> IncidentView | None:
    """A service's status object (`status` with its `incident`) as the incident it has open."""
    incident = status.get("incident")
    if not isinstance(incident, dict):
        return None
    _, _, number = str(incident["id"]).rpartition("#")
    deadline = incident.get("next_escalation_at")
    expires = incident.get("ack_expires_at") if incident.get("acknowledged") else None
    message, link = split_link(incident.get("message") or "")
    paged = tuple(
        Paged(n["channel"], n["target"], n["level"], n["round"], n["state"], n["attempts"])
        for n in incident.get("notifications", ())
    )
    return IncidentView(
        service=status["service"],
        number=int(number),
        id=incident["id"],
        message=message,
        level=incident["level"],
        round=incident["round"],
        opened_at=_shown(incident["opened_at"]) or "",
        acknowledged_by=incident.get("acknowledged_by"),
        acknowledged_at=_shown(incident.get("acknowledged_at")),
        acknowledged=bool(incident["acknowledged"]),
        next_escalation_at=_shown(deadline),
        next_escalation_in=None if deadline is None else until(timestamp(deadline) - now),
        exhausted=bool(incident.get("exhausted")),
        failed_deliveries=int(incident.get("failed_deliveries", 0)),
        paged=paged,
        silenced=bool(incident.get("silenced")),
        held_by=str(incident.get("held_by") or "silence"),
        ack_expires_at=_shown(expires),
        ack_expires_in=None if expires is None else until(timestamp(expires) - now),
        stopped=escalation_stopped(incident),
        link=link,
    )


def overview(
    services: Sequence[Mapping[str, Any]], detailed: Mapping[str, Mapping[str, Any]], now: float
) -> Overview:
    """Every service's status (`status`'s `services`), and the open incidents with who was
    paged (`detailed`: a service's own status, with its notifications)."""
    unhealthy = [s for s in services if s.get("incident") is not None]
    rows = sorted(services, key=lambda s: (s.get("incident") is None, s["service"]))
    shown = rows[: max(MAX_SERVICES, len(unhealthy))]
    incidents = []
    for status in unhealthy[:MAX_INCIDENTS]:
        view = incident_view(detailed.get(status["service"], status), now)
        if view is not None:
            incidents.append(view)
    return Overview(
        services=tuple(_service(s) for s in shown),
        incidents=tuple(incidents),
        more_incidents=tuple(s["incident"]["id"] for s in unhealthy[MAX_INCIDENTS:]),
        services_not_shown=len(rows) - len(shown),
        count=len(services),
        unhealthy=len(unhealthy),
    )


def _service(status: Mapping[str, Any]) -> ServiceView:
    incident = status.get("incident")
    heartbeat = status.get("heartbeat")
    return ServiceView(
        name=status["service"],
        state=status["state"],
        incident=None if incident is None else incident["id"],
        acknowledged_by=None if incident is None else incident.get("acknowledged_by"),
        heartbeat_missed=bool(heartbeat and heartbeat.get("missed")),
        silenced_until=_shown(status.get("silenced_until")),
        silenced_for="; ".join(
            f"{s.get('reason')} (silence {s.get('id')}, by {s.get('by') or '?'})"
            for s in status.get("silences") or ()
        ),
    )


def timeline(history: Mapping[str, Any]) -> Timeline:
    """`history`'s reply as the incident's timeline, oldest first."""
    message, link = split_link(history.get("message") or "")
    return Timeline(
        id=history["incident"],
        message=message,
        opened_at=_shown(history["opened_at"]) or "",
        closed_at=_shown(history.get("closed_at")),
        entries=tuple(_entry(e) for e in history.get("timeline", ())),
        elided=int(history.get("elided") or 0),
        link=link,
    )


def _entry(entry: Mapping[str, Any]) -> Entry:
    event = str(entry["event"])
    who = ""
    peer = entry.get("peer")
    if entry.get("by"):
        who = str(entry["by"])
    elif isinstance(peer, dict):
        who = str(peer.get("user") or f"uid {peer.get('uid')}")
    through = entry.get("via") or entry.get("integration")
    if through:
        who = f"{who} via {through}" if who else f"via {through}"
    detail = str(entry.get("detail") or "")
    what = {
        "alert": "alert",
        "ack": "acknowledged",
        "healthy": "resolved",
        "resolve": "resolved by integration",
        "timeout": "not acknowledged in time",
        "notification": "paged",
        "delivery": "delivery",
        "closed": "closed",
        "heartbeat_missed": "heartbeat missed",
        "heartbeat": "heartbeat",
        "removed": "service removed",
        "silenced": "held",
        "unreached": "nobody to notify",
        "partly_unreached": "note",
        "silence": "silenced",
        "silence_end": "silence ended",
    }.get(event, event)
    if event == "notification":
        detail = f"{entry.get('target')} (level {entry.get('level')}, round {entry.get('round')})"
    elif event == "delivery":
        extra = entry.get("error") or entry.get("provider_id") or ""
        detail = f"{entry.get('outcome')} {entry.get('target')}" + (f": {extra}" if extra else "")
    elif event == "elided":
        what, detail = "…", f"{entry.get('count', '')} entries not kept"
    return Entry(_shown(entry.get("at")) or "", what, who, detail, event)


def _shown(iso: object) -> str | None:
    """`2027-01-15T08:00:00.500Z` as people read it: `2027-01-15 08:00:00 UTC`."""
    if not isinstance(iso, str):
        return None
    return iso[:19].replace("T", " ") + " UTC"


def until(seconds: float) -> str:
    """A time to come, roughly: `in 4m 10s`; `due now` once past."""
    if seconds <= 0:
        return "due now"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"in {hours}h {minutes}m"
    if minutes:
        return f"in {minutes}m {secs}s"
    return f"in {secs}s"
