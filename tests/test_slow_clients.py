"""A client that trickles its bytes cannot hold a connection: a line must arrive whole within
`request_timeout` of waiting on it, however lively the client is between bytes."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pagerd.config import Config, load
from tests.harness import Connection, connect, running, settle

DAY = 24 * 3600.0


def _limits(config: Config, **changes: Any) -> Config:
    return attrs.evolve(config, limits=attrs.evolve(config.limits, **changes))


async def _trickle(conn: Connection, data: bytes, every: float) -> None:
    for byte in data:
        await conn.send(bytes([byte]))
        await trio.sleep(every)


async def _trickle_until_closed(conn: Connection, data: bytes, every: float) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await _trickle(conn, data, every)


async def test_a_line_trickled_a_byte_a_second_is_cut_off_at_the_request_timeout(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config = _limits(config, idle_timeout=300.0)  # request_timeout: its default, 30 s
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            slow = await Connection.open(config.socket)
            await slow.send(b'{"op": "ping"}\n')  # a line in one go is served
            pong = await slow.receive()
            began = trio.current_time()
            with pytest.raises(trio.BrokenResourceError):  # pagerd closed it
                await _trickle(slow, b'{"op": "status", "service": "api"' + b" " * 10_000, 1.0)
            cut_after = trio.current_time() - began
            await settle()
            left = daemon.server.connections
            async with connect(config.socket) as other:
                assert (await other.request("ping"))["ok"] is True
            await slow.aclose()
    assert pong["ok"] is True
    assert 30.0 <= cut_after <= 33.0
    assert left == 0


async def test_many_trickling_clients_do_not_lock_others_out(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config = _limits(config, max_connections=4, idle_timeout=300.0)  # request_timeout: 30 s
    with trio.fail_after(DAY):
        async with running(config), trio.open_nursery() as nursery:
            slow = [await Connection.open(config.socket) for _ in range(4)]
            for conn in slow:
                nursery.start_soon(_trickle_until_closed, conn, b"x" * 1000, 1.0)
            await trio.sleep(5)
            async with connect(config.socket) as early:
                locked_out = await early.receive()
            await trio.sleep(30)
            async with connect(config.socket) as late:
                served = await late.request("ping")
            nursery.cancel_scope.cancel()
        for conn in slow:
            await conn.aclose()
    assert locked_out["error"]["code"] == "busy"
    assert served["ok"] is True


async def test_time_spent_not_reading_a_pipelining_client_is_not_held_against_it(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """A client that sends a big batch and reads its replies late: pagerd stops reading it (its
    replies are not taken), so the half line left in pagerd's buffer meanwhile is pagerd's
    wait, not the client's."""
    config = _limits(config, request_timeout=5.0, write_timeout=60.0)
    count = 20_000
    with trio.fail_after(DAY):
        async with (
            running(config),
            connect(config.socket) as conn,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(conn.send, b'{"op": "ping"}\n' * count)
            await trio.sleep(50)
            replies = [await conn.receive() for _ in range(count)]
    assert all(reply["ok"] for reply in replies)


async def test_a_line_split_over_a_few_writes_in_time_is_served(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    config = _limits(config, request_timeout=30.0)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            for _ in range(3):  # each line takes 20 s: the budget is per line, not per connection
                await _trickle(conn, b'{"op": "ping"}', 20 / 14)
                await conn.send(b"\n")
                assert (await conn.receive())["ok"] is True


def test_request_timeout_is_read_from_the_config(config: Config) -> None:
    text = config.path.read_text().replace("[daemon]\n", '[daemon]\nrequest_timeout = "10s"\n', 1)
    config.path.write_text(text)
    assert load(config.path).limits.request_timeout == 10.0


class _RefuseAll:
    """Access that lets nobody in: the tests run as root, whom the real one always lets in."""

    groups = None
    restricted = True
    own_uid = -1

    def allows(self, peer: object) -> bool:
        return False


async def test_a_refused_client_trickling_bytes_is_closed_at_the_request_timeout(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _limits(config, idle_timeout=300.0)  # request_timeout: 30 s
    with trio.fail_after(DAY):
        async with running(config) as daemon:
            monkeypatch.setattr(daemon.server, "access", _RefuseAll())
            slow = await Connection.open(config.socket)
            began = trio.current_time()
            with pytest.raises(trio.BrokenResourceError):
                await _trickle(slow, b"x" * 10_000, 1.0)
            cut_after = trio.current_time() - began
            await slow.aclose()
    assert 30.0 <= cut_after <= 33.0


async def test_at_the_limit_a_connection_idle_past_the_request_timeout_makes_room(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """Idle connections would otherwise hold every slot for idle_timeout (5 minutes)."""
    config = _limits(config, max_connections=3, idle_timeout=300.0)  # request_timeout: 30 s
    with trio.fail_after(DAY):
        async with running(config):
            idle = [await Connection.open(config.socket) for _ in range(3)]
            assert (await idle[0].request("ping"))["ok"] is True  # served, then idle
            await trio.sleep(10)
            async with connect(config.socket) as early:
                locked_out = await early.receive()  # 10 s idle: no reason to give up a slot
            await trio.sleep(25)
            async with connect(config.socket) as other:
                served = await other.request("ping")
            closed = []
            for conn in idle:
                with trio.move_on_after(1):
                    closed.append(await conn.receive_line() is None)
                await conn.aclose()
    assert locked_out["error"]["code"] == "busy"
    assert served["ok"] is True
    assert sorted(closed) == [True]  # one closed to make room; the others time out reading
