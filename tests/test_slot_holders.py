"""Bad or empty lines do not keep a connection's slot (found by review: four connections each
sending a newline every 2 s held all four slots, though the docs said no client holds one longer
than `request_timeout` while others wait). Only a valid request keeps a slot."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pagerd.config import Config
from tests.harness import Connection, connect, running
from tests.test_slow_clients import DAY, _limits


async def _keep_sending(conn: Connection, line: bytes) -> None:
    try:
        while True:
            await conn.send(line)
            await trio.sleep(2)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # closed to make room


@pytest.mark.parametrize("line", [b"\n", b"not json\n", b'{"op": "nope"}\n', b"\r\n"])
async def test_lines_that_are_no_requests_do_not_hold_a_slot(
    autojump_clock: trio.testing.MockClock, config: Config, line: bytes
) -> None:
    config = _limits(config, max_connections=4, idle_timeout=300.0)  # request_timeout: 30 s
    with trio.fail_after(DAY):
        async with running(config), trio.open_nursery() as nursery:
            holders = [await Connection.open(config.socket) for _ in range(4)]
            for conn in holders:
                nursery.start_soon(_keep_sending, conn, line)
            await trio.sleep(35)
            async with connect(config.socket) as other:
                served = await other.request("ping")
            nursery.cancel_scope.cancel()
        for conn in holders:
            await conn.aclose()
    assert served["ok"] is True


async def test_a_client_sending_valid_requests_keeps_its_slot(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """What the docs now say: a connection that keeps sending requests is not closed for
    another; with every slot so held, a new client gets `busy`."""
    config = _limits(config, max_connections=4, idle_timeout=300.0)
    with trio.fail_after(DAY):
        async with running(config), trio.open_nursery() as nursery:
            holders = [await Connection.open(config.socket) for _ in range(4)]
            for conn in holders:
                nursery.start_soon(_keep_sending, conn, b'{"op": "ping"}\n')
            await trio.sleep(35)
            async with connect(config.socket) as other:
                refused = await other.receive()
            nursery.cancel_scope.cancel()
        for conn in holders:
            await conn.aclose()
    assert refused["error"]["code"] == "busy"
