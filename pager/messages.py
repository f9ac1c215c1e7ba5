"""The words of a page: what the person woken at 3 a.m. reads first.

An alert's message is whatever a monitoring hook passed (up to 4096 characters, several lines,
control characters): each provider must still take the page, so the message is made to fit
each form, never a reason for a provider to refuse it. The words themselves are templates
(`pager.templates`): these are the defaults, without links; the daemon renders the config's
templates with the page's links (`pagerd.delivery.wording`).
"""

from __future__ import annotations

from typing import Any, Final

from pager.domain import Notify
from pager.templates import DEFAULT_TEMPLATES, MAX_SHORT, MAX_SUBJECT, Page
from pager.text import split_link
from pager.timefmt import isoformat

__all__ = ["MAX_SHORT", "MAX_SUBJECT", "body", "page", "payload", "short", "subject"]

_TEMPLATES: Final = DEFAULT_TEMPLATES


def page(n: Notify, ack_url: str = "", resolve_url: str = "", reply_hint: str = "") -> Page:
    """The template variables of `n` (see `pager.templates.VARIABLES`): the alert's message
    without the link it ends with (Alertmanager's `generatorURL`), which is `link`, kept out
    of an SMS and a subject, where it would take the room the words need."""
    message, link = split_link(n.message)
    return Page(
        service=n.service,
        incident=n.incident_id,
        number=n.incident,
        message=message,
        level=n.level,
        round=n.round,
        opened_at=isoformat(n.opened_at),
        target=str(n.target),
        notification=n.id,
        ack_url=ack_url,
        resolve_url=resolve_url,
        reply_hint=reply_hint,
        person=n.person,
        via=n.via,
        link=link,
    )


def short(n: Notify) -> str:
    """One line, fitting an SMS where it can: service, level, message, how to acknowledge."""
    return _TEMPLATES.sms(page(n))


def subject(n: Notify) -> str:
    """One line: a header with a line break in it is refused by the email library."""
    return _TEMPLATES.subject(page(n))


def body(n: Notify) -> str:
    return _TEMPLATES.body(page(n))


def payload(n: Notify) -> dict[str, Any]:
    """The JSON body of a generic webhook (documented in docs/configuration.md): `person`, the
    person a `person:` or `schedule:` target was resolved to, and `via`, how (null both for a
    plain address)."""
    return {
        "id": n.id,
        "service": n.service,
        "incident": n.incident_id,
        "round": n.round,
        "level": n.level,
        "message": n.message,
        "opened_at": isoformat(n.opened_at),
        "text": short(n),
        "person": n.person or None,
        "via": n.via or None,
    }
