"""Slack incoming webhooks: the target is the webhook URL (a secret, never logged)."""

from __future__ import annotations

import httpx

from pager.domain import Notify
from pager.messages import short
from pager.timefmt import isoformat
from pagerd.delivery.transports.http import Client, check, client_of, json_body


def slack_message(n: Notify) -> dict[str, object]:
    return {
        "text": (
            f"{_escape(short(n))}\n"
            f"incident {n.incident_id}, round {n.round}, opened {isoformat(n.opened_at)}"
            f" (notification {n.id})"
        )
    }


class SlackTransport:
    def __init__(self, client: httpx.AsyncClient | Client) -> None:
        self._client = client_of(client)

    async def send(self, notification: Notify) -> str | None:
        response = await self._client.post(
            notification.target.address,
            json_body(slack_message(notification)),
            {"Content-Type": "application/json"},
        )
        check(response, "Slack")
        return f"HTTP {response.status_code}"


def _escape(text: str) -> str:
    """Slack reads `<...>` as a link or a mention: an alert's message must not be able to page
    `<!channel>` or disguise a link. Its documented escapes, and only those."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
