"""The transport of a channel the config no longer has: a notification decided while it was
configured, and still undelivered, fails for good with a reason instead of waiting forever."""

from __future__ import annotations

from pager.domain import Notify
from pager.ports import PermanentError


class UnconfiguredTransport:
    def __init__(self, channel: str) -> None:
        self._channel = channel

    async def send(self, notification: Notify) -> str | None:
        raise PermanentError(f"channel {self._channel!r} is not configured")
