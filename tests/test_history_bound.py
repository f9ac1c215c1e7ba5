"""An incident's history in a reply is bounded: a storm of long alerts on one open incident (an
event each, up to 4096 characters) once made a reply of hundreds of megabytes, read whole into
memory by pagerd and by the client. The reply keeps the first and the last entries, and says how
many lie between and from when to when."""

from __future__ import annotations

import json

import trio
import trio.testing

from pager.cli import render
from pager.protocol import MAX_TEXT
from pagerd.config import Config
from pagerd.storage.history import HISTORY_HEAD, HISTORY_TAIL
from tests.harness import connect, json_line, running, settle

ALERTS = 600
# The longest message, every character escaped in JSON (6 bytes each): the largest entry.
WORST = "\x01" * MAX_TEXT
BOUND = 7_000_000  # bytes: the README's promise for a history reply


async def test_a_storm_of_long_alerts_gives_a_bounded_history(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(3600):
        async with running(config), connect(config.socket) as conn:
            for _ in range(ALERTS // 100):
                await conn.send(
                    b"".join(
                        json_line({"op": "alert", "service": "api", "message": WORST})
                        for _ in range(100)
                    )
                )
                for _ in range(100):
                    assert (await conn.receive())["ok"]
            await trio.sleep(60)
            await conn.request("alert", service="api", message="the last one")
            await settle()
            await conn.send(json_line({"op": "history", "service": "api"}))
            line = await conn.receive_line()
    assert line is not None
    assert len(line) < BOUND
    reply = json.loads(line)
    timeline = reply["timeline"]
    assert len(timeline) == HISTORY_HEAD + 1 + HISTORY_TAIL
    marker = timeline[HISTORY_HEAD]
    assert marker["event"] == "elided"
    assert marker["count"] == reply["elided"]
    # Every entry is counted: the alerts shown and elided are all of them; the notifications
    # decided and their deliveries came at the start, and are kept.
    decided = [e for e in timeline if e["event"] == "notification"]
    delivered = [e for e in timeline if e["event"] == "delivery"]
    alerts = [e for e in timeline if e["event"] == "alert"]
    assert len(alerts) + reply["elided"] == ALERTS + 1
    assert len(decided) == len(delivered) > 0  # all near the start: kept
    # In order, and the marker spans what it elides.
    times = [e["at"] for e in timeline]
    assert times == sorted(times)
    assert timeline[HISTORY_HEAD - 1]["at"] <= marker["at"] <= marker["until"]
    assert marker["until"] <= timeline[HISTORY_HEAD + 1]["at"]
    assert timeline[0]["event"] == "alert"
    assert timeline[-1] == {**timeline[-1], "event": "alert", "detail": "the last one"}
    assert "... " + str(reply["elided"]) + " more entries" in render("history", reply)


async def test_a_short_history_is_whole(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(3600):
        async with running(config), connect(config.socket) as conn:
            for i in range(HISTORY_HEAD + HISTORY_TAIL - 10):
                await conn.request("alert", service="api", message=f"alert {i}")
            await settle()
            reply = await conn.request("history", service="api")
    assert reply["elided"] == 0
    assert all(e["event"] != "elided" for e in reply["timeline"])
    alerts = [e for e in reply["timeline"] if e["event"] == "alert"]
    assert len(alerts) == HISTORY_HEAD + HISTORY_TAIL - 10
