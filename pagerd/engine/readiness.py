"""Whether this node is ready (`GET /-/ready`, a load balancer's health check), answered at once
from what the node already knows, never by waiting on the database.

A health check has a timeout of its own (2 s is common): a node that asked the database on
every check made the check wait as long as the database did, and a hung database (a stalled
link, a server that accepts and never answers) timed checks out instead of failing them (found
by an operator: `/-/ready` took ~2 s while the database hung). So a task of its own (`run`)
pings the database, and `why_not` reads how the last ping went: it failed, or the one under
way has gone unanswered for longer than `STALE_AFTER` (the database hangs), or, on a node of a
cluster, its last lease round failed. A check asks for a ping when the last one ended
`PING_EVERY` seconds ago or more, and is answered at once from what is known: so a flood of
checks costs the database one ping a second, and the answer is at most one check interval old.
Pings follow the checks, never a timer of their own: an idle node (or a test whose mock clock
runs through days) pings nothing (a ping every second, always, made every daemon under
`MockClock` a thread round trip per simulated second: the suite ran four times slower).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import attrs
import trio

from pagerd.storage.port import StoreError

__all__ = ["PING_EVERY", "STALE_AFTER", "Readiness"]

log = logging.getLogger("pagerd.readiness")

PING_EVERY: Final = 1.0
"""Seconds at least between two pings of the database (from the end of one to the start of
the next), however many checks ask."""
STALE_AFTER: Final = 2.0
"""Seconds a ping may go unanswered before the node says it is not ready: longer than a busy
database takes to answer `SELECT 1`, shorter than a health check's usual timeout."""


class Rounds(Protocol):
    """What readiness reads of a node's ownership (`Ownership`)."""

    @property
    def round_error(self) -> str | None:
        """Why the last lease round failed, or None if it succeeded (or none ran yet)."""
        ...


@attrs.define
class _Ping:
    started: float | None = None
    """Trio time the ping under way was started at (None: none is)."""
    error: str | None = None
    """Why the last ping that ended failed (None: it succeeded)."""


class Readiness:
    """The node's readiness as it knows it: `why_not` at once, `run` to keep it known."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        rounds: Rounds | None = None,
        *,
        every: float = PING_EVERY,
        stale_after: float = STALE_AFTER,
    ) -> None:
        """`ping` asks the database (a round trip, off the loop; `StoreError` if it cannot);
        `rounds`: the node's ownership, on a node of a cluster."""
        self._ping = ping
        self._rounds = rounds
        self._every = every
        self._stale_after = stale_after
        self._state = _Ping()
        self._asked = trio.Event()
        self._ended_at = -math.inf

    def why_not(self) -> str | None:
        """Why this node is not ready, or None: never blocks."""
        state = self._state
        if state.started is not None:
            waited = trio.current_time() - state.started
            if waited >= self._stale_after:
                return f"the database has not answered for {waited:.1f}s"
        if state.error is not None:
            return f"the database does not answer: {state.error}"
        if self._rounds is not None and (error := self._rounds.round_error) is not None:
            return f"its lease rounds fail: {error}"
        return None

    async def ready(self) -> str | None:
        """`why_not`, as the `Core` port's `ready` asks it; and a ping asked for, if the last
        one ended `PING_EVERY` seconds ago or more and none is under way."""
        now = trio.current_time()
        if self._state.started is None and now - self._ended_at >= self._every:
            self._asked.set()
        return self.why_not()

    async def run(self) -> None:
        """Ping the database each time a check asks for it, until cancelled. A failure is the
        answer, never an end: nothing unexpected may take the daemon down."""
        while True:
            await self._asked.wait()
            self._asked = trio.Event()
            self._state.started = trio.current_time()
            try:
                await self._ping()
            except StoreError as exc:
                error: str | None = str(exc)
            except Exception as exc:  # a bug: contained, logged, said
                log.exception("cannot ping the database")
                error = f"{type(exc).__name__}: the ping failed"
            else:
                error = None
            if error != self._state.error:
                if error is None:
                    log.info("the database answers again")
                else:
                    log.warning("not ready: the database does not answer: %s", error)
            self._state = _Ping(None, error)
            self._ended_at = trio.current_time()
