"""Answering a page by SMS: the reply code a page ends with, and what a reply means.

GoAlert's convention: each page to a phone carries a number, one per incident open with pages
to that phone (small numbers, used again once their incident closes), and the reply is that
number and a letter: `4a` acknowledges, `4c` closes. A bare `a` (or `ack`) or `c` (or `close`)
answers the latest page sent to the phone. Everything else is not understood.

Pure: the numbers are given out by the store (they are durable); here is only their text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs

from pager.domain import Notify
from pager.messages import MAX_SHORT, one_line
from pager.text import printable

Action = Literal["ack", "close"]

MAX_CODE: Final = 999_999
"""A code is never that large (they are the smallest free numbers), so a longer number is no
code at all: refused before it reaches the store."""
MAX_REPLY: Final = 64
"""A reply longer than this (after trimming) is not a reply code, whatever it says."""

SEGMENT_GSM: Final = 160
"""Septets in one SMS segment of GSM-7 text."""
SEGMENT_UCS2: Final = 70
"""UTF-16 code units in one segment of text that is not GSM-7 (sent as UCS-2)."""
TWO_UCS2: Final = 134
"""Two concatenated UCS-2 segments (67 each, past the 6-byte header)."""
MIN_MESSAGE: Final = 20
"""Characters of the alert's message kept whatever the segment's room: a page whose service
name is long still says what is wrong, over more segments."""
CUT: Final = "..."
"""Where a message was cut, in GSM-7 (an ellipsis character would make the SMS UCS-2)."""

# GSM 03.38: the basic set (one septet each) and its extension table (two: escape + char).
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED: Final = frozenset("^{}\\[~]|€\f")

_CODED: Final = re.compile(r"'?\s*([0-9]{1,7})\s*(a|c)\s*'?", re.IGNORECASE)
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


def reply_hint(code: int) -> str:
    """What the page ends with: `Reply 4a to acknowledge, 4c to close`."""
    return f"Reply {code}a to acknowledge, {code}c to close"


def gsm_length(text: str) -> int | None:
    """The septets `text` takes in GSM-7, or None if it cannot be sent as GSM-7."""
    septets = 0
    for c in text:
        if c in _GSM_BASIC:
            septets += 1
        elif c in _GSM_EXTENDED:
            septets += 2
        else:
            return None
    return septets


def ucs2_length(text: str) -> int:
    """The UTF-16 code units `text` takes (an emoji takes two)."""
    return len(text.encode("utf-16-le")) // 2


def sms_text(n: Notify, code: int) -> str:
    """The page as an SMS ending with its reply hint, in one segment where it fits: the
    message is cut (marked `...`) to leave room for the hint, down to `MIN_MESSAGE` characters.

    Text that is all GSM-7 fits 160 septets; text that is not goes as UCS-2, whose one segment
    (70) holds little beside the hint, so it is one segment if the message fits whole, else two
    (134). A service name so long that nothing fits takes more segments, never the hint away."""
    head = f"[pager] {n.service} level {n.level}: "
    tail = f" -- {reply_hint(code)}"
    what = one_line(n.message or "alert")
    whole = head + what + tail
    if (septets := gsm_length(whole)) is not None:
        if septets <= SEGMENT_GSM:
            return whole
        return _fit(head, what, tail, SEGMENT_GSM, lambda t: gsm_length(t) or 0)
    if ucs2_length(whole) <= SEGMENT_UCS2:
        return whole
    return _fit(head, what, tail, TWO_UCS2, ucs2_length)


def _fit(head: str, what: str, tail: str, room: int, size: Callable[[str], int]) -> str:
    """`head + what + tail` with `what` cut until the whole takes at most `room` (by `size`),
    keeping at least `MIN_MESSAGE` characters of it, and never more than Twilio takes."""
    keep = len(what)
    while keep > MIN_MESSAGE and size(head + what[:keep] + CUT + tail) > room:
        # Cut by what is over (each character takes one unit or more), not one at a time.
        over = size(head + what[:keep] + CUT + tail) - room
        keep = max(MIN_MESSAGE, keep - max(1, over))
    text = head + (what[:keep] + CUT if keep < len(what) else what) + tail
    if len(text) > MAX_SHORT:
        text = head + what[: max(0, MAX_SHORT - len(head) - len(tail) - len(CUT))] + CUT + tail
    return text


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
    acknowledged by sms:+14155550101", "api#3 is already closed". Whatever a client wrote in it
    (who acknowledged first) is shown escaped; the medium escapes it further."""
    whom = f" by {shown_by}" if shown_by is not None else ""
    if result == "ok":
        if action == "close":
            return f"Closed {incident}{whom}"
        status = reply.get("incident")
        first = status.get("acknowledged_by") if isinstance(status, Mapping) else None
        if first is not None and first != by:
            return f"{incident} was already acknowledged by {printable(str(first))[:80]}"
        return f"Acknowledged {incident}{whom}"
    if result == "no_open_incident":
        return f"{incident} is already closed"
    if result == "unknown_service":
        return f"{incident}: its service is no longer configured"
    if result in ("unavailable", "busy"):
        return f"Could not record your answer to {incident} just now: send it again"
    return f"Could not record your answer to {incident} ({result})"
