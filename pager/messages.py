"""The words of a page: what the person woken at 3 a.m. reads first."""

from __future__ import annotations

from typing import Any

from pager.domain import Notify
from pager.timefmt import isoformat


def short(n: Notify) -> str:
    """One line, fitting an SMS where it can: service, level, message, how to acknowledge."""
    what = n.message or "alert"
    return f"[pager] {n.service} level {n.level}: {what} -- ack: pager ack {n.service}"


def subject(n: Notify) -> str:
    what = n.message or "alert"
    return f"[pager] {n.service} unhealthy (level {n.level}): {what}"


def body(n: Notify) -> str:
    return (
        f"{n.service} is unhealthy.\n"
        f"\n"
        f"Service:   {n.service}\n"
        f"Incident:  {n.incident_id}\n"
        f"Level:     {n.level} (round {n.round})\n"
        f"Alert:     {n.message or '(no message)'}\n"
        f"Opened at: {isoformat(n.opened_at)}\n"
        f"\n"
        f"Acknowledge to stop the escalation:\n"
        f"    pager ack {n.service}\n"
        f"\n"
        f"Notification {n.id}\n"
    )


def payload(n: Notify) -> dict[str, Any]:
    """The JSON body of a generic webhook (documented in the README)."""
    return {
        "id": n.id,
        "service": n.service,
        "incident": n.incident_id,
        "round": n.round,
        "level": n.level,
        "message": n.message,
        "opened_at": isoformat(n.opened_at),
        "text": short(n),
    }
