"""Several nodes in one Trio run, each the real daemon (`app.serve`) with its own socket, sharing
one in-memory cluster and one SQLite store fenced by it (`tests/fake_cluster.py`), under
MockClock: a node killed while an escalation is due is paged for by a survivor, once, within
lease_ttl + 2 s; a node that lost its lease without noticing is fenced by the store, and nothing
it decided after is written or sent."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pager import cli
from pager.domain import Alert, Level, Notify, Policy, ServiceState, Target, decide
from pager.shards import preferred, shard_of
from pagerd import app
from pagerd.config import Config, load
from pagerd.config.cluster import ClusterConfig
from pagerd.engine.actors import Envelope
from pagerd.engine.inbox import Inbox
from pagerd.engine.ownership import Ownership
from pagerd.storage.offload import inline
from pagerd.storage.port import Fence, StoreUnavailable, Transition, Write
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock
from tests.fake_cluster import FakeCluster, FencedStore, Hub
from tests.harness import CHANNELS, T0, connect

TTL = 10.0
POLICY_OF_TEST = Policy((Level((Target("email", "first@example.com"),), 60.0),))
NAMES = ("a", "b", "c")
SERVICES = [f"svc-{i}" for i in range(12)]
POLICY = """
[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:first@example.com"]
ack_timeout = "1m"
[[policies.oncall.levels]]
targets = ["email:second@example.com"]
ack_timeout = "1h"
"""


class Pages:
    """Every node's transport: each send, by notification id, with the node and the time."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.log: list[tuple[float, str, str]] = []  # (trio time, node, id)

    def of(self, node: str) -> Any:
        pages = self

        class Transport:
            async def send(self, n: Notify) -> str | None:
                await trio.lowlevel.checkpoint()
                pages.sent[n.id] += 1
                pages.log.append((trio.current_time(), node, n.id))
                return None

        return Transport()


class Kept:
    """The shared SQLite store, which no node closes (each closes its store as it stops)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        pass


class Link:
    """A node's way to the cluster's calls: cut, each fails (a kill, a partition)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self._cluster = cluster
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._cluster, name)

        def checked(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StoreUnavailable("cut from the database (the test)")
            return call(*args, **kwargs)

        return checked

    def listen(self, hub: Hub) -> Any:
        """The node's `LISTEN`, through the hub (mock clock); failing while cut."""
        wait = hub.listen()

        async def listen(channels: Collection[str], seconds: float) -> list[tuple[str, str]]:
            if self.cut:
                await trio.lowlevel.checkpoint()
                raise StoreUnavailable("cut from the database (the test)")
            return await wait(channels, seconds)  # type: ignore[no-any-return]

        return listen


class Node:
    def __init__(self, name: str, config: Config, daemon: app.Daemon, link: Link) -> None:
        self.name, self.config, self.daemon, self.link = name, config, daemon, link
        self.scope = trio.CancelScope()

    def kill(self) -> None:
        """As `kill -9`: nothing more reaches the cluster, not even a `leave`."""
        self.link.cut = True
        self.scope.cancel()


class Ambiguous:
    """A node's store whose next write with a transition is written, then fails as if the
    connection had dropped during COMMIT: the node cannot know it was written (`arm`)."""

    def __init__(self, store: FencedStore) -> None:
        self._store = store
        self.armed = False
        self.written: list[Write] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        self._store.write(batch, fence)
        if self.armed and any(isinstance(w, Transition) for w in batch):
            self.armed = False
            self.written.extend(batch)
            raise StoreUnavailable("server closed the connection unexpectedly (the test)")


@asynccontextmanager
async def cluster_of(
    tmp_path: Path, pages: Pages, names: Sequence[str] = NAMES, stores: dict[str, Any] | None = None
) -> AsyncIterator[dict[str, Node]]:
    """Nodes `names` on one cluster; `stores`, if given, gets each node's store, as it uses
    it (an `Ambiguous` over the fenced store)."""
    cluster = FakeCluster(trio.current_time)
    hub = Hub(cluster, tick=0.02)
    shared_store = Kept(Store.open_in(tmp_path / "shared"))
    nodes: dict[str, Node] = {}
    async with trio.open_nursery() as nursery:
        for name in names:
            folder = tmp_path / name
            folder.mkdir()
            text = CHANNELS + POLICY
            text += "".join(f'\n[services."{s}"]\npolicy = "oncall"\n' for s in SERVICES)
            (folder / "pager.toml").write_text(text)
            config = load(folder / "pager.toml")
            link = Link(cluster)
            store: Any = Ambiguous(FencedStore(shared_store, cluster))
            if stores is not None:
                stores[name] = store

            def shared(_: Config, link: Link = link, store: Any = store, name: str = name) -> Any:
                return app.Shared(store, link, ClusterConfig(name, TTL), link.listen(hub))

            scope = trio.CancelScope()

            async def run(
                config: Config, shared: Any, name: str, scope: trio.CancelScope,
                task_status: trio.TaskStatus[app.Daemon] = trio.TASK_STATUS_IGNORED,
            ) -> None:  # fmt: skip
                with scope:
                    await app.serve(
                        config, trio.Event(), clock=Clock(T0), offload=inline,
                        delivery_workers=0, shared=shared,
                        transports={"email": pages.of(name), "sms": pages.of(name)},
                        task_status=task_status,
                    )  # fmt: skip

            daemon = await nursery.start(partial(run, config, shared, name, scope))
            node = Node(name, config, daemon, link)
            node.scope = scope
            nodes[name] = node
        await trio.sleep(2 * TTL)  # every node joined, the shards shared out
        try:
            yield nodes
        finally:
            nursery.cancel_scope.cancel()


def owner(service: str, alive: list[str]) -> str:
    found = preferred(shard_of(service), alive)
    assert found is not None
    return found


async def test_a_survivor_pages_the_due_escalation_of_a_killed_owner_once_within_the_lease(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    pages = Pages()
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages) as nodes:
            service = next(s for s in SERVICES if owner(s, list(NAMES)) == "b")
            b = nodes["b"]
            assert b.daemon.ownership is not None and b.daemon.ownership.holds(service)
            # Sent to a, which does not own it: through the inbox to b, and b's answer back.
            async with connect(nodes["a"].config.socket) as conn:
                opened = await conn.request("alert", service=service, message="disk full")
            assert opened["ok"] and opened["incident"]["id"] == f"{service}#1", opened
            assert "queued" not in opened
            status = await status_of(nodes["c"].config, service)  # read from the store
            assert status["incident"]["id"] == f"{service}#1"
            assert status["owner"]["node"] == "b"
            await trio.sleep(59.5)  # level 2 is due in half a second
            b.kill()
            killed = trio.current_time()
            second = f"{service}#1/1/2/email:second@example.com"
            while True:
                if pages.sent[second] != 0:
                    break
                await trio.sleep(0.05)
            paged = trio.current_time()
            assert paged - killed <= TTL + 2, paged - killed
            await trio.sleep(5 * TTL)  # nothing more comes of it
            survivor = next(node for t, node, id in pages.log if id == second)
            assert survivor in ("a", "c")
            for name in ("a", "c"):
                ownership = nodes[name].daemon.ownership
                assert ownership is not None
                if ownership.holds(service):
                    status = await status_of(nodes[name].config, service)
                    assert status["incident"]["level"] == 2
                    assert status["owner"]["node"] == name
    first = f"{service}#1/1/1/email:first@example.com"
    assert pages.sent[first] == 1
    assert pages.sent[second] == 1


@pytest.mark.parametrize("backlog", [0, 300])
async def test_an_ack_stored_before_the_deadline_while_no_node_held_it_wins_over_the_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, backlog: int
) -> None:
    """The owner is killed with level 2 half a second away; an ack sent through another node
    before that deadline is stored in the inbox (no node holds the service meanwhile). The node
    that takes the shard over decides the ack before the deadline, overdue by then: level 2 is
    never paged (review round 3 saw a check-in stored on time lose to its deadline so). Behind
    `backlog` alerts stored before it too, more than one read takes (review round 4: the ack
    was left to a later read, and the deadline went first)."""
    pages = Pages()
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages) as nodes:
            service = next(s for s in SERVICES if owner(s, list(NAMES)) == "b")
            async with connect(nodes["a"].config.socket) as conn:
                opened = await conn.request("alert", service=service, message="disk full")
            assert opened["ok"], opened
            for name in ("a", "c"):  # a read of the inbox takes a round trip (20 ms)
                inbox = nodes[name].daemon.services.cluster
                assert isinstance(inbox, Inbox)
                inbox._offload = _slower(inbox._offload, 0.02)
            await trio.sleep(59.5)  # level 2 is due in half a second
            nodes["b"].kill()
            inbox = nodes["a"].daemon.services.cluster
            assert isinstance(inbox, Inbox)
            await inbox.put_all([(service, Envelope(Alert("again"), None))] * backlog)
            async with connect(nodes["a"].config.socket) as conn:
                acked = await conn.request("ack", service=service, by="alice")
            assert acked["ok"] and acked.get("queued"), acked  # stored; nobody holds it yet
            await trio.sleep(5 * TTL)  # taken over, the ack decided
            taker = next(n for n in ("a", "c") if nodes[n].daemon.ownership.holds(service))  # type: ignore[union-attr]
            status = await status_of(nodes[taker].config, service)
            assert status["incident"]["acknowledged"] is True, status
    assert pages.sent[f"{service}#1/1/2/email:second@example.com"] == 0, pages.log


def _slower(offload: Any, seconds: float) -> Any:
    async def slower(call: Any) -> Any:
        await trio.sleep(seconds)
        return await offload(call)

    return slower


async def status_of(config: Config, service: str) -> dict[str, Any]:
    async with connect(config.socket) as conn:
        return await conn.request("status", service=service)


async def test_a_node_that_lost_its_lease_unawares_is_fenced_and_writes_and_sends_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    pages = Pages()
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages) as nodes:
            service = next(s for s in SERVICES if owner(s, list(NAMES)) == "a")
            a = nodes["a"]
            ownership = a.daemon.ownership
            assert ownership is not None and ownership.holds(service)
            # a is cut from the leases and (as a node paused at the wrong instant, or with a
            # clock that lies) never notices its deadline pass: only the store can stop it.
            a.link.cut = True
            ownership._until = dict.fromkeys(ownership._until, float("inf"))
            ownership._changed.set()
            await trio.sleep(3 * TTL)  # b or c took a's shards meanwhile
            others = [nodes[n].daemon.ownership for n in ("b", "c")]
            assert any(o is not None and o.holds(service) for o in others)
            assert ownership.holds(service)  # a still believes it owns it
            async with connect(a.config.socket) as conn:
                refused = await conn.request("alert", service=service, message="from a")
            # Decided by a, fenced by the store: moved, then to be put in the inbox for the
            # owner, which a cannot reach either. Never ok.
            assert refused["error"]["code"] == "unavailable", refused
            assert not ownership.holds(service)  # the fence told it: dropped
            await trio.sleep(TTL)
            new_owner = next(n for n in ("b", "c") if nodes[n].daemon.ownership.holds(service))  # type: ignore[union-attr]
            status = await status_of(nodes[new_owner].config, service)
            assert status.get("incident") is None  # nothing of a's decision was written
    assert not any(id.startswith(f"{service}#") for id in pages.sent)


async def test_a_commit_of_unknown_outcome_reloads_its_shards_before_deciding_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The connection drops during COMMIT: the alert that opened incident #1 was written, but
    the node was told it failed. Deciding on from its state before would open #1 again (a
    unique violation every time: the service stuck). The shard is reloaded from the store
    first: the client's retry finds #1 open, and its page goes out once."""
    pages = Pages()
    stores: dict[str, Any] = {}
    service = SERVICES[0]
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages, ["a"], stores) as nodes:
            a = nodes["a"]
            ownership = a.daemon.ownership
            assert ownership is not None and ownership.holds(service)
            stores["a"].armed = True
            async with connect(a.config.socket) as conn:
                failed = await conn.request("alert", service=service, message="disk full")
                assert failed["error"]["code"] == "unavailable", failed
                assert any(isinstance(w, Transition) for w in stores["a"].written)
                # Sent again at once, as a client told "unavailable" does: the node holds the
                # shard again only once it is loaded from the store, where #1 is open.
                retried = await conn.request("alert", service=service, message="disk full")
            assert retried["ok"] and retried["incident"]["id"] == f"{service}#1", retried
            assert retried["incident"]["alerts"] == 2
            assert ownership.holds(service)
            await trio.sleep(30)  # level 1 is paged (the reload found its row undelivered)
    first = f"{service}#1/1/1/email:first@example.com"
    assert pages.sent[first] == 1


async def test_a_batch_decided_before_its_shard_was_lost_and_taken_again_is_not_written(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """An alert is decided from a's state (no incident) and waits in a's committer queue.
    Meanwhile a loses the shard, b opens incident #1 under the next epoch, and a takes the
    shard back under the one after (loading #1 from the store). a's queued batch was decided
    from a state that is gone: written under the new epoch, it would open #1 a second time.
    It is refused unwritten instead, comes back `moved`, and a decides it afresh from the
    store: the client's alert joins #1."""
    pages = Pages()
    stores: dict[str, Any] = {}
    service, other = SERVICES[0], SERVICES[1]
    assert shard_of(service) != shard_of(other)
    shard = shard_of(service)
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages, ["a"], stores) as nodes:
            a = nodes["a"]
            ownership = a.daemon.ownership
            assert ownership is not None and ownership.holds(service)
            cluster: FakeCluster = a.link._cluster
            committer = a.daemon.committer
            offload = committer._offload
            gate, held = trio.Event(), trio.Event()

            async def gated(fn: Any) -> Any:
                held.set()
                await gate.wait()  # the writer is busy: what comes next waits in its queue
                return await offload(fn)

            committer._offload = gated
            replies: dict[str, dict[str, Any]] = {}

            async def alert(name: str) -> None:
                async with connect(a.config.socket) as conn:
                    replies[name] = await conn.request("alert", service=name, message="down")

            async with trio.open_nursery() as clients:
                clients.start_soon(alert, other)
                await held.wait()  # other's batch is being written
                clients.start_soon(alert, service)
                await trio.sleep(0.1)  # service's batch decided, queued behind it
                assert service not in replies
                epoch = ownership.fence().epochs[shard]
                # a loses the shard; b takes it and opens #1 there.
                ownership.lose([shard], "expired")
                cluster.release("a", [shard], run=stores["a"].origin)
                taken = cluster.claim("b", [shard], TTL, run="run-b")
                assert taken == {shard: epoch + 1}
                before = ServiceState(service)
                after, notes = decide(before, Alert("from b"), T0, POLICY_OF_TEST)
                stores["a"]._store.write(
                    [Transition(before, after, notes, T0)], Fence("b", taken, "run-b")
                )
                cluster.release("b", [shard], run="run-b")
                ownership.wake()
                await trio.sleep(3)  # a round (woken) claims and adopts it again
                assert ownership.held()[shard] == epoch + 2
                committer._offload = offload
                gate.set()
            assert replies[other]["ok"], replies[other]
            reply = replies[service]
            assert reply["ok"], reply
            assert reply["incident"]["id"] == f"{service}#1"
            assert reply["incident"]["alerts"] == 2, reply  # b's and the client's
            assert committer.statistics().stale == 1


class Slow(Pages):
    """Pages whose sends, once `armed`, are taken by the provider at once and answered only
    when `answer` is set: a send in progress for as long as a test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.answer = trio.Event()
        self.sending = trio.Event()

    def of(self, node: str) -> Any:
        pages = self

        class Transport:
            async def send(self, n: Notify) -> str | None:
                await trio.lowlevel.checkpoint()
                pages.sent[n.id] += 1  # the provider has it (and pages) from here on
                pages.log.append((trio.current_time(), node, n.id))
                if pages.armed:
                    pages.sending.set()
                    await pages.answer.wait()
                return None

        return Transport()


PAGED = SERVICES[0]
FIRST = f"{PAGED}#1/1/1/email:first@example.com"


@asynccontextmanager
async def one_page_sending(tmp_path: Path) -> AsyncIterator[tuple[Node, Ownership, Slow]]:
    """One node, sending the first page of `PAGED`'s incident, held until `pages.answer`."""
    pages = Slow()
    async with cluster_of(tmp_path, pages, ["a"]) as nodes:
        a = nodes["a"]
        assert a.daemon.ownership is not None
        pages.armed = True
        async with connect(a.config.socket) as conn:
            opened = await conn.request("alert", service=PAGED, message="disk full")
        assert opened["ok"], opened
        await pages.sending.wait()
        yield a, a.daemon.ownership, pages


def unrecorded(node: Node) -> list[str]:
    """The notifications of `PAGED`'s shard left to send: none once its page is recorded."""
    return [u.notify.id for u in node.daemon.store.undelivered(100, shards={shard_of(PAGED)})]


async def test_a_reload_lets_a_send_in_progress_finish_and_pages_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A write of unknown outcome has a's shard reloaded while a page of it is being sent.
    The lease is kept, so nobody else sends it: the send goes on, its record is written under
    that lease (raised by the reload's claim: review round 3 found the record refused as stale,
    the page left pending for the next owner to send again), and the adoption that reloads the
    shard does not take it again. Cut short, it would be sent a second time once adopted."""
    shard = shard_of(PAGED)
    with trio.fail_after(3600):
        async with one_page_sending(tmp_path) as (a, ownership, pages):
            ownership.reload([shard])  # as the committer does after a lost COMMIT
            assert not ownership.holds(PAGED)
            epoch = ownership.fence().epochs[shard]
            await trio.sleep(3)  # a round (woken) adopts it again from the store
            assert ownership.holds(PAGED) and ownership.held()[shard] == epoch + 1
            pages.answer.set()
            await trio.sleep(5 * TTL)
            status = await status_of(a.config, PAGED)
            assert status["incident"]["id"] == f"{PAGED}#1"
            assert FIRST not in unrecorded(a)  # recorded: nothing left to send again
    assert pages.sent[FIRST] == 1, pages.log


async def test_a_carried_send_whose_record_meets_its_reload_s_new_epoch_first_is_recorded(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review round 4: the reload's claim (raising the epoch) reached the database before the
    record of a send that went on through the reload, and before the node had its answer: the
    record, fenced by the old epoch, was refused; the shard was dropped as lost, the send cut,
    and the page sent again at the next adoption. Now the refusal is the node's own doing: the
    record waits for the new epoch and is written under it; nothing is dropped or sent again."""
    shard = shard_of(PAGED)
    with trio.fail_after(3600):
        async with one_page_sending(tmp_path) as (a, ownership, pages):
            epoch = ownership.fence().epochs[shard]
            ownership.reload([shard])
            # Its claim committed, its answer not yet read: the database's epoch is ahead.
            a.link.claim("a", [shard], TTL, run=ownership.run_id, anew=[shard])
            pages.answer.set()
            await trio.sleep(5 * TTL)
            assert ownership.holds(PAGED) and ownership.held()[shard] > epoch + 1
            assert FIRST not in unrecorded(a)
            assert "reason=fenced" not in caplog.text and "cut short" not in caplog.text
    assert pages.sent[FIRST] == 1, pages.log


async def test_status_on_a_node_cut_from_the_database_shows_what_it_knows_and_says_so(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """`pager status` used to fail whole ("unavailable: the database could not be read") on a
    node cut from the database: it shows the services this node holds, from memory, and says
    the database is unreachable; its header names the node and the other nodes alive; `ping`
    names the node."""
    pages = Pages()
    with trio.fail_after(3600):
        async with cluster_of(tmp_path, pages, names=("a", "b")) as nodes:
            a = nodes["a"]
            ownership = a.daemon.ownership
            assert ownership is not None
            async with connect(a.config.socket) as conn:
                whole = await conn.request("status")
                pong = await conn.request("ping")
            assert pong["node"] == "a"
            assert whole["cluster"]["node"] == "a" and whole["cluster"]["nodes"] == ["b"]
            assert whole["cluster"]["round_error"] is None and "database_error" not in whole
            assert len(whole["services"]) == len(SERVICES)
            mine = sorted(s for s in SERVICES if ownership.holds(s))
            assert mine and len(mine) < len(SERVICES)
            a.link.cut = True
            await trio.sleep(TTL / 4 + 0.1)  # a round has failed; the shards are still held
            async with connect(a.config.socket) as conn:
                known = await conn.request("status")
            assert known["ok"], known
            # Known already (the last lease round failed): said from memory without a read.
            assert (
                known["database_error"] == "its lease rounds fail: cut from the database (the test)"
            )
            assert known["cluster"]["round_error"] == "cut from the database (the test)"
            assert sorted(s["service"] for s in known["services"]) == mine
            assert {s["owner"]["node"] for s in known["services"]} == {"a"}
            text = cli.render("status", {k: v for k, v in known.items() if k != "ok"})
            first, second, third, blank, header, *_ = text.splitlines()
            assert first.startswith(f"node a: owns {len(ownership.held())} shard(s), epoch up to ")
            assert first.endswith("; other nodes alive: b")
            assert second == "its lease rounds fail: cut from the database (the test)"
            assert third == (
                "the database is unreachable (its lease rounds fail: cut from the database (the"
                " test)): only the"
                " services this node owns are shown, from its memory"
            )
            assert blank == "" and header.split()[0] == "SERVICE"
            assert cli.render("ping", pong).endswith(" is up (node a)")
            a.link.cut = False
