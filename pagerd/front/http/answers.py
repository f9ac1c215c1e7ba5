"""Acknowledge links: the pages an email or Slack page links to, and the POST that answers.

- `GET /ack/{token}` and `GET /resolve/{token}` show what the link is for (the incident, who
  was paged) and a button; they change nothing, so a mail scanner or a chat's link preview
  that fetches the URL acknowledges nothing.
- `POST /ack` and `POST /resolve`, a form with the one field `token` (what the button sends),
  route `Ack(by=TARGET, incident=N)` or `Healthy(by=TARGET, incident=N)` to the service's
  actor through `submit.answer`, recorded `via = link`, and answer once it is committed.

No cookie and no CSRF token: what a CSRF token guards is ambient authority, a cookie that a
browser sends whichever site made it post. Here nothing is ambient: the POST acts only through
the token it carries, which is the whole of the authority, so a page that could forge the POST
must already hold the token, and with it could act anyway. A forged POST without it does
nothing.

The token names the incident and when it opened: a closed incident, a token of `api#3` while
`api#4` is open, a tampered or rotated-out token, a resolve the policy does not allow, and a
second ack after the first each get a page that says so in plain words, and change nothing
(the actor checks the incident again when it decides, so a close between the page and the
POST is caught too). Every request counts against its address's rate, and a token that is not
ours against a stricter one (guessing one is hopeless anyway: 128 bits of MAC).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import jinja2
import msgspec

from pager.domain import Ack, Event, Healthy, Incident, incident_id, is_service_name
from pager.replies import escalation_stopped
from pager.timefmt import isoformat
from pagerd.access.keys import SigningKeys
from pagerd.access.links import ACTIONS, MAX_TOKEN, Link
from pagerd.engine.actors import Services
from pagerd.front.http import forms
from pagerd.front.http.asgi import Response
from pagerd.front.http.console.pages import shown
from pagerd.front.http.forms import FormError as FormError  # what `read_form` raises
from pagerd.front.http.limits import FailedKeys
from pagerd.front.http.routes import Call, Route
from pagerd.front.local import answer
from pagerd.storage.port import StoreError

HTML: Final = "text/html; charset=utf-8"
MAX_FORM: Final = forms.MAX_FORM_BYTES
"""Bytes of a link's form at most: a token and its name."""
_FIELDS: Final = frozenset({"token"})
REQUEST_RATE: Final = 2.0
REQUEST_BURST: Final = 30
"""Link requests an address may make: a burst, then this many a second (every request)."""
BAD_TOKEN_RATE: Final = 0.2
BAD_TOKEN_BURST: Final = 10
"""Tokens that are not ours an address may present: a burst, then one every 5 s."""
_HEADERS: Final = (
    ("cache-control", "no-store"),
    # The token is in the page's URL: no other site is told it by a Referer.
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'",
    ),
)
_WORDS: Final = {
    "ack": ("Acknowledge", "acknowledge", "Acknowledged"),
    "resolve": ("Resolve", "resolve (close)", "Resolved"),
}

_pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every value is text, whatever it holds (an alert's message)
    undefined=jinja2.StrictUndefined,
)
# What a client sent (an alert's message, who acknowledged first) shown as the console shows
# it: controls and bidi overrides escaped, not obeyed, before autoescape's HTML escaping.
_pages.filters["shown"] = shown


def read_form(content_type: str, body: bytes) -> str:
    """The token of a link's form (`pagerd.front.http.forms`: the one form reader), or
    `FormError`: a body over `MAX_FORM` bytes (413), not form-encoded (415), not a form, not
    exactly one field `token`, or a token that cannot be one of ours (400)."""
    form = forms.read_form(content_type, body, _FIELDS, max_bytes=MAX_FORM, max_value=MAX_TOKEN)
    token = form["token"]
    if not token or not token.isascii():
        raise FormError(400, "the token is not one of pagerd's")
    return token


class Answers:
    def __init__(self, services: Services, keys: Callable[[], SigningKeys]) -> None:
        """`keys` gives pagerd's signing keys as they are now (a rotation applies at SIGHUP)."""
        self._services = services
        self._keys = keys
        # Both bounded tables of token buckets per address (see `FailedKeys`): every request
        # takes a token of the first; a token that is not ours, one of the second.
        self.requests = FailedKeys(REQUEST_RATE, REQUEST_BURST)
        self.bad_tokens = FailedKeys(BAD_TOKEN_RATE, BAD_TOKEN_BURST)

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        for action in ACTIONS:
            title, _, _ = _WORDS[action]
            routes += [
                Route("GET", f"/{action}/{{token}}", self._page,
                      doc={"summary": f"{title} link of a page: shows the incident and a "
                           "button; changes nothing", "content": "text/html",
                           "responses": ("200", "403", "404", "410", "429")}),
                Route("POST", f"/{action}", self._answer, body=True,
                      doc={"summary": f"{title} the incident of a link's token (form field "
                           "token), as the person paged", "content": "text/html",
                           "form": ("token",),
                           "responses": ("200", "400", "403", "404", "408", "409", "410",
                                         "413", "415", "429", "503")}),
            ]  # fmt: skip
        return routes

    async def _page(self, call: Call) -> Response:
        action = call.path.split("/")[1]
        busy = self._limited(call.address)
        if busy is not None:
            return busy
        found = await self._open(call.params["token"], call.address)
        if isinstance(found, Response):
            return found
        link, incident = found
        title, verb, _ = _WORDS[action]
        if action == "resolve" and not self._resolvable(link.service):
            return _refused(link.service, incident)
        if action == "ack" and incident.acknowledged:
            return _page(200, "Already acknowledged", [_already(incident, self._offset())])
        return _page(
            200,
            f"{title} {incident_id(link.service, incident.number)}?",
            [f"You were paged for this incident. Press the button to {verb} it."],
            incident=_shown(link, incident, self._offset()),
            form={
                "action": f"../{action}",
                "token": call.params["token"],
                "kind": action,
                "label": f"{title} {incident_id(link.service, incident.number)}",
            },
        )

    async def _answer(self, call: Call) -> Response:
        action = call.path.removeprefix("/")
        busy = self._limited(call.address)
        if busy is not None:
            return busy
        try:
            token = read_form(call.headers.get("content-type", ""), call.body)
        except FormError as exc:
            return _page(exc.status, "Not done", [f"{exc.message}. Nothing was done."], bad=True)
        found = await self._open(token, call.address)
        if isinstance(found, Response):
            return found
        link, incident = found
        iid = incident_id(link.service, link.incident)
        event: Event
        if action == "resolve":
            if not self._resolvable(link.service):
                return _refused(link.service, incident)
            event = Healthy(by=link.by, incident=link.incident)
        else:
            event = Ack(by=link.by, incident=link.incident)
        line, result = await answer(self._services, link.service, event, "link")
        if result in ("no_open_incident", "unknown_service"):
            return _closed(iid)
        if result == "not_allowed":  # a reload took resolving off pages since the check above
            return _refused(link.service, incident)
        if result != "ok":
            return _page(
                503 if result in ("unavailable", "busy") else 500,
                "Not done",
                [f"pagerd could not record it ({result}). Nothing was done: try again."],
                bad=True,
            )
        _, _, done = _WORDS[action]
        if action == "resolve":
            return _page(200, f"{done} {iid}", [f"{iid} is closed, by {link.by}."])
        reply: dict[str, Any] = msgspec.json.decode(line)
        first = reply.get("already_acknowledged")
        if isinstance(first, dict):
            return _page(409, "Already acknowledged", [_first(iid, first)])
        stopped = escalation_stopped(reply.get("incident") or {})
        return _page(200, f"{done} {iid}", [f"{iid} is acknowledged, by {link.by}: {stopped}."])

    def _limited(self, address: str) -> Response | None:
        """429 if `address` is over its rate of link requests, or presented too many tokens
        that are not ours; else None, and this request counted."""
        wait = self.bad_tokens.retry_after(address) or self.requests.take(address)
        if wait is not None:
            return _page(
                429,
                "Too many requests",
                [f"Too many requests from your address: try again in {wait}s."],
                ("retry-after", str(wait)),
                bad=True,
            )
        return None

    async def _open(self, token: str, address: str) -> tuple[Link, Incident] | Response:
        """The link of `token` and its incident, open and the same; or the page saying why
        not. On a node of a cluster, the incident of a service held elsewhere is read from the
        store (this node's memory has only its own shards')."""
        link = Link.open(self._keys(), token)
        if link is None or not is_service_name(link.service):
            self.bad_tokens.failed(address)
            return _page(
                404,
                "Not a valid link",
                [
                    "This link is not valid: it was changed or cut short, or it is older than "
                    "pagerd's signing key. Nothing was done."
                ],
                bad=True,
            )
        iid = incident_id(link.service, link.incident)
        if link.service not in self._services.config.services:
            return _closed(iid)
        try:
            incident = (await self._services.read_state(link.service)).incident
        except StoreError:
            return _page(
                503,
                "Not available",
                ["pagerd could not read this incident (its database does not answer): try again."],
                bad=True,
            )
        if (
            incident is None
            or incident.number != link.incident
            or incident.opened_at != link.opened_at
        ):
            return _closed(iid)
        return link, incident

    def _resolvable(self, service: str) -> bool:
        config = self._services.config
        return service in config.services and config.policy_of(service).allow_resolve

    def _offset(self) -> float:
        return self._services.offset()


def _shown(link: Link, incident: Incident, offset: float) -> dict[str, Any]:
    return {
        "service": link.service,
        "id": incident_id(link.service, incident.number),
        "message": incident.message,
        "opened_at": isoformat(incident.opened_at + offset),
        "level": incident.level,
        "round": incident.round,
        "by": link.by,
    }


def _already(incident: Incident, offset: float) -> str:
    assert incident.acknowledged_at is not None
    first = {
        "by": incident.acknowledged_by,
        "via": incident.acknowledged_via,
        "at": isoformat(incident.acknowledged_at + offset),
    }
    return _first("This incident", first)


def _first(what: str, first: dict[str, Any]) -> str:
    by = f" by {first['by']}" if first.get("by") else ""
    via = f" via {first['via']}" if first.get("via") else ""
    return f"{what} was already acknowledged{by}{via} at {first.get('at')}. Nothing more was done."


def _closed(iid: str) -> Response:
    return _page(
        410,
        "Incident closed",
        [f"{iid} is closed: this link no longer does anything. Nothing was done."],
        bad=True,
    )


def _refused(service: str, incident: Incident) -> Response:
    iid = incident_id(service, incident.number)
    return _page(
        403,
        "Not allowed",
        [
            f"The policy of {service} does not let a link close an incident "
            f"(allow_resolve = false): {iid} stays open. Nothing was done."
        ],
        bad=True,
    )


def _page(
    status: int,
    title: str,
    lines: list[str],
    *headers: tuple[str, str],
    bad: bool = False,
    incident: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    html = _pages.get_template("link.html").render(
        title=title, lines=lines, bad=bad, incident=incident, form=form
    )
    return Response(status, html.encode(), HTML, (*_HEADERS, *headers))
