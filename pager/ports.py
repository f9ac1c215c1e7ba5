"""The ports the daemon's shell implements: how notifications leave the building."""

from __future__ import annotations

from typing import Protocol

from pager.domain import Notify


class DeliveryError(Exception):
    """A delivery attempt failed. `reason` is safe to show: it never contains a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    """Worth trying again: the provider is down, slow, or asks us to slow down."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Trying again cannot help: a rejected address, a refused request."""


class Transport(Protocol):
    async def send(self, notification: Notify) -> str | None:
        """Hand one notification to its provider; return the provider's id for it, if any.

        Raises `TransientError` or `PermanentError`. The notification's `id` is the idempotency
        key: a provider that accepts one is given it, so a retry after an ambiguous failure does
        not send twice.
        """
        ...
