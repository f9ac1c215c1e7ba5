"""The words of a page: what the person woken at 3 a.m. reads first.

An alert's message is whatever a monitoring hook passed (up to 4096 characters, several lines,
control characters): each provider must still take the page, so the message is made to fit
each form, never a reason for a provider to refuse it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pager.domain import Notify
from pager.text import clip, controls
from pager.timefmt import isoformat

# Twilio refuses a longer Body (error 21617): the SMS would never be sent.
MAX_SHORT: Final = 1600
MAX_SUBJECT: Final = 200

_BREAKS: Final = re.compile(r"[\r\n\t\v\f\x1c-\x1e\x85\u2028\u2029]+")


def short(n: Notify) -> str:
    """One line, fitting an SMS where it can: service, level, message, how to acknowledge."""
    head, tail = f"[pager] {n.service} level {n.level}: ", f" -- ack: pager ack {n.service}"
    what = clip(_one_line(n.message or "alert"), MAX_SHORT - len(head) - len(tail))
    return head + what + tail


def subject(n: Notify) -> str:
    """One line: a header with a line break in it is refused by the email library."""
    what = clip(_one_line(n.message or "alert"), MAX_SUBJECT)
    return f"[pager] {n.service} unhealthy (level {n.level}): {what}"


def body(n: Notify) -> str:
    return (
        f"{n.service} is unhealthy.\n"
        f"\n"
        f"Service:   {n.service}\n"
        f"Incident:  {n.incident_id}\n"
        f"Level:     {n.level} (round {n.round})\n"
        f"Alert:     {_lines(n.message) or '(no message)'}\n"
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


def one_line(text: str) -> str:
    """`text` on one line (line breaks as spaces), control characters escaped."""
    return _visible(_BREAKS.sub(" ", text))


_one_line = one_line


def _lines(text: str) -> str:
    return _visible(text.replace("\r\n", "\n"))


def _visible(text: str) -> str:
    """Control characters, which no reader of a page needs, escaped; line breaks kept."""
    return controls(text, keep="\n\t")
