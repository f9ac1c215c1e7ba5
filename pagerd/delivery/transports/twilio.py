"""SMS through the Twilio Messages API (or any provider speaking it, via `api_base`)."""

from __future__ import annotations

import base64
import logging
from urllib.parse import urlencode

import httpx

from pager.domain import Notify
from pager.messages import short
from pagerd.config.channels import TwilioSettings
from pagerd.delivery.transports.http import Client, check, client_of, header_value

log = logging.getLogger("pagerd.transports.twilio")


class TwilioTransport:
    def __init__(self, settings: TwilioSettings, client: httpx.AsyncClient | Client) -> None:
        self._settings = settings
        self._client = client_of(client)
        credential = f"{settings.account_sid}:{settings.auth_token.value}".encode()
        self._authorization = "Basic " + base64.b64encode(credential).decode()
        self._url = f"{settings.api_base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"

    async def send(self, notification: Notify) -> str | None:
        s = self._settings
        form = {"To": notification.target.address, "Body": short(notification)}
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
