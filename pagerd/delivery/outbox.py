"""Delivery of committed notifications, apart from the actors so that no actor waits on it.

Every notification is first an outbox row, written in the same transaction as the decision that
made it. Here, each channel has its own workers (at most `concurrency` sends at once) and its own
rate limit; a worker takes a notification, sends it through the channel's transport, and records
the attempt durably before taking the next one. A transient failure is retried later with
exponential back-off and jitter (or after the provider's `Retry-After`), a permanent one is not.
A retry waits in a timer heap, not in a worker, so one failing target never holds up another.

A crash after a provider took a notification and before its attempt is recorded re-sends it on
restart: at least once, never zero times; exactly once in every other case.

Memory is bounded: past `capacity` notifications in hand on one channel, that channel's new ones
stay only in the database and are read back from there (that channel's rows only) once its
backlog has halved. Each channel on its own: one channel's backlog never holds back another's.
Retries waiting for their time are bounded apart (`capacity` per channel, beyond that they wait
in the database and are read back at their time, at most `SPILL_POLL` late): they never take the
room of ready work, so a dead target's retries never hold up a new page on the same channel.
A waiting retry whose incident is acknowledged or closed leaves at once (see `reconsider`).

With several nodes (`own`), a node sends only for the shards it holds: before each send it asks
(a check in memory, by its own clock), each send runs under the shard's deadline, reads back
only its shards' rows, and a shard adopted brings its undelivered notifications (`adopt`: those
its previous owner may have been sending when it stopped are the ambiguous window, counted);
a shard dropped takes its queued and waiting notifications away and cancels its sends (`drop`),
but for a shard dropped only to be reloaded, its lease kept: its sends go on. An attempt's
record is written under the lease its send started under, or not at all.
"""

from __future__ import annotations

import logging
import math
import random
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Final, Literal, Protocol

import attrs
import trio

from pager.domain import Notify, ServiceState
from pager.ports import DeliveryError, PermanentError, TransientError, Transport
from pager.shards import shard_of
from pager.timefmt import isoformat
from pagerd.config.channels import Channel
from pagerd.delivery.ratelimit import TokenBucket
from pagerd.delivery.redact import Redactor, channel_secrets, for_target
from pagerd.operations.metrics import Metrics
from pagerd.storage.cluster import Fenced
from pagerd.storage.commits import Committer, Term, WriteRefused
from pagerd.storage.offload import Offload
from pagerd.storage.port import Attempt, Storage, StoreError, Undelivered
from pagerd.timing.clock import Clock
from pagerd.timing.timers import Backoff, Timers, backoff_ceiling

log = logging.getLogger("pagerd.outbox")

RECORD_RETRY_MIN: Final = 0.5
RECORD_RETRY_MAX: Final = 30.0
MAX_PROVIDER_ID: Final = 200
MAX_TRACEBACK: Final = 8000
# Beyond the transport's own timeout: a send that still has not returned is abandoned as failed.
SEND_GRACE: Final = 5.0
# Retries kept only in the database (past the bound) are looked for at most this often.
SPILL_POLL: Final = 1.0


class Sender(Protocol):
    """Which services this node sends for (`pagerd.engine.ownership.Ownership`)."""

    def holds(self, service: str) -> bool: ...

    def deadline(self, service: str) -> float:
        """The trio time this node stops sending for `service` at."""
        ...

    def held(self) -> dict[int, int]: ...

    def terms(self, shards: Collection[int]) -> dict[int, Term]: ...

    def reloading(self, shard: int) -> bool:
        """Whether `shard` is dropped only to be loaded again, its lease kept (a write of
        unknown outcome): its sends in progress go on."""
        ...

    def carried(self, shard: int, term: Term) -> Term:
        """A send's `term` carried through this node's own reloads of `shard` since."""
        ...

    def count_adopted(self, count: int) -> None: ...


@attrs.define
class _Pending:
    notify: Notify
    decided_at: float
    attempts: int = 0
    settled: bool = False  # sent or failed for good: never to be tried again
    waiting: _Waiting | None = None  # its entry in the retry heap while it waits there
    term: Term | None = None  # with several nodes: the lease its send in progress started under


@attrs.define(eq=False)
class _Waiting:
    """One retry heap entry; moved out early (`reconsider`), it stays behind, dead."""

    pending: _Pending
    live: bool = True


@attrs.frozen
class LaneSpec:
    """How one channel is delivered: its settings, its transport, and how to release it."""

    channel: Channel
    transport: Transport
    close: Callable[[], Awaitable[None]] | None = None


@attrs.define
class _Lane:
    """One channel's transport, rate limit and queue of notifications ready to send."""

    spec: LaneSpec
    bucket: TokenBucket
    redactor: Redactor
    ready: deque[_Pending] = attrs.Factory(deque)
    waiting: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    workers: int = 0
    retired: bool = False  # replaced by a reload: its workers finish their send and leave

    @property
    def channel(self) -> Channel:
        return self.spec.channel


@attrs.frozen
class OutboxStatistics:
    in_hand: int
    ready: int
    retrying: int
    sent: int
    retried: int
    failed: int
    errors: int = 0  # unexpected errors in the outbox's own tasks, contained


class Outbox:
    def __init__(
        self,
        store: Storage,
        committer: Committer,
        lanes: Mapping[str, LaneSpec],
        offload: Offload,
        clock: Clock,
        capacity: int = 10_000,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._committer = committer
        self._offload = offload
        self._clock = clock
        self._capacity = capacity
        self._rng = rng or random.Random()
        self._metrics = metrics or Metrics()
        self._lanes = {name: _lane(spec) for name, spec in lanes.items()}
        self._nursery: trio.Nursery | None = None
        self._state_of: Callable[[str], ServiceState] | None = None
        self._quiet_until: Callable[[ServiceState, float], float | None] | None = None
        self._stopping = False
        self._sending = 0  # attempts between taking a notification and recording its outcome
        self._idle = trio.Event()
        self._later: Timers[_Waiting] = Timers(clock)  # retries, waiting for their time
        self._dead = 0  # entries of `_later` moved out early
        self._known: set[str] = set()  # in hand (ready, sending or waiting): never taken twice
        self._in_hand: Counter[str] = Counter()  # of `_known` ready or sending, by channel
        self._waiting: Counter[str] = Counter()  # of `_known` waiting in `_later`, by channel
        self._waiting_of: dict[str, dict[str, _Pending]] = {}  # by service, then id
        # Channels with retries only in the database (past the bound), and when to look for
        # them: at start, every one (retries recorded before the restart).
        self._spilled: dict[str, float] = dict.fromkeys(self._lanes, -math.inf)
        # Channels with undelivered rows only in the database: at start, every one.
        self._in_database_only: set[str] = set(self._lanes)
        self._reading = False
        self._finished_while_reading: set[str] = set()
        self._read_back_wanted = trio.Event()
        self._failed: Counter[tuple[str, int]] = Counter()
        self._sent = self._retried = self._failed_total = self._errors = 0
        self._ownership: Sender | None = None
        self._sends: dict[str, trio.CancelScope] = {}  # by id, with several nodes
        self._adopting: list[Undelivered] = []  # read by `adopt`, taken by `adopted`
        # Ids of the sends that went on through a reload of their shard: its adoption may read
        # them as undelivered (their record not yet written), and must not take them again.
        self._carried: dict[str, int] = {}  # id -> shard

    # Several nodes. ---------------------------------------------------------------------

    def own(self, ownership: Sender) -> None:
        """Send only for the services `ownership` holds (several nodes share the store)."""
        self._ownership = ownership

    def _shards(self) -> dict[str, Collection[int]]:
        """What a read of undelivered rows passes: only this node's shards, if it has some."""
        return {} if self._ownership is None else {"shards": frozenset(self._ownership.held())}

    async def adopt(self, shards: frozenset[int]) -> None:
        """Take up the undelivered notifications of `shards`, just leased. Those the previous
        owner was sending when it stopped may be sent twice (each keeps its idempotency key):
        the documented ambiguous window, counted (`count_adopted`)."""
        limit = self._capacity
        only: dict[str, Collection[int]] = {"shards": shards}  # the shared store's reads take it
        rows = await self._offload(
            lambda: self._store.undelivered(limit, None, due_by=None, **only)
        )
        self._adopting.extend(rows)
        if len(rows) >= limit:  # the rest is read back as the database's backlog is
            self._in_database_only |= set(self._lanes)

    def adopted(self, shards: frozenset[int]) -> None:
        """`shards` are held now: send what `adopt` read of them (not before: a send checks
        that the shard is held, and would forget it)."""
        rows: list[Undelivered] = []
        kept: list[Undelivered] = []
        for row in self._adopting:
            (rows if shard_of(row.notify.service) in shards else kept).append(row)
        self._adopting = kept
        carried = self._carried
        self._carried = {id: s for id, s in carried.items() if s not in shards}
        fresh = [r for r in rows if r.notify.id not in self._known and r.notify.id not in carried]
        for row in fresh:
            self._take(_Pending(row.notify, row.created_at, row.attempts), row.next_attempt_at)
        if fresh and self._ownership is not None:
            self._ownership.count_adopted(len(fresh))
        if self._in_database_only:
            self._read_back_wanted.set()

    def drop(self, shards: Collection[int]) -> None:
        """Forget at once the notifications of `shards` (dropped: another node sends them now),
        ready or waiting, and cancel their sends in progress, but those of a shard dropped only
        to be reloaded (`Sender.reloading`): its lease is kept, and they go on."""

        def dropped(n: Notify) -> bool:
            return shard_of(n.service) in shards

        reloaded = {
            s for s in shards if self._ownership is not None and self._ownership.reloading(s)
        }
        self._carried = {
            id: s for id, s in self._carried.items() if s not in shards or s in reloaded
        }

        self._adopting = [row for row in self._adopting if not dropped(row.notify)]
        for lane in self._lanes.values():
            gone = [p for p in lane.ready if dropped(p.notify)]
            if gone:
                lane.ready = deque(p for p in lane.ready if not dropped(p.notify))
                for pending in gone:
                    self._forget(pending.notify)
        for service in [s for s in self._waiting_of if shard_of(s) in shards]:
            for pending in list(self._waiting_of[service].values()):
                self._unwait(pending)
                self._known.discard(pending.notify.id)
        for scope_id, scope in list(self._sends.items()):
            shard_text, _, id = scope_id.partition("#")
            shard = int(shard_text)
            if shard not in shards:
                continue
            if shard in reloaded:
                # Only the states in memory are reloaded; the lease stays, so nobody else
                # sends it, and its record is fenced by that lease. Cut short, it would be
                # sent again once adopted (a second page). It goes on, and the adoption
                # leaves its row alone (`_carried`), finished by then or not.
                self._carried[id] = shard
            else:
                scope.cancel()

    def _sends_for(self, n: Notify) -> bool:
        """Whether this node may send `n` now: it holds its service (always, alone)."""
        return self._ownership is None or self._ownership.holds(n.service)

    # What the rest of the daemon calls. -------------------------------------------------

    def add(self, notifications: Iterable[Notify]) -> None:
        """Take committed notifications for delivery; never blocks."""
        now = self._clock.now()
        origin = self._store.origin  # what the commit stored with them (`Notify.key`)
        for n in notifications:
            # A delayed step of a person's rule waits for its time as a retry does: in the
            # retry heap (or in the database past its bound), cancelled if the incident is
            # acknowledged or closed first (`reconsider`), or if the service is silenced when
            # it comes due (`watch`).
            self._take(_Pending(attrs.evolve(n, origin=origin), now), n.not_before)

    def watch(
        self,
        state_of: Callable[[str], ServiceState],
        quiet_until: Callable[[ServiceState, float], float | None] | None = None,
    ) -> None:
        """Look up each service's committed state before every attempt (see `cancelled_by`),
        and, with `quiet_until` (when the quiet in force on a service at a time of pagerd's
        frame ends, None if none is: its silences and maintenance windows), whether a
        delayed step comes due while the service is silenced (see `silenced_step`)."""
        self._state_of = state_of
        self._quiet_until = quiet_until

    async def _cancel_if_unwanted(self, pending: _Pending) -> bool:
        """Record `pending` as cancelled if its incident no longer wants it (see `cancelled_by`),
        or if it is a delayed step that came due during a silence (see `silenced_step`)."""
        if self._state_of is None:
            return False
        n = pending.notify
        state = self._state_of(n.service)
        reason = cancelled_by(state, n)
        if reason is None and self._quiet_until is not None:
            until = silenced_step(state, n, self._clock.now(), self._quiet_until)
            if until is not None:
                reason = (
                    f"service silenced until {isoformat(self._clock.shown(until))}: a delayed"
                    " step is not sent during a silence or maintenance window"
                )
        if reason is None:
            return False
        await self._finish(pending, "cancelled", None, reason)
        return True

    def reconsider(self, services: Iterable[str]) -> None:
        """After a commit: the waiting retries of `services` that their incident no longer wants
        (acknowledged, closed) leave now, recorded as cancelled, not at their retry time."""
        if self._state_of is None:
            return
        for service in services:
            waiting = self._waiting_of.get(service)
            if not waiting:
                continue
            state = self._state_of(service)
            for pending in [p for p in waiting.values() if cancelled_by(state, p.notify)]:
                self._unwait(pending)
                channel = pending.notify.target.channel
                self._in_hand[channel] += 1
                lane = self._lanes[channel]
                lane.ready.appendleft(pending)  # a cancellation only: no send, no wait
                lane.waiting.unpark()
        if self._dead > len(self._later) // 2 + 64:
            self._later.keep(lambda entry: entry.live)
            self._dead = 0

    def failed_deliveries(self, service: str, incident: int) -> int:
        return self._failed[(service, incident)]

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            in_hand=len(self._known),
            ready=sum(len(lane.ready) for lane in self._lanes.values()),
            retrying=sum(self._waiting.values()),
            sent=self._sent,
            retried=self._retried,
            failed=self._failed_total,
            errors=self._errors,
        )

    async def run(self) -> None:
        """Deliver until cancelled. Nothing that goes wrong in here ends it (see `_contain`)."""
        # Counted before any delivery starts: a failure recorded meanwhile would be counted twice.
        await self._load_failed_counts()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._read_back_loop, name="outbox read-back")
            nursery.start_soon(self._retry_loop, name="outbox retries")
            nursery.start_soon(self._settle_unknown_channels, name="outbox unknown channels")
            for lane in self._lanes.values():
                self._start_workers(lane)

    async def drain(self) -> None:
        """Stop starting sends, and return once every send in progress has finished and its
        outcome is recorded (a clean stop: cancelled mid-send, it would be sent again after the
        restart). What is not started stays in the database for the next start. The caller
        bounds the wait, and must keep the committer running meanwhile."""
        self._stopping = True
        for lane in self._lanes.values():
            lane.waiting.unpark_all()
        if self._sending:
            self._idle = trio.Event()
            await self._idle.wait()
        else:
            await trio.lowlevel.checkpoint()

    @property
    def stopping(self) -> bool:
        """Whether `drain` began: no send starts any more."""
        return self._stopping

    def lanes(self) -> dict[str, LaneSpec]:
        return {name: lane.spec for name, lane in self._lanes.items()}

    def replace_lanes(self, lanes: Mapping[str, LaneSpec]) -> None:
        """Deliver through new lanes from now on (a reload). Notifications waiting in a replaced
        lane move to its successor; a send in progress finishes first, then the old lane's
        transport is closed."""
        for name, spec in lanes.items():
            old = self._lanes[name]
            if old.spec == spec:
                continue
            new = _lane(spec)
            new.ready, old.ready = old.ready, deque()
            old.retired = True
            old.waiting.unpark_all()
            self._lanes[name] = new
            self._start_workers(new)
            if old.workers == 0:
                self._close(old)

    def _start_workers(self, lane: _Lane) -> None:
        assert self._nursery is not None
        for i in range(lane.channel.concurrency):
            lane.workers += 1
            self._nursery.start_soon(self._worker, lane, name=f"outbox {lane.channel.name} {i}")

    def _close(self, lane: _Lane) -> None:
        if lane.spec.close is not None and self._nursery is not None:
            self._nursery.start_soon(self._closing, lane.spec.close)

    async def _closing(self, close: Callable[[], Awaitable[None]]) -> None:
        try:
            await close()
        except Exception:
            self._contain("close")

    def _contain(self, task: str) -> None:
        """An unexpected exception (a bug) in one of delivery's own tasks: logged with its
        traceback and counted, never raised. Raised, it would end the outbox and with it the
        daemon, and a restart would meet the same row and die again: paging stops for good."""
        log.exception("outbox %s failed unexpectedly; carrying on", task)
        self._errors += 1
        self._metrics.outbox_errors.inc(task)

    async def _load_failed_counts(self) -> None:
        """The open incidents' failed deliveries, for `pager status`; a bug here costs the
        counts, never the delivery."""
        backoff = Backoff(RECORD_RETRY_MIN, RECORD_RETRY_MAX)
        while True:
            try:
                self._failed.update(await self._offload(self._store.failed_counts))
                return
            except StoreError as exc:
                log.error("cannot count failed deliveries, retrying: %s", exc)
            except Exception:
                self._contain("failed counts")
                return
            await backoff.wait()

    async def _settle_unknown_channels(self) -> None:
        """Once, at start: settle the undelivered rows of a channel this pagerd has no lane for
        (a newer pagerd wrote them, before a downgrade; or a hand's edit). No lane reads them
        back, so they would stay pending for ever, unseen, and keep their incident from being
        pruned: each is recorded as failed, with the reason, where `pager status` and the
        history show it (or as cancelled, if its incident no longer wants it)."""
        backoff = Backoff(RECORD_RETRY_MIN, RECORD_RETRY_MAX)
        known = sorted(self._lanes)
        while True:
            try:
                rows = await self._offload(
                    lambda: self._store.undelivered_elsewhere(known, self._capacity)
                )
                for stored_id, row in rows:
                    await self._settle_unknown(stored_id, row.notify, known)
                if len(rows) < self._capacity:
                    return
                backoff.reset()
                continue
            except StoreError as exc:
                log.error("cannot read undelivered notifications, retrying: %s", exc)
            except Exception:
                self._contain("unknown channels")
            await backoff.wait()

    async def _settle_unknown(self, stored_id: str, n: Notify, known: list[str]) -> None:
        reason = None
        if self._state_of is not None:
            reason = cancelled_by(self._state_of(n.service), n)
        outcome: Literal["failed", "cancelled"] = "cancelled" if reason else "failed"
        if not reason:
            reason = (
                f"channel {n.target.channel!r} is unknown to this pagerd (it knows "
                f"{', '.join(known)}): written by a newer version? Not sent"
            )
        # By the id it was stored under: this pagerd does not make ids for such targets.
        await self._record(Attempt(stored_id, self._clock.now(), outcome, None, reason), n.service)
        self._metrics.notifications.inc(n.target.channel, outcome)
        log_at = logging.INFO if outcome == "cancelled" else logging.ERROR
        log.log(log_at, "delivery %s %s: %s", outcome, stored_id, reason)
        if outcome == "failed":
            self._failed_total += 1
            self._failed[(n.service, n.incident)] += 1

    # Intake. ----------------------------------------------------------------------------

    def _take(self, pending: _Pending, due: float | None = None) -> None:
        n = pending.notify
        if n.id in self._known:
            return
        channel = n.target.channel
        if due is not None and due > self._clock.now():
            self._known.add(n.id)
            self._wait(pending, due)
            return
        if self._in_hand[channel] >= self._capacity:
            # Per channel: one channel's backlog must not push another's pages to the database,
            # where they would wait behind it (a level-2 SMS 12 s late behind a storm of email).
            self._in_database_only.add(channel)
            return
        self._known.add(n.id)
        self._in_hand[channel] += 1
        self._ready(pending)

    def _wait(self, pending: _Pending, due: float) -> None:
        """Into the retry heap (`pending` is known, not counted in hand): or, past the bound,
        only in the database, where its retry time is recorded, read back then."""
        n = pending.notify
        channel = n.target.channel
        if self._waiting[channel] >= self._capacity:
            self._known.discard(n.id)
            self._spilled[channel] = min(self._spilled.get(channel, math.inf), due)
            self._read_back_wanted.set()  # to wake at its time
            return
        self._waiting[channel] += 1
        entry = _Waiting(pending)
        pending.waiting = entry
        self._waiting_of.setdefault(n.service, {})[n.id] = pending
        self._later.push(due, entry)

    def _unwait(self, pending: _Pending) -> None:
        """Out of the retry heap's count (its entry, if still in the heap, is left dead)."""
        n = pending.notify
        assert pending.waiting is not None
        if pending.waiting.live:
            pending.waiting.live = False
            self._dead += 1
        pending.waiting = None
        self._waiting[n.target.channel] -= 1
        of_service = self._waiting_of[n.service]
        del of_service[n.id]
        if not of_service:
            del self._waiting_of[n.service]

    def _ready(self, pending: _Pending) -> None:
        lane = self._lanes[pending.notify.target.channel]
        lane.ready.append(pending)
        lane.waiting.unpark()

    # Delivery. --------------------------------------------------------------------------

    async def _worker(self, lane: _Lane) -> None:
        try:
            while not lane.retired:
                if not lane.ready or self._stopping:
                    await lane.waiting.park()
                    continue
                pending = lane.ready.popleft()
                self._sending += 1
                try:
                    if not self._sends_for(pending.notify):
                        self._forget(pending.notify)  # its shard went: its new owner sends it
                        continue
                    if await self._cancel_if_unwanted(pending):
                        continue
                    await lane.bucket.acquire()
                    if self._stopping:
                        continue  # not started: it stays in the database for the next start
                    # Again after the rate limit's wait, which can be long (`1/h`).
                    if not self._sends_for(pending.notify):
                        self._forget(pending.notify)
                        continue
                    if await self._cancel_if_unwanted(pending):
                        continue
                    if self._ownership is None:
                        await self._attempt(lane, pending)
                    else:
                        await self._owned_attempt(lane, pending, self._ownership)
                except Exception:
                    # Not the transport's failure (that is an outcome, see `_attempt`) but a bug
                    # of ours: the notification stays in hand and is tried again later, unless
                    # its outcome was already recorded.
                    self._contain("worker")
                    if pending.settled:
                        self._forget(pending.notify)
                    elif pending.waiting is None:
                        self._in_hand[pending.notify.target.channel] -= 1
                        self._wait(pending, self._clock.now() + RECORD_RETRY_MAX)
                finally:
                    self._sending -= 1
                    if self._sending == 0:
                        self._idle.set()
        finally:
            lane.workers -= 1
        if lane.workers == 0:
            self._close(lane)

    async def _owned_attempt(self, lane: _Lane, pending: _Pending, ownership: Sender) -> None:
        """`_attempt`, with several nodes: no longer than this node holds the service's shard
        (its deadline by this node's clock), and cancelled if the shard is dropped first. A
        send cut short is forgotten here: the new owner sends it (the ambiguous window)."""
        n = pending.notify
        shard = shard_of(n.service)
        key = f"{shard}#{n.id}"
        held = ownership.terms((shard,)).get(shard)
        # Its record is written under the lease the send started under, or not at all: the
        # lease alone (not the adoption), since a reload keeps the lease and this send.
        pending.term = None if held is None else Term(held.epoch)
        with trio.CancelScope(deadline=ownership.deadline(n.service)) as scope:
            self._sends[key] = scope
            try:
                await self._attempt(lane, pending)
            finally:
                del self._sends[key]
                pending.term = None
        if scope.cancelled_caught:
            self._carried.pop(n.id, None)  # not sent, not recorded: the adoption takes it
            log.warning(
                "delivery cut short service=%s incident=%s level=%d target=%s: this node no"
                " longer owns the service; its new owner sends it",
                n.service, n.incident_id, n.level, n.target,
            )  # fmt: skip
            if pending.waiting is not None:
                self._unwait(pending)
                self._known.discard(n.id)
            else:
                self._forget(n)

    async def _attempt(self, lane: _Lane, pending: _Pending) -> None:
        n = pending.notify
        channel = lane.channel
        try:
            with trio.fail_after(channel.timeout + SEND_GRACE):
                # Its times as the wall clock shows them: they are in the frame (`Clock.offset`).
                # Its links name the incident by the stored time, which they are compared with.
                shown = attrs.evolve(
                    n, opened_at=self._clock.shown(n.opened), incident_opened_at=n.opened
                )
                provider_id = await lane.spec.transport.send(shown)
        except trio.TooSlowError:
            error: DeliveryError = TransientError(f"no answer within {channel.timeout:g}s")
        except DeliveryError as exc:
            error = exc
        except UnicodeError as exc:
            # Text that cannot be encoded for this provider: no retry can change that.
            error = PermanentError(f"cannot encode for {channel.transport}: {type(exc).__name__}")
        except BaseException as exc:  # a bug in a transport: log it, keep the page alive
            if _must_propagate(exc):
                raise
            # Its traceback may quote what it was sending (a URL, a header): redacted too.
            log.error(
                "transport %s failed unexpectedly: %s",
                channel.transport,
                _redactor(lane, n).clean(traceback.format_exc(), MAX_TRACEBACK),
            )
            error = TransientError(f"internal error in transport: {type(exc).__name__}")
        else:
            if provider_id is not None:
                provider_id = _redactor(lane, n).clean(provider_id, MAX_PROVIDER_ID)
            log.info(
                "notified service=%s incident=%s level=%d round=%d target=%s provider_id=%s",
                n.service, n.incident_id, n.level, n.round, n.target, provider_id,
            )  # fmt: skip
            await self._finish(pending, "sent", provider_id, None)
            return
        # What the provider said goes to the history, `pager status` and the log: without the
        # secrets it may echo (see `pagerd.redact`).
        said = _redactor(lane, n).clean(error.reason)
        attempts = pending.attempts + 1
        if isinstance(error, PermanentError) or attempts >= channel.max_attempts:
            reason = said
            if not isinstance(error, PermanentError):
                reason = f"gave up after {attempts} attempts: {reason}"
            log.error(
                "delivery failed service=%s incident=%s level=%d target=%s: %s",
                n.service, n.incident_id, n.level, n.target, reason,
            )  # fmt: skip
            await self._finish(pending, "failed", None, reason)
            return
        delay = self._backoff(channel, attempts, error)
        # Undelivered still: if it went on through a reload, the adoption may take it (a
        # copy in hand is skipped by `_known`).
        self._carried.pop(n.id, None)
        log.warning(
            "delivery will be retried in %.1fs service=%s incident=%s level=%d target=%s: %s",
            delay, n.service, n.incident_id, n.level, n.target, said,
        )  # fmt: skip
        due = self._clock.now() + delay
        attempt = Attempt(n.id, self._clock.now(), "retrying", None, said, due)
        await self._record(attempt, n.service, pending.term)
        self._retried += 1
        self._metrics.notifications.inc(channel.name, "retrying")
        pending.attempts = attempts
        # No longer ready work: it waits apart, and its room goes to what is ready.
        self._in_hand[channel.name] -= 1
        self._wait(pending, due)
        if self._read_back_due():
            self._read_back_wanted.set()

    def _backoff(self, channel: Channel, attempts: int, error: DeliveryError) -> float:
        ceiling = backoff_ceiling(channel.retry_initial, channel.retry_max, attempts)
        delay = self._rng.uniform(ceiling / 2, ceiling)  # jitter: a storm's retries spread out
        if isinstance(error, TransientError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay

    async def _finish(
        self,
        pending: _Pending,
        outcome: Literal["sent", "failed", "cancelled"],
        provider_id: str | None,
        error: str | None,
    ) -> None:
        n = pending.notify
        now = self._clock.now()
        pending.settled = True
        await self._record(Attempt(n.id, now, outcome, provider_id, error), n.service, pending.term)
        self._metrics.notifications.inc(n.target.channel, outcome)
        if outcome == "sent":
            self._sent += 1
            self._metrics.delivery_seconds.observe(now - pending.decided_at)
        elif outcome == "cancelled":
            log.info(
                "delivery cancelled service=%s incident=%s level=%d target=%s: %s",
                n.service, n.incident_id, n.level, n.target, error,
            )  # fmt: skip
        else:
            self._failed_total += 1
            self._failed[(n.service, n.incident)] += 1
        self._forget(n)
        if self._reading:
            self._finished_while_reading.add(n.id)

    def _forget(self, n: Notify) -> None:
        if n.id not in self._known:
            return
        self._known.discard(n.id)
        self._in_hand[n.target.channel] -= 1
        if self._read_back_due():
            self._read_back_wanted.set()

    def _read_back_due(self) -> list[str]:
        """The channels whose rows wait in the database and that have room for them: new
        rows, or retries kept only there whose time has come."""
        now = self._clock.now()
        wanted = self._in_database_only | {c for c, t in self._spilled.items() if t <= now}
        return [c for c in wanted if self._in_hand[c] <= self._capacity // 2]

    async def _record(self, attempt: Attempt, service: str, term: Term | None = None) -> None:
        """`term`: the lease of `service`'s shard its send started under (several nodes); None:
        the lease held now (nothing was sent since it was checked)."""
        # The send already happened: retry only the record, or a failing disk would send twice.
        backoff = Backoff(RECORD_RETRY_MIN, RECORD_RETRY_MAX)
        shard = shard_of(service)
        terms: dict[int, Term] = {}
        if self._ownership is not None:
            if term is None:
                now = self._ownership.terms((shard,)).get(shard)
                term = None if now is None else Term(now.epoch)
            if term is not None:
                terms[shard] = term
        while True:
            try:
                if self._ownership is None:
                    await self._committer.commit([attempt])
                else:
                    if term is not None:  # a reload of this node's may have raised its epoch
                        terms[shard] = term = self._ownership.carried(shard, term)
                    await self._committer.commit([attempt], shards=(shard,), terms=terms)
                return
            except Fenced as exc:
                ownership = self._ownership
                if (
                    term is not None
                    and ownership is not None
                    and (ownership.reloading(shard) or ownership.carried(shard, term) != term)
                ):
                    # Refused for this node's own reload, which raises (or raised) the epoch:
                    # written under the new one once known (the loop's `carried`), not given up.
                    await backoff.wait()
                    continue
                # The service's shard is another node's now: its record is that node's to
                # make (it sends the notification again if this one's outcome is not there).
                log.warning("delivery of %s not recorded here: %s", attempt.id, exc)
                return
            except WriteRefused as exc:
                # Not the disk: the same row would be refused for ever, and this worker with
                # it. Without the provider's words it is stored; if even that is refused, the
                # notification stays as the database has it (sent again after a restart, at
                # worst), rather than hold a worker for ever.
                plain = attrs.evolve(
                    attempt,
                    provider_id=None if attempt.provider_id is None else "(not storable)",
                    error=None if attempt.error is None else "(the answer could not be stored)",
                )
                log.error("cannot record delivery of %s (%s): %s", attempt.id, attempt.outcome, exc)
                if plain == attempt:
                    self._metrics.outbox_errors.inc("record")
                    self._errors += 1
                    return
                attempt = plain
                continue
            except StoreError as exc:
                log.error("cannot record delivery of %s, retrying: %s", attempt.id, exc)
            except Exception:
                self._contain("record")
            await backoff.wait()

    async def _retry_loop(self) -> None:
        while True:
            now = self._clock.now()
            while self._later.due(now) is not None:
                entry = self._later.pop()
                if not entry.live:
                    self._dead -= 1
                    continue
                pending = entry.pending
                self._unwait(pending)
                self._in_hand[pending.notify.target.channel] += 1
                try:
                    self._ready(pending)
                except Exception:
                    # Left to the database, read back from there (never lost in memory).
                    self._contain("retries")
                    self._forget(pending.notify)
                    self._in_database_only.add(pending.notify.target.channel)
            await self._later.wait()

    # Reading back what is only in the database. ------------------------------------------

    async def _read_back_loop(self) -> None:
        backoff = Backoff(RECORD_RETRY_MIN, RECORD_RETRY_MAX)
        while True:
            channels = self._read_back_due()
            if channels:
                try:
                    for channel in sorted(channels):
                        await self._read_back(channel)
                    backoff.reset()
                except Exception as exc:
                    # The rows stay in the database: read them when it answers again.
                    if isinstance(exc, StoreError):
                        log.error("cannot read undelivered notifications, retrying: %s", exc)
                    else:
                        self._contain("read-back")
                    await backoff.wait()
            else:
                self._read_back_wanted = trio.Event()
                wake = min(self._spilled.values(), default=math.inf)
                deadline = self._clock.trio_deadline(wake) if wake < math.inf else math.inf
                with trio.move_on_at(deadline):
                    await self._read_back_wanted.wait()

    async def _read_back(self, channel: str) -> None:
        # The channel's oldest `capacity` undelivered rows: those in hand are skipped by `_take`,
        # and since at most half the capacity is in hand, each read brings at least as many new
        # ones. A row finished (sent or failed) while the query ran may be in its snapshot as
        # still undelivered: such rows are remembered and skipped rather than sent twice.
        # The channel is marked read before the query: a row refused while it runs (committed
        # after its snapshot) marks it again, rather than being left in the database unseen.
        # Only rows due now: a retry waiting for its time is read back at that time (and
        # those kept in memory are not read at all), so they never crowd out new rows.
        self._reading = True
        self._finished_while_reading.clear()
        self._in_database_only.discard(channel)
        spilled = self._spilled.pop(channel, None)
        limit = self._capacity
        now = self._clock.now()
        try:
            mine = self._shards()  # with several nodes: only the shards held now
            rows: list[Undelivered] = await self._offload(
                lambda: self._store.undelivered(limit, channel, due_by=now, **mine)
            )
            if spilled is not None:
                # When to look again: the earliest later retry in the database (it may be
                # one in memory too; hence at most every `SPILL_POLL`).
                later = await self._offload(lambda: self._store.next_retry_at(channel, now, **mine))
                if later is not None:
                    at = max(later, now + SPILL_POLL)
                    self._spilled[channel] = min(at, self._spilled.get(channel, math.inf))
        except BaseException:
            self._in_database_only.add(channel)
            if spilled is not None:
                self._spilled[channel] = min(spilled, self._spilled.get(channel, math.inf))
            raise
        finally:
            self._reading = False
        if len(rows) >= limit:
            self._in_database_only.add(channel)
        for row in rows:
            if row.notify.id in self._finished_while_reading or not self._sends_for(row.notify):
                continue
            self._take(_Pending(row.notify, row.created_at, row.attempts), row.next_attempt_at)
        self._finished_while_reading.clear()


def _must_propagate(exc: BaseException) -> bool:
    """Whether an exception out of a transport is the run's own business (a cancellation, an
    interrupt, an exit), not the transport's failure. Anything else, even a `BaseException` a
    library had no business raising, fails the attempt and is retried."""
    fatal = (trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit)
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, fatal)) is not None
    return isinstance(exc, fatal)


def cancelled_by(state: ServiceState, n: Notify) -> str | None:
    """Why `n` is no longer worth sending, if it is not: its incident was acknowledged (somebody
    is on it) or closed. Checked before every attempt, the first and each retry, also after a
    restart; a page already sent is not recalled, a page cancelled is never sent.

    A notification of an incident newer than `state` knows is wanted: it is committed, and the
    service's state in memory is set only once its actor resumes after the commit. The outbox
    can take it before then, read back from the database (at start, or when a channel's backlog
    overflowed to it), and it used to be cancelled as `incident closed`: a page lost (a heartbeat
    missed while pagerd was down opens an incident at start, while the outbox reads its backlog)."""
    incident = state.incident
    if state.last_incident < n.incident:
        return None
    if incident is None or incident.number != n.incident:
        return "incident closed"
    if incident.acknowledged:
        return "incident acknowledged"
    return None


def silenced_step(
    state: ServiceState,
    n: Notify,
    now: float,
    quiet_until: Callable[[ServiceState, float], float | None],
) -> float | None:
    """When the quiet ends that keeps delayed step `n` from being sent at `now`; None if it may
    go. A person's delayed step ("email after 2m") that comes due while its service is silenced
    (a silence, or a maintenance window, begun after its level was notified) is not sent but
    cancelled: nothing is paged during a silence, and paging goes on when it ends (the step
    it held, notified then). Pages sent at once, and their retries, are not held back: they
    went out before the silence. `pager simulate` shows the same (`pager.simulate`)."""
    if n.not_before is None:
        return None
    return quiet_until(state, now)


def _redactor(lane: _Lane, n: Notify) -> Redactor:
    """The lane's secrets, and the target's own if its address is one (a webhook URL)."""
    return for_target(lane.redactor, n.target)


def _lane(spec: LaneSpec) -> _Lane:
    return _Lane(
        spec,
        TokenBucket(spec.channel.rate, spec.channel.burst),
        Redactor(channel_secrets(spec.channel.settings)),
    )
