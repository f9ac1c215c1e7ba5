"""Slack buttons: `POST /v1/slack/interactions`, a Slack app's interactivity request URL.

A click on a page's Acknowledge or Resolve button comes here, signed by Slack
(`X-Slack-Signature`: `v0=` and the hex HMAC-SHA256 with the app's signing secret of
`v0:TIMESTAMP:BODY`, `X-Slack-Request-Timestamp` within 5 minutes of pagerd's clock). A request
not so signed is refused (403) and counts as a wrong key from its address. The button's value
names its incident, signed by pagerd (`open_button`): a value pagerd did not sign acts on
nothing. The answer goes through the service's actor like any other (`by` `slack:@USER`, `via`
`slack`), and once it is committed the message is updated in place through the click's
`response_url` ("Acknowledged by @alice"), with the channel's timeout and no secret in errors.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Final

import attrs
import msgspec

from pager.domain import Ack, Healthy, incident_id
from pager.ports import DeliveryError
from pager.replies import outcome
from pager.text import printable
from pagerd.access.keys import SigningKeys
from pagerd.config.channels import SlackSettings, url_problem
from pagerd.delivery.redact import Redactor, channel_secrets, url_secrets
from pagerd.delivery.transports.http import check, open_client, post
from pagerd.delivery.transports.slack import Button, answered, open_button, refused
from pagerd.engine.actors import Services
from pagerd.front.http.asgi import Response, error
from pagerd.front.http.forms import FormError, parse_form
from pagerd.front.http.routes import Call, Route, Signed
from pagerd.front.http.submit import decoded
from pagerd.front.local import answer
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.http.slack")

PATH: Final = "/v1/slack/interactions"
MAX_AGE: Final = 5 * 60.0
"""A request whose timestamp is further than this from pagerd's clock is refused: a captured
request cannot be replayed later (Slack's own rule)."""
UPDATE_TIMEOUT: Final = 2.5
"""The most the message's update may take: Slack wants its answer within 3 seconds."""
MAX_USER: Final = 80


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request: `v0=` and the hex HMAC-SHA256 of `v0:TS:BODY`."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@attrs.frozen
class Click:
    """A button's click, as read from Slack's `block_actions` payload."""

    button: Button
    user: str
    response_url: str | None
    text: str


def read_click(body: bytes, keys: SigningKeys) -> Click | str:
    """The click `body` (Slack's form with one `payload` field, a JSON `block_actions`) holds,
    or what is wrong with it, in words for the 400."""
    try:
        fields = parse_form(body, max_fields=1)
    except FormError:
        fields = []
    if [name for name, _ in fields] != ["payload"]:
        return "expected a form with one field, payload"
    try:
        payload = msgspec.json.decode(fields[0][1])
    except msgspec.DecodeError:
        return "payload is not JSON"
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return "payload is not a block_actions interaction"
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return "payload has no action"
    value = actions[0].get("value")
    button = open_button(keys, value) if isinstance(value, str) else None
    if button is None:
        return "this button is not one of pagerd's"
    user = payload.get("user")
    name = None
    if isinstance(user, dict):
        name = user.get("username") or user.get("name") or user.get("id")
    if not isinstance(name, str) or not name:
        return "payload names no user"
    url = payload.get("response_url")
    if not isinstance(url, str) or url_problem(url) is not None:
        url = None
    message = payload.get("message")
    text = message.get("text") if isinstance(message, dict) else None
    return Click(
        button,
        printable(name)[:MAX_USER],
        url,
        text if isinstance(text, str) else "",
    )


class SlackButtons:
    def __init__(self, services: Services, keys: Callable[[], SigningKeys], clock: Clock) -> None:
        """`keys` gives pagerd's signing keys as they are now (a rotation applies at SIGHUP;
        a button signed with the key before still opens)."""
        self._services = services
        self._keys = keys
        self._clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("POST", PATH, self._click, body=True,
                  signed=Signed("slack", self._check),
                  doc={"summary": "A Slack app's interactivity: a page's Acknowledge or "
                       "Resolve button (X-Slack-Signature)",
                       "responses": ("200", "400", "403", "404", "408", "413", "429")}),
        ]  # fmt: skip

    def _settings(self) -> SlackSettings | None:
        channel = self._services.config.channels.get("slack")
        if channel is None or not isinstance(channel.settings, SlackSettings):
            return None
        return channel.settings

    def _check(self, call: Call) -> Response | None:
        settings = self._settings()
        if settings is None or settings.signing_secret is None:
            return error(
                404,
                "not_found",
                "Slack buttons are off: they need channels.slack with transport slack and "
                "signing_secret_file (or _credential)",
            )
        refused = error(403, "forbidden", "not signed by Slack (X-Slack-Signature)")
        timestamp = call.headers.get("x-slack-request-timestamp", "")
        presented = call.headers.get("x-slack-signature", "").encode("latin-1")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return refused
        if abs(self._clock.now() - int(timestamp)) > MAX_AGE:
            return error(403, "forbidden", "the request's timestamp is over 5 minutes off")
        expected = signature(settings.signing_secret.value, timestamp, call.body)
        if not hmac.compare_digest(expected.encode(), presented):
            return refused
        return None

    async def _click(self, call: Call) -> Response:
        click = read_click(call.body, self._keys())
        if isinstance(click, str):
            return error(400, "bad_request", click)
        button = click.button
        by = f"slack:@{click.user}"
        event = (
            Ack(by=by, incident=button.incident)
            if button.action == "ack"
            else Healthy(by=by, incident=button.incident)
        )
        line, result = await answer(self._services, button.service, event, "slack")
        name = incident_id(button.service, button.incident)
        words = outcome(button.action, name, by, result, decoded(line), f"@{click.user}")
        if click.response_url is not None:
            # A Resolve its policy does not allow changed nothing: the page keeps its buttons,
            # and only the person who clicked is told why.
            await self._update(click, words, keep=result == "not_allowed")
        return Response(200, b"", "text/plain")

    async def _update(self, click: Click, words: str, keep: bool = False) -> None:
        """Replace the page's message by what happened (with `keep`, leave it, and tell the
        person who clicked alone); a failure is logged, never fatal (the answer is committed
        already)."""
        settings = self._settings()
        channel = self._services.config.channels.get("slack")
        if settings is None or channel is None or click.response_url is None:
            return
        timeout = min(channel.timeout, UPDATE_TIMEOUT)
        async with open_client(timeout, 1, settings.ca_file) as client:
            try:
                update = refused(words) if keep else answered(click.text, words)
                response = await post(client, click.response_url, json=update)
                check(response, "Slack")
            except DeliveryError as exc:
                # The URL lets whoever has it post to the channel: out of the log line, with
                # the channel's secrets, whatever the server echoed.
                secrets = url_secrets(click.response_url) | channel_secrets(settings)
                reason = Redactor(secrets).clean(exc.reason)
                log.warning("cannot update the Slack message: %s", reason)
