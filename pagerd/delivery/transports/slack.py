"""Slack incoming webhooks: the target is the webhook URL (a secret, never logged)."""

from __future__ import annotations

import httpx

from pager.domain import Notify
from pagerd.delivery.transports.http import check, post
from pagerd.delivery.wording import PLAIN, Wording


def slack_message(n: Notify, wording: Wording = PLAIN) -> dict[str, object]:
    """The message: the `slack` template's text (Slack's mrkdwn, every value in it escaped, so
    an alert's message can neither mention `<!channel>` nor disguise a link)."""
    return {"text": wording.slack(n)}


class SlackTransport:
    def __init__(self, client: httpx.AsyncClient, wording: Wording = PLAIN) -> None:
        self._client = client
        self._wording = wording

    async def send(self, notification: Notify) -> str | None:
        response = await post(
            self._client,
            notification.target.address,
            json=slack_message(notification, self._wording),
        )
        check(response, "Slack")
        return f"HTTP {response.status_code}"
