"""The ports the daemon's shell implements: how notifications leave the building."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pager.domain import Notify


class Transport(Protocol):
    async def deliver(self, notifications: Sequence[Notify], at: float) -> None:
        """Hand every notification to its provider, or raise; `at` is the time of delivery."""
