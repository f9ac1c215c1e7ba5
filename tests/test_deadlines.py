"""Escalation deadlines are kept whatever happens around them: a commit that fails, a storm on
other services, and the count of what is waiting says what is really waiting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from pagerd.app import Daemon
from pagerd.config import Config
from pagerd.engine import actors
from pagerd.storage.sqlite.store import Store
from tests.harness import (
    ONCALL,
    Connection,
    connect,
    failing_writes,
    json_line,
    metric,
    notifications,
    running,
    settle,
    write_config,
)

DAY = 24 * 3600.0
T = TypeVar("T")


def _levels(config: Config) -> list[int]:
    return sorted(n["level"] for n in notifications(config))


async def test_an_escalation_whose_commit_fails_once_is_retried_and_pages_level_2(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            await trio.sleep(299)  # level 2 is due at 300 s: its commit is the next one
            refused = failing_writes(daemon, monkeypatch, 1)
            await trio.sleep(10)
            escalated = _levels(config)
            status = await conn.request("status", service="api")
            await trio.sleep(3600)
    assert len(refused) == 1  # the escalation's commit did fail
    assert escalated == [1, 1, 2]  # retried within seconds, not at the next restart
    assert status["incident"]["level"] == 2
    assert _levels(config) == [1, 1, 2]  # once: the retry did not page twice


async def test_while_the_disk_fails_escalations_back_off_then_go_out_when_it_works(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await conn.request("alert", service="web")
            await settle()
            await trio.sleep(299)
            refused = failing_writes(daemon, monkeypatch, 1_000_000)
            await trio.sleep(600)  # ten minutes of a broken disk
            during = len(refused)
            counted = await conn.request("alert", service="api")  # refused too: told so
            failures = await metric(conn, "pagerd_store_commit_failures_total")
            monkeypatch.undo()  # the disk works again
            await trio.sleep(120)
            status = await conn.request("status", service="api")
    # Retried with a back-off, not in a loop that spins on the broken disk.
    assert 3 <= during <= 100
    assert counted["error"]["code"] == "unavailable"
    assert failures == during + 1  # an operator can alert on it
    assert _levels(config) == [1, 1, 1, 1, 2, 2]  # both escalated once the disk was back
    assert status["incident"]["level"] == 2
    assert status["incident"]["alerts"] == 1


async def test_a_commit_failure_leaves_a_later_deadline_where_it_was(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            failing_writes(daemon, monkeypatch, 1)
            refused = await conn.request("alert", service="api")  # its commit fails
            await trio.sleep(299.5)
            before = _levels(config)
            await trio.sleep(1)
    assert refused["error"]["code"] == "unavailable"
    assert before == [1, 1]
    assert _levels(config) == [1, 1, 2]  # on time, neither early nor lost


# A storm on other services -------------------------------------------------------------

QUICK = """
[policies.quick]
[[policies.quick.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "2s"
[[policies.quick.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "1h"
"""


async def test_a_quiet_services_escalation_is_on_time_while_a_storm_keeps_many_busy(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    names = [f"svc-{i}" for i in range(900)]
    config = write_config(
        tmp_path, ONCALL + QUICK, {**{n: "oncall" for n in names}, "quiet": "quick"}
    )

    # Every database and file operation takes 50 ms: commits are slow, so the storm's services
    # keep an owner (an actor, or a claim) while their events wait for the next commit.
    async def slow(fn: Callable[[], T]) -> T:
        await trio.sleep(0.05)
        return fn()

    stop = trio.Event()
    owners: list[int] = []

    async def storm(k: int) -> None:
        # Pipelined without a pause: pagerd's back-pressure alone paces each connection.
        lines = b"".join(
            json_line({"op": "alert", "service": name, "message": "storm"})
            for name in names[k * 110 :] + names[: k * 110]
        )
        sent = 0
        async with connect(config.socket) as conn, trio.open_nursery() as nursery:

            async def send() -> None:
                nonlocal sent
                while not stop.is_set():
                    await conn.send(lines)
                    sent += len(names)

            nursery.start_soon(send)
            received = 0
            while not stop.is_set() or received < sent:
                assert (await conn.receive())["ok"] is True
                received += 1

    with trio.fail_after(DAY):
        async with running(config, offload=slow) as daemon:
            async with trio.open_nursery() as nursery:
                for k in range(8):
                    nursery.start_soon(storm, k)
                await trio.sleep(1)
                async with connect(config.socket) as conn:
                    alert = await conn.request("alert", service="quiet")
                opened = _created(daemon, "quiet", 1)
                # The owners around the deadline, every 10 ms from 0.5 s before it to 0.5 s after.
                await trio.sleep_until(trio.current_time() + opened + 1.5 - daemon.clock.now())
                for _ in range(100):
                    owners.append(daemon.services.live_actors())
                    await trio.sleep(0.01)
                await trio.sleep(2)
                stop.set()
            escalated = _created(daemon, "quiet", 2)
    assert alert["ok"] is True
    # The storm did keep that many services owned, most of the time.
    assert sorted(owners)[len(owners) // 2] > actors.MAX_ACTORS_FOR_TIMEOUTS
    lateness = escalated - (opened + 2)
    assert 0 <= lateness < 0.5  # a commit or two, not the rest of the storm


def _created(daemon: Daemon, service: str, level: int) -> float:
    assert isinstance(daemon.store, Store)
    row = daemon.store._conn.execute(
        "SELECT MIN(created_at) FROM notifications WHERE service = ? AND level = ?",
        (service, level),
    ).fetchone()
    assert row[0] is not None, f"{service} level {level} was never paged"
    created: float = row[0]
    return created


# What the metric counts -----------------------------------------------------------------


async def _scheduled(conn: Connection) -> float:
    return await metric(conn, "pagerd_scheduled_timeouts")


async def test_scheduled_timeouts_count_only_what_is_still_waiting(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    counts: list[float] = []
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await conn.request("alert", service="web")
            await settle()
            counts.append(await _scheduled(conn))
            await conn.request("ack", service="api")
            await settle()
            counts.append(await _scheduled(conn))
            await conn.request("healthy", service="web")
            await settle()
            counts.append(await _scheduled(conn))
            await conn.request("alert", service="web")  # a new incident: one deadline again
            await conn.request("alert", service="web")  # counted: still one
            await settle()
            counts.append(await _scheduled(conn))
            await trio.sleep(300)  # escalated to level 2: its next deadline replaces the first
            counts.append(await _scheduled(conn))
            await trio.sleep(901)  # level 2 was the last: nothing left to wait for
            counts.append(await _scheduled(conn))
    assert counts == [2, 1, 0, 1, 1, 0]
