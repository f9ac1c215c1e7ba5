"""A slow user directory (NSS: LDAP, sssd) never delays paging (found by review: every
connection's lookup ran on the one thread shared with the log transport and config loading, so
with a 0.5 s lookup eight alerts at once took 4 s). Names are looked up on their own threads,
once per user at a time, kept `NAME_TTL`; with no access list nothing waits for them longer than
`NAME_WAIT`. And a stop never waits behind a reload."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from pagerd.access.peers import Peer, resolve
from pagerd.front import server
from pagerd.front.names import NAME_TTL, NAME_WAIT, Names
from pagerd.main import _on_signals
from tests.harness import Connection, connect, running, write_config
from tests.test_daemon import _RefuseAll

T = TypeVar("T")
LOOKUP = 0.5


class SlowDirectory:
    """An offload for name lookups that answers after `LOOKUP`, counting the lookups."""

    def __init__(self, fail: bool = False) -> None:
        self.lookups = 0
        self.fail = fail

    async def __call__(self, fn: Callable[[], T]) -> T:
        self.lookups += 1
        await trio.sleep(LOOKUP)
        if self.fail:
            raise OSError("the directory server is gone")
        return fn()


async def test_concurrent_alerts_do_not_wait_for_a_slow_directory(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    services = {f"s{i}": "oncall" for i in range(8)}
    config = write_config(tmp_path, services=services)
    answered: list[float] = []
    with trio.fail_after(60):
        async with running(config, names_offload=SlowDirectory()):
            started = trio.current_time()

            async def alert(name: str) -> None:
                async with connect(config.socket) as conn:
                    reply = await conn.request("alert", service=name, message="disk full")
                    assert reply["ok"], reply
                    answered.append(trio.current_time() - started)

            async with trio.open_nursery() as nursery:
                for name in services:
                    nursery.start_soon(alert, name)
    assert len(answered) == 8
    assert max(answered) <= NAME_WAIT + 0.01


PEER = Peer(pid=10, uid=0, gid=0)


async def test_one_lookup_serves_every_connection_of_a_user_while_it_runs_and_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = SlowDirectory()
    names = Names(directory)
    found: list[Peer] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(names.run)

        async def look(pid: int) -> None:
            found.append(await names.of(Peer(pid, 0, 0), False, restricted=True))

        async with trio.open_nursery() as lookers:
            for pid in range(8):
                lookers.start_soon(look, pid)
        assert trio.current_time() == pytest.approx(LOOKUP)  # together, not one after another
        assert directory.lookups == 1
        assert {p.user for p in found} == {"root"} and len({p.pid for p in found}) == 8
        # Kept: the next connection waits for nothing, until the names are `NAME_TTL` old.
        assert (await names.of(PEER, False, restricted=True)).user == "root"
        assert directory.lookups == 1
        await trio.sleep(NAME_TTL)
        assert (await names.of(PEER, False, restricted=True)).user == "root"
        assert directory.lookups == 2
        nursery.cancel_scope.cancel()


async def test_without_an_access_list_the_wait_for_a_name_is_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = SlowDirectory()
    names = Names(directory)
    async with trio.open_nursery() as nursery:
        await nursery.start(names.run)
        first = await names.of(PEER, False, restricted=False)
        assert first.user is None and trio.current_time() == pytest.approx(NAME_WAIT)
        await trio.sleep(LOOKUP)  # the lookup went on: the next connection has the name
        assert (await names.of(PEER, False, restricted=False)).user == "root"
        nursery.cancel_scope.cancel()


async def test_a_failing_directory_gives_no_names_and_is_asked_again_later(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    directory = SlowDirectory(fail=True)
    names = Names(directory)
    async with trio.open_nursery() as nursery:
        await nursery.start(names.run)
        assert (await names.of(PEER, True, restricted=True)).user is None
        assert (await names.of(PEER, True, restricted=True)).user is None
        assert directory.lookups == 1  # not once a connection while it is down
        directory.fail = False
        await trio.sleep(60)
        assert (await names.of(PEER, True, restricted=True)).user == "root"
        nursery.cancel_scope.cancel()
    assert any("cannot look up the user" in r.getMessage() for r in caplog.records)
    assert all(r.levelno <= logging.WARNING for r in caplog.records)


async def test_a_stop_does_not_wait_behind_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = trio.Event()
    reloads = 0

    async def slow_reload() -> bool:
        nonlocal reloads
        reloads += 1
        await trio.sleep(3600)  # a config on a hung network mount, a slow directory
        return True

    send, received = trio.open_memory_channel[int](10)

    async def signals() -> None:
        for signum in (signal.SIGHUP, signal.SIGHUP, signal.SIGHUP, signal.SIGTERM):
            await send.send(signum)
            await trio.sleep(1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(signals)
            await _on_signals(received, slow_reload, stop)
    assert stop.is_set()
    assert reloads == 1  # the SIGHUPs during it would have made one more, after it


async def test_a_reload_looks_each_connected_user_up_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not once a connection: with a slow directory, a reload would take that much longer."""
    calls: list[int] = []

    def counted(peer: Peer, with_groups: bool) -> Peer:
        calls.append(peer.uid)
        return resolve(peer, with_groups)

    config = write_config(tmp_path)
    with trio.fail_after(60):
        async with running(config) as daemon:
            clients = [await Connection.open(config.socket) for _ in range(5)]
            for client in clients:
                assert (await client.request("ping"))["ok"]
            monkeypatch.setattr(server, "resolve", counted)
            monkeypatch.setattr(daemon.server, "access", _RefuseAll())
            assert await daemon.server.recheck_peers() == 5
            for client in clients:
                await client.aclose()
    assert calls == [os.getuid()]
