"""pagerd's connections to a real PostgreSQL through a TCP proxy that stalls them (accepts and
acknowledges, forwards nothing: `tests/tcpproxy.py`): no call blocks for ever, a node drops its
shards by its own clock while stalled, and takes them back once the link heals. And the
settings every connection gets (`pagerd.storage.postgresql.links`), unless its DSN sets them.

Real time (threads talk to the server); every wait is bounded by `trio.fail_after`, and no
assertion depends on this machine's speed beyond those generous bounds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pager import cli as pager_cli
from pager.domain import Ack, Alert, Level, Policy, ServiceState, Target, decide
from pager.shards import shard_of
from pagerd.config.channels import Secret
from pagerd.config.storage import StorageConfig
from pagerd.engine.ownership import Ownership
from pagerd.storage.commits import Committer
from pagerd.storage.offload import in_thread
from pagerd.storage.port import Fence, StoreError, StoreUnavailable, Transition
from pagerd.storage.postgresql.links import (
    IDLE_IN_TRANSACTION,
    LOCK_TIMEOUT,
    STALL_GRACE,
    USER_TIMEOUT,
    client_settings,
    session_options,
)
from pagerd.storage.postgresql.store import LEASE_BOUND, Store, _connection
from tests import postgres
from tests.harness import T0
from tests.tcpproxy import TcpProxy, proxied

TTL = 4.0  # held by the node's clock for 3 s after each claim (margin: 1 s)
STATEMENT_TIMEOUT = 2.0
POLICY = Policy((Level((Target("email", "alice@example.com"),), 300.0),))


def test_pagerd_sets_keepalives_and_timeouts_unless_the_dsn_does() -> None:
    plain = client_settings("host=db dbname=pager")
    assert plain == {
        "keepalives": "1",
        "keepalives_idle": "5",
        "keepalives_interval": "1",
        "keepalives_count": "3",
        "tcp_user_timeout": "5000",
    }
    assert "tcp_user_timeout" not in client_settings("host=db tcp_user_timeout=20000")
    assert client_settings("postgresql://db/pager?keepalives=0") == {"tcp_user_timeout": "5000"}
    options = session_options("host=db", 30.0)
    assert "-c statement_timeout=30000" in options
    # The defaults: a call cut on a stalled link is answered `unavailable` within `pager`'s wait.
    assert StorageConfig().statement_timeout + STALL_GRACE < pager_cli.DEFAULT_TIMEOUT / 2
    assert "-c idle_in_transaction_session_timeout=5000" in options
    assert "-c lock_timeout=5000" in options
    mine = session_options("host=db options='-c lock_timeout=100'", 30.0)
    assert mine.startswith("-c lock_timeout=100") and mine.count("lock_timeout") == 1


@pytest.fixture
def proxy() -> Iterator[tuple[TcpProxy, str]]:
    """A migrated database of this test's own, reached through a proxy: (proxy, its DSN)."""
    with postgres.migrated() as dsn:
        info = conninfo_to_dict(dsn)
        upstream = (str(info.get("host") or "127.0.0.1"), int(str(info.get("port") or 5432)))
        with proxied(upstream) as proxy:
            yield proxy, make_conninfo(dsn, host="127.0.0.1", port=proxy.port)


def test_a_connection_gets_the_settings_in_the_server(proxy: tuple[TcpProxy, str]) -> None:
    _, dsn = proxy
    store = Store.open(dsn, node="a", pool_size=1, statement_timeout=STATEMENT_TIMEOUT)
    try:
        with store._transaction() as conn:
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in (
                    "idle_in_transaction_session_timeout",
                    "lock_timeout",
                    "statement_timeout",
                    "tcp_user_timeout",
                )
            }
            client = conn.info.get_parameters()
    finally:
        store.close()
    assert shown == {
        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION:g}s",
        "lock_timeout": f"{LOCK_TIMEOUT:g}s",
        "statement_timeout": f"{STATEMENT_TIMEOUT:g}s",
        "tcp_user_timeout": f"{USER_TIMEOUT * 1000:g}",  # shown in ms
    }
    assert client["keepalives"] == "1" and client["tcp_user_timeout"] == "5000"


def test_migrate_and_check_connect_with_the_node_s_link_settings_and_the_dsn_s_options() -> None:
    """`pagerd migrate` and `--check` open their own connection: it gets the keepalives and
    timeouts a node's do (a database cut mid-migration fails the command in seconds), and the
    DSN's own `options` are kept, not replaced."""
    with postgres.empty() as dsn:
        mine = make_conninfo(dsn, options="-c search_path=public,pg_catalog")
        config = StorageConfig(backend="postgresql", dsn=Secret(mine), statement_timeout=7.0)
        with _connection(config) as conn:
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("search_path", "statement_timeout", "tcp_user_timeout")
            }
            client = conn.info.get_parameters()
    assert shown == {
        "search_path": "public,pg_catalog",
        "statement_timeout": "7s",
        "tcp_user_timeout": f"{USER_TIMEOUT * 1000:g}",
    }
    assert client["keepalives"] == "1" and client["tcp_user_timeout"] == "5000"


def test_a_client_gone_mid_transaction_holds_the_lease_locks_a_few_seconds_only(
    proxy: tuple[TcpProxy, str],
) -> None:
    """A node stalls (or is paused) inside a fenced write, its lease rows locked: the server
    ends its transaction after `idle_in_transaction_session_timeout`, and a claim by another
    node goes through, instead of waiting as long as the stall lasts."""
    stalled, dsn = proxy
    conn = psycopg.connect(dsn, options=session_options(dsn, STATEMENT_TIMEOUT))
    other = Store.open(postgres_direct(dsn, stalled), node="b", pool_size=1)
    try:
        conn.execute("SELECT shard FROM leases WHERE shard = 7 FOR SHARE")
        stalled.stall()  # its COMMIT never arrives
        started = time.monotonic()
        got: dict[int, int] = {}
        while not got and time.monotonic() - started < 60:
            # It waits for the lock (`lock_timeout`: then retried, as the next round does).
            with contextlib.suppress(StoreUnavailable):
                got = other.claim("b", [7], 10.0, run=other.origin)
        assert got.keys() == {7}
        # Freed by the server's timeout, not by the stall ending (it never did meanwhile).
        assert time.monotonic() - started < 3 * (IDLE_IN_TRANSACTION + LOCK_TIMEOUT)
    finally:
        stalled.heal()
        other.close()
        conn.close()


def postgres_direct(dsn: str, proxy: TcpProxy) -> str:
    """`dsn` without the proxy: straight to the server."""
    host, port = proxy.upstream
    return make_conninfo(dsn, host=host, port=port)


async def test_a_stalled_link_fails_calls_in_bounded_time_and_the_node_resumes_after_heal(
    proxy: tuple[TcpProxy, str],
) -> None:
    stall, dsn = proxy
    store = Store.open(dsn, node="a", pool_size=2, statement_timeout=STATEMENT_TIMEOUT)
    ownership = Ownership("a", store, in_thread(trio.CapacityLimiter(1)), TTL, run=store.origin)
    committer = Committer(store, in_thread(trio.CapacityLimiter(1)))
    committer.fencing = ownership
    before = ServiceState("api")
    after, notes = decide(before, Alert("down"), T0, POLICY)
    opened = Transition(before, after, notes, T0)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ownership.run)
            nursery.start_soon(committer.run)
            assert shard_of("api") in ownership.held()
            stall.stall()
            stalled = trio.current_time()
            dropped = trio.Event()
            dropped_at: list[float] = []

            async def watch() -> None:
                while True:
                    if not ownership.held():
                        break
                    await trio.sleep(0.1)
                dropped_at.append(trio.current_time())
                dropped.set()

            nursery.start_soon(watch)
            # The commit path: the write fails (its outcome unknown: the shard is reloaded),
            # rather than wait for the link.
            with trio.fail_after(STATEMENT_TIMEOUT + 20):
                with pytest.raises(StoreError):
                    await committer.commit([opened])
            # The node drops its shards by its own clock, whatever its rounds are stuck on.
            with trio.fail_after(TTL + 20):
                await dropped.wait()
            assert dropped_at[0] - stalled <= TTL
            await trio.sleep(LEASE_BOUND)  # a round's call stalled that long is cut
            assert ownership.failures >= 1
            stall.heal()
            # And it takes them back once the link works (a cut call is not waited for).
            with trio.fail_after(LEASE_BOUND + 4 * TTL):
                while True:
                    if shard_of("api") in ownership.held():
                        break
                    await trio.sleep(0.1)
            await committer.commit([opened], terms=ownership.terms([shard_of("api")]))
            assert store.load_states(shards=[shard_of("api")])["api"].incident is not None
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_a_stalled_call_is_cut_and_the_next_one_reconnects(
    proxy: tuple[TcpProxy, str],
) -> None:
    stall, dsn = proxy
    store = Store.open(dsn, node="a", pool_size=1, statement_timeout=STATEMENT_TIMEOUT)

    async def join() -> list[str]:
        found = await trio.to_thread.run_sync(
            lambda: store.join("a", 10.0, run=store.origin), abandon_on_cancel=True
        )
        return [node.name for node in found]

    try:
        with trio.fail_after(LEASE_BOUND + 30):
            await join()
            stall.stall()
            with pytest.raises(StoreUnavailable):
                await join()  # cut after LEASE_BOUND, not blocked until the heal
            assert store._watchdog.cuts >= 1
            stall.heal()
            assert await join() == ["a"]
    finally:
        stall.heal()
        store.close()


def test_a_write_stuck_in_the_network_past_a_reload_is_fenced_out_when_it_arrives(
    proxy: tuple[TcpProxy, str],
) -> None:
    """Review: a write cut as stalled (its outcome unknown) was still held by a middlebox,
    which delivered it whole once it recovered, after the node had reloaded the shard and
    committed an ack: the old write committed over the ack. The claim after a reload raises
    the epoch (`anew`), so the late write's fence refuses it."""
    link, dsn = proxy
    store = Store.open(dsn, node="a", pool_size=1, statement_timeout=STATEMENT_TIMEOUT)
    shard = shard_of("api")
    try:
        epochs = store.claim("a", [shard], 60.0, run=store.origin)
        before = ServiceState("api")
        opened, notes = decide(before, Alert("down"), T0, POLICY)
        store.write([Transition(before, opened, notes, T0)], Fence("a", epochs, store.origin))
        again, _ = decide(opened, Alert("still down"), T0 + 1, POLICY)
        assert link.freeze() == 1  # the pool's one connection
        with pytest.raises(StoreUnavailable):  # cut after the statement timeout and a grace
            store.write([Transition(opened, again, (), T0 + 1)], Fence("a", epochs, store.origin))
        # Reloaded, on new connections (they pass): a new epoch, and an ack written under it.
        renewed = store.claim("a", [shard], 60.0, run=store.origin, anew=[shard])
        assert renewed[shard] == epochs[shard] + 1
        state = store.load_states(shards={shard})["api"]
        acked, notes = decide(state, Ack(by="alice"), T0 + 2, POLICY)
        store.write([Transition(state, acked, notes, T0 + 2)], Fence("a", renewed, store.origin))
        link.thaw()  # the stuck write arrives now, whole: BEGIN, the fence, the upsert, COMMIT
        with psycopg.connect(postgres_direct(dsn, link), autocommit=True) as admin:
            deadline = time.monotonic() + 30
            while admin.execute(  # its session ends once it has run all of it: one is left
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'pagerd a' AND datname = current_database()"
            ).fetchone() != (1,):
                assert time.monotonic() < deadline, "the stuck session did not end"
                time.sleep(0.01)
        incident = store.load_states(shards={shard})["api"].incident
        assert incident is not None and incident.acknowledged_by == "alice"
    finally:
        link.heal()
        store.close()
