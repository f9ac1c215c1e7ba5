"""The `Core` port in the core's own process: events handed to the actors, reads served as the
socket serves them, and every integration's rate kept here, once for the whole daemon.

The HTTP application calls it directly when it runs in this process (`http.workers = 0`); the
front processes' channels (`pagerd/front/http/fronts.py`) call `hand_over`, which answers through
a callback the actor that commits the last event runs, so a request from a front costs the
decision loop no task of its own.

`ready` asks the daemon's readiness (`pagerd.engine.readiness`: what the node knows, never a
wait on the database) once for every request that asks at the same time, and its answer serves
for `READY_FOR` seconds: an unauthenticated flood of `GET /-/ready` costs the decision loop one
question a second (found by review: answering each took 30 % of it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from pager.domain import Ack, Alert, Event, Resolve, Source
from pager.protocol import Request, error_reply, ok_reply, unknown_service
from pagerd.config.http import FrontConfig
from pagerd.engine.actors import Envelope, Services
from pagerd.front.core import Outcome, OverRate, Submission
from pagerd.front.http.limits import RateLimits
from pagerd.storage.port import StoreError

__all__ = ["LocalCore", "answer"]

log = logging.getLogger("pagerd.http")

READY_FOR: Final = 1.0
"""Seconds one answer to `ready` serves every request that asks."""

Done = Callable[[list[Outcome]], None]


class _Gather:
    """The outcomes of one submission, in its order; `done` told once the last is in."""

    __slots__ = ("done", "left", "outcomes")

    def __init__(self, count: int, done: Done) -> None:
        self.left = count
        self.outcomes: list[Outcome] = [(b"", "")] * count
        self.done = done

    def set(self, index: int, line: bytes, result: str) -> None:
        self.outcomes[index] = (line, result)
        self.left -= 1
        if self.left == 0:
            try:
                self.done(self.outcomes)
            except Exception:  # run by an actor: its failure must not become the actor's
                log.exception("http: cannot hand back the outcome of a submission")


class _Slot:
    """Where one event's answer goes: the actors' `Reply`, set once."""

    __slots__ = ("_gather", "_index", "done", "terse")

    def __init__(self, gather: _Gather, index: int, terse: bool) -> None:
        self._gather = gather
        self._index = index
        self.done = False
        self.terse = terse

    def set(self, line: bytes, result: str = "ok") -> None:
        assert not self.done, "a reply is set once"
        self.done = True
        self._gather.set(self._index, line, result)


class LocalCore:
    def __init__(
        self,
        services: Services,
        read: Callable[[Request], Awaitable[Outcome]],
        ready: Callable[[], Awaitable[str | None]],
        front: FrontConfig,
    ) -> None:
        """`read` serves a `status` or `history` request as the socket does; `ready()` says
        why pagerd is not ready, or None; `front` is the config the front serves (replaced by
        the composition root on reload)."""
        self._services = services
        self._read = read
        self._ready = ready
        self.front = front
        limits = services.config.http.limits
        self.rate_limits = RateLimits(limits.rate, limits.burst)
        self._ready_answer: tuple[float, str | None] | None = None  # when, and the answer
        self._pinging: trio.Event | None = None

    def config(self) -> FrontConfig:
        return self.front

    def admit(self, integration: str) -> None:
        """Take one token of `integration`'s rate, or raise `OverRate` (nothing taken)."""
        limits = self._services.config.http.limits
        self.rate_limits.configure(limits.rate, limits.burst)
        wait = self.rate_limits.retry_after(integration)
        if wait is not None:
            raise OverRate(integration, wait)

    async def hand_over(
        self, integration: str, events: Sequence[Submission], done: Done, terse: bool = False
    ) -> None:
        """Take a token of `integration`'s rate (or raise `OverRate`), route `events` to their
        owners, and arrange for `done(outcomes)` once every one is answered: called by the
        actor that answers the last (or now, if none needed routing), so it must be quick and
        must not raise. `terse`: as `Core.submit`."""
        self.admit(integration)
        if not events:
            done([])
            return
        gather = _Gather(len(events), done)
        services = self._services
        known = services.config.services
        # Those naming no service go where their source fires: one lookup for them all (on a
        # node of a cluster, in the store, for the services held elsewhere).
        sources = {
            event.source
            for service, event in events
            if service is None and isinstance(event, (Alert, Ack, Resolve)) and event.source
        }
        firing: dict[Source, str] = {}
        failure: bytes | None = None
        if sources:
            try:
                firing = await services.firing_services(sources)
            except StoreError as exc:
                log.error("cannot look up where %d source(s) fire: %s", len(sources), exc)
                failure = error_reply("unavailable", f"the database could not be read: {exc}")
        routed: list[tuple[str, Envelope]] = []
        for index, (service, event) in enumerate(events):
            if service is None:
                source = event.source if isinstance(event, (Alert, Ack, Resolve)) else None
                if source is not None and failure is not None:
                    gather.set(index, failure, "unavailable")  # nothing done: send it again
                    continue
                service = None if source is None else firing.get(source)
                if service is None:
                    gather.set(index, ok_reply(), "ok")  # nobody has it open: nothing to do
                    continue
            if service not in known:
                gather.set(index, unknown_service(service), "unknown_service")
                continue
            slot = _Slot(gather, index, terse)
            routed.append((service, Envelope(event, slot, None, integration)))
        if routed:
            await services.route(routed)

    async def submit(
        self, integration: str, events: Sequence[Submission], *, terse: bool = False
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        answered = trio.Event()

        def done(found: list[Outcome]) -> None:
            outcomes.extend(found)
            answered.set()

        await self.hand_over(integration, events, done, terse)
        await answered.wait()
        return outcomes

    async def status(self, integration: str, service: str | None) -> Outcome:
        self.admit(integration)
        return await self._read(Request("status", service))

    async def history(self, integration: str, service: str) -> Outcome:
        self.admit(integration)
        return await self._read(Request("history", service))

    async def ready(self) -> str | None:
        """The last answer if it is under `READY_FOR` seconds old; else the answer of the
        question under way, or of a new one. Whoever asks may be cancelled (its client went):
        then one of those that waited for it asks."""
        while True:
            if self._ready_answer is not None:
                at, why = self._ready_answer
                if trio.current_time() - at < READY_FOR:
                    return why
            if self._pinging is not None:
                await self._pinging.wait()
                continue
            self._pinging = pinged = trio.Event()
            try:
                why = await self._ready()
                self._ready_answer = (trio.current_time(), why)
            finally:
                self._pinging = None
                pinged.set()
            return why


async def answer(services: Services, service: str, event: Event, via: str) -> Outcome:
    """A person's answer to a page (an `Ack` or `Healthy` naming its incident) routed to
    `service`'s actor, recorded as answered `via` (`sms`, `slack`, `console`), and its reply line
    and result once decided and committed. No integration is involved, and so no rate: the
    provider's signature (or the console's session) authenticated the request. For routes
    served in the core (SMS replies, Slack's buttons, the console)."""
    if service not in services.config.services:
        return unknown_service(service), "unknown_service"
    outcomes: list[Outcome] = []
    answered = trio.Event()

    def done(found: list[Outcome]) -> None:
        outcomes.extend(found)
        answered.set()

    slot = _Slot(_Gather(1, done), 0, terse=False)
    await services.route([(service, Envelope(event, slot, None, None, via=via))])
    await answered.wait()
    return outcomes[0]
