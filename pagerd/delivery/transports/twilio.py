"""SMS through the Twilio Messages API (or any provider speaking it, via `api_base`)."""

from __future__ import annotations

import logging

import httpx

from pager.domain import Notify
from pagerd.config.channels import TwilioSettings
from pagerd.delivery.transports.http import check, header_value, post
from pagerd.delivery.wording import PLAIN, Wording

log = logging.getLogger("pagerd.transports.twilio")


class TwilioTransport:
    def __init__(
        self, settings: TwilioSettings, client: httpx.AsyncClient, wording: Wording = PLAIN
    ) -> None:
        self._settings = settings
        self._wording = wording
        self._client = client
        self._url = f"{settings.api_base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"

    async def send(self, notification: Notify) -> str | None:
        s = self._settings
        form = {"To": notification.target.address, "Body": self._wording.sms(notification)}
        if s.messaging_service_sid is not None:
            form["MessagingServiceSid"] = s.messaging_service_sid
        else:
            assert s.sender is not None
            form["From"] = s.sender
        response = await post(
            self._client,
            self._url,
            data=form,
            auth=(s.account_sid, s.auth_token.value),
            headers={"I-Twilio-Idempotency-Token": header_value(notification.key)},
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
