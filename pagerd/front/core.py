"""The one way the HTTP front door reaches the core: a narrow port, `Core`.

Every HTTP handler (REST, the integrations' hooks, and any route to come) parses and checks its
request itself, then calls one of these: submit events as an integration, read a status or a
history, ask whether pagerd is ready. It is implemented twice: in the core's own process
(`pagerd/front/local.py`, which routes to the actors) and over the private channel from a front
process (`pagerd/front/http/remote.py`), so a handler never knows which process it runs in.

What crosses it is already decided upon: events of `pager.domain` for named services, never a
request's bytes. Each call costs its integration one token of its rate (`http.rate_limit`, kept
by the core for the whole daemon); past it the call raises `OverRate`, which the HTTP
application answers with the route's status and `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

from pager.domain import Event
from pagerd.config.http import FrontConfig

__all__ = ["Busy", "Core", "CoreUnavailable", "Outcome", "OverRate", "Submission"]

Submission: TypeAlias = tuple[str | None, Event]
"""An event for a service; None for an event whose `source` names it: it goes to the service
that has that source firing, or nowhere (an Events v2 acknowledge or resolve of a dedup_key
nobody has open: answered ok, as at PagerDuty)."""

Outcome: TypeAlias = tuple[bytes, str]
"""The socket protocol's reply line for one event or read, and its result (`ok`, or the error
code: `unknown_service`, `no_open_incident`, `unavailable`, ...)."""


class OverRate(Exception):
    """The integration is past its rate: nothing was done; it may try again in `retry_after`
    whole seconds."""

    def __init__(self, integration: str, retry_after: int) -> None:
        super().__init__(f"integration {integration!r} is over its rate; retry in {retry_after}s")
        self.integration = integration
        self.retry_after = retry_after


class CoreUnavailable(Exception):
    """The core cannot be reached (a front process whose core has gone): nothing was done."""


class Busy(Exception):
    """pagerd cannot take the request now (a front process's queue to a core that is not
    reading is full; the table of wrong keys is held): nothing was done; it may try again in
    `retry_after` whole seconds (503)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Core(Protocol):
    """The core, as the HTTP front door sees it."""

    def config(self) -> FrontConfig:
        """The config the front serves now (integrations, keys, limits, the services' names):
        read it again for each request, as a reload replaces it."""
        ...

    async def submit(
        self, integration: str, events: Sequence[Submission], *, terse: bool = False
    ) -> list[Outcome]:
        """Route `events` to their services' actors as sent through `integration` (the history
        names it), and give back each one's outcome once all are decided and committed. An
        event for a service not configured is answered `unknown_service`, and not routed.
        `terse`: an event that went ok is answered `{"ok":true}` alone, not with the service's
        status (for a caller that answers with a count: it is not rendered, nor sent).

        Cancelled meanwhile (the client went away, the sender's patience ran out), the events
        already handed over are still decided and committed; their outcomes are dropped."""
        ...

    async def status(self, integration: str, service: str | None) -> Outcome:
        """`status` as the socket serves it: one service's, or every service's (None)."""
        ...

    async def history(self, integration: str, service: str) -> Outcome:
        """`history` of the service's latest incident, as the socket serves it."""
        ...

    async def ready(self) -> str | None:
        """Why pagerd is not ready (its database does not answer), or None."""
        ...
