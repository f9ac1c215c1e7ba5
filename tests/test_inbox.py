"""Any node accepts any event (`pagerd.engine.inbox`): nodes of one cluster in one Trio run,
each with its own engine (actors, group commit, outbox), all over one SQLite store fenced by the
fake cluster (`tests/fake_cluster.py`), and a fake `Owner` standing in for the leases. The
commit path adds each node's fence, as ownership's commit path does. (MockClock.)"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import given

from pager.domain import (
    Ack,
    Alert,
    EndSilence,
    Event,
    Healthy,
    Heartbeat,
    Rejected,
    Resolve,
    Source,
    StartSilence,
)
from pager.protocol import Request, ok_reply
from pager.shards import SHARDS, shard_of
from pager.silences import Silence
from pager.wire import from_wire, to_wire
from pagerd.access.peers import Peer
from pagerd.config import Config
from pagerd.config.channels import Channel
from pagerd.config.http import FrontConfig
from pagerd.delivery.outbox import LaneSpec, Outbox
from pagerd.engine.actors import Envelope, Services
from pagerd.engine.inbox import (
    FIRST_READ,
    FIRST_READ_MAX,
    MAX_ATTEMPTS,
    TAKE,
    Inbox,
    _Hold,
    _Relay,
    decode,
    encode,
    result_of,
)
from pagerd.engine.ownership import MOVED
from pagerd.engine.scheduler import Scheduler
from pagerd.front.local import LocalCore
from pagerd.operations.metrics import Metrics
from pagerd.storage.commits import Committer
from pagerd.storage.offload import inline
from pagerd.storage.port import Fence, Handled, StoreUnavailable, Write
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock
from tests.fake_cluster import FakeCluster, FencedStore, Hub
from tests.harness import T0, until, write_config
from tests.test_outbox import Scripted

SERVICE = "api"
SHARD = shard_of(SERVICE)
TTL = 10.0


class FakeOwner:
    """The leases of one node: what it claimed of the fake cluster, and its fence."""

    def __init__(self, node: str, cluster: FakeCluster) -> None:
        self.node = node
        self._cluster = cluster
        self.epochs: dict[int, int] = {}

    def claim(self, shards: Collection[int]) -> None:
        self.epochs.update(self._cluster.claim(self.node, shards, TTL, run=self.node))

    def holds(self, service: str) -> bool:
        return shard_of(service) in self.epochs

    def held(self) -> dict[int, int]:
        return dict(self.epochs)

    def fence(self) -> Fence:
        return Fence(self.node, dict(self.epochs), self.node)


class Fencing:
    """The node's store as its commit path sees it: every write fenced by its leases. A test
    may hold the writes that hand inbox events over (`hold`), as a node that dies before its
    commit."""

    def __init__(self, store: FencedStore, owner: FakeOwner) -> None:
        self._store = store
        self._owner = owner
        self.hold = False
        self.held = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        self._store.write(batch, self._owner.fence())


class Slot:
    """A client's reply: its line and result, and the store as it stood when it was set."""

    def __init__(self, terse: bool = False, seen: Callable[[], object] | None = None) -> None:
        self.terse = terse
        self.done = False
        self.line = b""
        self.result = ""
        self.at: float | None = None
        self._seen = seen
        self.seen: object = None
        self.answered = trio.Event()

    def set(self, line: bytes, result: str = "ok") -> None:
        assert not self.done, "a reply is set once"
        self.done = True
        self.line, self.result, self.at = line, result, trio.current_time()
        if self._seen is not None:
            self.seen = self._seen()
        self.answered.set()

    @property
    def reply(self) -> dict[str, Any]:
        return json.loads(self.line)  # type: ignore[no-any-return]


class Node:
    def __init__(self, services: Services, inbox: Inbox, owner: FakeOwner, fencing: Fencing):
        self.services = services
        self.inbox = inbox
        self.owner = owner
        self.fencing = fencing
        self.scope = trio.CancelScope()

    async def send(self, event: Event, service: str = SERVICE, **slot: Any) -> Slot:
        reply = Slot(**slot)
        await self.services.route([(service, Envelope(event, reply, None, "am"))])
        return reply


class Cluster:
    """One store, one fake cluster, the nodes started on them."""

    def __init__(self, tmp_path: Path, nursery: trio.Nursery) -> None:
        self.config: Config = write_config(tmp_path, services={SERVICE: "oncall", "web": "oncall"})
        self.sqlite = Store.open_in(tmp_path / "state")
        self.cluster = FakeCluster(trio.current_time)
        self.hub = Hub(self.cluster)
        self.nursery = nursery
        self.puts: list[tuple[int, bytes]] = []
        put = self.cluster.put

        def logged(node: str, service: str, event: bytes, at: float) -> int:
            id = put(node, service, event, at)
            self.puts.append((id, event))
            return id

        self.cluster.put = logged  # type: ignore[method-assign]

    async def node(self, name: str, shards: Collection[int] = (), **options: Any) -> Node:
        owner = FakeOwner(name, self.cluster)
        owner.claim(shards)
        fenced = FencedStore(self.sqlite, self.cluster)
        fencing = Fencing(fenced, owner)
        clock = Clock(T0)
        metrics = Metrics()
        committer = Committer(fencing, inline, metrics)
        lanes = {
            name: LaneSpec(Channel(name, "log", timeout=60.0), Scripted())
            for name in ("email", "sms")
        }
        outbox = Outbox(fencing, committer, lanes, inline, clock, metrics=metrics)
        states = fenced.load_states(shards=set(shards))
        services = Services(
            self.config,
            states,
            committer,
            Scheduler(clock),
            outbox,
            clock,
            Scheduler(clock),
            metrics,
        )
        inbox = Inbox(
            services,
            self.cluster,
            fenced,
            owner,
            inline,
            clock,
            listen=self.hub.listen(),
            **options,
        )
        services.cluster = inbox
        node = Node(services, inbox, owner, fencing)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with node.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(committer.run)
                    nursery.start_soon(outbox.run)
                    await nursery.start(services.run)
                    await nursery.start(inbox.run)
                    task_status.started()

        await self.nursery.start(run)
        return node

    def alerts(self, number: int = 1) -> list[str]:
        """The alerts in the history of `SERVICE`'s incident `number`, by message."""
        history = self.sqlite.history(SERVICE, number)
        assert history is not None
        return [str(e.get("detail")) for _, e in history.timeline if e.get("event") == "alert"]


@asynccontextmanager
async def cluster_in(tmp_path: Path) -> AsyncIterator[Cluster]:
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            yield Cluster(tmp_path, nursery)
            nursery.cancel_scope.cancel()


def source(key: str) -> Source:
    return Source("am", key)


async def test_an_event_sent_to_another_node_is_stored_then_answered_by_its_owner(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        sender = await c.node("b")

        def stored() -> object:
            return {
                "put": [id for id, _ in c.puts],
                "open": (c.sqlite.load_states().get(SERVICE) or None) is not None,
            }

        started = trio.current_time()
        reply = await sender.send(Alert("disk full", source("d1")), seen=stored)
        await reply.answered.wait()
        assert reply.at is not None and reply.at - started < 1.0
        assert reply.result == "ok"
        # Stored before the answer, and answered only once the owner committed it.
        assert reply.seen == {"put": [1], "open": True}
        # The owner's own line: what a client of the owner would have been told.
        [answer] = c.cluster.answers([1]).values()
        assert reply.line == answer.encode() + b"\n"
        shown = reply.reply
        assert shown["service"] == SERVICE and shown["incident"]["id"] == "api#1"
        local = owner.services.status(owner.services.state(SERVICE))
        assert reply.line == ok_reply(**local)
        assert c.alerts() == ["disk full"]
        assert c.cluster.take([SHARD], 0, 10) == []  # handled: out of the inbox
        assert owner.inbox.statistics().handled == 1


async def test_the_owner_fast_path_is_local(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        reply = await owner.send(Alert("disk full", source("d1")))
        await reply.answered.wait()
        assert reply.result == "ok" and c.puts == []


async def test_an_owner_that_dies_before_its_commit_leaves_the_event_to_the_next_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        first = await c.node("a", [SHARD])
        sender = await c.node("c")
        taken = trio.Event()
        never = trio.Event()
        real = first.services._committer.commit

        async def dies(
            writes: Sequence[Write], *, shards: Collection[int] = (), terms: Any = None
        ) -> None:
            if any(isinstance(w, Handled) for w in writes):
                taken.set()
                await never.wait()  # the node stops here, before its commit
            await real(writes, shards=shards, terms=terms)

        first.services._committer.commit = dies  # type: ignore[method-assign]
        # No source: a copy applied twice would be a second alert in the history.
        reply = await sender.send(Alert("disk full"))
        await taken.wait()
        first.scope.cancel()  # kill: nothing committed, its lease left to run out
        await reply.answered.wait()
        # No owner within the bound: stored, and said so.
        assert reply.result == "ok" and reply.reply == {
            "ok": True,
            "service": SERVICE,
            "queued": True,
        }
        assert sender.inbox.statistics().queued == 1
        await trio.sleep(TTL)
        second = await c.node("b", [SHARD])
        assert second.owner.holds(SERVICE)
        await second.inbox.adopt(frozenset([SHARD]))
        await until(lambda: not c.cluster.take([SHARD], 0, 10), "the inbox handled")
        assert c.alerts() == ["disk full"]  # once
        await trio.sleep(30)
        assert c.alerts() == ["disk full"]


async def test_with_no_owner_the_client_hears_queued_within_the_bound(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        sender = await c.node("b")
        started = trio.current_time()
        terse = await sender.send(Alert("one", source("d1")), terse=True)
        full = await sender.send(Heartbeat("cron"))
        await terse.answered.wait()
        await full.answered.wait()
        assert terse.at is not None and terse.at - started == pytest.approx(5.0, abs=0.1)
        assert terse.line == ok_reply(queued=True)
        assert full.reply == {"ok": True, "service": SERVICE, "queued": True}
        owner = await c.node("a", [SHARD])
        await owner.inbox.adopt(frozenset([SHARD]))
        await until(lambda: not c.cluster.take([SHARD], 0, 10), "the inbox handled")
        assert c.alerts() == ["one"]
        assert owner.services.state(SERVICE).heartbeat is None  # not configured: no monitor
        assert sorted(c.cluster.answers([1, 2])) == [1, 2]


async def test_a_node_that_stops_tells_its_waiting_clients_their_events_are_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        sender = await c.node("b")
        reply = await sender.send(Alert("one", source("d1")))
        assert not reply.done
        sender.scope.cancel()
        await reply.answered.wait()
        assert reply.reply == {"ok": True, "service": SERVICE, "queued": True}
        assert [id for id, _ in c.puts] == [1]


async def test_one_service_is_handled_in_the_order_its_events_were_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        await c.node("a", [SHARD])
        senders = [await c.node("b"), await c.node("c")]
        replies: list[Slot] = []

        async def send(node: Node, name: str) -> None:
            for i in range(8):
                replies.append(await node.send(Alert(f"{name}{i}", source(f"{name}{i}"))))
                await trio.sleep(0.01 * (i % 3))

        async with trio.open_nursery() as nursery:
            for node, name in zip(senders, "bc", strict=True):
                nursery.start_soon(send, node, name)
        for reply in replies:
            await reply.answered.wait()
        assert all(reply.result == "ok" and "queued" not in reply.reply for reply in replies)
        stored = [decode(event, 0.0)[1].event for _, event in sorted(c.puts)]
        assert c.alerts() == [event.message for event in stored if isinstance(event, Alert)]
        assert len(c.alerts()) == 16


async def test_the_polls_carry_events_and_answers_when_notifications_are_lost(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        c.hub.lost = True
        await c.node("a", [SHARD], poll=1.0)
        sender = await c.node("b", poll=1.0)
        started = trio.current_time()
        reply = await sender.send(Alert("disk full", source("d1")))
        await reply.answered.wait()
        assert "queued" not in reply.reply and reply.reply["incident"]["id"] == "api#1"
        assert reply.at is not None and reply.at - started <= 2.5  # two polls at most
        assert c.alerts() == ["disk full"]


async def test_too_many_events_waiting_are_refused_busy_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        sender = await c.node("b", max_waiting=2)
        first = await sender.send(Alert("one", source("d1")))
        second = await sender.send(Alert("two", source("d2")))
        third = await sender.send(Alert("three", source("d3")))
        assert third.done and third.result == "busy"
        assert not first.done and not second.done
        assert [id for id, _ in c.puts] == [1, 2]  # the refused one was not stored
        await first.answered.wait()
        fourth = await sender.send(Alert("four", source("d4")))  # room again
        assert not fourth.done


async def test_an_event_that_comes_back_moved_goes_to_the_new_owner(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        old = await c.node("a", [SHARD])
        client = Slot()
        envelope = Envelope(Alert("disk full", source("d1")), client, None, "am")
        [(_, local)] = await old.inbox.divert([(SERVICE, envelope)])
        assert isinstance(local.reply, _Relay)
        # Its shard dropped while it waited (ownership's `Moved`), then another node took it.
        c.cluster.release("a", [SHARD], run="a")
        old.owner.epochs.clear()
        new = await c.node("b", [SHARD])
        local.reply.set(b"", MOVED)
        assert not client.done
        await client.answered.wait()
        assert client.result == "ok" and client.reply["incident"]["id"] == "api#1"
        assert new.services.state(SERVICE).incident is not None
        assert c.alerts() == ["disk full"]


async def test_a_node_reads_the_status_of_services_it_does_not_hold_from_the_store(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        other = await c.node("b", [s for s in range(SHARDS) if s != SHARD])
        reply = await owner.send(Alert("disk full", source("d1")))
        await reply.answered.wait()
        assert other.services.state(SERVICE).incident is None  # not in its memory
        state, failed = await other.inbox.state(SERVICE)
        assert state.incident is not None and failed == 0
        found = {s.name: (s, owner) for s, _, owner in await other.inbox.states([SERVICE, "web"])}
        assert found[SERVICE][0].incident is not None
        assert found[SERVICE][1] == {"node": "a", "shard": SHARD, "epoch": 1}
        assert found["web"][0].incident is None and found["web"][1]["node"] == "b"


# The codec ---------------------------------------------------------------------------------------

_text = st.text(max_size=20)
_sources = st.builds(Source, _text, _text)
_stamps = st.integers(min_value=0, max_value=2**62)
_times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_events = st.one_of(
    st.builds(Alert, _text, st.none() | _sources, st.none() | _stamps),
    st.builds(
        Ack,
        st.none() | _text,
        st.none() | _sources,
        incident=st.none() | st.integers(1, 10**9),
        via=st.none() | st.sampled_from(["link", "sms", "slack", "console", "socket", "am"]),
    ),
    st.builds(Resolve, _sources, st.none() | _stamps),
    st.builds(Heartbeat, st.none() | _text),
    st.builds(Healthy, st.none() | _text, incident=st.none() | st.integers(1, 10**9)),
    st.builds(
        StartSilence,
        st.builds(
            Silence, st.integers(1, 10**12), _times, _times, _text, st.none() | _text, _times
        ),
    ),
    st.builds(EndSilence, st.integers(1, 10**12), st.none() | _text),
)


@given(_events, st.none() | _text)
def test_every_event_a_way_in_sends_crosses_unchanged(event: Event, service: str | None) -> None:
    assert from_wire(to_wire((service, event))) == (service, event)


@given(st.builds(Silence, st.integers(1, 99), _times, _times, _text, st.none(), _times))
def test_a_silence_crosses_on_the_wall_clock(silence: Silence) -> None:
    """Encoded in a frame 5 s behind the wall clock, read in one 2 s behind: 3 s apart."""
    _, event = from_wire(to_wire((SERVICE, StartSilence(silence)), 5.0), 2.0)
    assert isinstance(event, StartSilence)
    assert event.silence.starts_at == pytest.approx(silence.starts_at + 3.0)
    assert event.silence.ends_at == pytest.approx(silence.ends_at + 3.0)


@given(
    _events,
    st.none() | st.builds(Peer, st.integers(0, 2**31), st.integers(0, 2**31), st.integers(0, 2**31),
                          st.none() | _text, st.frozensets(_text, max_size=3)),
    st.none() | _text,
    st.none() | _text,
    st.booleans(),
)  # fmt: skip
def test_an_envelope_crosses_the_inbox_unchanged(
    event: Event, peer: Peer | None, integration: str | None, via: str | None, terse: bool
) -> None:
    envelope = Envelope(event, Slot(terse), peer, integration, via)
    service, back, was_terse = decode(encode(SERVICE, envelope, 0.0), 0.0)
    assert service == SERVICE and was_terse == terse
    assert back == Envelope(event, None, peer, integration, via)


def test_an_answer_line_gives_its_result() -> None:
    assert result_of('{"ok":true}') == "ok"
    assert result_of('{"ok":false,"error":{"code":"no_open_incident","message":"x"}}') == (
        "no_open_incident"
    )
    assert result_of("not json") == "internal"


def test_what_is_no_inbox_event_is_refused() -> None:
    with pytest.raises(ValueError):
        decode(b'[["api","nonsense"]]', 0.0)
    with pytest.raises(ValueError):
        decode(b"{", 0.0)


# Every way in answers on a non-owner as the owner would ------------------------------------------


async def test_a_resolve_naming_only_its_source_on_a_non_owner_reaches_the_owner(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        other = await c.node("b")
        opened = await owner.send(Alert("disk full", source("d1")))
        await opened.answered.wait()
        assert other.services.firing_service(source("d1")) is None  # not in its memory
        core = LocalCore(other.services, _no_read, _ready, _front(c.config))
        # An Events v2 resolve naming only its dedup_key, and one nobody has firing.
        outcomes = await core.submit(
            "am", [(None, Resolve(source("d1"))), (None, Resolve(source("nobody")))]
        )
        assert [result for _, result in outcomes] == ["ok", "ok"]
        assert "queued" not in json.loads(outcomes[0][0])  # answered by the owner
        assert len(c.puts) == 1  # the one firing: through the inbox
        assert owner.services.state(SERVICE).incident is None  # closed by its owner
        history = c.sqlite.history(SERVICE, 1)
        assert history is not None
        assert [e.get("event") for _, e in history.timeline][-2:] == ["resolve", "closed"]
        assert outcomes[1][0] == ok_reply()  # nobody has it firing: nothing to do, as anywhere


async def test_a_lookup_the_store_cannot_answer_is_unavailable_and_changes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        other = await c.node("b")
        opened = await owner.send(Alert("disk full", source("d1")))
        await opened.answered.wait()
        other.inbox._store = Down(other.inbox._store)
        core = LocalCore(other.services, _no_read, _ready, _front(c.config))
        [(line, result)] = await core.submit("am", [(None, Resolve(source("d1")))])
        assert result == "unavailable", line
        assert owner.services.state(SERVICE).incident is not None


async def test_a_silence_of_a_service_held_elsewhere_is_listed_and_ended_through_any_node(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        other = await c.node("b", [s for s in range(SHARDS) if s != SHARD])
        request = Request("silence", SERVICE, reason="db migration", duration=3600.0)
        service, event = owner.services.silence_event(request, "bob")
        started = await owner.send(event, service)
        await started.answered.wait()
        assert started.result == "ok"
        [number] = [s.id for s in owner.services.state(SERVICE).silences]
        assert other.services.silences() == []  # its memory has only its own shards'
        listed = await other.services.all_silences()
        assert listed == owner.services.silences() and listed[0]["id"] == number
        assert await other.services.all_silences("web") == []
        # Ended through the node that does not hold it: found in the store, sent to the owner.
        end = Request("silence_end", id=number)
        with pytest.raises(Rejected):
            other.services.silence_event(end, "carol")
        service, event = await other.services.find_silence_event(end, "carol")
        assert (service, event) == (SERVICE, EndSilence(number, "carol"))
        ended = await other.send(event, service)
        await ended.answered.wait()
        assert ended.result == "ok", ended.line
        assert owner.services.silences() == [] and await other.services.all_silences() == []
        # Over now: refused as the owner refuses it, nothing sent.
        with pytest.raises(Rejected) as refused:
            await other.services.find_silence_event(end, "carol")
        assert refused.value.code == "not_found"
        with pytest.raises(Rejected):
            await other.services.find_silence_event(Request("silence_end", id=999), None)


async def test_a_non_owner_reads_the_incident_of_an_acknowledge_link_from_the_store(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD])
        other = await c.node("b")
        opened = await owner.send(Alert("disk full", source("d1")))
        await opened.answered.wait()
        assert other.services.state(SERVICE).incident is None
        read = await other.services.read_state(SERVICE)
        assert read.incident == owner.services.state(SERVICE).incident
        assert read.incident is not None


class Down:
    """A shared store whose lookups fail, as when PostgreSQL does not answer."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def firing_services(self, sources: object) -> dict[Source, str]:
        raise StoreUnavailable("the database cannot be reached (the test cut it)")


async def _no_read(request: Request) -> tuple[bytes, str]:
    raise AssertionError("no read here")


async def _ready() -> str | None:
    return None


def _front(config: Config) -> FrontConfig:
    return FrontConfig.of(config.http, config.integrations, config.services)


async def test_an_inbox_event_that_always_fails_is_answered_with_its_error_and_the_rest_flow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        metrics = Metrics()
        owner = await c.node("a", [SHARD], metrics=metrics)
        sender = await c.node("b")
        real = owner.services._decide
        tries: list[float] = []

        def buggy(service: str, batch: list[Envelope], now: float) -> Any:
            if any(isinstance(e.event, Alert) and e.event.message == "bad" for e in batch):
                tries.append(trio.current_time())
                raise RuntimeError("a bug in deciding it")
            return real(service, batch, now)

        owner.services._decide = buggy  # type: ignore[method-assign]
        bad = await sender.send(Alert("bad", source("b1")))
        good = await sender.send(Alert("good", source("g1")))
        await good.answered.wait()
        await bad.answered.wait()
        assert bad.reply == {"ok": True, "service": SERVICE, "queued": True}  # stored, in 5 s
        await until(lambda: not c.cluster.take([SHARD], 0, 10), "the inbox handled")
        assert (
            len(tries) == MAX_ATTEMPTS and tries[-1] - tries[0] >= (MAX_ATTEMPTS - 1) * 2.0 - 0.01
        )
        [answer] = c.cluster.answers([1]).values()
        assert result_of(answer) == "internal" and "5 attempts" in answer
        assert c.alerts() == ["good"]  # after it, in order, and only once it was settled
        assert owner.inbox.statistics().poisoned == 1
        text = metrics.render()
        assert "pagerd_cluster_inbox_poisoned_total 1" in text
        assert "pagerd_cluster_inbox_waiting 0" in text


async def test_an_inbox_event_that_cannot_be_read_is_answered_and_the_rest_flow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        metrics = Metrics()
        sender = await c.node("b", metrics=metrics)
        c.cluster.put("b", SERVICE, b"not an event", 0.0)
        good = await sender.send(Alert("good", source("g1")))
        owner = await c.node("a", [SHARD])
        owner.inbox.adopted(frozenset([SHARD]))
        await good.answered.wait()
        await until(lambda: not c.cluster.take([SHARD], 0, 10), "the inbox handled")
        assert result_of(c.cluster.answers([1])[1]) == "internal"
        assert c.alerts() == ["good"]
        assert owner.inbox.statistics().poisoned == 1
        assert "pagerd_cluster_inbox_put_total 1" in metrics.render()


async def test_events_routed_together_are_put_in_one_transaction(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with cluster_in(tmp_path) as c:
        await c.node("a", [SHARD, shard_of("web")])
        sender = await c.node("b")
        batches: list[int] = []
        put_many = c.cluster.put_many

        def counted(node: str, items: Sequence[tuple[str, bytes, float]]) -> list[int]:
            batches.append(len(items))
            return put_many(node, items)

        c.cluster.put_many = counted  # type: ignore[method-assign]
        slots = [Slot() for _ in range(3)]
        events = [Alert("one", source("o")), Alert("two", source("t")), Alert("web down")]
        await sender.services.route(
            [
                (service, Envelope(event, slot, None, "am"))
                for service, event, slot in zip(
                    [SERVICE, SERVICE, "web"], events, slots, strict=True
                )
            ]
        )
        for slot in slots:
            await slot.answered.wait()
        assert batches == [3]  # one transaction for the three
        assert [slot.result for slot in slots] == ["ok"] * 3
        assert all("queued" not in slot.reply for slot in slots)
        assert c.alerts() == ["one", "two"]


async def test_a_database_down_is_logged_in_a_line_a_poll_not_a_traceback(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage repeats the inbox's failures at every poll: each is one line naming the
    cause (an operator found the log full of tracebacks); a bug keeps its traceback."""
    async with cluster_in(tmp_path) as c:
        await c.node("a", [SHARD], poll=1.0)
        c.cluster.down = True
        with caplog.at_level(logging.ERROR, "pagerd.inbox"):
            await trio.sleep(3.5)
        c.cluster.down = False
    failures = [r for r in caplog.records if r.name == "pagerd.inbox"]
    assert failures and all(r.exc_info is None for r in failures)
    assert all("the test cut it" in r.getMessage() for r in failures)


async def test_an_adopted_service_s_timeouts_wait_for_its_stored_events_while_they_go_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Review round 5: a storm stored on one service while no node held it outlasted a fixed
    wait, and its ack (stored before the deadline, behind the storm) lost to its due timeout.
    The service whose stored events wait behind its earlier ones (in flight) holds its timeouts
    until the last of them is handed over, as long as they go on (each within `FIRST_READ`),
    `FIRST_READ_MAX` at most; the shard's other services do not wait once it has been read."""
    other = next(f"svc-{i}" for i in range(10_000) if shard_of(f"svc-{i}") == SHARD)
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD], poll=3600.0)  # reads only when woken
        inbox = owner.inbox
        stored = encode(SERVICE, Envelope(Alert("stored meanwhile"), None), 0.0)
        c.cluster.put_many("b", [(SERVICE, stored, T0)] * 3)
        inbox._in_flight[SERVICE] = {0}  # an earlier event of it is with its actor still
        inbox.adopted(frozenset({SHARD}))
        assert inbox.events_first(SERVICE) and inbox.events_first(other)  # nothing read yet
        await trio.sleep(0.1)  # the first read: its events wait behind the one in flight
        assert inbox.events_first(SERVICE) and not inbox.events_first(other)
        inbox._in_flight.clear()  # answered: the next take hands the three over, the last too
        inbox._taking.set()
        await trio.sleep(0.1)
        assert not inbox.events_first(SERVICE)
        # Its events wait behind one that stays in flight: held FIRST_READ, no longer.
        c.cluster.put_many("b", [(SERVICE, stored, T0)])
        inbox._in_flight[SERVICE] = {0}
        inbox.adopted(frozenset({SHARD}))
        await trio.sleep(0.1)
        assert inbox.events_first(SERVICE)
        await trio.sleep(FIRST_READ)
        assert not inbox.events_first(SERVICE)


def test_a_hold_goes_on_with_each_read_never_past_its_latest() -> None:
    hold = _Hold(FIRST_READ, FIRST_READ_MAX)
    hold.go_on(10.0)
    assert hold.until == 10.0 + FIRST_READ
    hold.go_on(FIRST_READ_MAX)
    assert hold.until == FIRST_READ_MAX


async def test_an_event_answered_while_a_read_is_under_way_is_not_handed_over_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A read of the inbox returns rows as they were when it began; an event answered (its
    row deleted) while the read was under way must not be handed over again from it (found
    in review: an alert applied again after a resolve opened a second incident)."""
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD], poll=0.01)  # reads all the time
        inbox = owner.inbox
        read = inbox._offload

        async def stale(call: Any) -> Any:  # the rows as they were; the answer 50 ms later
            rows = await read(call)
            await trio.sleep(0.05)
            return rows

        inbox._offload = stale
        commit = owner.services._committer._offload

        async def slow(call: Any) -> Any:  # a commit takes 30 ms
            await trio.sleep(0.03)
            return await commit(call)

        owner.services._committer._offload = slow
        sender = await c.node("b")
        for message in ("disk full", "still full"):
            reply = await sender.send(Alert(message))
            await reply.answered.wait()
        await trio.sleep(2)
        assert c.alerts() == ["disk full", "still full"]


async def test_a_service_whose_events_are_being_decided_hides_no_other_s_behind_its_backlog(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Review round 7: a read takes the oldest events of every shard held; a storm of one
    service, its first events being decided, filled every read, and another service's ack
    waited behind the whole backlog while its deadline went first. A read skips the services
    whose events are being decided (their next ones wait for them anyway)."""
    async with cluster_in(tmp_path) as c:
        owner = await c.node("a", [SHARD, shard_of("web")], poll=3600.0)  # reads when woken
        inbox = owner.inbox
        storm = encode(SERVICE, Envelope(Alert("storm"), None), 0.0)
        c.cluster.put_many("b", [(SERVICE, storm, T0)] * (2 * TAKE))
        inbox._in_flight[SERVICE] = {0}  # its first event is being decided
        sender = await c.node("b")
        reply = await sender.send(Alert("web down"), "web")
        await reply.answered.wait()
        assert "queued" not in reply.reply and reply.reply["incident"]["id"] == "web#1"
        assert c.cluster.take({SHARD}, 0, 1)  # the storm waits, untouched
