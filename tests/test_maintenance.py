"""Recurring maintenance windows (`[[services.X.maintenance]]`) on the real daemon, over its
socket, under Trio's MockClock: a window is a silence that comes back every week. Alerts during
one are recorded and page nobody; paging starts at its end if the service is still unhealthy;
an incident already paging escalates no further until it ends; it joins durable silences (the
union); `pager status` shows it; a reload that removes it pages at once.

The test's day, 2027-01-15, is a Friday; the daemon starts at 08:00 UTC."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from pager import cli
from pagerd.config import Config, load
from tests.harness import (
    ONCALL,
    connect,
    metric_samples,
    metrics_text,
    notifications,
    running,
    settle,
    steps,
    write_config,
)

DAY = 24 * 3600
LEVEL1 = [("api#1", 1, 1, "email:alice@example.com"), ("api#1", 1, 1, "sms:+14155550100")]
LEVEL2 = [("api#1", 1, 2, "email:lead@example.com")]

# 09:02 to 10:00 in London is 08:02 to 09:00 UTC in January: after level 1 (08:00), before
# level 2 is due (08:05), so it starts and ends while the incident is open.
WINDOW = """
[[services.api.maintenance]]
days = ["fri"]
from = "09:02"
until = "10:00"
timezone = "Europe/Paris"
"""


def with_window(folder: Path, window: str = WINDOW) -> Config:
    """The harness config, with `window` added to service api."""
    api = '\n[services.api]\npolicy = "oncall"\n'
    write_config(folder, ONCALL + api + window, {"web": "oncall"})
    return load(folder / "pager.toml")


def times(config: Config) -> list[str]:
    return [n["time"][11:19] for n in notifications(config)]


async def test_a_window_that_starts_and_ends_during_an_incident_holds_its_next_step(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            opened = await conn.request("alert", service="api", message="db down")
            await trio.sleep(30 * 60)  # 08:30, in the window; level 2 came due at 08:05
            await settle()
            during = await conn.request("status", service="api")
            held = metric_samples(await metrics_text(config.socket))
            paged_during = list(steps(config))
            await trio.sleep(30 * 60 + 1)  # 09:00:01: the window is over
            await settle()
            history = await conn.request("history", service="api")
            after = await conn.request("status", service="api")
    assert opened["incident"]["level"] == 1 and "maintenance" not in opened
    # Level 1's pages stay sent (by two channels at once: in either order); level 2 is held.
    assert sorted(paged_during) == LEVEL1
    assert during["incident"]["silenced"] is True
    assert during["incident"]["next_escalation_at"] == "2027-01-15T09:00:00.000Z"
    assert during["silenced_until"] == "2027-01-15T09:00:00.000Z"
    assert during["maintenance"] == {
        "until": "2027-01-15T09:00:00.000Z",
        "windows": ["fri 09:02-10:00 Europe/Paris"],
    }
    assert "silences" not in during  # no durable silence: the window alone
    assert held["pagerd_silenced_incidents"] == 1
    assert sorted(steps(config)) == sorted(LEVEL1 + LEVEL2)
    assert times(config) == ["08:00:00", "08:00:00", "09:00:00"]
    assert during["incident"]["held_by"] == "maintenance window"
    entries = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert ("silenced", "paging held by a maintenance window after level 1") in entries
    # The end of the hold names the window, not a silence (and no acknowledgement timed out).
    assert ("timeout", "the maintenance window is over: notified level 2 round 1") in entries
    assert not any("silence" in str(detail) for _, detail in entries)
    assert after["incident"]["level"] == 2 and after["incident"]["silenced"] is False
    assert "held_by" not in after["incident"]
    assert "maintenance" not in after and "silenced_until" not in after
    shown = {k: v for k, v in during.items() if k != "ok"}
    assert (
        "\n\napi in a maintenance window until 2027-01-15T09:00:00.000Z"
        " (fri 09:02-10:00 Europe/Paris)\n"
    ) in cli.render("status", shown)
    assert "paging held by a maintenance window until 2027-01-15T09:00:00.000Z" in cli.render(
        "alert", shown
    )


async def test_an_alert_during_a_window_is_recorded_and_pages_level_1_when_it_ends(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await trio.sleep(10 * 60)  # 08:10, in the window
            alert = await conn.request("alert", service="api", message="db down")
            again = await conn.request("alert", service="api", message="still down")
            await trio.sleep(50 * 60 - 1)  # 08:59:59
            await settle()
            quiet = notifications(config)
            await trio.sleep(2)  # 09:00:01
            await settle()
            history = await conn.request("history", service="api")
    assert alert["incident"]["level"] == 0 and alert["incident"]["silenced"] is True
    assert alert["incident"]["next_escalation_at"] == "2027-01-15T09:00:00.000Z"
    assert again["incident"]["alerts"] == 2
    assert quiet == []
    assert sorted(steps(config)) == LEVEL1  # level 1 at the end, as if the alert had just come
    assert times(config) == ["09:00:00", "09:00:00"]
    entries = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert entries[:3] == [
        ("alert", "db down"),
        ("silenced", "paging held by a maintenance window: nobody notified yet"),
        ("alert", "still down"),
    ]


async def test_healthy_during_a_window_closes_the_incident_quietly(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await trio.sleep(10 * 60)
            await conn.request("alert", service="api", message="db down")
            await trio.sleep(60)
            closed = await conn.request("healthy", service="api")
            await trio.sleep(3 * 3600)
            await settle()
    assert closed["state"] == "healthy" and closed["incident"] is None
    assert notifications(config) == []


async def test_a_window_and_a_durable_silence_hold_until_the_end_of_their_union(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # The window is 08:02 to 09:00; the silence 08:30 to 09:30: paging waits for 09:30.
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await trio.sleep(10 * 60)
            fields = {"from": "2027-01-15T08:30:00Z", "until": "2027-01-15T09:30:00Z"}
            silence = await conn.request("silence", service="api", reason="db migration", **fields)
            alert = await conn.request("alert", service="api", message="db down")
            await trio.sleep(30 * 60)  # 08:40: both in force
            both = await conn.request("status", service="api")
            await trio.sleep(2 * 3600)
            await settle()
            history = await conn.request("history", service="api")
    assert silence["ok"], silence
    # At 08:10 the window holds it (the silence is to come): said so, silence listed or not.
    assert alert["incident"]["held_by"] == "maintenance window"
    assert "paging held by a maintenance window until" in cli.render("alert", alert)
    assert both["incident"]["held_by"] == "silence"
    entries = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert ("silenced", "paging held by a maintenance window: nobody notified yet") in entries
    assert ("timeout", "the silence is over: notified level 1 round 1") in entries  # 09:30
    assert alert["incident"]["next_escalation_at"] == "2027-01-15T09:30:00.000Z"
    assert both["silenced_until"] == "2027-01-15T09:30:00.000Z"
    assert both["maintenance"]["until"] == "2027-01-15T09:00:00.000Z"
    assert times(config) == ["09:30:00", "09:30:00", "09:35:00"]


async def test_a_reload_that_removes_the_window_pages_the_held_step_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await trio.sleep(10 * 60)
            await conn.request("alert", service="api", message="db down")
            await trio.sleep(10 * 60)  # 08:20
            await settle()
            quiet = notifications(config)
            with_window(tmp_path, window="")  # the window is gone from the file
            assert await daemon.reload()
            await settle()
            status = await conn.request("status", service="api")
    assert quiet == []
    assert sorted(steps(config)) == LEVEL1
    assert times(config) == ["08:20:00", "08:20:00"]  # at the reload, not at 09:00
    assert status["incident"]["silenced"] is False and "maintenance" not in status


async def test_a_window_every_hour_of_the_week_holds_and_costs_little(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Windows that never end hold paging as long as they last: the hold is looked at again at
    an end far ahead (`pager.silences.MAX_AHEAD`), never paged early."""
    always = """
[[services.api.maintenance]]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
from = "00:00"
until = "00:00"
timezone = "UTC"
"""
    config = with_window(tmp_path, always)
    with trio.fail_after(8 * DAY):
        async with running(config), connect(config.socket) as conn:
            alert = await conn.request("alert", service="api", message="db down")
            await trio.sleep(7 * DAY)
            await settle()
    assert alert["incident"]["silenced"] is True
    assert alert["incident"]["next_escalation_at"] > "2027-04"  # at least 90 days ahead
    assert notifications(config) == []


async def test_simulate_applies_the_window(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = with_window(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            asked = await conn.request("simulate", service="api", at="2027-01-15T08:10:00Z")
            before = await conn.request("simulate", service="api", at="2027-01-15T08:00:00Z")
    assert asked["ok"], asked
    shown = [(s["event"], s["at"], s.get("until"), s["level"]) for s in asked["timeline"]]
    assert shown == [
        ("held", "2027-01-15T08:10:00.000Z", "2027-01-15T09:00:00.000Z", 0),
        ("notify", "2027-01-15T09:00:00.000Z", None, 1),
        ("notify", "2027-01-15T09:05:00.000Z", None, 2),
        ("exhausted", "2027-01-15T09:20:00.000Z", None, 2),
    ]
    # Opened at 08:00, before the window: level 1 at once, level 2 held from 08:05 to 09:00.
    opening = [(s["event"], s["at"], s.get("until")) for s in before["timeline"]][:3]
    assert opening == [
        ("notify", "2027-01-15T08:00:00.000Z", None),
        ("held", "2027-01-15T08:05:00.000Z", "2027-01-15T09:00:00.000Z"),
        ("notify", "2027-01-15T09:00:00.000Z", None),
    ]
    assert asked["timeline"][0]["held_by"] == "maintenance window"
    assert "held_by" not in asked["timeline"][1]
    text = cli.render("simulate", {k: v for k, v in asked.items() if k != "ok"})
    assert "held by a maintenance window until 2027-01-15T09:00:00.000Z" in text
    assert "silence" not in text
