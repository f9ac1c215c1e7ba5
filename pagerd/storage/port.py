"""What gets written: the records the actors and the outbox hand to the group commit."""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from pager.domain import Notify, ServiceState
from pagerd.access.peers import Peer
from pagerd.timing.clock import Reading


@attrs.frozen
class EventRecord:
    """An event as the incident's history keeps it: what, when, and who sent it."""

    op: str
    detail: str | None = None
    by: str | None = None
    peer: Peer | None = None


@attrs.frozen
class Transition:
    """One decided event: the service's state before and after, what to notify, and the event
    for the incident's history."""

    before: ServiceState
    after: ServiceState
    notifications: tuple[Notify, ...]
    at: float
    event: EventRecord | None = None


@attrs.frozen
class Attempt:
    """The outcome of one delivery attempt of notification `id`."""

    id: str
    at: float
    outcome: Literal["sent", "retrying", "failed", "cancelled"]  # cancelled: not attempted
    provider_id: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None


@attrs.frozen
class ClockMark:
    """How pagerd's frame stands against the wall and boot clocks now (see `clock.py`)."""

    reading: Reading


Write: TypeAlias = Transition | Attempt | ClockMark
