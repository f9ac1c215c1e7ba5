"""A read pipelined after events on one connection sees them: replies come in request order,
and so does what they say."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from pagerd.config import Config
from tests.harness import connect, json_line, running, settle

DAY = 24 * 3600.0


async def _pipelined(config: Config, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    async with connect(config.socket) as conn:
        await conn.send(b"".join(json_line(r) for r in requests))
        return [await conn.receive() for _ in requests]


async def test_a_status_pipelined_after_an_alert_sees_the_incident(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            alert, status, everyone, history = await _pipelined(
                config,
                {"op": "alert", "service": "api", "message": "down"},
                {"op": "status", "service": "api"},
                {"op": "status"},
                {"op": "history", "service": "api"},
            )
    assert alert["state"] == "unhealthy"
    assert status["state"] == "unhealthy"
    assert status["incident"]["id"] == alert["incident"]["id"]
    assert [s["state"] for s in everyone["services"] if s["service"] == "api"] == ["unhealthy"]
    assert history["ok"] is True and history["incident"] == "api#1"
    assert [e["event"] for e in history["timeline"]][:1] == ["alert"]


async def test_a_status_pipelined_after_healthy_or_ack_sees_it(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            await _pipelined(
                config,
                {"op": "alert", "service": "api"},
                {"op": "alert", "service": "web"},
            )
            await settle()
            replies = await _pipelined(
                config,
                {"op": "healthy", "service": "api"},
                {"op": "status", "service": "api"},
                {"op": "ack", "service": "web", "by": "alice"},
                {"op": "status", "service": "web"},
                {"op": "history", "service": "api"},
                {"op": "alert", "service": "api", "message": "again"},
                {"op": "alert", "service": "api", "message": "counted"},
                {"op": "status", "service": "api"},
            )
    healthy, api, ack, web, history, again, counted, api_again = replies
    assert healthy["state"] == "healthy" and api["state"] == "healthy"
    assert ack["incident"]["acknowledged"] is True
    assert web["incident"]["acknowledged"] is True
    assert history["closed_at"] is not None
    assert api_again["incident"]["id"] == again["incident"]["id"] == "api#2"
    assert api_again["incident"]["alerts"] == counted["incident"]["alerts"] == 2


async def test_metrics_pipelined_after_events_count_them(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config):
            *_, metrics = await _pipelined(
                config,
                {"op": "alert", "service": "api"},
                {"op": "ack", "service": "api"},
                {"op": "healthy", "service": "web"},
                {"op": "metrics"},
            )
    samples = dict(
        line.rsplit(" ", 1) for line in metrics["text"].splitlines() if not line.startswith("#")
    )
    assert samples['pagerd_events_total{op="alert",result="ok"}'] == "1"
    assert samples['pagerd_events_total{op="ack",result="ok"}'] == "1"
    assert samples['pagerd_events_total{op="healthy",result="ok"}'] == "1"
    assert samples["pagerd_open_incidents"] == "1"
    assert samples["pagerd_unacknowledged_incidents"] == "0"
