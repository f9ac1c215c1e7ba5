"""The web console's routes: pages rendered on the server, a fragment each page polls, and the
forms that sign in, sign out, acknowledge and resolve.

Who is asking is told by a signed session cookie (`pagerd.access.sessions`), or by a trusted
proxy's header (`[console] trusted_proxies`, `trusted_header`), which also gets a session so
that its forms carry a CSRF token like any other. Every POST checks that token. An answer is
the same `Ack(by=user)` (or `Healthy()`) any other way sends, routed through the service's
actor with `via = "console"` and shown once committed. It names the incident the page showed
(`incident=N`): one that closed meanwhile is refused, never taken by the next (409).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

import attrs
import msgspec

from pager.domain import Ack, Event, Healthy, incident_id, is_service_name
from pager.protocol import Request
from pager.replies import escalation_stopped
from pager.text import controls
from pagerd.access.keys import SigningKeys
from pagerd.access.passwords import DUMMY
from pagerd.access.sessions import (
    Session,
    csrf_token,
    csrf_valid,
    fingerprint,
    new_session,
    notice_token,
    open_notice,
    open_session,
    session_cookie,
    sign_in_nonce,
    sign_in_valid,
)
from pagerd.config import Config
from pagerd.config.console import ConsoleConfig, ConsoleUser, is_user_name
from pagerd.front.http.asgi import Response
from pagerd.front.http.console.forms import MAX_FORM_BYTES, FormError, read_form
from pagerd.front.http.console.lockout import Attempt, SignInGuard
from pagerd.front.http.console.pages import Pages
from pagerd.front.http.console.views import MAX_INCIDENTS, incident_view, overview, timeline
from pagerd.front.http.routes import Call, Handler, Route
from pagerd.storage.offload import Offload

log = logging.getLogger("pagerd.console")

ROOT: Final = "/console"
SESSION_COOKIE: Final = "pagerd_session"
SIGN_IN_COOKIE: Final = "pagerd_sign_in"
PROXY: Final = "proxy"
"""The fingerprint of a session a trusted proxy's header made: valid only with that header."""
HASHES_AT_ONCE: Final = 2
"""Password checks running at once (32 MiB of memory and a tenth of a second each)."""
MAX_WAITING: Final = 16
"""Sign-ins waiting for a password check past which the next is told busy, at once."""
MAX_NAME: Final = 65
"""What of a sign-in's user name is kept (a valid one is at most 64): the lock-out's memory."""
MAX_QUERY: Final = 2048
"""What of a page's query is read: a notice is a few hundred characters."""

Read = Callable[[Request], Awaitable[tuple[bytes, str]]]
Answer = Callable[[str, Event, str], Awaitable[tuple[bytes, str]]]


@attrs.frozen
class Viewer:
    """Who is signed in, as this request found them."""

    name: str
    read_only: bool
    session: Session
    new_cookie: str | None = None
    """A session made for this request (a proxy's user on their first page): to be set."""


class Console:
    def __init__(
        self,
        config: Callable[[], Config],
        read: Read,
        answer: Answer,
        keys: Callable[[], SigningKeys],
        now: Callable[[], float],
        secure: Callable[[], bool],
        hashing: Offload,
    ) -> None:
        """`read` serves `status` and `history` as REST's GETs do; `answer(service, event,
        via)` routes a person's event to its actor and gives its reply once committed; `keys()`
        pagerd's signing keys as they are now (a rotation reaches sessions at SIGHUP); `now`
        is pagerd's clock (seconds since the epoch); `secure()` whether cookies need HTTPS;
        `hashing` runs a password check (a thread, at most `HASHES_AT_ONCE` at a time)."""
        self._config = config
        self._read = read
        self._answer = answer
        self._keys = keys
        self._now = now
        self._secure = secure
        self._pages = Pages(ROOT)
        self.guard = SignInGuard()
        self._hashing = hashing
        self._waiting = 0

    def routes(self) -> list[Route]:
        incident = ROOT + "/incidents/{service}/{number}"
        page = ("200", "303", "404")
        answer = ("303", "400", "401", "403", "409", "413", "415")
        return [
            Route("GET", "/", self._home, doc=_doc("The web console (a redirect)", "303")),
            Route("GET", ROOT, self._home, doc=_doc("The web console (a redirect)", "303")),
            Route("GET", ROOT + "/", self._overview,
                  doc=_doc("Services and open incidents", *page)),
            Route("GET", ROOT + "/live", self._overview_live,
                  doc=_doc("The overview's changing part (polled)", "200", "401")),
            Route("GET", incident, self._incident, doc=_doc("An incident and its timeline", *page)),
            Route("GET", incident + "/live", self._incident_live,
                  doc=_doc("The incident page's changing part (polled)", "200", "401", "404")),
            _form(incident + "/ack", self._ack, _doc("Acknowledge (a form)", *answer)),
            _form(incident + "/resolve", self._resolve, _doc("Resolve (a form)", *answer)),
            Route("GET", incident + "/ack", self._to_incident,
                  doc=_doc("The incident's page (a redirect: the answer is a POST)", "303")),
            Route("GET", incident + "/resolve", self._to_incident,
                  doc=_doc("The incident's page (a redirect: the answer is a POST)", "303")),
            Route("GET", ROOT + "/sign-in", self._sign_in_form,
                  doc=_doc("The sign-in form", "200")),
            _form(ROOT + "/sign-in", self._sign_in,
                  _doc("Sign in (a form)", "303", "400", "403", "413", "415", "429", "503")),
            _form(ROOT + "/sign-out", self._sign_out,
                  _doc("Sign out (a form)", "303", "400", "403", "413", "415")),
            Route("GET", ROOT + "/static/{name}", self._static,
                  doc=_doc("The console's style sheet and script", "200", "404")),
        ]  # fmt: skip

    # Who is asking ---------------------------------------------------------------------

    def _console(self) -> ConsoleConfig | None:
        return self._config().console

    def _viewer(self, call: Call, console: ConsoleConfig) -> Viewer | None:
        now = self._now()
        cookie = _cookies(call.headers).get(SESSION_COOKIE)
        session = None if cookie is None else open_session(self._keys(), cookie, now)
        proxied = self._proxied(call, console)
        if proxied is not None:
            name, read_only = proxied
            if session is not None and session.user == name and session.fingerprint == PROXY:
                return Viewer(name, read_only, session)
            made = new_session(name, now, console.session_lifetime, None)
            made = attrs.evolve(made, fingerprint=PROXY)
            return Viewer(name, read_only, made, session_cookie(self._keys(), made))
        if session is None or session.fingerprint == PROXY:
            return None  # a proxy's session is good only through the proxy
        user = console.users.get(session.user)
        if user is None or user.password is None:
            return None  # removed from the config since (or a proxy-only user)
        if session.fingerprint != fingerprint(user.password.encode()):
            return None  # the password changed since
        return Viewer(user.name, user.read_only, session)

    def _proxied(self, call: Call, console: ConsoleConfig) -> tuple[str, bool] | None:
        """The user the trusted proxy names, and whether read-only; None if the request did
        not come from a trusted proxy or names nobody (a header from anyone else is ignored)."""
        if not console.trusted_proxies or not console.trusts(call.address):
            return None
        name = call.headers.get(console.trusted_header.lower(), "").strip()
        if not is_user_name(name):
            return None
        user = console.users.get(name)
        return name, console.proxy_read_only if user is None else user.read_only

    # Pages ---------------------------------------------------------------------------------

    async def _home(self, call: Call) -> Response:
        if self._console() is None:
            return self._off()
        return _redirect(ROOT + "/")

    async def _overview(self, call: Call) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        viewer = self._viewer(call, console)
        if viewer is None:
            return _redirect(ROOT + "/sign-in")
        return self._page(viewer, "overview.html", **await self._overview_context(viewer))

    async def _overview_live(self, call: Call) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        viewer = self._viewer(call, console)
        if viewer is None:
            return self._pages.error(401, "You are signed out.")
        return self._page(viewer, "_overview_live.html", **await self._overview_context(viewer))

    async def _overview_context(self, viewer: Viewer) -> dict[str, Any]:
        services = await self._services()
        detailed: dict[str, dict[str, Any]] = {}
        for status in [s for s in services if s.get("incident") is not None][:MAX_INCIDENTS]:
            found = await self._read_ok(Request("status", status["service"]))
            if found is not None:
                detailed[status["service"]] = found
        return {"overview": overview(services, detailed, self._now())}

    async def _services(self) -> list[dict[str, Any]]:
        found = await self._read_ok(Request("status"))
        services: list[dict[str, Any]] = [] if found is None else found["services"]
        return services

    async def _incident(self, call: Call) -> Response:
        return await self._incident_page(call, "incident.html")

    async def _incident_live(self, call: Call) -> Response:
        return await self._incident_page(call, "_incident_live.html")

    async def _incident_page(
        self, call: Call, template: str, notice: str | None = None, status: int = 200
    ) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        viewer = self._viewer(call, console)
        if viewer is None:
            if template.startswith("_"):
                return self._pages.error(401, "You are signed out.")
            return _redirect(ROOT + "/sign-in")
        named = _incident_named(call.params)
        if named is None:
            return self._pages.error(404, "There is no such incident.")
        service, number = named
        if notice is None and template == "incident.html":
            notice = self._notice(call, viewer)
        history = await self._read_ok(Request("history", service, incident=(service, number)))
        if history is None:
            return self._pages.error(404, f"There is no incident {incident_id(service, number)}.")
        current = await self._read_ok(Request("status", service))
        open_now = None if current is None else incident_view(current, self._now())
        if open_now is not None and open_now.number != number:
            open_now = None  # another incident of the service is open: not this one
        return self._page(
            viewer,
            template,
            status,
            service=service,
            number=number,
            incident=open_now,
            timeline=timeline(history),
            notice=notice,
        )

    # Answers -------------------------------------------------------------------------------

    async def _ack(self, call: Call) -> Response:
        return await self._answer_form(call, "ack")

    async def _resolve(self, call: Call) -> Response:
        return await self._answer_form(call, "resolve")

    async def _answer_form(self, call: Call, action: str) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        viewer = self._viewer(call, console)
        if viewer is None or viewer.new_cookie is not None:
            # No session, or a proxy's user whose page carried no token of this session.
            return self._pages.error(401, "You are signed out: sign in again, then retry.")
        try:
            form = read_form(call.headers, call.body, frozenset({"csrf"}))
        except FormError as exc:
            return self._pages.error(exc.status, exc.message)
        if not csrf_valid(self._keys(), viewer.session.id, form["csrf"]):
            return self._pages.error(403, "This form has expired or was not ours: reload the page.")
        if viewer.read_only:
            return self._pages.error(403, f"{viewer.name} is read-only: ask someone who may.")
        named = _incident_named(call.params)
        if named is None:
            return self._pages.error(404, "There is no such incident.")
        service, number = named
        current = await self._read_ok(Request("status", service))
        if current is None:
            return self._pages.error(404, f"There is no service {service}.")
        open_now = incident_view(current, self._now())
        shown = incident_id(service, number)
        if open_now is None or open_now.number != number:
            return await self._incident_page(
                call, "incident.html", f"{shown} is closed: nothing to {action}.", 409
            )
        # The incident the page showed, by number: the actor refuses it if another opened
        # since the status read above (a close and a new alert in between), as for a link.
        event: Event = (
            Ack(by=viewer.name, incident=number)
            if action == "ack"
            else Healthy(by=viewer.name, incident=number)
        )
        line, result = await self._answer(service, event, "console")
        log.info("console: %s asked to %s %s: %s", viewer.name, action, shown, result)
        if result == "no_open_incident":
            return await self._incident_page(
                call, "incident.html", f"{shown} is closed: nothing to {action}.", 409
            )
        if result != "ok":
            reply = _decode(line)
            message = str(reply.get("error", {}).get("message", result))
            return await self._incident_page(call, "incident.html", message, 409)
        if action == "resolve":
            notice = f"Resolved {shown}."
        else:
            incident = _decode(line).get("incident") or {}
            first = incident.get("acknowledged_by")
            if first is None or first == viewer.name:
                notice = f"Acknowledged {shown}: {escalation_stopped(incident)}."
            else:
                notice = f"{shown} was acknowledged already, by {first}, first."
        # POST, then redirect, then GET: reloading the page shows it again, and sends nothing.
        token = notice_token(self._keys(), viewer.session.id, notice, self._now())
        return _redirect(f"{_incident_path(service, number)}?{urlencode({'notice': token})}")

    async def _to_incident(self, call: Call) -> Response:
        """A GET of an answer's address (a reload of its page, a copied address): nothing to
        answer, the incident's page instead."""
        if self._console() is None:
            return self._off()
        named = _incident_named(call.params)
        if named is None:
            return self._pages.error(404, "There is no such incident.")
        return _redirect(_incident_path(*named))

    def _notice(self, call: Call, viewer: Viewer) -> str | None:
        """The notice the redirect after an answer carries (`?notice=`), if it is this
        session's and recent; else None (a link made elsewhere shows no words of its own)."""
        for name, value in parse_qsl(call.query[:MAX_QUERY]):
            if name == "notice":
                return open_notice(self._keys(), viewer.session.id, value, self._now())
        return None

    # Signing in and out --------------------------------------------------------------------

    async def _sign_in_form(self, call: Call) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        return self._sign_in_page(console, None, 200)

    def _sign_in_page(
        self, console: ConsoleConfig, message: str | None, status: int, *headers: tuple[str, str]
    ) -> Response:
        cookie, token = sign_in_nonce(self._keys())
        return self._pages.render(
            "sign_in.html",
            status,
            (*headers, ("set-cookie", self._cookie(SIGN_IN_COOKIE, cookie, 3600))),
            csrf=token,
            message=message,
            passwords=any(u.password is not None for u in console.users.values()),
        )

    async def _sign_in(self, call: Call) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        try:
            form = read_form(call.headers, call.body, frozenset({"username", "password", "csrf"}))
        except FormError as exc:
            return self._pages.error(exc.status, exc.message)
        nonce = _cookies(call.headers).get(SIGN_IN_COOKIE, "")
        if not sign_in_valid(self._keys(), nonce, form["csrf"]):
            return self._sign_in_page(console, "The form had expired: please try again.", 403)
        # A name is at most 64 characters: a longer one is counted (and locked out) by its start.
        name, password = form["username"].strip()[:MAX_NAME], form["password"]
        now = self._now()
        wait = self.guard.retry_after(name, call.address, now)
        if wait is None and self._waiting >= MAX_WAITING:
            return self._sign_in_page(console, "Busy: try again in a moment.", 503,
                                      ("retry-after", "1"))  # fmt: skip
        # Counted as a failure now, before the check (a tenth of a second, during which more
        # may come), in the same step as the look at the lock-out: taken back below if the
        # password is right.
        attempt = self.guard.attempt(
            name, call.address, now, console.max_failed_sign_ins, console.lockout
        )
        if not isinstance(attempt, Attempt):
            minutes = -(-attempt // 60)
            message = f"Too many failed sign-ins: try again in {minutes} minute(s)."
            return self._sign_in_page(console, message, 429, ("retry-after", str(attempt)))
        user = console.users.get(name)
        if not await self._password_matches(user, password):
            known = name if user is not None else "(not a user)"
            log.warning("console: failed sign-in as %s from %s", known, controls(call.address))
            return self._sign_in_page(console, "Wrong user name or password.", 403)
        assert user is not None and user.password is not None
        self.guard.succeeded(attempt)
        session = new_session(name, now, console.session_lifetime, user.password.encode())
        cookie = self._cookie(
            SESSION_COOKIE, session_cookie(self._keys(), session), int(console.session_lifetime)
        )
        log.info("console: %s signed in", name)
        return _redirect(
            ROOT + "/", ("set-cookie", cookie), ("set-cookie", self._cookie(SIGN_IN_COOKIE, "", 0))
        )

    async def _password_matches(self, user: ConsoleUser | None, password: str) -> bool:
        """Whether `user` has a password and this is it; checked off the loop (a tenth of a
        second of scrypt). A user who does not exist is checked against a made-up hash all the
        same: the time taken does not tell."""
        hashed = DUMMY if user is None or user.password is None else user.password
        self._waiting += 1
        try:
            matched = await self._hashing(lambda: hashed.matches(password))
        finally:
            self._waiting -= 1
        return matched and user is not None and user.password is not None

    async def _sign_out(self, call: Call) -> Response:
        console = self._console()
        if console is None:
            return self._off()
        viewer = self._viewer(call, console)
        try:
            form = read_form(call.headers, call.body, frozenset({"csrf"}))
        except FormError as exc:
            return self._pages.error(exc.status, exc.message)
        if viewer is not None and not csrf_valid(self._keys(), viewer.session.id, form["csrf"]):
            return self._pages.error(403, "This form has expired or was not ours: reload the page.")
        return _redirect(ROOT + "/sign-in", ("set-cookie", self._cookie(SESSION_COOKIE, "", 0)))

    # Parts ---------------------------------------------------------------------------------

    async def _static(self, call: Call) -> Response:
        if self._console() is None:
            return self._off()
        found = self._pages.static(call.params["name"])
        if found is None:
            return self._pages.error(404, "No such file.")
        return found

    def _page(self, viewer: Viewer, template: str, status: int = 200, **context: Any) -> Response:
        headers: tuple[tuple[str, str], ...] = ()
        if viewer.new_cookie is not None:
            lifetime = self._console()
            seconds = int(lifetime.session_lifetime) if lifetime is not None else 0
            headers = (("set-cookie", self._cookie(SESSION_COOKIE, viewer.new_cookie, seconds)),)
        console = self._console()
        return self._pages.render(
            template,
            status,
            headers,
            viewer=viewer,
            csrf=csrf_token(self._keys(), viewer.session.id),
            refresh_ms=int((console.refresh if console is not None else 5.0) * 1000),
            **context,
        )

    def _cookie(self, name: str, value: str, max_age: int) -> str:
        secure = "; Secure" if self._secure() else ""
        return f"{name}={value}; Path={ROOT}/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"

    def _off(self) -> Response:
        return self._pages.error(404, "The web console is off (no [console] in the config).")

    async def _read_ok(self, request: Request) -> dict[str, Any] | None:
        line, result = await self._read(request)
        if result != "ok":
            return None
        return _decode(line)


def _incident_named(params: Mapping[str, str]) -> tuple[str, int] | None:
    service, number = params.get("service", ""), params.get("number", "")
    if not is_service_name(service) or not number.isascii() or not number.isdigit():
        return None
    if len(number) > 18 or int(number) < 1:
        return None
    return service, int(number)


def _incident_path(service: str, number: int) -> str:
    return f"{ROOT}/incidents/{quote(service, safe='')}/{number}"


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's cookies, by name (the first of a name given twice)."""
    found: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name not in found:
            found[name] = value.strip()
    return found


def _redirect(location: str, *headers: tuple[str, str]) -> Response:
    return Response(303, b"", "text/plain", (("location", location), *headers))


def _decode(line: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(line)
    return decoded


def _form(pattern: str, handler: Handler, doc: dict[str, Any]) -> Route:
    return Route("POST", pattern, handler, body=True, max_body=MAX_FORM_BYTES, doc=doc)


def _doc(summary: str, *responses: str) -> dict[str, Any]:
    """A console route's OpenAPI operation: an HTML page (or form), 404 while it is off."""
    codes = responses if "404" in responses else (*responses, "404")
    return {"summary": summary, "responses": codes, "tags": ("console",), "content": "text/html"}
