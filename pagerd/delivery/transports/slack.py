"""Slack: incoming webhooks (the target is the hook's URL, a secret, never logged), and a Slack
app (the target `slack:app`: `chat.postMessage` to the configured channel with the bot token).

Either way, when the app's signing secret is configured, a page carries Acknowledge and
Resolve buttons (Block Kit; Resolve only where its policy has `allow_resolve`). A button's
value names its incident, signed with pagerd's own key (`SigningKeys`, purpose
`slack-button`): a click can only answer the incident the page was about, whatever a forged
payload says (`open_button`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import attrs
import httpx

from pager.domain import SLACK_APP, Notify, is_service_name
from pager.ports import PermanentError, TransientError
from pager.templates import slack_escape
from pagerd.access.keys import SigningKeys
from pagerd.config.channels import SlackSettings
from pagerd.delivery.transports.http import Client, check, client_of, json_body
from pagerd.delivery.wording import PLAIN, Wording

BUTTON_PURPOSE: Final = "slack-button"
MAX_SECTION: Final = 3000
"""Characters Slack takes in a section block's text."""
TRANSIENT_ERRORS: Final = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
"""`chat.postMessage` errors worth trying again; any other (`channel_not_found`,
`invalid_auth`, `not_in_channel`, ...) needs the operator."""

Action = Literal["ack", "close"]


@attrs.frozen
class Button:
    """What a Slack button's value names: `action` on `service`'s incident `incident`."""

    action: Action
    service: str
    incident: int


def button_value(keys: SigningKeys, action: Action, n: Notify) -> str:
    payload = f"{action}\n{n.service}\n{n.incident}".encode()
    return keys.token(BUTTON_PURPOSE, payload)


def open_button(keys: SigningKeys, value: str) -> Button | None:
    """What a button's `value` names, or None if pagerd did not sign it (or it is no value)."""
    payload = keys.open(BUTTON_PURPOSE, value)
    if payload is None:
        return None
    try:
        action, service, number = payload.decode("ascii").split("\n")
    except (UnicodeDecodeError, ValueError):
        return None
    if action not in ("ack", "close") or not is_service_name(service) or not number.isdigit():
        return None
    return Button("ack" if action == "ack" else "close", service, int(number))


def page_text(n: Notify, wording: Wording = PLAIN) -> str:
    """The page's text: the `slack` template's (Slack's mrkdwn, every value in it escaped, so
    an alert's message can neither mention `<!channel>` nor disguise a link), with the
    acknowledge links where `http.public_url` is set."""
    return wording.slack(n)


def slack_message(
    n: Notify, keys: SigningKeys | None = None, wording: Wording = PLAIN
) -> dict[str, Any]:
    """The page as Slack takes it: its text, and with `keys` (buttons answered by this pagerd)
    a section of that text and the Acknowledge / Resolve buttons."""
    text = page_text(n, wording)
    message: dict[str, Any] = {"text": text}
    if keys is not None:
        message["blocks"] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clipped(text)}},
            buttons(keys, n, wording.allows_resolve(n)),
        ]
    return message


def buttons(keys: SigningKeys, n: Notify, resolve: bool = True) -> dict[str, Any]:
    """The actions block of a page: Acknowledge, and Resolve where its policy lets a page close
    the incident (`resolve`), each naming the page's incident."""
    elements = [_button("ack", "Acknowledge", "primary", button_value(keys, "ack", n))]
    if resolve:
        elements.append(_button("close", "Resolve", "danger", button_value(keys, "close", n)))
    return {"type": "actions", "block_id": "pagerd", "elements": elements}


def answered(original: str, words: str) -> dict[str, Any]:
    """The page as it is once answered (`response_url`'s replacement): its text, and what
    happened (`Acknowledged by @alice`) where its buttons were."""
    return {
        "replace_original": True,
        "text": f"{original}\n{words}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clipped(original)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(words)}]},
        ],
    }


def refused(words: str) -> dict[str, Any]:
    """What only the person who clicked sees (`response_url`'s ephemeral message), the page
    left as it is: a click that changed nothing and must keep the other button (a Resolve of a
    page whose policy no longer lets a page close the incident)."""
    return {"replace_original": False, "response_type": "ephemeral", "text": words}


def _button(action: str, label: str, style: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "style": style,
        "value": value,
    }


def _clipped(text: str) -> str:
    return text if len(text) <= MAX_SECTION else text[: MAX_SECTION - 3] + "..."


class SlackTransport:
    def __init__(
        self,
        client: httpx.AsyncClient | Client,
        settings: SlackSettings | None = None,
        keys: Callable[[], SigningKeys | None] | None = None,
        wording: Wording = PLAIN,
    ) -> None:
        self._client = client_of(client)
        self._settings = settings or SlackSettings()
        # Buttons only where a click can be checked: the app's signing secret is configured.
        self._keys = keys if self._settings.signing_secret is not None else None
        self._wording = wording

    async def send(self, notification: Notify) -> str | None:
        keys = None if self._keys is None else self._keys()
        message = slack_message(notification, keys, self._wording)
        if notification.target.address == SLACK_APP:
            return await self._post_as_app(message)
        response = await self._client.post(
            notification.target.address, json_body(message), {"Content-Type": "application/json"}
        )
        check(response, "Slack")
        return f"HTTP {response.status_code}"

    async def _post_as_app(self, message: dict[str, Any]) -> str:
        s = self._settings
        if s.bot_token is None or s.channel is None:
            raise PermanentError(
                "slack:app needs channels.slack.bot_token_file (or _credential) and channel"
            )
        response = await self._client.post(
            f"{s.api_base}/chat.postMessage",
            json_body({"channel": s.channel, **message}),
            {"Content-Type": "application/json", "Authorization": f"Bearer {s.bot_token.value}"},
        )
        check(response, "Slack")
        # Slack answers 200 to a refused call, with `ok` false and the reason in `error`.
        try:
            answer = response.json()
            ok, error = answer.get("ok") is True, str(answer.get("error", "no error given"))
        except (ValueError, AttributeError):
            raise TransientError("Slack answered chat.postMessage with no JSON object") from None
        if not ok:
            detail = f"Slack refused chat.postMessage: {error[:100]}"
            if error in TRANSIENT_ERRORS:
                raise TransientError(detail)
            raise PermanentError(detail)
        return f"{answer.get('channel', s.channel)}/{answer.get('ts', '?')}"
