"""A service removed from the config (or renamed) has its open incident closed, with the reason
in its history: nothing counts it as open any more, nothing pages for it, and if the service
comes back it starts healthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pagerd.timing.clock import Clock
from tests.harness import (
    T0,
    Connection,
    connect,
    failing_writes,
    metric_samples,
    notifications,
    running,
    settle,
    write_config,
)

DAY = 24 * 3600.0
REASON = "service removed from the config"


async def _metrics(conn: Connection) -> dict[str, float]:
    return metric_samples((await conn.request("metrics"))["text"])


def _removed(history: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in history["timeline"] if e["event"] == "removed"]


async def test_a_reload_that_removes_a_service_closes_its_open_incident(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await conn.request("alert", service="web")
            await settle()
            write_config(tmp_path, services={"web": "oncall"})
            assert await daemon.reload()
            await settle()
            metrics = await _metrics(conn)
            line = daemon.status_line()
            everyone = await conn.request("status")
            ack = await conn.request("ack", service="api")
            history = await conn.request("history", incident="api#1")
            await trio.sleep(3600)  # api's level 2 was due at 5 minutes
    assert metrics["pagerd_open_incidents"] == 1  # web's
    assert metrics["pagerd_unacknowledged_incidents"] == 1
    assert metrics["pagerd_scheduled_timeouts"] == 1
    assert line == "1 services, 1 open incidents"
    assert [s["service"] for s in everyone["services"]] == ["web"]
    assert ack["error"]["code"] == "unknown_service"
    assert f"closed service=api incident=api#1: {REASON}" in caplog.text
    assert history["closed_at"] is not None
    assert [e.get("detail") for e in _removed(history)] == [REASON]
    assert sorted((n["service"], n["level"]) for n in notifications(config)) == [
        ("api", 1), ("api", 1), ("web", 1), ("web", 1), ("web", 2),
    ]  # fmt: skip


async def test_a_renamed_service_starts_healthy_under_its_new_name(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            write_config(tmp_path, services={"api-v2": "oncall", "web": "oncall"})
            assert await daemon.reload()
            await settle()
            renamed = await conn.request("status", service="api-v2")
            metrics = await _metrics(conn)
            history = await conn.request("history", incident="api#1")
    assert renamed["state"] == "healthy"
    assert metrics["pagerd_open_incidents"] == 0
    assert [e.get("detail") for e in _removed(history)] == [REASON]


async def test_a_restart_without_a_service_closes_its_incident_and_it_comes_back_healthy(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await settle()
        without_api = write_config(tmp_path, services={"web": "oncall"})
        async with running(without_api, Clock(T0 + 60)) as daemon, connect(config.socket) as conn:
            await settle()
            metrics = await _metrics(conn)
            line = daemon.status_line()
            await trio.sleep(3600)
        # Closed durably: the next restart, with api configured again, finds it healthy.
        config = write_config(tmp_path)
        async with running(config, Clock(T0 + 7200)), connect(config.socket) as conn:
            await settle()
            back = await conn.request("status", service="api")
            history = await conn.request("history", incident="api#1")
            again = await conn.request("alert", service="api")
            await settle()
    assert metrics["pagerd_open_incidents"] == 0
    assert metrics["pagerd_unacknowledged_incidents"] == 0
    assert line == "1 services, 0 open incidents"
    assert back["state"] == "healthy"
    assert history["closed_at"] == "2027-01-15T08:01:00.000Z"
    assert [e.get("detail") for e in _removed(history)] == [REASON]
    assert again["incident"]["id"] == "api#2"  # numbers go on: no idempotency key reused
    assert [(n["incident"], n["level"]) for n in notifications(config)] == [
        ("api#1", 1), ("api#1", 1), ("api#2", 1), ("api#2", 1),
    ]  # fmt: skip


async def test_an_acknowledged_incident_of_a_removed_service_is_closed_even_if_a_commit_fails(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await conn.request("ack", service="api")  # no deadline left to retry it by
            await settle()
            refused = failing_writes(daemon, monkeypatch, 2)
            write_config(tmp_path, services={"web": "oncall"})
            assert await daemon.reload()
            await settle()
            metrics = await _metrics(conn)
            await trio.sleep(60)
            history = await conn.request("history", incident="api#1")
    assert len(refused) == 2
    assert metrics["pagerd_open_incidents"] == 0  # already, as status says
    assert [e.get("detail") for e in _removed(history)] == [REASON]
    assert daemon.services.state("api").incident is None


def test_history_shows_the_removal() -> None:
    from pager import cli

    entry = {"at": "2027-01-15T08:01:00.000Z", "event": "removed", "detail": REASON}
    assert cli._entry(entry) == f"closed: {REASON}"
