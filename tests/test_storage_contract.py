"""The storage port's contract, written against `Storage` alone: every adapter passes it.

Everything here goes through the port (writes as the engine and the outbox make them, reads as
start-up, status, history and the outbox do); no test looks at a table. An adapter joins by one
entry in `ADAPTERS`: a way to open its store, and to open the same one again (a restart).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, cast

import attrs
import pytest

from pager.domain import Incident, Monitor, Notify, ServiceState, Source, Started, Target
from pager.domain import closed as closed_state
from pager.schedules import Override
from pager.shards import SHARDS, shard_of
from pager.silences import Silence
from pagerd.access.peers import Peer
from pagerd.storage.history import HISTORY_HEAD, HISTORY_TAIL
from pagerd.storage.port import (
    REPLAY_WINDOW,
    REPLY_CODE_COOL_DOWN,
    REPLY_CODES,
    Attempt,
    EventRecord,
    Fence,
    OpenCode,
    Removal,
    ReplyCode,
    Storage,
    StoreError,
    Transition,
    Write,
)
from pagerd.storage.postgresql.store import Store as PostgresStore
from pagerd.storage.sqlite import store as sqlite_store
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Reading
from tests.postgres import clean_pg, pg_dsn

__all__ = ["clean_pg", "pg_dsn"]  # fixtures


@attrs.frozen
class Opener:
    """Opens the adapter's store: the same database at every call (a second call is a
    restart)."""

    open: Callable[[], Storage]
    moves_deadlines: bool = True
    """Whether a restart moves stored deadlines when the wall clock stepped (`restart_clock`):
    a single node's store does; a shared one keeps wall-clock time for every node."""

    def __call__(self) -> Storage:
        return self.open()

    def moved(self, step: float) -> float:
        """How far a restart moves deadlines when the frame stepped by `step`."""
        return step if self.moves_deadlines else 0.0


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return Opener(lambda: Store.open(tmp_path / "pager.db"))


OWNER: Final = "contract-node"


class _Owner:
    """A PostgreSQL store as the node that holds every shard sees it: each write carries that
    node's fence (a fence a test gives, for SQLite to ignore, is replaced by it). This contract
    is about what is stored; who may store it is tests/test_cluster_contract.py's."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        # One run across reopenings: each reopened store renews the leases of the one before
        # (a new run would wait for them to expire, as a restarted node does).
        run = "contract-run"
        self._fence = Fence(OWNER, store.claim(OWNER, range(SHARDS), 3600.0, run=run), run)

    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        self._store.write(batch, self._fence)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    dsn = request.getfixturevalue("clean_pg")

    def open() -> Storage:
        return cast(Storage, _Owner(PostgresStore.open(dsn, node=OWNER, pool_size=2)))

    return Opener(open, moves_deadlines=False)


ADAPTERS: Final[dict[str, Callable[[pytest.FixtureRequest, Path], Opener]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(ADAPTERS))
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return ADAPTERS[request.param](request, tmp_path)


@pytest.fixture
def storage(reopen: Opener) -> Iterator[Storage]:
    store = reopen()
    yield store
    store.close()


T0, CUTOFF = 1000.0, 5000.0
ALICE, BOB = Target("email", "alice@example.com"), Target("sms", "+14155550100")
HOOK = Target("webhook", "https://hooks.example.com/x")
PEER = Peer(pid=42, uid=1000, gid=1000, user="ops")


def note(
    service: str, number: int, target: Target = ALICE, round_: int = 1, level: int = 1
) -> Notify:
    return Notify(service, number, round_, level, target, "down", T0)


@attrs.frozen
class Life:
    """One service's incident, moved step by step as the engine would write it."""

    state: ServiceState

    def alert(self, at: float, *notes: Notify) -> tuple[Life, Transition]:
        number = self.state.last_incident + 1
        incident = Incident(number, at, "down", deadline=at + 60)
        after = ServiceState(self.state.name, number, incident)
        event = EventRecord("alert", detail="down", peer=PEER)
        return Life(after), Transition(self.state, after, notes, at, event)

    def change(self, at: float, op: str, *notes: Notify, **changes: Any) -> tuple[Life, Transition]:
        assert self.state.incident is not None
        after = attrs.evolve(self.state, incident=attrs.evolve(self.state.incident, **changes))
        return Life(after), Transition(self.state, after, notes, at, EventRecord(op, by="bob"))

    def close(self, at: float) -> tuple[Life, Transition]:
        after = closed_state(self.state)
        return Life(after), Transition(self.state, after, (), at, EventRecord("healthy"))


def opened(storage: Storage, service: str, at: float = T0, *notes: Notify) -> Life:
    life, t = Life(ServiceState(service)).alert(at, *(notes or (note(service, 1),)))
    storage.write([t])
    return life


def closed(storage: Storage, service: str, at: float, *notes: Notify) -> Life:
    life = opened(storage, service, at, *notes)
    life, t = life.close(at + 1)
    storage.write([t])
    return life


# The incident's lifecycle. ---------------------------------------------------------------------


def test_an_incident_is_opened_escalated_acknowledged_and_closed(storage: Storage) -> None:
    life = opened(storage, "api")
    assert storage.load_states() == {"api": life.state}
    life, t = life.change(
        T0 + 60, "timeout", note("api", 1, BOB, level=2), level=2, deadline=T0 + 120
    )
    storage.write([t])
    assert storage.load_states()["api"].incident == life.state.incident
    life, t = life.change(
        T0 + 70, "ack", acknowledged_at=T0 + 70, acknowledged_by="bob", deadline=None
    )
    storage.write([t])
    assert storage.load_states() == {"api": life.state}
    life, t = life.close(T0 + 80)
    storage.write([t])
    assert storage.load_states() == {"api": ServiceState("api", 1, None)}
    assert storage.latest_incident("api") == 1
    history = storage.history("api", 1)
    assert history is not None
    assert (history.opened_at, history.closed_at, history.message) == (T0, T0 + 80, "down")


def test_the_next_incident_continues_the_numbers(storage: Storage) -> None:
    life = closed(storage, "api", T0)
    life, t = life.alert(T0 + 10, note("api", 2))
    storage.write([t])
    assert storage.load_states()["api"] == life.state
    assert life.state.incident is not None and life.state.incident.number == 2
    assert storage.latest_incident("api") == 2
    assert storage.latest_incident("never") is None


def test_a_batch_is_written_whole_and_in_order(storage: Storage) -> None:
    life, first = Life(ServiceState("api")).alert(T0, note("api", 1))
    life, second = life.change(T0 + 1, "alert", alerts=2)
    other, third = Life(ServiceState("db")).alert(T0, note("db", 1))
    storage.write(
        [first, second, third], fence=Fence("node-a", {0: 1}, "run-a")
    )  # SQLite ignores the fence
    assert storage.load_states() == {"api": life.state, "db": other.state}


# Notifications and their attempts. -------------------------------------------------------------


def _state(storage: Storage, service: str = "api") -> list[tuple[str, int]]:
    return [(d.state, d.attempts) for d in storage.deliveries(service, 1)]


def test_a_notification_goes_from_pending_through_retrying_to_sent(storage: Storage) -> None:
    opened(storage, "api")
    nid = note("api", 1).id
    assert _state(storage) == [("pending", 0)]
    storage.write([Attempt(nid, T0 + 1, "retrying", error="busy", next_attempt_at=T0 + 5)])
    (delivery,) = storage.deliveries("api", 1)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("retrying", 1, "busy")
    (waiting,) = storage.undelivered(10)
    assert (waiting.attempts, waiting.next_attempt_at) == (1, T0 + 5)
    storage.write([Attempt(nid, T0 + 5, "sent", provider_id="p-1")])
    (delivery,) = storage.deliveries("api", 1)
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    assert (delivery.provider_id, delivery.sent_at) == ("p-1", T0 + 5)
    assert delivery.target == str(ALICE) and (delivery.round, delivery.level) == (1, 1)
    assert storage.undelivered(10) == []


def test_a_retry_not_yet_due_is_left_out_when_asked_and_its_time_is_told(
    storage: Storage,
) -> None:
    opened(storage, "api", T0, note("api", 1), note("api", 1, BOB))
    nid = note("api", 1).id
    assert storage.next_retry_at("email", T0) is None
    storage.write([Attempt(nid, T0 + 1, "retrying", error="busy", next_attempt_at=T0 + 5)])
    assert [u.notify.target for u in storage.undelivered(10, due_by=T0 + 4)] == [BOB]
    assert storage.undelivered(10, "email", due_by=T0 + 4) == []
    due = storage.undelivered(10, due_by=T0 + 5)
    assert [u.notify.target for u in due] == [ALICE, BOB]
    assert storage.next_retry_at("email", T0 + 4) == T0 + 5
    assert storage.next_retry_at("email", T0 + 5) is None
    assert storage.next_retry_at("sms", T0) is None


def test_a_node_s_reads_of_its_shards_leave_the_other_services_out(storage: Storage) -> None:
    """`shards=`: what a node of a cluster loads at start and reads back from the outbox is of
    its own shards' services only (`pager.shards.shard_of`); None is every service."""
    api, db = "api", "db"
    assert shard_of(api) != shard_of(db)
    opened(storage, api)
    opened(storage, db)
    beat(storage, ServiceState("cron"), T0, heartbeat=Monitor(60.0, T0 + 60, T0))
    for service in (api, db):
        storage.write([Attempt(note(service, 1).id, T0 + 1, "retrying", next_attempt_at=T0 + 9)])
    mine = [shard_of(api), shard_of("cron")]
    assert set(storage.load_states(shards=mine)) == {api, "cron"}
    assert set(storage.load_states(shards=[shard_of(db)])) == {db}
    assert set(storage.load_states()) == {api, db, "cron"}
    assert storage.load_states(shards=[]) == {}
    assert [u.notify.service for u in storage.undelivered(10, shards=[shard_of(db)])] == [db]
    assert [u.notify.service for u in storage.undelivered(10, "email", shards=mine)] == [api]
    assert storage.undelivered(10, shards=[]) == []
    assert storage.next_retry_at("email", T0, shards=[shard_of(db)]) == T0 + 9
    assert storage.next_retry_at("email", T0, shards=[shard_of("cron")]) is None


def test_a_failed_notification_is_counted_while_its_incident_is_open(storage: Storage) -> None:
    life = opened(storage, "api", T0, note("api", 1), note("api", 1, BOB))
    storage.write([Attempt(note("api", 1).id, T0 + 1, "failed", error="rejected")])
    assert _state(storage) == [("failed", 1), ("pending", 0)]
    assert storage.failed_counts() == {("api", 1): 1}
    assert [u.notify.target for u in storage.undelivered(10)] == [BOB]
    life, t = life.close(T0 + 2)
    storage.write([t])
    assert storage.failed_counts() == {}


def test_a_cancelled_notification_is_no_attempt_and_not_undelivered(storage: Storage) -> None:
    opened(storage, "api")
    storage.write([Attempt(note("api", 1).id, T0 + 1, "cancelled")])
    assert _state(storage) == [("cancelled", 0)]
    assert storage.undelivered(10) == []


# History. -------------------------------------------------------------------------------------


def test_history_reads_back_events_notifications_deliveries_and_the_close(
    storage: Storage,
) -> None:
    life = opened(storage, "api")
    storage.write([Attempt(note("api", 1).id, T0 + 1, "sent", provider_id="p-1")])
    life, t = life.close(T0 + 2)
    storage.write([t])
    history = storage.history("api", 1)
    assert history is not None
    assert [(at, entry["event"]) for at, entry in history.timeline] == [
        (T0, "alert"),
        (T0, "notification"),
        (T0 + 1, "delivery"),
        (T0 + 2, "healthy"),
        (T0 + 2, "closed"),
    ]
    alert, decided, delivery = (entry for _, entry in history.timeline[:3])
    assert alert == {
        "event": "alert",
        "detail": "down",
        "peer": {"uid": 1000, "user": "ops", "pid": 42},
    }
    assert decided["notification"] == note("api", 1).id and decided["target"] == str(ALICE)
    assert (delivery["outcome"], delivery["provider_id"]) == ("sent", "p-1")
    assert storage.history("api", 2) is None


def test_history_names_the_integration_an_event_came_in_through(storage: Storage) -> None:
    life = Life(ServiceState("api"))
    incident = Incident(1, T0, "down", deadline=T0 + 60)
    after = ServiceState("api", 1, incident)
    alert = EventRecord("alert", detail="down", integration="grafana")
    storage.write([Transition(life.state, after, (), T0, alert)])
    ack = EventRecord("ack", by="bob", integration="ops-rest")
    acked = attrs.evolve(after, incident=attrs.evolve(incident, acknowledged_at=T0 + 1))
    storage.write([Transition(after, acked, (), T0 + 1, ack)])
    history = storage.history("api", 1)
    assert history is not None
    assert [entry for _, entry in history.timeline] == [
        {"event": "alert", "detail": "down", "integration": "grafana"},
        {"event": "ack", "by": "bob", "integration": "ops-rest"},
    ]


def test_history_says_how_a_person_answered(storage: Storage) -> None:
    """An ack from a phone (a link, an SMS reply, a Slack button) or the console names the way
    it came (`via`), beside who it was: the history says both."""
    incident = Incident(1, T0, "down", deadline=T0 + 60)
    after = ServiceState("api", 1, incident)
    storage.write([Transition(ServiceState("api"), after, (), T0, EventRecord("alert", "down"))])
    ack = EventRecord("ack", by="sms:+14155550100", via="sms")
    acked = attrs.evolve(after, incident=attrs.evolve(incident, acknowledged_at=T0 + 1))
    storage.write([Transition(after, acked, (), T0 + 1, ack)])
    history = storage.history("api", 1)
    assert history is not None
    assert [entry for _, entry in history.timeline][-1] == {
        "event": "ack",
        "by": "sms:+14155550100",
        "via": "sms",
    }


def test_a_long_history_keeps_its_ends_and_says_what_lies_between(storage: Storage) -> None:
    """A storm on one incident: the first `HISTORY_HEAD` and the last `HISTORY_TAIL` entries of
    the merged timeline, and one `elided` entry between, the same on every adapter."""
    extra = 30
    life = opened(storage, "api")  # the alert, its notification
    batch: list[Write] = []
    for i in range(HISTORY_HEAD + HISTORY_TAIL + extra):
        life, t = life.change(T0 + 1 + i, "alert", alerts=2 + i)
        batch.append(t)
    storage.write(batch)
    life, t = life.close(T0 + 10_000)
    storage.write([t])
    history = storage.history("api", 1)
    assert history is not None
    total = 2 + HISTORY_HEAD + HISTORY_TAIL + extra + 2  # and the close's event and "closed"
    assert history.elided == total - HISTORY_HEAD - HISTORY_TAIL
    assert len(history.timeline) == HISTORY_HEAD + 1 + HISTORY_TAIL
    times = [at for at, _ in history.timeline]
    assert times[:3] == [T0, T0, T0 + 1]
    assert times[-3:] == [T0 + HISTORY_HEAD + HISTORY_TAIL + extra, T0 + 10_000, T0 + 10_000]
    # Left out: from the 51st entry (T0 + 49) to the last before the tail (T0 + 82).
    first_out, last_out = T0 + HISTORY_HEAD - 1, T0 + HISTORY_HEAD + extra + 2
    assert history.timeline[HISTORY_HEAD] == (
        first_out,
        {"event": "elided", "count": history.elided, "until": last_out},
    )
    assert times[HISTORY_HEAD - 1] == first_out - 1 and times[HISTORY_HEAD + 1] == last_out + 1
    assert [e["event"] for _, e in history.timeline[-2:]] == ["healthy", "closed"]


# The outbox's read-back. ----------------------------------------------------------------------


def test_undelivered_comes_back_in_the_order_decided_per_channel_and_limited(
    storage: Storage,
) -> None:
    opened(storage, "api", T0, note("api", 1, ALICE), note("api", 1, BOB), note("api", 1, HOOK))
    opened(storage, "db", T0 + 1, note("db", 1, BOB), note("db", 1, ALICE))
    everything = [(u.notify.service, u.notify.target) for u in storage.undelivered(10)]
    assert everything == [("api", ALICE), ("api", BOB), ("api", HOOK), ("db", BOB), ("db", ALICE)]
    assert [u.notify.service for u in storage.undelivered(10, "sms")] == ["api", "db"]
    assert [u.notify.target for u in storage.undelivered(2)] == [ALICE, BOB]
    assert storage.undelivered(10, "slack") == []
    (first,) = storage.undelivered(1)
    assert first.notify == attrs.evolve(note("api", 1), origin=storage.origin)
    assert (first.created_at, first.attempts, first.next_attempt_at) == (T0, 0, None)


# Pruning. -------------------------------------------------------------------------------------


def _prune(storage: Storage, before: float, budget: int = 3) -> int:
    """Whole passes in short transactions, as retention runs them: the incidents deleted."""
    incidents = 0
    resume: tuple[float, int] | None = (-math.inf, 0)
    while resume is not None:
        pruned = storage.prune(before, resume, budget)
        incidents += pruned.incidents
        resume = pruned.resume
    return incidents


def _sent(storage: Storage, *notes: Notify) -> None:
    storage.write([Attempt(n.id, T0, "sent") for n in notes])


def test_pruning_deletes_old_history_and_keeps_what_must_stay(storage: Storage) -> None:
    life = closed(storage, "api", T0)  # api#1: old, closed, delivered: goes
    life, t = life.alert(T0 + 10, note("api", 2))
    storage.write([t, life.close(T0 + 11)[1]])  # api#2: old, but the latest: kept
    closed(storage, "db", T0)  # db#1: old and the latest: kept (numbers continue from it)
    old = closed(storage, "web", T0)  # web#1: old, not the latest, but still to deliver: kept
    storage.write([old.alert(T0 + 20, note("web", 2))[1]])
    closed(storage, "new", CUTOFF + 10)  # closed after the cutoff: kept
    _sent(storage, note("api", 1), note("api", 2), note("db", 1), note("web", 2), note("new", 1))
    assert _prune(storage, CUTOFF) == 1
    assert storage.history("api", 1) is None
    assert storage.deliveries("api", 1) == []
    for service, number in [("api", 2), ("db", 1), ("web", 1), ("web", 2), ("new", 1)]:
        assert storage.history(service, number) is not None, (service, number)
    assert [u.notify.id for u in storage.undelivered(10)] == [note("web", 1).id]
    assert storage.load_states()["api"] == ServiceState("api", 2, None)
    assert _prune(storage, CUTOFF) == 0


# Restart. -------------------------------------------------------------------------------------


def test_a_restart_loads_what_was_written(reopen: Opener) -> None:
    first = reopen()
    life = opened(first, "api")
    written = first.load_states()
    first.close()
    second = reopen()
    try:
        assert second.load_states() == written == {"api": life.state}
        assert [u.notify.id for u in second.undelivered(10)] == [note("api", 1).id]
    finally:
        second.close()


def test_what_fires_through_integrations_is_kept_until_it_resolves(reopen: Opener) -> None:
    def firing(life: Life, at: float, *keys: str) -> tuple[Life, Transition]:
        after = attrs.evolve(life.state, firing=frozenset(Source("prom", k) for k in keys))
        return Life(after), Transition(life.state, after, (), at, EventRecord("alert"))

    first = reopen()
    life = opened(first, "api")
    # Several changes of one service in one batch: what the last one left is what is kept.
    life, a = firing(life, T0 + 1, "f1", "f2")
    life, b = firing(life, T0 + 2, "f1", "f2", "f3")
    life, c = firing(life, T0 + 3, "f2", "f3")
    first.write([a, b, c])
    first.close()
    second = reopen()
    try:
        assert second.load_states() == {"api": life.state}
        assert life.state.firing == {Source("prom", "f2"), Source("prom", "f3")}
        # Where a resolve naming only its source goes (on a node not holding the service).
        asked = [Source("prom", "f2"), Source("prom", "f1"), Source("other", "f2")]
        # f1 resolved; ("other", "f2") another integration's.
        assert second.firing_services(asked) == {Source("prom", "f2"): "api"}
        assert second.firing_services([]) == {}
        life, t = life.close(T0 + 4)
        second.write([t])
        assert second.load_states()["api"].firing == frozenset()
        assert second.firing_services(asked) == {}  # closed: fires no more
        # A new incident starts with nothing firing from before.
        life, t = life.alert(T0 + 5)
        life, f = firing(life, T0 + 5, "f3")
        second.write([t, f])
    finally:
        second.close()
    third = reopen()
    try:
        assert third.load_states() == {"api": life.state}
    finally:
        third.close()


def test_the_starts_of_what_fires_and_of_what_resolved_are_kept(reopen: Opener) -> None:
    """`ServiceState.started`: a firing's startsAt with its open incident, a resolved one's
    with when it resolved, on any service (also one that never had an incident), to the
    nanosecond; what is forgotten is deleted."""
    big = 1_796_073_862_814_243_001  # nanoseconds: more digits than a float keeps
    f1, f2, k = Source("prom", "f1"), Source("prom", "f2"), Source("pd", "k")

    def starts(
        life: Life, at: float, firing: set[Source], started: dict[Source, Started]
    ) -> tuple[Life, Transition]:
        after = attrs.evolve(life.state, firing=frozenset(firing), started=started)
        return Life(after), Transition(life.state, after, (), at)

    first = reopen()
    life = opened(first, "api")
    life, a = starts(life, T0 + 1, {f1}, {f1: Started(big)})
    life, b = starts(life, T0 + 2, {f1, f2}, {f1: Started(big), f2: Started(big + 1)})
    resolved = {f1: Started(big, T0 + 3), f2: Started(big + 1), k: Started(7, T0)}
    life, c = starts(life, T0 + 3, {f2}, resolved)
    quiet = ServiceState("quiet")
    never = attrs.evolve(quiet, started={k: Started(big, T0 + 3)})
    first.write([a, b, c, Transition(quiet, never, (), T0 + 3)])
    first.close()
    second = reopen()
    try:
        assert second.load_states() == {"api": life.state, "quiet": never}
        life, d = starts(life, T0 + 4, {f2}, {f2: Started(big + 1)})
        second.write([d])
        assert second.load_states()["api"].started == {f2: Started(big + 1)}
        # Closed: what fired is not kept with a closed incident, as `firing` is not.
        second.write([Transition(life.state, attrs.evolve(life.state, incident=None), (), T0 + 5)])
        assert second.load_states()["api"].started == {}
    finally:
        second.close()


def test_a_restart_moves_when_resolves_were_taken_with_the_deadlines(reopen: Opener) -> None:
    first = reopen()
    first.restart_clock(Reading(frame=T0, wall=T0))
    quiet = ServiceState("quiet")
    after = attrs.evolve(quiet, started={Source("prom", "f"): Started(5, T0 - 10)})
    first.write([Transition(quiet, after, (), T0)])
    first.close()
    second = reopen()
    try:
        _, moved = second.restart_clock(Reading(frame=T0 - 100, wall=T0))
        assert moved == reopen.moved(-100)
        assert second.load_states()["quiet"].started == {
            Source("prom", "f"): Started(5, T0 - 10 + moved)
        }
    finally:
        second.close()


def test_a_restart_finds_the_clock_reading_recorded_last(reopen: Opener) -> None:
    first = reopen()
    reading = Reading(frame=T0, wall=T0)
    assert first.restart_clock(reading) == (None, 0.0)
    first.close()
    second = reopen()
    try:
        last, moved = second.restart_clock(Reading(frame=T0 + 1, wall=T0 + 1))
        assert (last, moved) == (reading, 0.0)
    finally:
        second.close()


def test_a_restart_moves_deadlines_when_the_wall_clock_stepped(reopen: Opener) -> None:
    first = reopen()
    first.restart_clock(Reading(frame=T0, wall=T0))
    opened(first, "api")  # deadline T0 + 60
    first.close()
    second = reopen()
    try:
        # This run's frame starts 100 s before the wall clock says, with no time passed.
        _, moved = second.restart_clock(Reading(frame=T0 - 100, wall=T0))
        assert moved == reopen.moved(-100)
        incident = second.load_states()["api"].incident
        assert incident is not None and incident.deadline == T0 + 60 + moved
    finally:
        second.close()


# Heartbeat monitors. ------------------------------------------------------------------------


def beat(storage: Storage, before: ServiceState, at: float, **changes: Any) -> ServiceState:
    """Write `before` changed as a check-in, a miss or a disarm would change it."""
    after = attrs.evolve(before, **changes)
    storage.write([Transition(before, after, (), at)])
    return after


def test_a_heartbeat_monitor_is_armed_moved_missed_and_disarmed(reopen: Opener) -> None:
    store = reopen()
    try:
        # A service with no incident ever, armed by its first check-in: loaded all the same.
        armed = beat(store, ServiceState("cron"), T0, heartbeat=Monitor(300.0, T0 + 300, T0))
        assert store.load_states() == {"cron": armed}
        moved = beat(store, armed, T0 + 10, heartbeat=Monitor(60.0, T0 + 70, T0 + 10))
        missed = Incident(1, T0 + 70, "no heartbeat for 1m", heartbeat_only=True)
        after = ServiceState("cron", 1, missed, heartbeat=Monitor(60.0, None, T0 + 10))
        store.write([Transition(moved, after, (note("cron", 1),), T0 + 70, EventRecord("missed"))])
    finally:
        store.close()
    store = reopen()  # a restart reads back the monitor and why the incident is open
    try:
        assert store.load_states() == {"cron": after}
        gone = beat(store, after, T0 + 80, heartbeat=None, incident=None)
        assert store.load_states() == {"cron": gone}
    finally:
        store.close()


def test_heartbeats_of_many_services_in_one_batch_each_keep_their_last_state(
    storage: Storage,
) -> None:
    a0, b0 = ServiceState("a"), ServiceState("b", heartbeat=Monitor(60.0, T0 + 60, T0))
    storage.write([Transition(ServiceState("b"), b0, (), T0)])
    a1 = attrs.evolve(a0, heartbeat=Monitor(60.0, T0 + 61, T0 + 1))
    a2 = attrs.evolve(a0, heartbeat=Monitor(60.0, T0 + 62, T0 + 2))
    b1 = attrs.evolve(b0, heartbeat=None)
    storage.write(
        [
            Transition(a0, a1, (), T0 + 1),
            Transition(b0, b1, (), T0 + 1),
            Transition(a1, a2, (), T0 + 2),
        ]
    )
    assert storage.load_states() == {"a": a2}


def test_a_restart_moves_heartbeat_deadlines_with_the_escalations(reopen: Opener) -> None:
    first = reopen()
    first.restart_clock(Reading(frame=T0, wall=T0))
    beat(first, ServiceState("cron"), T0, heartbeat=Monitor(300.0, T0 + 300, T0))
    beat(first, ServiceState("idle"), T0, heartbeat=Monitor(300.0, None, T0))
    first.close()
    second = reopen()
    try:
        _, moved = second.restart_clock(Reading(frame=T0 - 100, wall=T0))
        assert moved == reopen.moved(-100)
        states = second.load_states()
        # The deadline keeps the time it had left; the check-in's time is a record, not moved.
        assert states["cron"].heartbeat == Monitor(300.0, T0 + 300 + moved, T0)
        assert states["idle"].heartbeat == Monitor(300.0, None, T0)
    finally:
        second.close()


# The once-only keys and the run's identity. ----------------------------------------------------


def test_a_second_notification_for_the_same_step_is_impossible(storage: Storage) -> None:
    life = opened(storage, "api")
    _, again = life.change(T0 + 1, "alert", note("api", 1), alerts=2)
    with pytest.raises(StoreError):
        storage.write([again])
    assert len(storage.deliveries("api", 1)) == 1
    assert storage.load_states()["api"] == life.state  # none of the refused batch was kept
    _, other_round = life.change(T0 + 1, "timeout", note("api", 1, round_=2), round=2)
    storage.write([other_round])
    assert len(storage.deliveries("api", 1)) == 2


def test_each_run_keeps_its_identity_with_the_notifications_it_wrote(reopen: Opener) -> None:
    first = reopen()
    opened(first, "api")
    origin = first.origin
    first.close()
    second = reopen()
    try:
        assert second.origin != origin
        opened(second, "db")
        assert [u.notify.origin for u in second.undelivered(10)] == [origin, second.origin]
        keys = [u.notify.key for u in second.undelivered(10)]
        assert keys == [f"{note('api', 1).id}~{origin}", f"{note('db', 1).id}~{second.origin}"]
    finally:
        second.close()


# The store as a whole. -------------------------------------------------------------------------


def test_the_store_answers_checks_and_reports_its_size(storage: Storage) -> None:
    opened(storage, "api")
    storage.ping()
    storage.verify()
    size = storage.statistics().bytes_on_disk
    assert size is None or size > 0


def test_one_service_s_firing_set_and_heartbeat_monitor_are_both_kept(reopen: Opener) -> None:
    """A miss opened the incident, then an integration's alert joined it: a restart loads the
    monitor and what fires together; `healthy` closes it and re-arms the monitor."""
    store = reopen()
    try:
        armed = beat(store, ServiceState("cron"), T0, heartbeat=Monitor(60.0, T0 + 60, T0))
        missed = Incident(1, T0 + 60, "no heartbeat for 1m", heartbeat_only=True)
        miss = beat(
            store, armed, T0 + 60, last_incident=1, incident=missed,
            heartbeat=Monitor(60.0, None, T0),
        )  # fmt: skip
        joined = attrs.evolve(missed, alerts=2, heartbeat_only=False)
        both = beat(store, miss, T0 + 70, incident=joined, firing=frozenset({Source("prom", "f")}))
    finally:
        store.close()
    store = reopen()
    try:
        assert store.load_states() == {"cron": both}
        closed = attrs.evolve(closed_state(both), heartbeat=Monitor(60.0, T0 + 140, T0))  # healthy
        store.write([Transition(both, closed, (), T0 + 80, EventRecord("healthy"))])
    finally:
        store.close()
    store = reopen()
    try:
        assert store.load_states() == {"cron": closed}
    finally:
        store.close()


def test_whether_a_plain_alert_holds_the_incident_is_kept_across_restarts(reopen: Opener) -> None:
    """An integration's alert opened the incident, a plain alert joined it (only that flag and
    the count change), the integration resolved its own: a restart loads the incident open,
    held by the plain alert and with nothing firing, so no resolve after the restart closes it."""
    source = Source("prom", "f1")
    store = reopen()
    try:
        opened = Incident(1, T0, "disk full", deadline=T0 + 300)
        firing = beat(
            store, ServiceState("api"), T0, last_incident=1, incident=opened,
            firing=frozenset({source}),
        )  # fmt: skip
        assert store.load_states() == {"api": firing}
        joined = attrs.evolve(opened, alerts=2, held_by_alert=True)
        held = beat(store, firing, T0 + 10, incident=joined)
        resolved = beat(store, held, T0 + 20, firing=frozenset())
    finally:
        store.close()
    store = reopen()
    try:
        state = store.load_states()["api"]
        assert state == resolved
        assert state.incident is not None and state.incident.held_by_alert
        assert state.firing == frozenset()
    finally:
        store.close()


# People and schedules. -----------------------------------------------------------------------


def test_a_delayed_step_waits_as_a_retry_and_keeps_its_step_and_how_it_was_reached(
    reopen: Opener,
) -> None:
    """A person's rule's second sms after 5m: stored with its time, read back with its id."""
    storage = reopen()
    first = attrs.evolve(note("api", 1, BOB), via="schedule:primary → alice")
    again = attrs.evolve(first, step=2, not_before=T0 + 300)
    opened(storage, "api", T0, first, again)
    assert [r.notify.id for r in storage.undelivered(10, due_by=T0)] == [first.id]
    assert storage.next_retry_at("sms", T0) == T0 + 300
    storage.close()
    storage = reopen()
    rows = storage.undelivered(10)
    assert [(r.notify.id, r.notify.step, r.notify.via) for r in rows] == [
        (first.id, 1, first.via),
        (again.id, 2, first.via),
    ]
    assert again.id == first.id + "/2"
    history = storage.history("api", 1)
    assert history is not None
    shown = [e for _, e in history.timeline if e["event"] == "notification"]
    assert [e["via"] for e in shown] == [first.via, first.via]
    storage.close()


def test_overrides_are_kept_removed_pruned_and_ids_never_given_twice(reopen: Opener) -> None:
    storage = reopen()
    one = storage.add_override(Override(0, "primary", "bob", "alice", 100.0, 200.0), 50.0)
    two = storage.add_override(Override(0, "primary", "carol", None, 150.0, 900.0), 50.0)
    assert (one.id, two.id) == (1, 2)
    storage.close()
    storage = reopen()  # durable
    assert storage.overrides() == [one, two]
    assert storage.remove_override(two.id) == two
    assert storage.remove_override(two.id) is None
    three = storage.add_override(Override(0, "other", "dave", None, 10.0, 20.0), 50.0)
    assert three.id == 3  # not 2 again: a later override applies over an earlier, by id
    assert storage.prune_overrides(before=150.0) == 1  # three ended at 20
    assert storage.overrides() == [one]
    storage.close()


def test_who_made_and_who_removed_an_override_is_kept(reopen: Opener) -> None:
    """`made_by` is stored with the override; a removal keeps its record (who, when), listed by
    `removed_overrides` (the latest `limit`) until the override ends, never used again."""
    storage = reopen()
    one = storage.add_override(
        Override(0, "primary", "bob", "alice", 100.0, 200.0, "integration shop"), 50.0
    )
    two = storage.add_override(Override(0, "primary", "carol", None, 150.0, 900.0, "root"), 50.0)
    assert storage.remove_override(two.id, "alice", 60.0) == two
    assert storage.remove_override(two.id, "bob", 61.0) is None  # once
    storage.close()
    storage = reopen()  # durable
    assert storage.overrides() == [one]
    assert [o.made_by for o in storage.overrides()] == ["integration shop"]
    assert storage.removed_overrides("primary", 70.0, 10) == [Removal(two, "alice", 60.0)]
    assert storage.removed_overrides("other", 70.0, 10) == []
    assert storage.removed_overrides("primary", 900.0, 10) == []  # ended: not listed
    for at in (71.0, 72.0):
        added = storage.add_override(Override(0, "primary", "dave", None, 10.0, 990.0), 50.0)
        storage.remove_override(added.id, "erin", at)
    kept = storage.removed_overrides("primary", 70.0, 2)
    assert [(r.by, r.at) for r in kept] == [("erin", 71.0), ("erin", 72.0)]  # the latest two
    assert storage.prune_overrides(before=1000.0) == 4  # removed or not, once ended
    storage.close()


def test_sqlite_keeps_the_records_of_the_latest_removals_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding and removing in a loop fills no disk: past `MAX_REMOVED_KEPT` (2 here), the
    oldest removals' records are deleted, in the removal's own transaction."""
    monkeypatch.setattr(sqlite_store, "MAX_REMOVED_KEPT", 2)
    store = Store.open(tmp_path / "pagerd.db")
    for at in (1.0, 2.0, 3.0):
        added = store.add_override(Override(0, "primary", "dave", None, 10.0, 990.0), 0.5)
        store.remove_override(added.id, "erin", at)
    assert [r.at for r in store.removed_overrides("primary", 0.0, 10)] == [2.0, 3.0]
    store.close()


# SMS reply codes. ------------------------------------------------------------------------------

PHONE, OTHER_PHONE = "+14155550100", "+14155550101"


def test_a_reply_code_is_kept_per_incident_and_phone_and_freed_after_it_closes(
    reopen: Opener,
) -> None:
    storage = reopen()
    api, web = opened(storage, "api"), opened(storage, "web")
    assert storage.reply_code(PHONE, "api", 1, T0) == 1
    assert storage.reply_code(PHONE, "web", 1, T0 + 1) == 2
    assert storage.reply_code(PHONE, "api", 1, T0 + 2) == 1  # the same page again: its code
    assert storage.reply_code(OTHER_PHONE, "web", 1, T0) == 1  # numbers are per phone
    storage.close()
    storage = reopen()  # durable
    assert storage.reply_code(PHONE, "web", 1, T0 + 3) == 2
    _, t = api.close(T0 + 4)
    storage.write([t])
    # api#1 closed: its number rests, web's is still held.
    opened_again, t2 = Life(ServiceState("api", 1)).alert(T0 + 5, note("api", 2))
    storage.write([t2])
    assert storage.reply_code(PHONE, "api", 2, T0 + 6) == 3
    assert storage.reply_code(PHONE, "web", 1, T0 + 7) == 2
    assert opened_again.state.incident is not None and web.state.incident is not None
    # Rested: given again (api#2 holds 3, web#1 holds 2).
    later, t3 = Life(ServiceState("db")).alert(T0 + 4 + REPLY_CODE_COOL_DOWN + 1, note("db", 1))
    storage.write([t3])
    assert storage.reply_code(PHONE, "db", 1, T0 + 4 + REPLY_CODE_COOL_DOWN + 2) == 1
    assert later.state.incident is not None
    storage.close()


def test_a_closed_incident_s_code_rests_before_it_is_given_again(reopen: Opener) -> None:
    """A late reply to a closed page must not act on another incident paged to the phone with
    the same code: the code is given to no other for `REPLY_CODE_COOL_DOWN` after its incident
    closed (durably: across a restart), unless every code up to `REPLY_CODES` is held or
    resting; then the one resting longest."""
    storage = reopen()
    api = opened(storage, "api")
    assert storage.reply_code(PHONE, "api", 1, T0) == 1
    _, t = api.close(T0 + 10)
    storage.write([t])
    storage.close()
    storage = reopen()
    web = opened(storage, "web", T0 + 20)
    assert storage.reply_code(PHONE, "web", 1, T0 + 20) == 2  # 1 rests
    # A late "1a": still api#1's, which is closed (the actor says so); not web's.
    assert storage.take_reply("SM1", PHONE, 1, T0 + 30) == ReplyCode("api", 1)
    assert storage.reply_code(OTHER_PHONE, "db", 1, T0 + 30) == 1  # per phone
    # Up to REPLY_CODES taken (web holds 2; 3..99 opened and closed, resting): the one that
    # closed first is given again rather than a three-digit code.
    at = T0 + 40
    for number in range(3, REPLY_CODES + 1):
        life = opened(storage, f"s{number}", at)
        assert storage.reply_code(PHONE, f"s{number}", 1, at) == number
        _, t = life.close(at + 1)
        storage.write([t])
    assert storage.reply_code(PHONE, "web", 1, at + 2) == 2  # still its own
    late = opened(storage, "late", at + 3)
    assert storage.reply_code(PHONE, "late", 1, at + 3) == 1  # api#1 closed first of all
    assert storage.take_reply("SM2", PHONE, 1, at + 4) == ReplyCode("late", 1)
    assert web.state.incident is not None and late.state.incident is not None
    storage.close()


def test_a_reply_names_its_code_s_incident_once(storage: Storage) -> None:
    opened(storage, "api")
    opened(storage, "web")
    storage.reply_code(PHONE, "api", 1, T0)
    storage.reply_code(PHONE, "web", 1, T0 + 1)
    assert storage.take_reply("SM1", PHONE, 1, T0 + 2) == ReplyCode("api", 1)
    assert storage.take_reply("SM1", PHONE, 1, T0 + 3) == "replayed"
    # No code: the latest page sent to the phone.
    assert storage.take_reply("SM2", PHONE, None, T0 + 4) == ReplyCode("web", 1)
    assert storage.take_reply("SM3", PHONE, 7, T0 + 5) == "unknown_code"
    assert storage.take_reply("SM4", OTHER_PHONE, 1, T0 + 6) == "unknown_number"
    assert storage.take_reply("SM4", OTHER_PHONE, 1, T0 + 7) == "replayed"


def test_a_phone_s_open_codes_are_listed_latest_first(storage: Storage) -> None:
    """What a reply that is no code is told to send instead: the phone's codes whose incidents
    are open, the latest paged first, at most `limit`; a closed one's is not among them."""
    assert storage.open_codes(PHONE, 3) == []
    opened(storage, "api")
    opened(storage, "web")
    db = opened(storage, "db")
    storage.reply_code(PHONE, "api", 1, T0)
    storage.reply_code(PHONE, "web", 1, T0 + 1)
    storage.reply_code(PHONE, "db", 1, T0 + 2)
    storage.reply_code(OTHER_PHONE, "api", 1, T0 + 3)
    assert storage.open_codes(PHONE, 2) == [OpenCode(3, "db", 1), OpenCode(2, "web", 1)]
    storage.reply_code(PHONE, "api", 1, T0 + 4)  # api paged again: now the latest
    _, t = db.close(T0 + 5)
    storage.write([t])
    assert storage.open_codes(PHONE, 3) == [OpenCode(1, "api", 1), OpenCode(2, "web", 1)]
    assert storage.open_codes(OTHER_PHONE, 3) == [OpenCode(1, "api", 1)]


def test_a_reply_s_id_is_forgotten_only_after_the_replay_window(storage: Storage) -> None:
    opened(storage, "api")
    storage.reply_code(PHONE, "api", 1, T0)
    assert storage.take_reply("SM1", PHONE, 1, T0) == ReplyCode("api", 1)
    assert storage.take_reply("SM1", PHONE, 1, T0 + REPLAY_WINDOW - 1) == "replayed"
    later = T0 + 2 * REPLAY_WINDOW + 10
    assert storage.take_reply("SM9", PHONE, 1, later) == ReplyCode("api", 1)  # cleans up
    assert storage.take_reply("SM1", PHONE, 1, later) == ReplyCode("api", 1)


# Silences. -------------------------------------------------------------------------------------


def hush(number: int, start: float, end: float) -> Silence:
    return Silence(number, start, end, "db migration", "bob", start)


def test_silences_are_kept_ended_and_dropped_across_restarts(reopen: Opener) -> None:
    """A silence of a service that never had an incident is loaded; one ended early comes back
    ended; one its state no longer keeps (over, dropped at the next start) is not loaded again,
    and its number is never given again (`last_silence_id`)."""
    store = reopen()
    try:
        assert store.last_silence_id() == 0
        one = beat(store, ServiceState("api"), T0, silences=(hush(1, T0, T0 + 60),))
        two = beat(store, one, T0 + 1, silences=(*one.silences, hush(2, T0 + 1, T0 + 3600)))
        ended = attrs.evolve(two.silences[1], ended_at=T0 + 30, ended_by="carol")
        two = beat(store, two, T0 + 30, silences=(two.silences[0], ended))
        assert store.load_states() == {"api": two}
        # Where `silence end ID` goes on a node not holding the service: kept, even ended.
        assert [store.silence_service(n) for n in (1, 2, 3)] == ["api", "api", None]
        third = hush(3, T0 + 100, T0 + 200)
        kept = beat(store, two, T0 + 100, silences=(third,))  # 1 and 2 over: dropped
        assert [store.silence_service(n) for n in (1, 2, 3)] == [None, None, "api"]
    finally:
        store.close()
    store = reopen()
    try:
        assert store.load_states() == {"api": kept}
        assert store.last_silence_id() == 3
        beat(store, kept, T0 + 300, silences=())
        assert store.load_states() == {}  # nothing left to know of it
        assert store.last_silence_id() == 3
    finally:
        store.close()


def test_an_incident_held_by_a_silence_is_loaded_held(reopen: Opener) -> None:
    store = reopen()
    try:
        held = Incident(1, T0, "down", level=0, deadline=T0 + 3600, silenced=True)
        state = beat(
            store, ServiceState("api"), T0, last_incident=1, incident=held,
            silences=(hush(1, T0, T0 + 3600),),
        )  # fmt: skip
    finally:
        store.close()
    store = reopen()
    try:
        assert store.load_states() == {"api": state}
    finally:
        store.close()


def test_a_restart_moves_silences_with_the_deadlines_they_hold(reopen: Opener) -> None:
    first = reopen()
    first.restart_clock(Reading(frame=T0, wall=T0))
    held = Incident(1, T0, "down", level=0, deadline=T0 + 3600, silenced=True)
    beat(
        first, ServiceState("api"), T0, last_incident=1, incident=held,
        silences=(hush(1, T0, T0 + 3600),),
    )  # fmt: skip
    first.close()
    second = reopen()
    try:
        _, moved = second.restart_clock(Reading(frame=T0 - 100, wall=T0))
        assert moved == reopen.moved(-100)
        state = second.load_states()["api"]
        (silence,) = state.silences
        assert state.incident is not None and state.incident.deadline == T0 + 3600 + moved
        assert (silence.starts_at, silence.until) == (T0 + moved, T0 + 3600 + moved)
        assert silence.created_at == T0  # a record, not moved
    finally:
        second.close()


def test_pruning_deletes_silences_over_long_ago_but_the_latest(storage: Storage) -> None:
    state = beat(storage, ServiceState("api"), T0, silences=(hush(1, T0, T0 + 10),))
    state = beat(storage, state, T0 + 20, silences=(hush(2, T0 + 20, T0 + 30),))
    state = beat(storage, state, T0 + 40, silences=(hush(3, T0 + 40, T0 + 50),))
    state = beat(storage, state, CUTOFF + 10, silences=())  # every one over and dropped
    assert storage.prune(CUTOFF).rows == 2
    assert storage.prune(CUTOFF).rows == 0
    assert storage.last_silence_id() == 3  # the latest is kept: numbers go on from it
    reopened = beat(storage, state, CUTOFF + 20, silences=(hush(4, CUTOFF + 20, CUTOFF + 99),))
    assert storage.load_states() == {"api": reopened}
