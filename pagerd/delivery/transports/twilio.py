"""SMS through the Twilio Messages API (or any provider speaking it, via `api_base`).

Where replies are taken (`ReplyCodes`), each page ends with its reply code ("Reply 4a to
acknowledge, 4c to close"), given out and stored before the page is sent: a reply can never
name a code the store does not know."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import httpx

from pager.domain import Notify
from pager.ports import TransientError
from pager.replies import reply_hint
from pagerd.config.channels import TwilioSettings
from pagerd.delivery.transports.http import Client, check, client_of, header_value
from pagerd.delivery.wording import PLAIN, Wording
from pagerd.storage.port import StoreError

log = logging.getLogger("pagerd.transports.twilio")

ReplyCodes = Callable[[Notify], Awaitable[int | None]]
"""The reply code of a page (stored before it is given back), or None if replies are off."""


async def stored_code(reply_codes: ReplyCodes, notification: Notify) -> int | None:
    """The page's reply code, stored; a store that cannot give one is a transient failure (the
    page is not sent without it, and gets it at its next attempt)."""
    try:
        return await reply_codes(notification)
    except StoreError as exc:
        raise TransientError(f"cannot store the page's reply code: {exc}") from None


class TwilioTransport:
    def __init__(
        self,
        settings: TwilioSettings,
        client: httpx.AsyncClient | Client,
        reply_codes: ReplyCodes | None = None,
        wording: Wording = PLAIN,
    ) -> None:
        self._settings = settings
        self._wording = wording
        self._client = client_of(client)
        credential = f"{settings.account_sid}:{settings.auth_token.value}".encode()
        self._authorization = "Basic " + base64.b64encode(credential).decode()
        self._url = f"{settings.api_base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._reply_codes = reply_codes

    async def _text(self, notification: Notify) -> str:
        """The `sms` template's text, its `reply_hint` the page's reply code where replies are
        taken."""
        if self._reply_codes is None:
            return self._wording.sms(notification)
        code = await stored_code(self._reply_codes, notification)
        # "4c to close" only where the policy lets a page close its incident.
        close = self._wording.allows_resolve(notification)
        hint = "" if code is None else reply_hint(code, close)
        return self._wording.sms(notification, reply_hint=hint)

    async def send(self, notification: Notify) -> str | None:
        s = self._settings
        form = {"To": notification.target.address, "Body": await self._text(notification)}
        if s.messaging_service_sid is not None:
            form["MessagingServiceSid"] = s.messaging_service_sid
        else:
            assert s.sender is not None
            form["From"] = s.sender
        response = await self._client.post(
            self._url,
            urlencode(form).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": self._authorization,
                "I-Twilio-Idempotency-Token": header_value(notification.key),
            },
        )
        check(response, "Twilio")
        try:
            sid = response.json()["sid"]
        except (ValueError, KeyError, TypeError):
            # Accepted (2xx) is the outcome: sent, and not to be sent again. Marked failed, it
            # would show as undelivered in `pager status` while the phone has it.
            log.warning("Twilio accepted %s but its answer has no message sid", notification.id)
            return f"HTTP {response.status_code} (no sid)"
        return str(sid)
