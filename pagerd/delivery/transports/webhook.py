"""Generic JSON webhooks: a documented body, an idempotency key, an optional HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from pager.domain import Notify
from pager.messages import payload
from pagerd.config.channels import WebhookSettings
from pagerd.delivery.transports.http import Client, check, client_of, header_value


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport:
    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient | Client) -> None:
        self._settings = settings
        self._client = client_of(client)

    async def send(self, notification: Notify) -> str | None:
        body = json.dumps(payload(notification), separators=(",", ":")).encode()
        headers = {
            **self._settings.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": header_value(notification.key),
        }
        if self._settings.secret is not None:
            headers["X-Pager-Signature"] = signature(self._settings.secret.value, body)
        response = await self._client.post(notification.target.address, body, headers)
        check(response, "webhook")
        return f"HTTP {response.status_code}"
