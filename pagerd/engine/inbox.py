"""Any node of a cluster accepts any event: those of services it does not hold go, durably,
through the shared store's inbox to the node that does, and their answers come back the same way.

Three parts, one `Inbox` per node:

- The sender (`divert`, called by `Services.route`, the one way every front reaches the engine):
  an event of a service whose shard this node holds goes to the local actor, as on a single
  node (the fast path); any other is encoded (`pager.wire`, with who sent it and how) and `put`
  in the inbox — durable on return — and its client waits for the owner's answer, at most
  `SENDER_WAIT` seconds. Past that (no owner: a failover under way) the client is told the event
  is accepted and stored, queued for its owner (`"queued": true` in an ok answer): it is, and
  the next owner handles it. At most `MAX_WAITING` events wait for answers on a node; past that
  an event is refused `busy` at once, before it is stored.
- The owner (`_own`): takes the inbox of the shards it holds — woken by an `INBOX_CHANNEL`
  notification for one of them, by `adopt` when it takes a shard, and by a poll every `POLL`
  seconds (a notification is lost while the listening connection reconnects) — and routes each
  event to the local actor with its inbox id, in id order per service: a service's next events
  are routed only once its last ones are answered, so two copies of one id are never in flight
  and a failed commit cannot let a later event pass an earlier one. The actor writes the
  answer line (`Handled`) in the same commit as the transition it decided, or alone for a
  refusal: so an event is applied exactly once even if the owner dies between taking it and
  committing (the row is still there; the next owner takes it).
- The listener (`_listen`): the one task that calls `Cluster.wait` (one caller at a time, in a
  worker thread), handing inbox notifications to the owner and answers to the senders waiting;
  answers are also polled every `POLL` seconds, and once more at a sender's deadline.

What this module needs of ownership (the leases, in `pagerd.engine.ownership`) is `Owner`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol

import attrs
import msgspec
import trio

from pager.domain import ServiceState, Source
from pager.protocol import error_reply, ok_reply
from pager.shards import shard_of
from pager.wire import WireEvent, from_wire, to_wire
from pagerd.access.peers import Peer
from pagerd.engine.actors import Envelope, Removed, Reply, Services
from pagerd.engine.ownership import MOVED, owner_object
from pagerd.operations.metrics import Counter, Metrics
from pagerd.storage import cluster as stored
from pagerd.storage.cluster import ANSWER_CHANNEL, INBOX_CHANNEL, Cluster
from pagerd.storage.offload import Offload
from pagerd.storage.port import StoreError
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.inbox")

SENDER_WAIT: Final = 5.0
"""Seconds a client waits for the owner's answer before it is told its event is queued. Far
above a healthy owner's round trip (two commits and two notifications: milliseconds), so a
client is told "queued" only when there is no owner now (a failover, which takes up to
`lease_ttl`, 10 s by default); and well below what senders wait before they give up and send
again (Alertmanager's webhook: 10 s; `pager`: 30 s; our HTTP fronts' patience: 10 s), so the
client hears that its event is stored instead of timing out and sending a copy. Not a setting:
nothing a deployment knows makes another value better."""
MAX_WAITING: Final = 4096
"""Events that wait for their owner's answer on one node (being stored, or stored and not yet
answered): past it, an event is refused `busy` at once. Each costs a few hundred bytes."""
TAKE: Final = 256
"""Inbox events the owner takes in one read."""
FIRST_READ: Final = 2.0
"""Seconds an adopted shard's due timeouts wait for the first read of its inbox: what was
stored for it while no node held it (an ack, a check-in, sent before the deadline that fell
due meanwhile) is decided first. A service whose events wait behind its earlier ones (a storm
of its own) holds its timeouts as long as each read of them comes within this, up to
`FIRST_READ_MAX`; a database that does not answer delays them no longer than this."""
FIRST_READ_MAX: Final = 30.0
"""Seconds at most a service's due timeouts wait for its events stored before its shard was
adopted (a storm of tens of thousands on one service, found in review, takes seconds)."""
POLL: Final = 2.0
"""Seconds between two reads of the inbox (and of the answers waited for) when no notification
came: the backstop for notifications lost while the listening connection was down."""
LISTEN: Final = 1.0
"""Seconds one `Cluster.wait` blocks its worker thread at most."""
_NOT_HANDLED: Final = frozenset({"unavailable", "internal", MOVED})
"""Results of an inbox event that was not committed: it stays in the inbox, taken again."""
MAX_ATTEMPTS: Final = 5
"""Times an inbox event may fail as no outage makes it fail (its actor answered `internal`: a
bug in deciding it; or it cannot be read: a bad row) before it is answered with that error
(`Handled`), logged and counted as poisoned, so that its service's later events flow: until
then they wait behind it, in order. Each try after a failure waits for a poll (`POLL`), so
five take at least 8 s: a one-off (an exception racing a shard's drop) passes on the next try,
while a bug fails the same way every time, and the service waits at most about 10 s for it.
`unavailable` (the database) and `moved` are never counted: an event its client was told is
stored must not be thrown away because the database was down."""


class Owner(Protocol):
    """Which shards this node holds now (the leases, by this node's monotonic clock)."""

    @property
    def node(self) -> str:
        """This node's name (`[cluster] node_name`)."""
        ...

    def holds(self, service: str) -> bool:
        """Whether this node decides for `service` now (it holds its shard)."""
        ...

    def held(self) -> Mapping[int, int]:
        """The shards this node holds now, with their epochs."""
        ...


class SharedStore(Protocol):
    """The reads of a store every node shares, for services this node does not hold."""

    def load_states(self, *, shards: Collection[int] | None = None) -> dict[str, ServiceState]: ...

    def failed_counts(self) -> dict[tuple[str, int], int]: ...

    def firing_services(self, sources: Collection[Source]) -> dict[Source, str]: ...

    def silence_service(self, id: int) -> str | None: ...


Listen = Callable[[Collection[str], float], Awaitable[list[tuple[str, str]]]]
"""`Cluster.wait`, awaitable: blocks until notifications come, or the timeout passes."""


def listening(cluster: Cluster) -> Listen:
    """`cluster.wait` in a worker thread of its own (one caller at a time), given up on at a
    cancellation: its connection only listens, and a stop must not wait for it."""
    limiter = trio.CapacityLimiter(1)

    async def listen(channels: Collection[str], seconds: float) -> list[tuple[str, str]]:
        return await trio.to_thread.run_sync(
            cluster.wait, channels, seconds, limiter=limiter, abandon_on_cancel=True
        )

    return listen


class Queued(msgspec.Struct, array_like=True):
    """An envelope as the inbox keeps it: the event, and how it came (the socket's peer, the
    HTTP integration, a person's way), and whether its client wants a terse answer."""

    event: WireEvent
    peer: tuple[int, int, int, str | None, list[str]] | None = None
    integration: str | None = None
    via: str | None = None
    terse: bool = False


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Queued)


def encode(service: str, envelope: Envelope, offset: float) -> bytes:
    """`envelope` as the inbox keeps it (`ValueError` for an event no way in sends)."""
    assert not isinstance(envelope.event, Removed)
    peer = envelope.peer
    reply = envelope.reply
    return _encoder.encode(
        Queued(
            to_wire((service, envelope.event), offset),
            None
            if peer is None
            else (peer.pid, peer.uid, peer.gid, peer.user, sorted(peer.groups)),
            envelope.integration,
            envelope.via,
            reply is not None and reply.terse,
        )
    )


def decode(data: bytes, offset: float) -> tuple[str | None, Envelope, bool]:
    """The service, envelope (no reply yet) and terseness an inbox event is; `ValueError` if
    it is none."""
    try:
        queued = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    service, event = from_wire(queued.event, offset)
    p = queued.peer
    peer = None if p is None else Peer(p[0], p[1], p[2], p[3], frozenset(p[4]))
    return service, Envelope(event, None, peer, queued.integration, queued.via), queued.terse


def result_of(line: str) -> str:
    """A reply line's result: `ok`, or its error's code (as `Reply.set` is given them)."""
    try:
        reply = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return "internal"
    if not isinstance(reply, dict):
        return "internal"
    if reply.get("ok") is True:
        return "ok"
    error = reply.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else "internal"


def queued_line(service: str, terse: bool) -> bytes:
    """What a client is told of an event stored for an owner that did not answer in time."""
    return ok_reply(queued=True) if terse else ok_reply(service=service, queued=True)


@attrs.define
class _Waiting:
    service: str
    reply: Reply
    deadline: float


@attrs.define
class _Hold:
    """Due timeouts held back for events stored before a shard was adopted: until `until`,
    which each read or hand-over moves on (`FIRST_READ` ahead), never past `latest`."""

    until: float
    latest: float
    last: int = 0
    """The last inbox id of the service's events stored before (`_behind` only)."""

    @classmethod
    def starting(cls, now: float, latest: float, last: int = 0) -> _Hold:
        return cls(min(now + FIRST_READ, latest), latest, last)

    def go_on(self, now: float) -> None:
        self.until = min(now + FIRST_READ, self.latest)


def _could_not(what: str, exc: Exception) -> None:
    """A database that cannot be reached, said in one line (an outage repeats it every poll:
    an operator found the log full of tracebacks); anything else with its traceback (a bug)."""
    if isinstance(exc, StoreError):
        log.error("inbox: %s: %s", what, exc)
    else:
        log.error("inbox: %s", what, exc_info=exc)


@attrs.frozen
class InboxStatistics:
    waiting: int
    """Events of this node waiting for their owner's answer."""
    in_flight: int
    """Inbox events this node took and is deciding."""
    queued: int
    """Answers given as `queued` (no owner in time), since the start."""
    busy: int
    """Events refused `busy` (too many waiting), since the start."""
    handled: int
    """Inbox events this node decided and committed, since the start."""
    poisoned: int
    """Inbox events this node answered with their error after `MAX_ATTEMPTS`, since the start."""


class Inbox:
    """One node's side of the cluster's inbox (see the module's docstring)."""

    def __init__(
        self,
        services: Services,
        cluster: Cluster,
        store: SharedStore,
        owner: Owner,
        offload: Offload,
        clock: Clock,
        *,
        listen: Listen | None = None,
        metrics: Metrics | None = None,
        wait: float = SENDER_WAIT,
        poll: float = POLL,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        """`offload` runs the cluster's and the store's calls (worker threads: not the SQLite
        writer's); `listen` is `Cluster.wait` made awaitable (`listening(cluster)` unless a
        test gives another)."""
        self._services = services
        self._cluster = cluster
        self._store = store
        self._owner = owner
        self._offload = offload
        self._clock = clock
        self._listen_to = listen if listen is not None else listening(cluster)
        self._wait = wait
        self._poll = poll
        self._max_waiting = max_waiting
        self._waiting: dict[int, _Waiting] = {}  # by inbox id, in the order put (and deadline)
        self._putting = 0  # events being stored now, counted against `max_waiting`
        self._something_waits = trio.Event()
        self._taking = trio.Event()  # set: the owner reads the inbox now
        self._in_flight: dict[str, set[int]] = {}  # service -> inbox ids routed, not answered
        self._nursery: trio.Nursery | None = None
        self._queued = self._busy = self._handled = self._poisoned = 0
        self._failures: dict[int, int] = {}  # inbox id -> its failures that count (see above)
        self._not_before: dict[str, float] = {}  # service -> when its failed event is tried
        # Adopted shards not read through yet -> (until when, at the latest): their due
        # timeouts wait (`events_first`).
        self._unread: dict[int, _Hold] = {}
        # Services of adopted shards whose events stored before wait behind their earlier
        # ones: their due timeouts wait too, until the last of those is handed over.
        self._behind: dict[str, _Hold] = {}
        # Events released from flight since the read under way began: a page it returns may
        # have been read before their commit, and holds them still (`_read`).
        self._released: set[int] = set()
        metrics = metrics or Metrics()
        metrics.gauge(
            "pagerd_cluster_inbox_waiting",
            "Events this node put in the inbox whose clients wait for their owner's answer.",
            lambda: len(self._waiting) + self._putting,
        )
        self._put_counter: Counter = metrics.counter(
            "pagerd_cluster_inbox_put_total",
            "Events this node put in the inbox for the owner of their service.",
        )
        self._queued_counter: Counter = metrics.counter(
            "pagerd_cluster_inbox_queued_total",
            "Events answered ok with queued: true (stored, no owner answered within 5 s).",
        )
        self._poisoned_counter: Counter = metrics.counter(
            "pagerd_cluster_inbox_poisoned_total",
            "Inbox events this node answered with their error after they failed"
            f" {MAX_ATTEMPTS} times (a bug, a bad row): see the log for their service and id.",
        )

    def statistics(self) -> InboxStatistics:
        return InboxStatistics(
            len(self._waiting) + self._putting,
            sum(len(ids) for ids in self._in_flight.values()),
            self._queued,
            self._busy,
            self._handled,
            self._poisoned,
        )

    # An `ownership.Adopter`: the inbox of a shard moves with its lease.

    async def adopt(self, shards: frozenset[int]) -> None:
        """Nothing to load: the inbox is read once `shards` count as held (`adopted`)."""
        await trio.lowlevel.checkpoint()

    def adopted(self, shards: frozenset[int]) -> None:
        """This node holds `shards` now: read their inbox at once, not at the next poll, and
        hold their due timeouts back until it is read (`events_first`), for `FIRST_READ` at
        most."""
        now = trio.current_time()
        for shard in shards:
            self._unread[shard] = _Hold.starting(now, now + FIRST_READ_MAX)
        self._taking.set()

    def events_first(self, service: str) -> bool:
        now = trio.current_time()
        shard = shard_of(service)
        unread = self._unread.get(shard)
        if unread is not None and now < unread.until:
            return True  # (kept past its time until the read ends: its services' latest)
        behind = self._behind.get(service)
        if behind is None:
            return False
        if now < behind.until:
            return True
        del self._behind[service]  # no progress in time, or `FIRST_READ_MAX` is over
        return False

    def drop(self, shards: frozenset[int]) -> None:
        """`shards` are given up: nothing to stop here. The owner task takes only the shards
        held at each read, and the events of `shards` it routed are answered `MOVED` by their
        actors (or committed), which settles them, their rows left for the next owner. The
        failures counted are forgotten (kept bounded; an event failing still fails again)."""
        for shard in shards:
            self._unread.pop(shard, None)
        for service in [s for s in self._behind if shard_of(s) in shards]:
            del self._behind[service]
        self._failures.clear()
        self._not_before.clear()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The listener, the owner and the senders' deadlines, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._listen, name="inbox listener")
                nursery.start_soon(self._own, name="inbox owner")
                nursery.start_soon(self._expire, name="inbox deadlines")
                nursery.start_soon(self._poll_answers, name="inbox answers")
                task_status.started()
        finally:
            # A stop: every event waiting is stored, and its client is told so now rather than
            # never (a stop waits for the replies of the events routed).
            waiting, self._waiting = self._waiting, {}
            for each in waiting.values():
                each.reply.set(queued_line(each.service, each.reply.terse), "ok")

    # The sender ---------------------------------------------------------------------------------

    async def divert(self, events: list[tuple[str, Envelope]]) -> list[tuple[str, Envelope]]:
        """Put in the inbox each event of a service this node does not hold (in order); the
        others, to route to the local actors, each with its reply watched for `MOVED`. An
        event taken from the inbox is always decided here (its commit is fenced)."""
        local: list[tuple[str, Envelope]] = []
        elsewhere: list[tuple[str, Envelope]] = []
        for service, envelope in events:
            if envelope.inbox_id is not None:
                local.append((service, envelope))
            elif self._owner.holds(service):
                if envelope.reply is not None and not isinstance(envelope.event, Removed):
                    relay = _Relay(self, service, envelope)
                    envelope = attrs.evolve(envelope, reply=relay)
                local.append((service, envelope))
            elif not isinstance(envelope.event, Removed):  # its owner closes it
                elsewhere.append((service, envelope))
        if elsewhere:
            await self.put_all(elsewhere)
        return local

    async def put(self, service: str, envelope: Envelope) -> None:
        """`put_all` of one event."""
        await self.put_all([(service, envelope)])

    async def put_all(self, events: Sequence[tuple[str, Envelope]]) -> None:
        """Store `events` in the inbox, in one transaction (`Cluster.put_many`: what is routed
        together, an Alertmanager payload or a connection's burst, costs one commit), then wait
        (without blocking the caller) for their owners' answers: see the module's docstring."""
        room = self._max_waiting - len(self._waiting) - self._putting
        accepted: list[tuple[str, Envelope, bytes]] = []
        offset = self._clock.offset()
        for service, envelope in events:
            reply = envelope.reply
            if len(accepted) >= room:
                self._busy += 1
                if reply is not None:
                    message = (
                        f"{self._max_waiting} events wait for their owners' answers: try again"
                    )
                    reply.set(error_reply("busy", message), "busy")
                continue
            try:
                data = encode(service, envelope, offset)
            except ValueError:
                log.exception("inbox: cannot encode an event of service=%s", service)
                if reply is not None:
                    reply.set(error_reply("internal", "internal error"), "internal")
                continue
            accepted.append((service, envelope, data))
        if not accepted:
            await trio.lowlevel.checkpoint()
            return
        at = self._clock.now() + offset
        node = self._owner.node
        items = [(service, data, at) for service, _, data in accepted]
        self._putting += len(accepted)
        try:
            ids = await self._offload(lambda: self._cluster.put_many(node, items))
        except StoreError as exc:
            log.error("inbox: cannot store %d event(s): %s", len(accepted), exc)
            message = f"the database could not record this: {exc}"
            for _, envelope, _ in accepted:
                if envelope.reply is not None:
                    envelope.reply.set(error_reply("unavailable", message), "unavailable")
            return
        finally:
            self._putting -= len(accepted)
        self._put_counter.inc(by=len(accepted))
        deadline = trio.current_time() + self._wait
        for (service, envelope, _), id in zip(accepted, ids, strict=True):
            if envelope.reply is not None:
                self._waiting[id] = _Waiting(service, envelope.reply, deadline)
        self._something_waits.set()

    async def _answered(self, ids: Sequence[int]) -> None:
        """Hand each of `ids` that has an answer now to its client."""
        found = await self._offload(lambda: self._cluster.answers(ids))
        for id, line in found.items():
            waiting = self._waiting.pop(id, None)
            if waiting is not None:
                waiting.reply.set(line.encode() + b"\n", result_of(line))

    async def _expire(self) -> None:
        """Tell each client whose owner did not answer by its deadline that its event is
        queued (after one last look at the answers)."""
        while True:
            if not self._waiting:
                self._something_waits = trio.Event()
                await self._something_waits.wait()
                continue
            first = next(iter(self._waiting.values()))
            await trio.sleep_until(first.deadline)
            now = trio.current_time()
            due = [id for id, waiting in self._waiting.items() if waiting.deadline <= now]
            try:
                await self._answered(due)
            except Exception as exc:
                _could_not("cannot read the answers at their deadline", exc)
            for id in due:
                waiting = self._waiting.pop(id, None)
                if waiting is not None:
                    self._queued += 1
                    self._queued_counter.inc()
                    terse = waiting.reply.terse
                    waiting.reply.set(queued_line(waiting.service, terse), "ok")

    async def _poll_answers(self) -> None:
        """The backstop of the answers' notifications."""
        while True:
            await trio.sleep(self._poll)
            if self._waiting:
                try:
                    await self._answered(list(self._waiting))
                except Exception as exc:
                    _could_not("cannot read the answers", exc)

    async def _listen(self) -> None:
        """The one caller of `Cluster.wait`: inbox notifications of held shards wake the
        owner; answers go to the clients waiting for them."""
        while True:
            try:
                notes = await self._listen_to([INBOX_CHANNEL, ANSWER_CHANNEL], LISTEN)
                held = self._owner.held()
                answered = []
                for channel, payload in notes:
                    if not payload.isdigit():
                        continue
                    if channel == INBOX_CHANNEL and int(payload) in held:
                        self._taking.set()
                    elif channel == ANSWER_CHANNEL and int(payload) in self._waiting:
                        answered.append(int(payload))
                if answered:
                    await self._answered(answered)
            except Exception as exc:
                # The database is down, or the listening connection broke: the polls carry on
                # meanwhile; try again after a pause rather than spin.
                _could_not("cannot listen for notifications", exc)
                await trio.sleep(self._poll)

    # The owner ----------------------------------------------------------------------------------

    async def _own(self) -> None:
        """Take the held shards' inbox whenever woken, and at every poll."""
        while True:
            with trio.move_on_after(self._poll):
                await self._taking.wait()
            self._taking = trio.Event()
            try:
                await self._take()
            except Exception as exc:
                _could_not("cannot take the inbox", exc)

    async def _take(self) -> None:
        held = frozenset(self._owner.held())
        if not held:
            return
        first = frozenset(s for s in held if s in self._unread)
        if first:
            # Adopted: every event stored for them while no node held them, page by page,
            # before their due timeouts (`events_first`), whatever the other shards' backlog
            # (found in review: a take of the oldest 256 of every shard held left an ack out).
            # Each page read holds them a little longer (a storm stored meanwhile takes many).
            # An event left behind its service's earlier ones (in flight) holds that service's
            # timeouts until it is handed over by a later take (found in review: a storm on one
            # service outlasted a fixed wait, and its ack, behind it, lost to its deadline).
            # One read, usually; past a page, a shard at a time: ids are given in the order
            # they commit within a shard only (`Cluster.put`), so a page after the last id read
            # skips none of that shard's, where one across shards could.
            last: dict[str, int] = {}  # service -> its last event left behind
            page, full, _ = await self._read(first, 0)
            for queued in await self._route(page, last):
                last[queued.service] = queued.id
            for shard in sorted(first) if full else ():
                after = 0
                while True:
                    page, full, after = await self._read({shard}, after)
                    for queued in await self._route(page, last):
                        last[queued.service] = queued.id
                    now = trio.current_time()
                    for each in first:
                        if (unread := self._unread.get(each)) is not None:
                            unread.go_on(now)
                    if not full:
                        break
            # Read: the shards are free, but the services left behind (not a shard dropped
            # meanwhile: `drop` took its hold away).
            now = trio.current_time()
            read = {shard: self._unread.pop(shard) for shard in first if shard in self._unread}
            for service, id in last.items():
                if (hold := read.get(shard_of(service))) is not None:
                    self._behind[service] = _Hold.starting(now, hold.latest, id)
        # The services whose events are being decided are skipped: their next events wait for
        # them anyway, and a storm of one must not fill every read and hide the others' (found
        # in review: an adopted storm of 40,000 on one service held back an ack of another
        # service for 10 s, and its deadline went first).
        await self._route((await self._read(held, 0, skip=frozenset(self._in_flight)))[0])

    async def _read(
        self, shards: Collection[int], after: int, skip: Collection[str] = ()
    ) -> tuple[list[stored.Queued], bool, int]:
        """Up to `TAKE` events of `shards` after id `after`, but those answered while the read
        was under way: its rows may predate their commit, and an event handed over again would
        be applied twice (found in review: an alert applied again after a resolve opened a
        second incident). With whether the read was full, and its last id (the next page's
        `after`)."""
        self._released = set()
        page = await self._offload(partial(self._cluster.take, shards, after, TAKE, skip=skip))
        rows = [queued for queued in page if queued.id not in self._released]
        return rows, len(page) == TAKE, page[-1].id if page else after

    async def _route(
        self, taken: Sequence[stored.Queued], left: Collection[str] = ()
    ) -> list[stored.Queued]:
        """Hand the events `taken` to their actors: those not in flight already, of services
        held, each after its service's earlier events; one that cannot be read is answered.
        Those left behind their service's earlier events, to be taken again. `left`: services
        with an event left behind by an earlier page of the same read: their later events stay
        behind too, in order (found in review: a service's first events answered meanwhile let
        a later page's resolve through before the alerts between)."""
        offset = self._clock.offset()
        routed: list[tuple[str, Envelope]] = []
        ids: dict[str, set[int]] = {}
        now = trio.current_time()
        poison: list[tuple[str, int, str]] = []
        alone: set[str] = set()  # services whose first event failed before: tried alone
        behind: list[stored.Queued] = []
        for queued in taken:
            service, id = queued.service, queued.id
            if not self._owner.holds(service):
                continue  # moved on meanwhile
            if service in self._in_flight or service in alone or service in left:
                # After what is in flight (its order), or after its event that failed, alone
                # (another's failure is not its); in flight itself, it was handed over.
                if id not in self._in_flight.get(service, ()):
                    behind.append(queued)
                continue
            if id in self._failures:
                if self._not_before.get(service, now) > now:
                    alone.add(service)  # its next try waits for a poll
                    behind.append(queued)
                    continue
                alone.add(service)
            try:
                _, envelope, terse = decode(queued.event, offset)
            except ValueError as exc:
                # Nothing this version can read (a bad row; a newer node's, in an upgrade
                # left half done): tried again, then answered, so its service's events flow.
                log.error("inbox: cannot read event %d of service=%s: %s", id, service, exc)
                alone.add(service)  # its later events wait behind it
                if self._count_failure(service, id):
                    ids.setdefault(service, set()).add(id)  # in flight until answered
                    poison.append((service, id, f"an event this pagerd cannot read: {exc}"))
                behind.append(queued)
                continue
            reply = _Taken(self, service, id, terse)
            routed.append((service, attrs.evolve(envelope, reply=reply, inbox_id=id)))
            ids.setdefault(service, set()).add(id)
        self._in_flight.update(ids)
        assert self._nursery is not None, "Inbox.run() has not started"
        for service, id, why in poison:
            self._nursery.start_soon(self._poison, service, id, why)
        if routed:
            # Should this fail (a bug), what was handed over stays in flight: a copy taken again
            # while the first is still with its actor could be applied twice.
            await self._services.route(routed)
        if self._behind and routed:
            for service, envelope in routed:
                hold = self._behind.get(service)
                if hold is not None and (envelope.inbox_id or 0) >= hold.last:
                    del self._behind[service]  # the last it had stored before: handed over
            # The backlog goes on, in the order it was stored: every service still waiting for
            # its turn holds on (found in review: one waiting behind another service's older
            # events, handed over the while, saw its hold run out).
            now = trio.current_time()
            for hold in self._behind.values():
                hold.go_on(now)
        return behind

    def _settled(self, service: str, id: int, result: str) -> None:
        """Inbox event `id` of `service` was answered by its actor: committed (its row gone,
        handled), or not (it is taken again, after a pause if the store failed; answered with
        its error once it failed `MAX_ATTEMPTS` times in a way that counts)."""
        if (
            result == "internal"
            and id in self._in_flight.get(service, ())
            and self._count_failure(service, id)
        ):
            assert self._nursery is not None, "Inbox.run() has not started"
            self._nursery.start_soon(self._poison, service, id, "its decision failed")
            return  # in flight until answered: the service's next events wait for it
        self._release(service, id)
        if result in _NOT_HANDLED:
            return  # the poll takes it again: no loop against a store that fails
        self._failures.pop(id, None)
        self._not_before.pop(service, None)
        self._handled += 1
        self._taking.set()  # the service's next events, if any

    def _release(self, service: str, id: int) -> None:
        self._released.add(id)
        ids = self._in_flight.get(service)
        if ids is None:
            return
        ids.discard(id)
        if not ids:
            del self._in_flight[service]

    def _count_failure(self, service: str, id: int) -> bool:
        """Count a failure of `id` that no outage explains: whether it is its last."""
        count = self._failures[id] = self._failures.get(id, 0) + 1
        self._not_before[service] = trio.current_time() + self._poll
        return count >= MAX_ATTEMPTS

    async def _poison(self, service: str, id: int, why: str) -> None:
        """Answer inbox event `id` with its error (fenced by its shard, as any answer), so
        that the events of `service` after it flow; it stays in flight until then."""
        attempts = self._failures.get(id, MAX_ATTEMPTS)
        line = error_reply("internal", f"not handled after {attempts} attempts: {why}")
        try:
            await self._services.answer_inbox(service, id, line.decode().rstrip("\n"))
        except Exception as exc:  # not written (fenced, the database): taken again later
            log.error("inbox: cannot answer poisoned event %d of service=%s: %s", id, service, exc)
        else:
            self._poisoned += 1
            self._poisoned_counter.inc()
            self._failures.pop(id, None)
            self._not_before.pop(service, None)
            log.error(
                "inbox: event %d of service=%s answered with its error after %d attempts (%s);"
                " the service's later events go on",
                id,
                service,
                attempts,
                why,
            )
        finally:
            self._release(service, id)
            self._taking.set()

    def _moved(self, service: str, envelope: Envelope) -> None:
        """An event routed here came back `MOVED`: its shard's new owner gets it."""
        assert self._nursery is not None, "Inbox.run() has not started"
        self._nursery.start_soon(self.put, service, envelope)

    # Reads of services held elsewhere ------------------------------------------------------------

    async def state(self, service: str) -> tuple[ServiceState, int | None]:
        """`service`'s last committed state, and its open incident's failed deliveries: from
        memory if this node holds it (None: the local outbox counts them), else from the store
        (other nodes' services are not in memory)."""
        if self._owner.holds(service):
            return self._services.state(service), None
        shard = shard_of(service)
        states = await self._offload(lambda: self._store.load_states(shards={shard}))
        state = states.get(service) or ServiceState(service)
        return state, await self._failed(state)

    def holds(self, service: str) -> bool:
        """Whether this node decides for `service` now (it holds its shard)."""
        return self._owner.holds(service)

    async def stored_states(self, names: Collection[str]) -> dict[str, ServiceState]:
        """The committed states of those of `names` this node does not hold (one read of
        their shards): for the silences of the whole cluster."""
        elsewhere = [name for name in names if not self._owner.holds(name)]
        if not elsewhere:
            return {}
        shards = {shard_of(name) for name in elsewhere}
        states = await self._offload(lambda: self._store.load_states(shards=shards))
        return {name: states[name] for name in elsewhere if name in states}

    async def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """Where each of `sources` fires, as the store has it (every node's services)."""
        asked = list(sources)
        return await self._offload(lambda: self._store.firing_services(asked))

    async def silence_service(self, id: int) -> str | None:
        """The service of silence `id`, as the store has it (every node's services)."""
        return await self._offload(lambda: self._store.silence_service(id))

    async def _failed(self, state: ServiceState) -> int:
        if state.incident is None:
            return 0
        counts = await self._offload(self._store.failed_counts)
        return counts.get((state.name, state.incident.number), 0)

    async def states(
        self, names: Collection[str]
    ) -> list[tuple[ServiceState, int | None, dict[str, Any]]]:
        """Each of `names` (the configured services), its failed deliveries (as `state`) and
        who owns it (`ownership.owner_object`), read from the store for the whole cluster."""
        stored, counts, leases = await self._offload(
            lambda: (
                self._store.load_states(),
                self._store.failed_counts(),
                self._cluster.leases(),
            )
        )
        by_shard = {lease.shard: lease for lease in leases}
        held, node = self._owner.held(), self._owner.node
        found: list[tuple[ServiceState, int | None, dict[str, Any]]] = []
        for name in names:
            owner = owner_object(name, node, held, by_shard)
            if self._owner.holds(name):
                found.append((self._services.state(name), None, owner))
                continue
            state = stored.get(name) or ServiceState(name)
            number = state.incident.number if state.incident is not None else 0
            found.append((state, counts.get((name, number), 0), owner))
        return found


class _Relay:
    """The reply of an event routed to a local actor on a node of a cluster: passed on as it
    is, unless it comes back `MOVED` (the shard was dropped while it waited): then the event
    goes to the shard's new owner through the inbox, and the client waits for that answer."""

    __slots__ = ("_envelope", "_inbox", "_service", "done")

    def __init__(self, inbox: Inbox, service: str, envelope: Envelope) -> None:
        self._inbox = inbox
        self._service = service
        self._envelope = envelope
        self.done = False

    @property
    def terse(self) -> bool:
        reply = self._envelope.reply
        return reply is not None and reply.terse

    def set(self, line: bytes, result: str = "ok") -> None:
        self.done = True
        if result == MOVED:
            self._inbox._moved(self._service, self._envelope)
            return
        assert self._envelope.reply is not None
        self._envelope.reply.set(line, result)


class _Taken:
    """The reply of an inbox event routed to its actor: its client is answered through the
    store (`Handled`); this only says the event is settled here."""

    __slots__ = ("_id", "_inbox", "_service", "done", "terse")

    def __init__(self, inbox: Inbox, service: str, id: int, terse: bool) -> None:
        self._inbox = inbox
        self._service = service
        self._id = id
        self.terse = terse
        self.done = False

    def set(self, line: bytes, result: str = "ok") -> None:
        self.done = True
        self._inbox._settled(self._service, self._id, result)
