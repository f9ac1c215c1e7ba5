"""SMS replies: `POST /v1/twilio/sms`, Twilio's incoming-message webhook.

A person paged by SMS answers "4a" (acknowledge) or "4c" (close); Twilio posts the reply here
as a form, signed (`X-Twilio-Signature`: HMAC-SHA1 with the account's auth token over the URL
Twilio called, `http.public_url` and this path, then every form field's name and value sorted
by name, base64). A request not so signed is refused (403, no reply text) and counts as a wrong
key from its address. A signed one is taken once (its `MessageSid`, durably: a replay changes
nothing), its code looked up for the number it came `From` (the code names the incident the
page was about), and the answer routed through the service's actor like any other, `by`
`sms:+NUMBER`, `via` `sms`. The answer is TwiML, the words Twilio texts back.

The signature is the authentication: a signed reply that names a page is always acted on. Only
what is texted back is rate-limited per number (`TwilioReplies.senders`), so that two
auto-responders cannot text each other for ever, while a person answering six pages of a storm
in a row has all six taken.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

from pager.domain import Ack, Healthy, incident_id
from pager.replies import Action, outcome, parse_reply
from pager.text import printable
from pagerd.config import Config
from pagerd.config.channels import TwilioSettings
from pagerd.engine.actors import Services
from pagerd.front.http.asgi import Response, error
from pagerd.front.http.forms import FORM, FormError, is_form, parse_form
from pagerd.front.http.limits import FailedKeys
from pagerd.front.http.routes import Call, Route, Signed
from pagerd.front.http.submit import decoded
from pagerd.front.local import answer
from pagerd.storage.offload import Offload
from pagerd.storage.port import ReplyCode, Storage, StoreError
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.http.twilio")

PATH: Final = "/v1/twilio/sms"
TWIML: Final = "text/xml"
MAX_FIELDS: Final = 100
"""Form fields an incoming message has (Twilio sends about 20): more is no Twilio request."""
SENDER_RATE: Final = 0.1
SENDER_BURST: Final = 5
"""Replies a number may send, then one every 10 s: a phone stuck answering (or a loop between
two auto-responders) costs a few SMS, not a bill."""
MAX_SENDERS: Final = 4096
HELP_CODES: Final = 3
"""The open pages' codes a reply that is no code is told of, the latest first: an SMS's room."""
_EXAMPLE: Final = "4a to acknowledge, 4c to close"


def signature(auth_token: str, url: str, fields: Sequence[tuple[str, str]]) -> str:
    """Twilio's signature of a POST to `url` with the form `fields`: the URL, then each field's
    name and value, sorted by name (and value, for a name given twice), HMAC-SHA1 with the
    auth token, base64."""
    data = url + "".join(name + value for name, value in sorted(fields))
    digest = hmac.digest(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(digest).decode("ascii")


def called_urls(public_url: str, path: str, query: str) -> list[str]:
    """The URLs Twilio may have signed for a request to `path`: `public_url`'s, with the
    scheme's default port left out and written in (Twilio's own libraries try both)."""
    parts = urlsplit(public_url.rstrip("/") + path + (f"?{query}" if query else ""))
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    without = urlunsplit(parts._replace(netloc=host))
    port = parts.port or default
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{port}"))
    if parts.port is not None and parts.port != default:
        return [with_port]
    return [without, with_port]


def form(body: bytes) -> list[tuple[str, str]] | None:
    """An incoming message's fields (`pagerd.front.http.forms`: the one form reader; a name
    given twice is kept twice, as the signature covers each), or None if it is no form."""
    try:
        return parse_form(body, max_fields=MAX_FIELDS)
    except FormError:
        return None


def twiml(message: str | None) -> Response:
    """TwiML answering with `message` as a reply SMS (None: no reply)."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if message is None:
        return Response(200, f"{head}<Response/>".encode(), TWIML)
    text = escape(message)
    return Response(200, f"{head}<Response><Message>{text}</Message></Response>".encode(), TWIML)


class TwilioReplies:
    def __init__(
        self,
        services: Services,
        store: Storage,
        store_offload: Offload,
        clock: Clock,
    ) -> None:
        self._services = services
        self._store = store
        self._offload = store_offload
        self._clock = clock
        # A token bucket per sending number (`SENDER_BURST`, then `SENDER_RATE` a second), at
        # most `MAX_SENDERS` of them (least recently used out): see `FailedKeys`.
        self.senders = FailedKeys(SENDER_RATE, SENDER_BURST, MAX_SENDERS)

    def routes(self) -> list[Route]:
        return [
            Route("POST", PATH, self._reply, body=True,
                  signed=Signed("twilio", self._check),
                  doc={"summary": "Twilio's incoming-message webhook: an SMS reply to a page "
                       "(X-Twilio-Signature)",
                       "responses": ("200", "400", "403", "404", "408", "413", "415", "429")}),
        ]  # fmt: skip

    def _settings(self, config: Config) -> TwilioSettings | None:
        channel = config.channels.get("sms")
        if channel is None or not isinstance(channel.settings, TwilioSettings):
            return None
        return channel.settings

    def _check(self, call: Call) -> Response | None:
        config = self._services.config
        settings = self._settings(config)
        if settings is None or config.http.public_url is None:
            return error(
                404,
                "not_found",
                "SMS replies are off: they need channels.sms with transport twilio, and "
                "http.public_url",
            )
        presented = call.headers.get("x-twilio-signature", "").encode("latin-1")
        fields = form(call.body)
        if not presented or fields is None:
            return error(403, "forbidden", "not signed by Twilio (X-Twilio-Signature)")
        token = settings.auth_token.value
        found = False
        for url in called_urls(config.http.public_url, call.path, call.query):
            found |= hmac.compare_digest(signature(token, url, fields).encode(), presented)
        if not found:
            return error(403, "forbidden", "not signed by Twilio (X-Twilio-Signature)")
        return None

    async def _reply(self, call: Call) -> Response:
        if not is_form(call.headers.get("content-type", FORM)):
            return error(415, "bad_request", f"expected a form ({FORM})")
        fields = dict(form(call.body) or ())
        sender, body, sid = fields.get("From"), fields.get("Body"), fields.get("MessageSid")
        if not sender or body is None or not sid or len(sid) > 64 or len(sender) > 32:
            return error(400, "bad_request", "an incoming message has From, Body and MessageSid")
        # Signed by Twilio (checked before this runs): a person's answer is acted on whatever
        # the number's rate, and only what is said back is held to it (`_said`). A sixth ack
        # in a storm paging one phone for six incidents counts like the first.
        reply = parse_reply(body)
        if reply is None:
            if not self._may_answer(sender, "(not understood)"):
                return twiml(None)
            return twiml(await self._not_understood(sender))
        try:
            now = self._clock.now()
            found = await self._offload(
                lambda: self._store.take_reply(sid, sender, reply.code, now)
            )
        except StoreError as exc:
            log.error("cannot take an SMS reply: %s", exc)
            return self._said(sender, "Could not take your reply just now: send it again.")
        if found == "replayed":
            log.warning("an SMS reply was sent again (MessageSid %s): ignored", printable(sid))
            return twiml(None)
        if found == "unknown_number":
            return self._said(sender, "pagerd has sent no page to this number: nothing to answer.")
        if found == "unknown_code":
            return self._said(
                sender, f"No page to this number has code {reply.code}: nothing changed."
            )
        return self._said(sender, await self._apply(found, reply.action, sender), acted=True)

    def _may_answer(self, sender: str, words: str, acted: bool = False) -> bool:
        """Whether `sender` may be texted back now (taking it if so); if not, a warning that
        names the number (escaped) and what was not texted back (`words`), and whether the reply
        was acted on all the same (`acted`)."""
        if self.senders.take(sender) is None:
            return True
        log.warning(
            "SMS reply from %s%s, over the number's rate of answers (%d, then one every %gs):"
            " not texted back: %s",
            printable(sender), " taken" if acted else "", SENDER_BURST, 1 / SENDER_RATE, words,
        )  # fmt: skip
        return False

    def _said(self, sender: str, words: str, acted: bool = False) -> Response:
        """TwiML saying `words` back to `sender` if the number's rate lets it, else nothing
        (what was asked is done all the same when `acted`)."""
        return twiml(words) if self._may_answer(sender, words, acted) else twiml(None)

    async def _not_understood(self, sender: str) -> str:
        """What a reply that is no code is told: the codes of the pages open on this phone
        (the latest first, at most `HELP_CODES`), or that there are none."""
        try:
            codes = await self._offload(lambda: self._store.open_codes(sender, HELP_CODES + 1))
        except StoreError as exc:
            log.error("cannot read an SMS sender's reply codes: %s", exc)
            return f"Not understood: reply with the page's code, e.g. {_EXAMPLE}."
        if not codes:
            return "Not understood, and no page to this number is open: nothing to answer."
        config = self._services.config
        shown = codes[:HELP_CODES]
        answers = [
            f"{c.code}a to acknowledge {incident_id(c.service, c.incident)}"
            if i == 0
            else f"{c.code}a {incident_id(c.service, c.incident)}"
            for i, c in enumerate(shown)
        ]
        more = ", ..." if len(codes) > HELP_CODES else ""
        closing = [
            f"{c.code}c"
            for c in shown
            if c.service in config.services and config.policy_of(c.service).allow_resolve
        ]
        close = f" ({', '.join(closing)} to close)" if closing else ""
        return f"Not understood: reply {', '.join(answers)}{more}{close}."

    async def _apply(self, found: ReplyCode, action: Action, sender: str) -> str:
        by = f"sms:{sender}"
        event = (
            Ack(by=by, incident=found.incident)
            if action == "ack"
            else Healthy(by=by, incident=found.incident)
        )
        line, result = await answer(self._services, found.service, event, "sms")
        name = incident_id(found.service, found.incident)
        return outcome(action, name, by, result, decoded(line))
