"""Answering a page by SMS: the reply code a page ends with, and what a reply means.

GoAlert's convention: each page to a phone carries a number, one per incident open with pages
to that phone (small numbers, used again an hour after their incident closed), and the reply
is that number and a letter: `4a` acknowledges, `4c` closes. A bare `a` (or `ack`) or `c` (or
`close`) answers the latest page sent to the phone. Everything else is not understood.

Pure: the numbers are given out by the store (they are durable); here is only their text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from pager.domain import Notify
from pager.messages import page
from pager.templates import DEFAULT_TEMPLATES
from pager.text import printable

Action = Literal["ack", "close"]

MAX_CODE: Final = 999_999
"""A code is never that large (they are the smallest free numbers), so a longer number is no
code at all: refused before it reaches the store."""
MAX_REPLY: Final = 64
"""A reply longer than this (after trimming) is not a reply code, whatever it says."""

_CODED: Final = re.compile(r"'?\s*([0-9]{1,7})\s*(a|c)\s*'?", re.IGNORECASE)
_ISO_MINUTE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d", re.ASCII)
_LATEST: Final = re.compile(r"'?\s*(a|ack|acknowledge|c|close)\s*'?", re.IGNORECASE)


@attrs.frozen
class Reply:
    """What an SMS reply asks: `action` on the incident of `code` (None: the latest page)."""

    action: Action
    code: int | None


def parse_reply(body: str) -> Reply | None:
    """The reply `body` is, or None if it is none pagerd understands."""
    text = body.strip()
    if len(text) > MAX_REPLY:
        return None
    if (match := _CODED.fullmatch(text)) is not None:
        code = int(match.group(1))
        if not 0 < code <= MAX_CODE:
            return None
        return Reply(_action(match.group(2)), code)
    if (match := _LATEST.fullmatch(text)) is not None:
        return Reply(_action(match.group(1)), None)
    return None


def _action(word: str) -> Action:
    return "ack" if word.lower().startswith("a") else "close"


def reply_hint(code: int, close: bool = True) -> str:
    """What the page ends with: `Reply 4a to acknowledge, 4c to close`; without `close` (its
    policy has `allow_resolve = false`), `Reply 4a to acknowledge`."""
    if not close:
        return f"Reply {code}a to acknowledge"
    return f"Reply {code}a to acknowledge, {code}c to close"


def sms_text(n: Notify, code: int, close: bool = True) -> str:
    """The default SMS of page `n` ending with its reply hint, in one segment where it fits
    (see `pager.templates.Templates.sms`): what a page to a phone says where replies are taken
    and the config has no `[templates] sms` of its own."""
    return DEFAULT_TEMPLATES.sms(page(n, reply_hint=reply_hint(code, close)))


def outcome(
    action: Action,
    incident: str,
    by: str,
    result: str,
    reply: Mapping[str, Any],
    shown_by: str | None = None,
) -> str:
    """What a person who answered a page is told, from the reply to their answer (`result`:
    `ok` or the refusal's code; `reply`: its decoded line): "Acknowledged api#3" (with
    `shown_by`, where others see it too: "Acknowledged api#3 by @alice"), "api#3 was already
    acknowledged by sms:+14155550101 via sms at 2027-01-15T08:00:00.000Z" (the reply's
    `already_acknowledged`: whoever was first, whichever way), "api#3 was already acknowledged
    by you (via sms) at 2027-..." (the same `by` again: `shown_by` for "you" where others see
    it), "api#3 is already closed".
    Whatever a client wrote in it (who acknowledged first) is shown escaped; the medium escapes
    it further."""
    whom = f" by {shown_by}" if shown_by is not None else ""
    if result == "ok":
        if action == "close":
            return f"Closed {incident}{whom}"
        first = reply.get("already_acknowledged")
        if isinstance(first, Mapping) and first.get("by") != by:
            return f"{incident} was already acknowledged{_acknowledged(first)}"
        if isinstance(first, Mapping):
            # The same person again (a second reply, a second click): nothing more was done,
            # and saying "Acknowledged" again would hide that the first one counted.
            you = shown_by if shown_by is not None else "you"
            return f"{incident} was already acknowledged{_acknowledged(first, you)}"
        return f"Acknowledged {incident}{whom}"
    if result == "no_open_incident":
        return f"{incident} is already closed"
    if result == "not_allowed":
        return f"{incident} cannot be closed from a page (its policy): nothing changed"
    if result == "unknown_service":
        return f"{incident}: its service is no longer configured"
    if result in ("unavailable", "busy"):
        return f"Could not record your answer to {incident} just now: send it again"
    return f"Could not record your answer to {incident} ({result})"


def _acknowledged(first: Mapping[str, Any], you: str | None = None) -> str:
    """` by alice via sms at 2027-...`: who acknowledged first, how and when, as far as known;
    told to the one who did, asking again (`you`, how they are named), ` by you (via sms) at
    2027-...`. What the reply holds is shown escaped and cut short."""
    by, via, at = (
        None if (value := first.get(key)) is None else printable(str(value))[:80]
        for key in ("by", "via", "at")
    )
    words = f" by {you}" if you is not None else f" by {by}" if by is not None else ""
    if via is not None:
        words += f" via {via}" if you is None else f" (via {via})"
    if at is not None:
        words += f" at {at}"
    return words


def escalation_stopped(incident: Mapping[str, Any]) -> str:
    """What an acknowledgement did, from the incident's status (`pager status --json`):
    `escalation stopped`, and where the policy's `ack_expiry` makes it expire, until when:
    `escalation stopped until 09:01 UTC (the acknowledgement expires: policy ack_expiry)` (with
    the date, `2027-01-16 09:01`, when that is not the day of the ack)."""
    expires = incident.get("ack_expires_at")
    if not isinstance(expires, str) or _ISO_MINUTE.match(expires) is None:
        return "escalation stopped"
    day, minute = expires[:10], expires[11:16]
    acked = incident.get("acknowledged_at")
    when = minute if isinstance(acked, str) and acked[:10] == day else f"{day} {minute}"
    return f"escalation stopped until {when} UTC (the acknowledgement expires: policy ack_expiry)"
