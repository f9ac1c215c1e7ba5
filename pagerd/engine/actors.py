"""One actor per service: the only task that changes that service's state.

An actor exists only while its service has events to handle. It is created, with its bounded
inbox, the moment an event is routed to an idle service, and ends as soon as its inbox is empty;
checking the inbox and leaving the registry happen with no checkpoint between them, so a service
never has two actors and no event is left in a closed inbox. Escalation deadlines are held by the
`Scheduler`, which routes a `Timeout` here like any other event. That is what lets 100,000
configured services cost only their state, not 100,000 parked tasks.

An actor takes every event waiting in its inbox, decides each in turn with the pure core, commits
all of them together, and only then replies and hands notifications to the outbox: a client hears
"ok" only for what is on disk.

A storm spreads events over thousands of idle services, and a task for each would cost more than
the decisions themselves. So `route()` takes a connection's events in bulk: services with a live
actor get theirs in its inbox, and idle ones are *claimed* instead — registered at once, as
`_start` does, but one task decides the whole claim and commits it together. Until that task
runs, the claim takes the idle services of every connection that routes events. A claimed service's
inbox is opened only if another connection routes to it meanwhile. When the claim is done, each
service whose inbox has filled gets an actor of its own, and the others leave the registry with no
checkpoint in between: still one owner a service, and never an event in an inbox nobody reads.

With several nodes (`pagerd.engine.ownership`), a node decides only for the services of the
shards it holds: `route` hands the others to the cluster's inbox (`cluster`, see
`pagerd.engine.inbox`) before anything else. A shard adopted brings its states and deadlines
(`adopt`); a shard dropped takes them away (`drop`): its events still queued, and any routed to
it after, are answered `MOVED` (the inbox puts them in for the new owner), and an actor that
was committing for it is fenced out by the store. Alone (SQLite), there is no ownership and
every service is held.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final, Protocol

import attrs
import trio

from pager.budget import Budget
from pager.domain import (
    Ack,
    AckExpired,
    Alert,
    EndSilence,
    Event,
    Healthy,
    Heartbeat,
    HeartbeatMissed,
    Incident,
    Notify,
    Rejected,
    Resolve,
    ServiceState,
    Source,
    StartSilence,
    Timeout,
    Unreached,
    closed,
    decide_with,
    incident_id,
    missed_message,
    stale,
    stale_resolve,
)
from pager.protocol import (
    Request,
    error_reply,
    ok_reply,
    service_status,
    silence_object,
)
from pager.shards import shard_of
from pager.silences import (
    MAX_SILENCE_SECONDS,
    Quiet,
    Silence,
    holder,
    live,
    recurring,
    released_by,
    silenced_until,
    spans,
)
from pager.simulate import Timeline, simulate
from pager.timefmt import duration, isoformat, nanoformat
from pager.weekly import Maintenance
from pagerd.access.peers import Peer
from pagerd.config import Config
from pagerd.delivery.outbox import Outbox
from pagerd.engine.oncall import Rota
from pagerd.engine.ownership import MOVED, moved_reply
from pagerd.engine.scheduler import RETRY_MAX, RETRY_MIN, Due, Scheduler
from pagerd.operations.metrics import Metrics
from pagerd.storage.cluster import Fenced
from pagerd.storage.commits import Committer, Term, WriteRefused
from pagerd.storage.port import EventRecord, Handled, StoreError, Transition, Write
from pagerd.timing.clock import Clock
from pagerd.timing.timers import Backoff

log = logging.getLogger("pagerd.actors")

INBOX_SIZE: Final = 64
MAX_ACTORS_FOR_TIMEOUTS: Final = 512
MAX_CLAIM: Final = 256  # services a claim decides in one go, without a checkpoint between them
MAX_ALL_SILENCES: Final = 10_000
"""Silences in force or to come over all services (each service has at most `MAX_SILENCES`):
every one is in memory and in `pager silence list`'s reply, so the whole is bounded too."""


REMOVED: Final = "service removed from the config"
TERSE: Final = ok_reply()
"""The line of an event that went ok, for a `Reply` that is `terse`."""
_DUE: Final = (Timeout, HeartbeatMissed, AckExpired)  # the events a scheduler hands over
_ESCALATION: Final = (Timeout, AckExpired)  # those of the escalation scheduler


@attrs.frozen
class Removed:
    """Close the service's open incident if the service is no longer configured; nothing if it
    is (it was added back meanwhile). Sent by `Services` itself, never by a client."""


class Holder(Protocol):
    """Which services this node decides for (`pagerd.engine.ownership.Ownership`)."""

    def holds(self, service: str) -> bool: ...

    def terms(self, shards: Collection[int]) -> dict[int, Term]:
        """The shards' terms now: what a decision made now is committed under."""
        ...


class SilenceIds(Protocol):
    """Silence ids handed out by a store several nodes share (`cluster.next_ids`), taken
    ahead in blocks so that numbering a silence waits for no round trip."""

    def take(self) -> int | None:
        """The next id, or None if none is to hand (the database did not answer)."""
        ...


class Reply(Protocol):
    """Where one request's answer goes (the front's `replies.Reply`): set once, by the actor
    that decided the event, or by whoever refuses it first."""

    @property
    def done(self) -> bool: ...

    @property
    def terse(self) -> bool:
        """Whether an event that went ok is answered by its result alone (`TERSE`), not the
        service's status: for a sender answered with a count (an Alertmanager payload's), it
        saves rendering a status nobody reads."""
        ...

    def set(self, line: bytes, result: str = "ok") -> None: ...


class Diverter(Protocol):
    """What routes a cluster node's events (`pagerd.engine.inbox.Inbox`): those of services it
    does not hold go through the shared inbox to their owner."""

    async def divert(self, events: list[tuple[str, Envelope]]) -> list[tuple[str, Envelope]]:
        """Send on each event this node does not decide; the others (to decide here), in order."""
        ...

    def holds(self, service: str) -> bool:
        """Whether this node decides for `service` now (it holds its shard)."""
        ...

    def events_first(self, service: str) -> bool:
        """Whether `service`'s shard was just adopted and the events stored for it meanwhile
        are still to be read: its due timeouts wait for them (a bounded while)."""
        ...

    async def state(self, service: str) -> tuple[ServiceState, int | None]:
        """`service`'s last committed state, from the store if another node holds it, and its
        open incident's failed deliveries then (None: this node's outbox counts them)."""
        ...

    async def stored_states(self, names: Collection[str]) -> dict[str, ServiceState]:
        """The committed states of those of `names` this node does not hold, from the store."""
        ...

    async def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """The service each of `sources` fires for, from the store (`Storage.firing_services`)."""
        ...

    async def silence_service(self, id: int) -> str | None:
        """The service of silence `id`, from the store (`Storage.silence_service`)."""
        ...


@attrs.frozen
class Envelope:
    event: Event | Removed
    reply: Reply | None
    peer: Peer | None = None
    integration: str | None = None  # the HTTP integration it came through, by name
    via: str | None = None
    """How a person answered, where not a peer or an integration: `link` (an acknowledge link),
    `sms` (a reply), `slack` (a button), `console` (the web console). Recorded in history."""
    inbox_id: int | None = None
    """The cluster inbox's id of an event another node put there (`pagerd.engine.inbox`): its
    answer line is written as `Handled` in the same commit as what it decided."""


PAGE_ANSWERS: Final = frozenset({"link", "sms", "slack"})
"""The ways a person answers from a page itself (its `via`): their resolve is the policy's
`allow_resolve` to give. The console's (an operator's sign-in) and the socket's are not."""


@attrs.frozen
class _Decided:
    """One service's decided events: what to write, how to answer each, the state after."""

    transitions: list[Transition]
    outcomes: list[_Outcome]
    state: ServiceState
    stale: list[Source] = attrs.Factory(list)
    """Firings taken as copies of earlier firings of alerts resolved already: counted and
    logged once committed with the rest (see "Late firings" in `pager.domain`)."""
    stale_resolves: list[Source] = attrs.Factory(list)
    """Resolves of earlier firings than the one that fires: logged once committed."""


_Outcome = tuple["Envelope", "ServiceState | Rejected", "dict[str, Any] | None"]
"""How to answer one event: its envelope (the reply to set), the state it left (or its
refusal), and what the reply says besides the status (an ack's `already_acknowledged`)."""


class _Claimed:
    """A claimed service's entry in the registry: the events its claim decides, and the inbox
    for anything routed to it meanwhile, opened only then (most claims never need one)."""

    __slots__ = ("batch", "receive", "send")

    def __init__(self, envelope: Envelope) -> None:
        self.batch = [envelope]
        self.send: trio.MemorySendChannel[Envelope] | None = None
        self.receive: trio.MemoryReceiveChannel[Envelope] | None = None

    def inbox(self) -> trio.MemorySendChannel[Envelope]:
        if self.send is None:
            self.send, self.receive = trio.open_memory_channel(INBOX_SIZE)
        return self.send


class Services:
    def __init__(
        self,
        config: Config,
        states: dict[str, ServiceState],
        committer: Committer,
        scheduler: Scheduler,
        outbox: Outbox,
        clock: Clock,
        heartbeats: Scheduler,
        metrics: Metrics,
        rota: Rota | None = None,
        *,
        last_silence: int = 0,
        ownership: Holder | None = None,
        silence_ids: SilenceIds | None = None,
    ) -> None:
        """`last_silence` is the highest silence id ever stored: new ones number on from it
        (unless `silence_ids` hands them out: several nodes start silences). `ownership`:
        which services this node decides for; None (a single node): all of them."""
        self._ownership = ownership
        self._silence_ids = silence_ids
        self.config = config
        # Who is on call: person: and schedule: targets resolve through it when a level is
        # notified. Without one (tests of other things), they reach nobody.
        self.rota = rota
        self._states = states
        # Which service each source fires for: where an acknowledge or resolve that names no
        # service goes (`firing_service`), without a walk over every service.
        self._firing: dict[Source, str] = {
            source: state.name for state in states.values() for source in state.firing
        }
        # Which service each silence (committed, not yet dropped) is of: where `silence end ID`
        # goes. Ids are numbered here, the one place that starts silences.
        self._silenced: dict[int, str] = {
            silence.id: state.name for state in states.values() for silence in state.silences
        }
        self._last_silence = max([last_silence, *self._silenced])
        # Each service's maintenance windows, with where they stand kept (`_maintenance`).
        self._windows: dict[str, Maintenance] = {}
        self._committer = committer
        self._scheduler = scheduler
        # The heartbeat deadlines: a second scheduler, whose misses come to `offer` too.
        self._heartbeats = heartbeats
        self._outbox = outbox
        self._clock = clock
        self._metrics = metrics
        # Who owns each service that has one: its actor's inbox, or the claim holding it.
        self._inboxes: dict[str, trio.MemorySendChannel[Envelope] | _Claimed] = {}
        self._claim: dict[str, _Claimed] = {}  # the claim still open to more events
        # Due timeouts for a service whose owner was busy: the owner takes them with its next
        # batch, so a full inbox never holds them back (see `offer`). At most one a scheduler.
        self._due: dict[str, list[Envelope]] = {}
        self._timeout_actors = 0  # actors started by `offer`, running now
        self._removals = trio.Event()  # set when services may have been removed
        self._nursery: trio.Nursery | None = None
        self.cluster: Diverter | None = None
        """On a node of a cluster: what routes the events of services this node does not hold
        (`pagerd.engine.inbox.Inbox`), set by the composition root. None: a single node."""
        self.agreement: Callable[[], bool] | None = None
        """On a node of a cluster: whether every live node runs this node's config
        (`Ownership.agreed`), set by the composition root. Only then is a service missing from
        the config one *removed* (its open incident closed, its silences ended): otherwise
        another node may page it, and this one, owning its shard for now, leaves it as it is.
        None: a single node, whose config is the only one."""

    def state(self, name: str) -> ServiceState:
        """The last committed state of `name`."""
        return self._states.get(name) or ServiceState(name)

    # Shards taken up and given up (several nodes) ---------------------------------------------

    def adopt(self, states: dict[str, ServiceState]) -> None:
        """Take up the services of shards just leased: their committed `states` (loaded for
        those shards), indexed, their deadlines armed (overdue ones fire at once)."""
        for name, state in states.items():
            before = self._states.get(name)
            self._states[name] = state
            was = frozenset() if before is None else before.firing
            self._index_firing(name, was, state.firing)
            self._index_silences(name, before, state)
        self._scheduler.schedule_all(states.values())
        self._heartbeats.schedule_all(states.values())
        self._disarm_unconfigured()
        self._removals.set()  # their removed services' incidents closed, as at a start

    def drop(self, shards: Collection[int]) -> None:
        """Give up the services of `shards` at once: their states, indexes and deadlines are
        forgotten. Their actors answer what they still hold `MOVED` (see `_actor`)."""
        names = [name for name in self._states if shard_of(name) in shards]
        for name in names:
            state = self._states.pop(name)
            self._index_firing(name, state.firing, frozenset())
            for silence in state.silences:
                if self._silenced.get(silence.id) == name:
                    del self._silenced[silence.id]
        self._scheduler.forget(names)
        self._heartbeats.forget(names)
        for name in [name for name in self._due if shard_of(name) in shards]:
            for envelope in self._due.pop(name):
                _moved(name, [envelope])

    def firing_service(self, source: Source) -> str | None:
        """The service that has `source` firing (committed), if any, of those in memory: where
        an Events v2 acknowledge or resolve goes when it names no service, only its dedup_key.
        On a node of a cluster, `firing_services` also asks the store."""
        return self._firing.get(source)

    async def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """The service each of `sources` fires for (those none does left out): from memory,
        and on a node of a cluster from the store for the rest (services held elsewhere are
        not in memory), in one read. `StoreError` if the store does not answer."""
        found = {s: name for s in sources if (name := self._firing.get(s)) is not None}
        rest = [s for s in sources if s not in found]
        if rest and self.cluster is not None:
            stored = await self.cluster.firing_services(rest)
            # A service held here is known from memory alone: what the store says of it is
            # what memory said (committed), or older.
            found.update((s, name) for s, name in stored.items() if not self._holds(name))
        return found

    async def answer_inbox(self, service: str, id: int, line: str) -> None:
        """Write inbox event `id`'s answer alone (`Handled`, fenced by `service`'s shard): for
        an event the inbox gives up on (`pagerd.engine.inbox.MAX_ATTEMPTS`). `StoreError` if
        it was not written."""
        await self._committer.commit([Handled(id, line)], shards={shard_of(service)})

    def _holds(self, service: str) -> bool:
        """Whether this node decides for `service` now (all of them on a single node)."""
        return self.cluster is None or self.cluster.holds(service)

    async def read_state(self, name: str) -> ServiceState:
        """The last committed state of `name`, wherever it is held: from memory on a single
        node or if this node holds it, else from the store (`StoreError` if it does not
        answer)."""
        if self.cluster is None or self._holds(name):
            return self.state(name)
        state, _ = await self.cluster.state(name)
        return state

    def _index_firing(self, service: str, was: frozenset[Source], now: frozenset[Source]) -> None:
        for source in was - now:
            if self._firing.get(source) == service:
                del self._firing[source]
        for source in now - was:
            self._firing[source] = service

    def _index_silences(self, service: str, was: ServiceState | None, now: ServiceState) -> None:
        before = () if was is None else was.silences
        if before is now.silences:
            return
        for silence in before:
            if self._silenced.get(silence.id) == service:
                del self._silenced[silence.id]
        for silence in now.silences:
            self._silenced[silence.id] = service

    def status(self, state: ServiceState, failed: int | None = None) -> dict[str, Any]:
        """`state` as a status object, with its open incident's failed deliveries counted (by
        this node's outbox unless `failed` is given: a service another node owns)."""
        incident = state.incident
        if failed is None:
            failed = (
                0
                if incident is None
                else self._outbox.failed_deliveries(state.name, incident.number)
            )
        now = self._clock.now()
        return service_status(
            state,
            failed,
            offset=self._clock.offset(),
            heartbeat=self.config.heartbeats.get(state.name),
            now=now,
            silenced_until=self.silenced_until(state, now),
            maintenance=self.maintenance(state.name, now),
        )

    # Silences ---------------------------------------------------------------------------------

    def windows(self, service: str) -> Quiet | None:
        """What silences `service` besides its durable silences, for `decide` and `simulate`
        alike: its recurring maintenance windows (`[[services.X.maintenance]]`, written on the
        wall clock, asked about in pagerd's frame); None if it has none."""
        kept = self._maintenance(service)
        return None if kept is None else recurring(kept, self._clock.offset())

    def _maintenance(self, service: str) -> Maintenance | None:
        """`service`'s windows, with where they stand kept (the same for every status and
        decision while the config runs: see `Maintenance`); None if it has none."""
        windows = self.config.maintenance.get(service, ())
        if not windows:
            return None
        kept = self._windows.get(service)
        if kept is None or kept.windows is not windows:
            kept = self._windows[service] = Maintenance(windows)
        return kept

    def maintenance(self, service: str, now: float) -> tuple[float, list[str]] | None:
        """The service's maintenance window in force at `now` (pagerd's frame), for its status:
        when the quiet of its windows ends, and the windows in force; None if none is."""
        kept = self._maintenance(service)
        if kept is None:
            return None
        wall = now + self._clock.offset()
        status = kept.status(wall)
        if not status.in_force or status.ends_at is None:
            return None
        shown = [
            f"{window.describe()} {w.zone}"
            for w in kept.windows
            if w.covers(wall)
            for window in w.windows
        ]
        return status.ends_at - self._clock.offset(), shown

    def silenced_until(self, state: ServiceState, now: float) -> float | None:
        """When the quiet in force on the service at `now` ends; None if it is not silenced."""
        windows = self.windows(state.name)
        if not state.silences and windows is None:
            return None
        return silenced_until(now, (spans(state.silences), windows))

    async def find_silence_event(self, request: Request, by: str | None) -> tuple[str, Event]:
        """`silence_event`, and on a node of a cluster, a `silence_end` of a silence this node
        does not have in memory (its service is held elsewhere) looked up in the store, checked
        against its service's stored state as a silence in memory is, and sent to that service
        (its owner decides it). `StoreError` if the store does not answer."""
        try:
            return self.silence_event(request, by)
        except Rejected as exc:
            if request.op != "silence_end" or exc.code != "not_found" or self.cluster is None:
                raise
            assert request.id is not None  # the protocol requires it
            number = request.id
            service = await self.cluster.silence_service(number)
            if service is None or self._holds(service):
                raise
            state, _ = await self.cluster.state(service)
            if number not in {s.id for s in live(state.silences, self._clock.now())}:
                raise
            return service, EndSilence(number, request.by or by)

    async def all_silences(self, service: str | None = None) -> list[dict[str, Any]]:
        """`silences`, of the whole cluster on a node of one: the silences of services held
        elsewhere read from the store (`StoreError` if it does not answer)."""
        if self.cluster is None:
            return self.silences(service)
        names = [service] if service is not None else list(self.config.services)
        stored = await self.cluster.stored_states(names)
        return self.silences(service, stored)

    def silence_event(self, request: Request, by: str | None) -> tuple[str, Event]:
        """The service a `silence` or `silence_end` request is for, and its event: a new
        silence numbered here, its wall-clock times taken into pagerd's frame; `by` is who
        asks when the request does not say (the socket's user, the HTTP integration).
        `Rejected` for what cannot be: an unknown service or silence, a silence that would
        end by now, or end before it starts, or lie too far ahead."""
        if request.op == "silence_end":
            assert request.id is not None  # the protocol requires it
            found = self._silenced.get(request.id)
            if found is None or request.id not in {
                s.id for s in live(self.state(found).silences, self._clock.now())
            }:
                raise Rejected(
                    "not_found",
                    f"no silence {request.id} is in force or to come (see pager silence list)",
                )
            return found, EndSilence(request.id, request.by or by)
        service = request.service
        assert service is not None and request.reason is not None  # the protocol requires them
        if service not in self.config.services:
            raise Rejected("unknown_service", f"no service named {service!r} is configured")
        now, offset = self._clock.now(), self._clock.offset()
        starts = now if request.starts_at is None else max(now, request.starts_at - offset)
        if request.duration is not None:
            ends = starts + request.duration
        else:
            assert request.ends_at is not None  # the protocol requires one of them
            ends = request.ends_at - offset
        if ends <= now:
            raise Rejected("bad_request", "the silence would be over already: its end is past")
        if ends <= starts:
            raise Rejected("bad_request", "the silence would end before it starts")
        if ends - now > MAX_SILENCE_SECONDS:
            raise Rejected(
                "bad_request",
                f"a silence may end at most {duration(MAX_SILENCE_SECONDS)} from now"
                " (a service never to be paged for belongs out of the config)",
            )
        if len(self._silenced) >= MAX_ALL_SILENCES and self.live_silences() >= MAX_ALL_SILENCES:
            raise Rejected(
                "too_many_silences",
                f"{MAX_ALL_SILENCES} silences are in force or to come, the most pagerd keeps:"
                " end some first",
            )
        if self._silence_ids is None:
            self._last_silence += 1
            number = self._last_silence
        else:
            taken = self._silence_ids.take()
            if taken is None:
                raise Rejected("unavailable", "no silence id to hand: the database does not answer")
            number = taken
        silence = Silence(number, starts, ends, request.reason.strip(), request.by or by, now)
        return service, StartSilence(silence)

    def live_silences(self) -> int:
        """Silences in force or to come, of configured services."""
        now, services = self._clock.now(), self.config.services
        return sum(
            len(live(state.silences, now))
            for state in self._states.values()
            if state.silences and state.name in services
        )

    def held_incidents(self) -> int:
        """Open incidents whose next step a silence holds."""
        return sum(
            1
            for state in self._states.values()
            if state.incident is not None and state.incident.silenced
        )

    def silences(
        self, service: str | None = None, stored: Mapping[str, ServiceState] | None = None
    ) -> list[dict[str, Any]]:
        """Every silence in force or to come (of `service` only, if given), as shown, in the
        order they were started; `stored`: states read from the store, for services held
        elsewhere (see `all_silences`)."""
        now, offset = self._clock.now(), self._clock.offset()
        names = [service] if service is not None else list(self.config.services)
        kept = stored or {}
        shown = [
            (silence.id, silence_object(name, silence, offset))
            for name in names
            for silence in live((kept.get(name) or self.state(name)).silences, now)
        ]
        return [object for _, object in sorted(shown, key=lambda each: each[0])]

    def simulation(
        self,
        service: str,
        at: float | None,
        ack_after: float | None,
        rounds: int | None,
    ) -> Callable[[Budget], Timeline]:
        """The timeline an incident of `service` opened at `at` (on the wall clock; now if
        None) would follow, with the config, silences, windows and overrides in force now,
        decided by the same `decide` with the same resolver of `person:` and `schedule:`
        targets; its times are in pagerd's frame (add `offset()` to show them).

        Everything it needs is read now, on the loop; the function given back is pure and
        runs anywhere (a worker thread: `pagerd.engine.compute`), each decision a step of
        its budget."""
        start = self._clock.now() if at is None else at - self._clock.offset()
        state = self.state(service)
        policy = self.config.policy_of(service)
        heartbeat = self.config.heartbeats.get(service)
        windows = self.windows(service)
        resolve = None if self.rota is None else self.rota.resolver()

        def run(budget: Budget) -> Timeline:
            return simulate(
                state,
                policy,
                start,
                ack_after=ack_after,
                rounds=rounds,
                heartbeat=heartbeat,
                windows=windows,
                resolve=resolve,
                budget=budget,
            )

        return run

    def schedule_zones(self, service: str) -> dict[int, tuple[str, dt.tzinfo]]:
        """Each level of `service`'s policy that pages a schedule: the first such schedule's
        name and zone, on whose clock `simulate` shows that level's times."""
        schedules = {} if self.rota is None else self.rota.directory.schedules
        zones: dict[int, tuple[str, dt.tzinfo]] = {}
        for number, level in enumerate(self.config.policy_of(service).levels, start=1):
            for target in level.targets:
                found = schedules.get(target.address) if target.channel == "schedule" else None
                if found is not None:
                    zones[number] = (found.name, found.zone)
                    break
        return zones

    def offset(self) -> float:
        """What to add to a time pagerd recorded to show it on the wall clock (`Clock.offset`)."""
        return self._clock.offset()

    def reconfigure(self, config: Config) -> None:
        """Serve `config` from now on. An actor takes the policy afresh for each batch, so open
        incidents keep their state and follow the new policy from their next escalation step.
        A removed service gets `unknown_service`, and its open incident is closed (see
        `_close_removed`). An incident held by a silence whose service's maintenance windows
        changed is looked at again at once, as when a silence is ended: a window removed or
        cut short pages now, not at the end it had."""
        old = self.config
        before, self.config = old.services, config
        self._windows.clear()
        if self.rota is not None:
            self.rota.reconfigure(config)
        for state in self._states.values():
            back = state.name in config.services and state.name not in before
            if back and state.incident is not None:
                # Added back before its incident was closed: it escalates again.
                self._scheduler.schedule(state)
            elif (
                state.incident is not None
                and state.incident.silenced
                and old.maintenance.get(state.name) != config.maintenance.get(state.name)
            ):
                self._scheduler.hurry(state)
        self._disarm_unconfigured()
        if before.keys() - config.services.keys():
            self._removals.set()

    def removable(self) -> bool:
        """Whether a service missing from the config counts as removed (see `agreement`)."""
        return self.agreement is None or self.agreement()

    def recheck_removed(self) -> None:
        """The nodes came to agree on their config: close what it removed (`_close_removed`),
        disarm the heartbeats it no longer has."""
        self._disarm_unconfigured()
        self._removals.set()

    def _disarm_unconfigured(self) -> None:
        """Hand over at once the heartbeat deadline of each service the config no longer gives
        a `heartbeat` (or no longer has): its actor disarms the monitor, paging nobody."""
        if not self.removable():
            return  # another node's config may have it (see `agreement`)
        heartbeats = self.config.heartbeats
        for state in self._states.values():
            monitor = state.heartbeat
            if monitor is not None and monitor.due_at is not None and state.name not in heartbeats:
                self._heartbeats.hurry(state)

    def open_incidents(self) -> int:
        """Open incidents of configured services: those `status` shows and a client can close
        (a removed service's is being closed)."""
        services = self.config.services
        return sum(
            1 for s in self._states.values() if s.incident is not None and s.name in services
        )

    def unacknowledged_incidents(self) -> int:
        services = self.config.services
        return sum(
            1
            for s in self._states.values()
            if s.incident is not None and not s.incident.acknowledged and s.name in services
        )

    def live_actors(self) -> int:
        return len(self._inboxes)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the actors' nursery until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._scheduler.schedule_all(self._states.values())
            self._heartbeats.schedule_all(self._states.values())
            self._disarm_unconfigured()  # a restart on a config without some heartbeats
            self._removals.set()  # a restart on a config without some services
            nursery.start_soon(self._close_removed, name="close removed services")
            task_status.started()
            await trio.sleep_forever()

    async def _close_removed(self) -> None:
        """Close the open incident of every service no longer configured, with the reason in its
        history: nobody could ack it or mark it healthy, and it would count as open for ever;
        and end its silences, so that a service added back later starts unsilenced.
        Each close goes through the service's owner like any event; one whose commit fails is
        tried again after a back-off."""
        while True:
            await self._removals.wait()
            self._removals = trio.Event()
            backoff = Backoff(RETRY_MIN, RETRY_MAX)
            while removed := [
                name
                for name, state in self._states.items()
                if (state.incident is not None or state.silences)
                and name not in self.config.services
            ]:
                if not self.removable():
                    # Another node may page them: left as they are until the configs agree
                    # (`recheck_removed`), said in the log with the nodes' hashes.
                    log.warning(
                        "%d service(s) not in this node's config keep their open incidents,"
                        " since the nodes' configs differ: %s",
                        len(removed), ",".join(sorted(removed)[:10]),
                    )  # fmt: skip
                    break
                try:
                    await self.route((name, Envelope(Removed(), None)) for name in removed)
                except Exception:
                    log.exception("cannot close the incidents of removed services")
                await backoff.wait()  # time for them to be committed, or a back-off

    async def route(self, events: Iterable[tuple[str, Envelope]]) -> None:
        """Hand each (service, envelope) to its service's owner, in order, waiting while an
        actor's inbox is full (back-pressure). Idle services are claimed, and one task decides
        all the claimed ones together (see the module's docstring). On a node of a cluster,
        the events of services it does not hold go to their owner through the inbox."""
        if self.cluster is not None:
            events = await self.cluster.divert(list(events))
        for service, envelope in events:
            if self._ownership is not None and not self._ownership.holds(service):
                _moved(service, [envelope])
                continue
            held = self._claim.get(service)
            if held is not None:
                held.batch.append(envelope)
                continue
            inbox = self._inbox(service)
            if inbox is None:
                if not self._claim or len(self._claim) >= MAX_CLAIM:
                    self._start_claim()
                self._claim[service] = self._inboxes[service] = _Claimed(envelope)
                continue
            try:
                inbox.send_nowait(envelope)
            except trio.WouldBlock:
                # The owner cannot leave meanwhile: it leaves only with its inbox empty.
                await inbox.send(envelope)

    def offer(self, service: str, event: Due) -> bool:
        """Route a due timeout without waiting; False if it cannot be taken now (the scheduler
        offers it again soon).

        A timeout never waits behind other services' events: a service that has an owner takes
        it with the owner's next batch, whatever its inbox holds (`_due`), and an idle service
        gets an actor of its own. Only those actors are capped: a restart that finds 100,000
        escalations overdue starts them `MAX_ACTORS_FOR_TIMEOUTS` at a time, so that clients
        are still answered while they are worked through; a storm's owners do not count, so
        they never hold up a quiet service's deadline."""
        if self._ownership is not None and not self._ownership.holds(service):
            # Its shard is being adopted (armed, not yet held) or has just passed its deadline
            # (about to be dropped, which disarms it): offered again in a moment, never lost.
            return False
        if self.cluster is not None and self.cluster.events_first(service):
            # Adopted a moment ago: an ack or a check-in stored for it while no node held it
            # (before this deadline) is decided first (found in review: a heartbeat checked in
            # on time through another node was paged as missed, its check-in read after).
            return False
        # A service no longer configured takes it too: its actor closes the incident.
        envelope = Envelope(event, None)
        owner = self._inboxes.get(service)
        if owner is None:
            if self._timeout_actors >= MAX_ACTORS_FOR_TIMEOUTS:
                return False
            self._start(service, for_timeout=True).send_nowait(envelope)  # a new inbox: room
        elif isinstance(owner, _Claimed) and self._claim.get(service) is owner:
            owner.batch.append(envelope)  # the claim is still open: decided with it
        else:
            # At most one a scheduler: each hands a service one at a time.
            self._due.setdefault(service, []).append(envelope)
        return True

    def _inbox(self, service: str) -> trio.MemorySendChannel[Envelope] | None:
        """The inbox of the service's owner, if it has one now."""
        owner = self._inboxes.get(service)
        return owner.inbox() if isinstance(owner, _Claimed) else owner

    def _start(
        self,
        service: str,
        inbox: tuple[trio.MemorySendChannel[Envelope], trio.MemoryReceiveChannel[Envelope]]
        | None = None,
        *,
        for_timeout: bool = False,
    ) -> trio.MemorySendChannel[Envelope]:
        """Start `service`'s actor, on a new inbox or on `inbox` (a claim's, with events in it)."""
        # The inbox is registered before the task runs, so nothing can be routed to no one.
        assert self._nursery is not None, "Services.run() has not started"
        # Not `open_memory_channel[Envelope]`: subscripting builds a typing alias on every call.
        send, receive = inbox or trio.open_memory_channel(INBOX_SIZE)
        self._inboxes[service] = send
        self._timeout_actors += for_timeout
        self._nursery.start_soon(
            self._actor, service, receive, for_timeout, name=f"actor {service}"
        )
        return send

    def _start_claim(self) -> None:
        """Open a new claim, and start the task that will decide it: until that task runs,
        every connection's events for idle services join it."""
        assert self._nursery is not None, "Services.run() has not started"
        self._claim = {}
        self._nursery.start_soon(self._decide_claim, self._claim, name="claimed actors")

    async def _decide_claim(self, claim: dict[str, _Claimed]) -> None:
        if self._claim is claim:
            self._claim = {}  # closed: what comes next makes a claim of its own
        await self._contained({service: held.batch for service, held in claim.items()})
        # No checkpoint from here on: an inbox seen empty is closed before anything can fill it.
        for service, held in claim.items():
            waiting = service in self._due
            if held.receive is None:
                del self._inboxes[service]
                if waiting:
                    self._start(service)
            elif waiting or held.receive.statistics().current_buffer_used:
                assert held.send is not None
                self._start(service, (held.send, held.receive))
            else:
                del self._inboxes[service]
                held.receive.close()

    async def _actor(
        self, service: str, inbox: trio.MemoryReceiveChannel[Envelope], for_timeout: bool
    ) -> None:
        with inbox:
            while True:
                batch: list[Envelope] = []
                while len(batch) < INBOX_SIZE:
                    try:
                        batch.append(inbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                # After the events routed before it was due (the inbox holds no more than a
                # batch), and never behind more than that.
                due = self._due.pop(service, None)
                if due is not None:
                    batch += due
                if not batch:
                    # Idle: leave the registry with no checkpoint since the inbox was seen empty.
                    del self._inboxes[service]
                    self._timeout_actors -= for_timeout
                    return
                if self._ownership is not None and not self._ownership.holds(service):
                    _moved(service, batch)  # its shard was dropped: answered until empty
                    continue
                await self._contained({service: batch})

    async def _contained(self, batches: dict[str, list[Envelope]]) -> None:
        try:
            await self._handle(batches)
        except Exception:
            # A bug must not take the daemon down: contain and report it, and offer again later
            # any timeout handed over, or that incident would never escalate again.
            log.exception("actor failed services=%s", ",".join(batches))
            for service, batch in batches.items():
                _fail(batch)
                self._retry(self.state(service))

    async def _handle(self, batches: dict[str, list[Envelope]]) -> None:
        """Decide every service's events in turn, commit all of them together, then answer."""
        now = self._clock.now()
        decided: dict[str, _Decided] = {}
        for service, batch in batches.items():
            if self._ownership is not None and not self._ownership.holds(service):
                _moved(service, batch)
                continue
            if service not in self.config.services:
                # Removed by a reload while these events waited: answered as they would be now
                # (once committed: an inbox event's answer is written with it), and its open
                # incident closed.
                unknown = Rejected("unknown_service", f"no service named {service!r} is configured")
                refused: list[_Outcome] = [(envelope, unknown, None) for envelope in batch]
                decided[service] = _Decided([], refused, self.state(service))
                state = self.state(service)
                if not self.removable():
                    continue  # another node may page it: its state is left as it is
                if (
                    state.incident is not None
                    or state.heartbeat is not None
                    or state.started
                    or state.silences
                ):
                    after = attrs.evolve(closed(state), heartbeat=None, started={}, silences=())
                    record = EventRecord("removed", REMOVED) if state.incident is not None else None
                    decided[service] = _Decided(
                        [Transition(state, after, (), now, record)], refused, after
                    )
                continue
            try:
                decided[service] = self._decide(service, batch, now)
            except Exception:
                # A bug in one service's decisions fails its events, not its neighbours'.
                log.exception("actor failed service=%s", service)
                _fail(batch)
                self._retry(self.state(service))
        await self._commit(batches, decided)

    async def _commit(
        self,
        batches: dict[str, list[Envelope]],
        decided: dict[str, _Decided],
        terms: dict[int, Term] | None = None,
    ) -> None:
        """Commit what was decided for these services together, then apply and answer it.
        `terms`: the shards' terms when it was decided (None: now, which is when, since no
        checkpoint separates the decisions from here)."""
        transitions = [t for d in decided.values() for t in d.transitions]
        # The answers of inbox events, in the same commit: applied once, whoever dies when.
        handled = [
            Handled(
                envelope.inbox_id, self._line(envelope, outcome, extra)[0].decode().rstrip("\n")
            )
            for d in decided.values()
            for envelope, outcome, extra in d.outcomes
            if envelope.inbox_id is not None
        ]
        if not transitions and not handled:
            await trio.lowlevel.checkpoint()
        else:
            writes: list[Write] = [*transitions, *handled]
            try:
                if self._ownership is None:
                    await self._committer.commit(writes)
                else:
                    # The shards of the services decided, not only of their transitions: an
                    # inbox event's `Handled` is fenced by its service's shard too.
                    shards = {shard_of(service) for service in decided}
                    if terms is None:
                        # Under which lease and adoption the states were current: a write that
                        # waits in the committer while its shard is dropped and taken again
                        # (loaded afresh) is refused, not written under the new term.
                        terms = self._ownership.terms(shards)
                    await self._committer.commit(writes, shards=shards, terms=terms)
            except WriteRefused as exc:
                if sum(1 for d in decided.values() if d.transitions) > 1:
                    # What one service wrote was refused, not the disk (a claim decides many
                    # idle services together): each is committed alone, so that one bad row
                    # refuses its own service's events and no other's.
                    log.error("commit of %d services failed, each alone now: %s", len(decided), exc)
                    for service, one in decided.items():
                        await self._commit(batches, {service: one}, terms)
                    return
                self._refused(decided, exc)
                return
            except Fenced as exc:
                # Their shards were taken by another node (this one was paused, cut off, or
                # slow): nothing was written, and those events go to the new owner.
                lost = {s for s in decided if shard_of(s) in exc.shards}
                if not lost:
                    self._refused(decided, exc)
                    return
                for service in lost:
                    _moved(service, batches[service])
                rest = {s: d for s, d in decided.items() if s not in lost}
                if rest:
                    await self._commit(batches, rest, terms)
                return
            except StoreError as exc:
                self._refused(decided, exc)
                return
            applied = decided
            if self._ownership is not None:
                # Committed under a valid fence (so answered ok), but dropped since: the new
                # owner loads it from the store; nothing of it is kept, armed or sent here.
                applied = {s: d for s, d in decided.items() if self._ownership.holds(s)}
                if len(applied) < len(decided):
                    transitions = [t for d in applied.values() for t in d.transitions]
            for service, d in applied.items():
                if not d.transitions:
                    continue  # unchanged (an inbox event's answer alone, a refusal)
                before = self._states.get(service)
                self._states[service] = d.state
                was = frozenset() if before is None else before.firing
                if was is not d.state.firing:  # mostly both the one empty frozenset
                    self._index_firing(service, was, d.state.firing)
                self._index_silences(service, before, d.state)
            for t in transitions:
                _log_transition(t)
                if t.after.silences is not t.before.silences:
                    _log_silences(t.before, t.after)
                if _deadline(t.after) != _deadline(t.before):
                    self._scheduler.schedule(t.after)
                if t.after.heartbeat != t.before.heartbeat:
                    self._heartbeats.schedule(t.after)
                    if t.event is not None and t.event.op == "heartbeat_missed":
                        self._metrics.heartbeats_missed.inc()
            self._outbox.add(_notifications(transitions))
            # An acknowledgement or a close: that incident's waiting retries leave now.
            self._outbox.reconsider(applied)
        for service in decided:
            batch = batches[service]
            if any(isinstance(envelope.event, _DUE) for envelope in batch):  # rarely
                state = self.state(service)
                if any(isinstance(envelope.event, _ESCALATION) for envelope in batch):
                    self._scheduler.decided(state)
                if any(isinstance(envelope.event, HeartbeatMissed) for envelope in batch):
                    self._heartbeats.decided(state)
            if decided[service].stale:
                self._report_stale(service, decided[service].stale)
            if decided[service].stale_resolves:
                _report_stale_resolves(service, decided[service].stale_resolves)
        self._answer([o for d in decided.values() for o in d.outcomes])

    def _report_stale(self, service: str, late: list[Source]) -> None:
        """Count and log the firings of `service` taken as late copies: they change nothing,
        so they are not in the history; this line says why an alert Alertmanager shows firing
        paged nobody."""
        for source in late:
            self._metrics.stale_firings.inc(source.integration)
        shown = ", ".join(f"{source.integration}:{source.key!r}" for source in late[:10])
        more = f" and {len(late) - 10} more" if len(late) > 10 else ""
        log.warning(
            "late firing ignored service=%s alerts=%s%s: each started (startsAt) before the"
            " firing it last resolved with; paged nobody",
            service,
            shown,
            more,
        )

    def _refused(self, decided: dict[str, _Decided], exc: StoreError) -> None:
        """Nothing of it was written: every deadline stays as the disk has it, and a timeout
        handed over for these services is offered again after a back-off."""
        for service in decided:
            self._retry(self.state(service))
        self._answer([o for d in decided.values() for o in d.outcomes], failure=str(exc))

    def _retry(self, state: ServiceState) -> None:
        """Offer again, after a back-off, any deadline of `state`'s handed over (see
        `Scheduler.retry`)."""
        self._scheduler.retry(state)
        self._heartbeats.retry(state)

    def _decide(self, service: str, batch: list[Envelope], now: float) -> _Decided:
        """Decide `batch` in order from the service's committed state."""
        policy = self.config.policy_of(service)
        heartbeat = self.config.heartbeats.get(service)
        resolve = None if self.rota is None else self.rota.resolver(report=True)
        windows = self.windows(service)
        state = self.state(service)
        mine: list[Transition] = []
        answers: list[_Outcome] = []
        late: list[Source] = []
        late_resolves: list[Source] = []
        for envelope in batch:
            event = envelope.event
            if isinstance(event, Removed):
                continue  # added back before its incident was closed: it stays open
            if (
                isinstance(event, Healthy)
                and envelope.via in PAGE_ANSWERS
                and not policy.allow_resolve
            ):
                # A page's own Resolve (a link, an SMS's "c", a Slack button) where the policy
                # keeps closing off pages: refused here, where the policy in force is known,
                # however the page came to offer it (made before the policy changed, forged).
                number = event.incident
                if number is None:
                    number = state.incident.number if state.incident is not None else 0
                iid = incident_id(service, number)
                refused = Rejected(
                    "not_allowed",
                    f"the policy of {service} does not let a page close {iid}"
                    " (allow_resolve = false): acknowledge it instead",
                )
                answers.append((envelope, refused, None))
                continue
            if isinstance(event, Ack):
                # The envelope says how it came (its `via`, integration or peer): the one
                # source the acknowledgement keeps (`Incident.acknowledged_via`) and the
                # history records (`EventRecord.via`).
                event = attrs.evolve(event, via=_answered_via(envelope))
                envelope = attrs.evolve(envelope, event=event)
            try:
                after, notes, unreached = decide_with(
                    state, event, now, policy, heartbeat, resolve=resolve, windows=windows
                )
            except Rejected as rejected:
                answers.append((envelope, rejected, None))
                continue
            if (
                isinstance(event, Alert)
                and event.source is not None
                and after is state
                and stale(state, event.source, event.starts_at, now)
            ):
                late.append(event.source)
            if (
                isinstance(event, Resolve)
                and after is state
                and stale_resolve(state, event.source, event.starts_at)
            ):
                late_resolves.append(event.source)
            record = _record(envelope, state, after, now, self._clock.offset())
            if after != state or record is not None:
                mine.append(Transition(state, after, notes, now, record))
                if (held := _held(state, after, now)) is not None:
                    mine.append(Transition(after, after, (), now, held))
            for missed in unreached:
                # Into the incident's history (a transition that changes nothing else), the
                # log and the metrics: a level that reached nobody is never a silent skip.
                mine.append(Transition(after, after, (), now, self._unreached(after, missed)))
            extra = self._ack_answer(event, state, after)
            if unreached:
                # The reply says truthfully that a level reached nobody: "level 1 notified"
                # of an incident exhausted for want of anybody on call would be a lie.
                extra = {**(extra or {}), "unreached": [_unreached_object(u) for u in unreached]}
            answers.append((envelope, after, extra))
            state = after
        return _Decided(mine, answers, state, late, late_resolves)

    def _unreached(self, state: ServiceState, missed: Unreached) -> EventRecord:
        """A level that reached nobody at all is loud (an error, counted, `unreached`); one whose
        other targets were notified is a note (`partly_unreached`, at INFO): follow-the-sun as
        two schedules in one level has one of them empty on every page, by design."""
        iid = incident_id(state.name, state.incident.number if state.incident else 0)
        reasons = "; ".join(missed.reasons)
        if missed.skipped:
            self._metrics.levels_unreached.inc()
            detail = f"level {missed.level} round {missed.round} has nobody to notify: {reasons}"
            log.error("nobody to notify service=%s incident=%s: %s", state.name, iid, detail)
            return EventRecord("unreached", detail)
        detail = (
            f"level {missed.level} round {missed.round}: {reasons}; the level's other targets"
            " were notified"
        )
        log.info("target not notified service=%s incident=%s: %s", state.name, iid, detail)
        return EventRecord("partly_unreached", detail)

    def _ack_answer(
        self, event: Event, before: ServiceState, after: ServiceState
    ) -> dict[str, Any] | None:
        """What an ack's reply says besides the status: `already_acknowledged`, null if this
        ack acknowledged the incident, else who was first, how and when (concurrent acks
        through the socket, REST, a link, an SMS, Slack and the console acknowledge once)."""
        if not isinstance(event, Ack):
            return None
        incident = before.incident
        if incident is None or not incident.acknowledged or after.incident != incident:
            acked = after.incident is not None and after.incident.acknowledged
            return {"already_acknowledged": None} if acked else None
        assert incident.acknowledged_at is not None
        return {
            "already_acknowledged": {
                "by": incident.acknowledged_by,
                "via": incident.acknowledged_via,
                "at": isoformat(incident.acknowledged_at + self._clock.offset()),
            }
        }

    def _answer(self, outcomes: list[_Outcome], failure: str | None = None) -> None:
        """Reply to each event: its refusal, or `unavailable` if the commit failed, or ok (a
        silence's with the silence, as it now stands; an ack's with `already_acknowledged`)."""
        for envelope, outcome, extra in outcomes:
            if envelope.reply is not None:
                envelope.reply.set(*self._line(envelope, outcome, extra, failure))

    def _line(
        self,
        envelope: Envelope,
        outcome: ServiceState | Rejected,
        extra: dict[str, Any] | None,
        failure: str | None = None,
    ) -> tuple[bytes, str]:
        """The reply line and result of one event (see `_answer`): rendered before the commit
        too, for an inbox event, whose answer is written with it."""
        if isinstance(outcome, Rejected):
            return error_reply(outcome.code, outcome.message), outcome.code
        if failure is not None:
            return error_reply("unavailable", failure), "unavailable"
        if isinstance(envelope.event, (StartSilence, EndSilence)):
            number = (
                envelope.event.silence.id
                if isinstance(envelope.event, StartSilence)
                else envelope.event.id
            )
            silence = next(s for s in outcome.silences if s.id == number)
            shown = silence_object(outcome.name, silence, self._clock.offset())
            return ok_reply(silence=shown, **self.status(outcome), **(extra or {})), "ok"
        if envelope.reply is not None and envelope.reply.terse:
            return TERSE, "ok"
        if extra is not None:
            return ok_reply(**self.status(outcome), **extra), "ok"
        return ok_reply(**self.status(outcome)), "ok"


def _unreached_object(missed: Unreached) -> dict[str, Any]:
    """A level that reached nobody, as a reply says it (`unreached`): its round and level, why
    (each target's reason), and `skipped` when the whole level had nobody (escalation moved on
    at once, or the incident was exhausted)."""
    return {
        "round": missed.round,
        "level": missed.level,
        "reasons": list(missed.reasons),
        "skipped": missed.skipped,
    }


def _answered_via(envelope: Envelope) -> str | None:
    """How an event came, as an acknowledgement keeps it: a person's way (`link`, `sms`, ...),
    else the HTTP integration's name, else `socket` for a client of the socket."""
    if envelope.via is not None:
        return envelope.via
    if envelope.integration is not None:
        return envelope.integration
    return "socket" if envelope.peer is not None else None


def _report_stale_resolves(service: str, late: list[Source]) -> None:
    """Log the resolves of `service` taken as an earlier firing's: this line says why an
    incident stays open that Alertmanager once showed resolved."""
    shown = ", ".join(f"{source.integration}:{source.key!r}" for source in late[:10])
    more = f" and {len(late) - 10} more" if len(late) > 10 else ""
    log.warning(
        "late resolve ignored service=%s alerts=%s%s: each started (startsAt) before the"
        " firing it fires with; the incident stays open (see its history)",
        service,
        shown,
        more,
    )


def _record(
    envelope: Envelope,
    before: ServiceState,
    after: ServiceState,
    now: float,
    offset: float = 0.0,
) -> EventRecord | None:
    """The event as the incident's history keeps it, decided at `now`; None if it concerns no
    incident. `offset` takes pagerd's frame to the wall clock, for the times a record's words
    give."""
    event, peer, via = envelope.event, envelope.peer, envelope.integration
    answered = envelope.via
    if isinstance(event, (Heartbeat, HeartbeatMissed)):
        return _heartbeat_record(event, peer, via, before, after)
    if isinstance(event, (StartSilence, EndSilence)):
        return _silence_record(event, peer, via, before, after, offset)
    if isinstance(event, Timeout):
        incident = after.incident
        if after == before or incident is None:
            return None
        if incident.exhausted:
            return EventRecord("timeout", "no level left to notify: exhausted")
        if incident.silenced:
            return None  # held (again): `_held` says so, once
        return EventRecord("timeout", _notified(before, incident))
    if isinstance(event, AckExpired):
        was, incident = before.incident, after.incident
        if was is None or incident is None or incident.acknowledged or after == before:
            return None  # stale, early, or an expiry the policy no longer has
        assert was.acknowledged_at is not None
        who = f" by {was.acknowledged_by}" if was.acknowledged_by else ""
        how = f" via {was.acknowledged_via}" if was.acknowledged_via else ""
        # How long it truly held: `ack_expiry` when on time, more when pagerd was down at the
        # expiry and fires it at its start (whole seconds: the expiry wakes a hair after).
        elapsed = now - was.acknowledged_at
        held = duration(float(round(elapsed)) if elapsed >= 1 else elapsed)
        return EventRecord(
            "ack_expired",
            f"acknowledged{who}{how} {held} ago and still open: escalation restarts at level 1"
            f" (round {incident.round})",
        )
    if before.incident is None and after.incident is None:
        return None
    if isinstance(event, Alert):
        if event.source is not None and before.firing == after.firing:
            return None  # a repeat of an alert still firing: nothing happened
        return EventRecord("alert", event.message or None, None, peer, via)
    if isinstance(event, Ack):
        if before.incident == after.incident:
            # Acknowledged already (the first ack wins, and its answer says so), or an
            # integration's ack of what is not firing: nothing happened to the incident.
            return None
        return EventRecord("ack", None, event.by, peer, via, answered)
    if isinstance(event, Resolve):
        if event.source not in before.firing:
            return None  # resolved already, or never seen: only its startsAt was kept
        if event.source in after.firing:
            return _ignored_resolve(event, peer, via, before)
        # The incident's history says which alert resolved, and how many are left.
        left = len(after.firing)
        detail = f"{event.source.integration}: {event.source.key} resolved"
        return EventRecord(
            "resolve", detail + (f", {left} still firing" if left else ""), None, peer, via
        )
    by = event.by if isinstance(event, Healthy) else None
    return EventRecord("healthy", None, by, peer, via, answered)


def _ignored_resolve(
    event: Resolve, peer: Peer | None, via: str | None, before: ServiceState
) -> EventRecord | None:
    """A resolve of an earlier firing than the one that fires (`stale_resolve`): nothing
    happened, but the history says why the incident the sender shows resolved stays open."""
    source, starts_at = event.source, event.starts_at
    seen = before.started.get(source)
    if starts_at is None or seen is None or not stale_resolve(before, source, starts_at):
        return None
    detail = (
        f"{source.integration}: {source.key} started {nanoformat(starts_at)}, before the firing"
        f" that holds the incident (started {nanoformat(seen.starts_at)}): the incident stays open"
    )
    return EventRecord("resolve_ignored", detail, None, peer, via)


def _heartbeat_record(
    event: Heartbeat | HeartbeatMissed,
    peer: Peer | None,
    via: str | None,
    before: ServiceState,
    after: ServiceState,
) -> EventRecord | None:
    """A check-in or a miss as the history keeps it: only when it changes the incident's story
    (a miss; a check-in that ends one), never each check-in of a healthy service."""
    if isinstance(event, HeartbeatMissed):
        if after.heartbeat is None or not after.heartbeat.missed or after == before:
            return None  # stale, early, or a disarm
        assert after.incident is not None
        return EventRecord("heartbeat_missed", missed_message(after.heartbeat.interval))
    if before.heartbeat is None or not before.heartbeat.missed:
        return None  # an ordinary check-in
    if before.incident is None:
        return None
    detail = "heartbeat restored" if after.incident is None else "heartbeat restored; still open"
    return EventRecord("heartbeat", detail, event.by, peer, via)


def _notified(before: ServiceState, incident: Incident) -> str:
    step = f"level {incident.level} round {incident.round}"
    was = before.incident
    if was is not None and was.silenced:
        # Which quiet ended the hold: a durable silence that ended at its deadline, else the
        # service's maintenance windows ("the maintenance window is over").
        ended = "silence" if was.deadline is None else released_by(before.silences, was.deadline)
        return f"the {ended} is over: notified {step}"
    return f"escalated to {step}"


def _silence_record(
    event: StartSilence | EndSilence,
    peer: Peer | None,
    via: str | None,
    before: ServiceState,
    after: ServiceState,
    offset: float = 0.0,
) -> EventRecord | None:
    """A silence started or ended, in the history of the incident open then (if any): its id,
    when it holds (`from` only when later than it was made), its reason; who, as `by`."""
    if after.incident is None or before == after:
        return None
    if isinstance(event, StartSilence):
        silence = event.silence
        start = ""
        if silence.starts_at > silence.created_at:
            start = f" from {isoformat(silence.starts_at + offset)}"
        until = isoformat(silence.ends_at + offset)
        detail = f"silence {silence.id}{start} until {until}: {silence.reason}"
        return EventRecord("silence", detail, silence.by, peer, via)
    incident = after.incident
    detail = f"silence {event.id} ended"
    if before.incident is not None and before.incident.silenced and not incident.silenced:
        detail += f": notified level {incident.level} round {incident.round}"
    return EventRecord("silence_end", detail, event.by, peer, via)


def _held(before: ServiceState, after: ServiceState, now: float) -> EventRecord | None:
    """The history's word that a step was held by a silence (or by a maintenance window, when
    no durable silence is in force), when it first is."""
    incident = after.incident
    if incident is None or not incident.silenced:
        return None
    was = before.incident
    if was is not None and was.number == incident.number and was.silenced:
        return None
    by = f"a {holder(after.silences, now)}"
    if incident.level == 0 and incident.round_base:
        # The restart of an expired acknowledgement, held before its first step.
        return EventRecord(
            "silenced", f"paging held by {by}: round {incident.round} notifies nobody yet"
        )
    if incident.level == 0:
        return EventRecord("silenced", f"paging held by {by}: nobody notified yet")
    return EventRecord("silenced", f"paging held by {by} after level {incident.level}")


def _moved(service: str, batch: list[Envelope]) -> None:
    """Answer `batch` `MOVED`: `service` is not this node's (any more), nothing was written."""
    for envelope in batch:
        if envelope.reply is not None and not envelope.reply.done:
            envelope.reply.set(moved_reply(service), MOVED)


def _fail(batch: list[Envelope]) -> None:
    for envelope in batch:
        if envelope.reply is not None and not envelope.reply.done:
            envelope.reply.set(error_reply("internal", "internal error"), "internal")


def _deadline(state: ServiceState) -> float | None:
    return state.incident.deadline if state.incident is not None else None


def _notifications(transitions: Iterable[Transition]) -> Iterable[Notify]:
    for t in transitions:
        yield from t.notifications


def _log_silences(before: ServiceState, after: ServiceState) -> None:
    was = {s.id: s for s in before.silences}
    for silence in after.silences:
        old = was.get(silence.id)
        if old is None:
            log.warning(
                "silenced service=%s silence=%d from=%s until=%s by=%r reason=%r",
                after.name, silence.id, isoformat(silence.starts_at),
                isoformat(silence.ends_at), silence.by, silence.reason,
            )  # fmt: skip
        elif old.ended_at is None and silence.ended_at is not None:
            log.warning(
                "silence ended service=%s silence=%d by=%r",
                after.name,
                silence.id,
                silence.ended_by,
            )


def _log_transition(t: Transition) -> None:
    before, after, name = t.before.incident, t.after.incident, t.after.name
    if after is None:
        if before is not None and t.event is not None and t.event.op == "removed":
            iid = incident_id(name, before.number)
            log.warning("closed service=%s incident=%s: %s", name, iid, t.event.detail)
        elif before is not None:
            log.info("closed service=%s incident=%s", name, incident_id(name, before.number))
        return
    iid = incident_id(name, after.number)
    if t.before == t.after and t.event is not None and t.event.op == "silenced":
        log.warning("held service=%s incident=%s: %s", name, iid, t.event.detail)
    elif before is None or before.number != after.number:
        log.warning("opened service=%s incident=%s message=%r", name, iid, after.message)
    elif before.acknowledged and not after.acknowledged:
        log.warning(
            "acknowledgement expired service=%s incident=%s: escalation restarts at level 1"
            " round=%d",
            name,
            iid,
            after.round,
        )
    elif after.acknowledged and not before.acknowledged:
        log.info(
            "acknowledged service=%s incident=%s by=%r via=%s",
            name, iid, after.acknowledged_by, after.acknowledged_via,
        )  # fmt: skip
    elif (after.round, after.level) != (before.round, before.level):
        log.warning(
            "escalated service=%s incident=%s level=%d round=%d",
            name,
            iid,
            after.level,
            after.round,
        )
    elif after.exhausted and not before.exhausted:
        log.warning("exhausted service=%s incident=%s: no level left to notify", name, iid)
