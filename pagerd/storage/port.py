"""The storage port: what the daemon needs from wherever it keeps its state, and its records.

The engine (through the group commit), the outbox, retention, the server's status and history,
and the start-up all speak to `Storage`; `sqlite/` is one adapter of it, and a networked
database is meant to be another. So the port is shaped for a round trip that costs: a group
commit is one `write` of a whole batch, reads are one call each, and nothing here assumes a
local file (`statistics().bytes_on_disk` is None where there is no such figure).

Every call blocks: callers run it through an `Offload`, never on the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Final, Literal, Protocol, TypeAlias

import attrs

from pager.domain import Notify, ServiceState, Source
from pager.schedules import Override
from pagerd.access.peers import Peer
from pagerd.timing.clock import Reading


@attrs.frozen
class EventRecord:
    """An event as the incident's history keeps it: what, when, and who sent it (the socket's
    `peer`, or the HTTP `integration` it came in through, by its name)."""

    op: str
    detail: str | None = None
    by: str | None = None
    peer: Peer | None = None
    integration: str | None = None
    via: str | None = None
    """How a person answered where not over the socket or an integration: `link`, `sms`,
    `slack`, `console` (see `pagerd.engine.actors.Envelope.via`)."""


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


@attrs.frozen
class Handled:
    """Inbox event `id` (`cluster.Queued`) is handled, by the transition written in the same
    batch, and `answer` is what its sender is told. Only a shared store has an inbox: SQLite
    refuses it. Fenced by the shard of `id`'s service."""

    id: int
    answer: str


Write: TypeAlias = Transition | Attempt | ClockMark | Handled


class StoreError(Exception):
    """The database cannot be used, or refused what was asked of it: the message says what."""


class StoreUnavailable(StoreError):
    """The database itself failed (a full disk, an I/O error, a lock held too long), not what
    was written: the same write alone would fail too, so a batch is not split to retry it."""


@attrs.frozen
class Undelivered:
    """A notification not yet delivered, as read back from the outbox."""

    notify: Notify
    created_at: float
    attempts: int
    next_attempt_at: float | None


@attrs.frozen
class Delivery:
    """Where one notification stands, for `pager status SERVICE`."""

    id: str
    channel: str
    target: str
    round: int
    level: int
    state: str
    attempts: int
    last_error: str | None
    provider_id: str | None
    sent_at: float | None
    due_at: float | None = None
    """When its next attempt is due, if it waits for a time: a person's delayed step not yet
    sent ("email after 2m"), or a retry. None when it is due now or done."""
    delay: float | None = None
    """A delayed step's delay from when its level was notified (120.0 for "after 2m")."""


@attrs.frozen
class History:
    opened_at: float
    closed_at: float | None
    message: str
    timeline: list[tuple[float, dict[str, object]]]
    elided: int = 0
    """Entries left out of `timeline` (see `Store.history`); its `elided` entry says where."""


@attrs.frozen
class Pruned:
    """What one `prune()` transaction deleted, and where the next one goes on from."""

    rows: int
    incidents: int
    resume: tuple[float, int] | None
    """(closed_at, rowid) of the last incident dealt with; None once nothing is left."""


@attrs.frozen
class StorageStatistics:
    """Figures about the store as a whole, for the metrics."""

    bytes_on_disk: int | None
    """The database's size on this machine's disk; None where the store has no such figure
    (a database on another host)."""


@attrs.frozen
class Fence:
    """An ownership token a write carries: the node writing, and the epoch of each shard it
    holds (`pager.shards`, `pagerd.storage.cluster`). A store shared by several nodes refuses,
    in the same transaction, a write that touches a shard not leased to `node`'s `run` under
    that epoch now (`cluster.Fenced`), so a node that lost ownership cannot write after its
    successor has. A single-node store (SQLite, guarded by the state directory's lock) ignores
    it."""

    node: str
    epochs: Mapping[int, int]
    run: str
    """The run of `node` holding those leases (`Storage.origin`): another process given the
    same name holds no lease of this run's, and its writes are refused."""


@attrs.frozen
class ReplyCode:
    """What an SMS reply code answers: one incident of one service."""

    service: str
    incident: int


@attrs.frozen
class OpenCode:
    """An SMS reply code of a phone whose incident is open: what a reply of `code` answers."""

    code: int
    service: str
    incident: int


NoReply: TypeAlias = Literal["replayed", "unknown_number", "unknown_code"]
"""Why an SMS reply answers nothing: its message was taken before (the same provider id, a
replay), no page was ever sent to its number, or its code is none the number was given."""

REPLAY_WINDOW: Final = 90 * 24 * 3600.0
"""How long a reply's message id is remembered (`take_reply`): a replay within it is refused.
Twilio's signatures carry no time, so a captured reply could otherwise be sent again later,
when its code names another incident."""

REPLY_CODE_COOL_DOWN: Final = 3600.0
"""How long an SMS reply code rests after its incident closed before it is given again
(`reply_code`): a reply that comes late to a closed page is told it is closed, rather than
acting on another service's new incident paged to the same phone with the same code."""
REPLY_CODES: Final = 99
"""The codes a phone is given while they last (two digits): past them, a code resting longest
is given again rather than a longer one; past them with none resting (that many incidents
open on one phone), the next number."""


@attrs.frozen
class Removal:
    """An override removed: who removed it (the socket's user, `integration NAME` over HTTP;
    None if not known) and when (wall-clock seconds)."""

    override: Override
    by: str | None
    at: float


MAX_REMOVED_KEPT: Final = 1000
"""Removed overrides whose record (who removed it, when) is kept at most, beside those in use:
past that, the oldest removals are deleted, so that adding and removing in a loop fills no
disk. Every removal is in the log too."""

PRUNE_ROWS: Final = 500
"""Rows one `prune()` transaction deletes at most: a few milliseconds of the one writer."""


class Storage(Protocol):
    """Everything the daemon asks of its store. Every call blocks, and raises `StoreError` (or
    `StoreUnavailable`) when the database cannot do it; nothing of a failed `write` is kept,
    but for a `StoreUnavailable` from a store across a network (PostgreSQL): a connection lost
    during COMMIT leaves the outcome unknown (the committer then has the batch's shards
    reloaded). SQLite's is known: a local file's transaction that failed was rolled back.

    Transactions: `write` is one transaction (all of the batch or none of it), durable on
    return. `fence` is where an ownership check goes: a store shared between nodes checks it
    inside that transaction; SQLite ignores it. `prune` and `restart_clock` are one
    transaction each as well.
    """

    @property
    def origin(self) -> str:
        """This run's identity, stored with every notification it writes (`Notify.origin`):
        part of each notification's once-only key."""
        ...

    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        """Apply `batch` (one group commit) in one transaction, durable on return."""
        ...

    def load_states(self, *, shards: Collection[int] | None = None) -> dict[str, ServiceState]:
        """Every service (of `shards` only, by `pager.shards.shard_of`, if they are given: what
        a node of a cluster owns) that has had an incident, has a heartbeat monitor or has silences,
        with its open incident (and why it is open: `Incident.heartbeat_only`,
        `Incident.held_by_alert`; whether a silence holds it: `Incident.silenced`), its monitor
        and its silences if any. A `Transition` whose `after.heartbeat` differs from its
        `before.heartbeat` writes the monitor (or deletes it, if None); one whose
        `after.silences` differ writes each silence new or changed, and keeps each one it no
        longer has as over (not loaded again, kept for the record until `prune`)."""
        ...

    def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """The service whose open incident has each of `sources` firing, as committed (those
        none has are left out; one that two services have gives the first by name). For a node
        of a cluster: where an acknowledge or resolve naming only its source goes when its
        service is held by another node (its memory has only its own shards'); an
        Alertmanager payload's resolves are looked up in one call."""
        ...

    def silence_service(self, id: int) -> str | None:
        """The service of silence `id` if its service's state still has it (not dropped; it may
        be over: the caller checks that against the state, as for a silence in memory): where a
        node of a cluster sends `silence end ID` for a service held elsewhere."""
        ...

    def last_silence_id(self) -> int:
        """The highest silence id ever written (0 if none), whatever was pruned since: new
        silences number on from it, so an id never names two silences."""
        ...

    def restart_clock(self, reading: Reading) -> tuple[Reading | None, float]:
        """At start: move the stored deadlines (escalations and heartbeats) and retry times
        into the frame of `reading` (by `clock.shift` from the last recorded reading, when that
        is a step, not jitter), and record `reading`, in one transaction. The last reading, and
        how far they moved."""
        ...

    def undelivered(
        self,
        limit: int,
        channel: str | None = None,
        due_by: float | None = None,
        *,
        shards: Collection[int] | None = None,
    ) -> list[Undelivered]:
        """Up to `limit` notifications pending or retrying, in the order they were decided; of
        one channel only if `channel` is given; only those whose next attempt is due by
        `due_by` (no retry time, or not later) if it is given; only of services in `shards` if
        they are given."""
        ...

    def next_retry_at(
        self, channel: str, after: float, *, shards: Collection[int] | None = None
    ) -> float | None:
        """The earliest retry time later than `after` of the channel's undelivered rows (of
        services in `shards` only, if they are given), None if none: when the outbox next reads
        back retries it did not keep in memory."""
        ...

    def undelivered_elsewhere(
        self, channels: Sequence[str], limit: int
    ) -> list[tuple[str, Undelivered]]:
        """Up to `limit` notifications pending or retrying on a channel not in `channels`, each
        with the id it is stored under (a channel this pagerd does not know may build ids its
        own way): what a newer pagerd left, for the outbox to settle at start."""
        ...

    def failed_counts(self) -> dict[tuple[str, int], int]:
        """(service, incident) -> notifications that failed for good, for open incidents."""
        ...

    def deliveries(self, service: str, incident: int) -> list[Delivery]:
        """Every notification of one incident with its delivery state, in the order decided."""
        ...

    def latest_incident(self, service: str) -> int | None:
        """The number of the service's latest incident, None if it has had none."""
        ...

    def history(self, service: str, incident: int) -> History | None:
        """Everything that happened to one incident, in order; None if there is no such one."""
        ...

    def prune(
        self, before: float, after: tuple[float, int] = (-math.inf, 0), budget: int = PRUNE_ROWS
    ) -> Pruned:
        """Delete the history of incidents closed before `before`, at most `budget` rows in one
        transaction, going on after `after` (the `resume` of the last call), and silences over
        before `before` (but the latest). Kept whatever their age: a service's latest incident
        (numbers continue from it) and an incident with a notification still to deliver."""
        ...

    def reply_code(self, address: str, service: str, incident: int, at: float) -> int:
        """The SMS reply code of `service`'s `incident` on the phone `address`, durable on
        return: the one it has if it has one, else the smallest number that no incident still
        open holds on that phone and whose incident did not close within
        `REPLY_CODE_COOL_DOWN` before `at` (a closed incident's number is given again once it
        has rested), unless that number is over `REPLY_CODES`: then the resting one whose
        incident closed first, if any. `at` is when the page goes, which makes it the phone's
        latest (see `take_reply`). One transaction."""
        ...

    def take_reply(
        self, message_id: str, address: str, code: int | None, at: float
    ) -> ReplyCode | NoReply:
        """Take the SMS reply `message_id` (the provider's id of the message) from `address`:
        the incident its `code` answers (None: that of the latest page sent to `address`), or
        why none. The id is remembered, durably and before this returns, for `REPLAY_WINDOW`:
        the same id again is "replayed", whatever it says. One transaction."""
        ...

    def open_codes(self, address: str, limit: int) -> list[OpenCode]:
        """The SMS reply codes of the phone `address` whose incidents are still open, the one
        paged latest first, at most `limit` of them: what a reply it sent that is no code can
        be told to send instead. Reads only."""
        ...

    def overrides(self) -> list[Override]:
        """Every stored override of a schedule not removed, by id (the order they apply in),
        with who made it (`Override.made_by`)."""
        ...

    def add_override(self, override: Override, at: float) -> Override:
        """Store `override` (its `id` is ignored; its `made_by` kept, for the record) in one
        transaction, made at `at`, and return it with the id it was given: never one given
        before, so ids keep their order."""
        ...

    def remove_override(self, id: int, by: str | None = None, at: float = 0.0) -> Override | None:
        """Remove override `id` in one transaction: used no more, its record kept with who
        removed it (`by`) and when (`at`, wall-clock seconds), until it ends or until
        `MAX_REMOVED_KEPT` later removals; the override removed, None if none (or removed
        already)."""
        ...

    def removed_overrides(self, schedule: str, after: float, limit: int) -> list[Removal]:
        """`schedule`'s removed overrides whose record is kept and that end after `after`: the
        `limit` removed last, in the order they were removed."""
        ...

    def prune_overrides(self, before: float) -> int:
        """Delete the overrides that ended before `before` (wall-clock seconds), removed or not;
        how many."""
        ...

    def verify(self) -> None:
        """Check the whole store (it may run beside reads); `StoreError` if it is corrupt."""
        ...

    def ping(self) -> None:
        """A trivial round trip: the store answers (the watchdog's proof of progress)."""
        ...

    def statistics(self) -> StorageStatistics:
        """Figures about the store, cheap enough to read at every metrics scrape."""
        ...

    def close(self) -> None: ...
