"""A connection cut off while it pipelines (a reload's revocation, a clean stop) still gets the
reply of every event pagerd routed (found by review: the reader was cancelled between routing
a batch and queueing its replies: 10,756 ok replies, then `forbidden`, but the incident counted
10,996 alerts). Over the real socket, with a client that pipelines thousands of alerts."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.harness import Connection, running, settle, write_config
from tests.test_daemon import _RefuseAll

ALERTS = 20_000


@pytest.mark.parametrize("cut", ["revoked", "stopping"])
async def test_every_routed_event_gets_its_reply_when_the_connection_is_cut_off(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cut: str,
) -> None:
    config = write_config(tmp_path)
    line = json.dumps({"op": "alert", "service": "api", "message": "disk full"}).encode() + b"\n"
    ok = 0
    last: dict[str, object] | None = None
    with trio.fail_after(3600):
        async with running(config) as daemon:
            client = await Connection.open(config.socket)
            async with trio.open_nursery() as nursery:
                # Sent while the replies are read: pagerd reads it in batches as they fit.
                nursery.start_soon(_send_ignoring_close, client, line * ALERTS)
                while (reply := await _receive_line(client)) is not None:
                    answer = json.loads(reply)
                    if answer.get("ok"):
                        ok += 1
                        if ok == 3000:  # mid-stream: pagerd is routing and queueing
                            if cut == "revoked":
                                monkeypatch.setattr(daemon.server, "access", _RefuseAll())
                                nursery.start_soon(daemon.server.recheck_peers)
                            else:
                                daemon.server.drain()
                    else:
                        last = answer
                nursery.cancel_scope.cancel()
            await client.aclose()
            await settle()
            state = daemon.services.state("api")
    assert state.incident is not None
    assert 3000 <= ok < ALERTS  # cut off mid-stream, not before nor after
    assert ok == state.incident.alerts  # every alert decided was answered, none lost
    if cut == "revoked":
        assert last is not None and last["error"]["code"] == "forbidden"  # type: ignore[index]


async def _send_ignoring_close(client: Connection, data: bytes) -> None:
    # pagerd stopped reading and closed: the rest was never taken.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send(data)


async def _receive_line(client: Connection) -> bytes | None:
    """The next reply, None at the end: pagerd closing with the client's lines unread resets
    the connection, after every reply it sent."""
    try:
        return await client.receive_line()
    except trio.BrokenResourceError:
        return None
