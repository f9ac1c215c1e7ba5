"""Heartbeat monitors (a dead man's switch) in the daemon, over its real socket, under MockClock.

A service with `heartbeat = "5m"` must check in at least every five minutes once it has checked
in once; a miss is an alert "no heartbeat for 5m" through its policy, and the next check-in
closes the incident the miss opened (and only that one). The deadline is durable: a restart
neither forgets it nor fires it early, and one that passed while pagerd was down fires at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from pager.timefmt import isoformat
from pagerd.config import Config, ConfigError, load
from pagerd.timing.clock import Clock
from tests.harness import CHANNELS, ONCALL, T0, connect, metric, running, settle, steps

DAY = 86400
MINUTE = 60
LEVEL1 = {"email:alice@example.com", "sms:+14155550100"}


def heartbeat_config(folder: Path, **heartbeats: str | None) -> Config:
    """Services `cron` and `api` (policy oncall: 5m then 15m), with the heartbeats given."""
    text = CHANNELS + ONCALL
    for name in ("cron", "api"):
        text += f'\n[services."{name}"]\npolicy = "oncall"\n'
        every = heartbeats.get(name)
        if every is not None:
            text += f'heartbeat = "{every}"\n'
    path = folder / "pager.toml"
    path.write_text(text)
    return load(path)


def at(seconds: float) -> str:
    return isoformat(T0 + seconds)


def paged(config: Config) -> list[tuple[str, int, int]]:
    """(incident, round, level) of each step notified, once a step."""
    return sorted({(incident, r, lv) for incident, r, lv, _ in steps(config)})


async def test_check_ins_in_time_keep_the_service_healthy_and_status_shows_the_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            before = await conn.request("status", service="cron")
            for _ in range(30):  # two and a half hours, a check-in every 4m59s
                reply = await conn.request("heartbeat", service="cron")
                assert reply["ok"] is True and reply["state"] == "healthy"
                await trio.sleep(5 * MINUTE - 1)
            status = await conn.request("status", service="cron")
            api = await conn.request("status", service="api")
            missed = await metric(conn, "pagerd_heartbeats_missed_total")
            history = await conn.request("history", service="cron")
    assert steps(config) == []
    assert missed == 0
    # Armed by the first check-in, not by the config: before it, nothing is due.
    assert before["heartbeat"] == {"every": "5m", "due_at": None, "last_at": None, "missed": False}
    last = 29 * (5 * MINUTE - 1)
    assert status["heartbeat"] == {
        "every": "5m",
        "due_at": at(last + 5 * MINUTE),
        "last_at": at(last),
        "missed": False,
    }
    assert "heartbeat" not in api  # a service without one: its status as before
    assert history["ok"] is False and history["error"]["code"] == "not_found"  # nothing recorded


async def test_a_service_that_never_checked_in_is_never_paged_for(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config):
            await trio.sleep(DAY / 2)
    assert steps(config) == []


async def test_a_miss_pages_once_on_time_escalates_and_the_next_check_in_closes_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
            await trio.sleep(5 * MINUTE - 0.01)
            await settle()
            assert steps(config) == []  # not a moment early
            await trio.sleep(0.02)
            await settle()
            assert paged(config) == [("cron#1", 1, 1)]
            status = await conn.request("status", service="cron")
            await trio.sleep(3 * 3600)  # silent for hours: level 2, then nothing more
            await settle()
            after_hours = paged(config)
            missed = await metric(conn, "pagerd_heartbeats_missed_total")
            back = await conn.request("heartbeat", service="cron")
            history = await conn.request("history", incident="cron#1")
            await trio.sleep(4 * MINUTE)  # checked in again in time: nothing more
            await conn.request("heartbeat", service="cron")
            second_history = await conn.request("history", incident="cron#1")
    assert status["state"] == "unhealthy"
    assert status["incident"]["message"] == "no heartbeat for 5m"
    assert status["incident"]["opened_at"] == at(5 * MINUTE)
    assert status["heartbeat"]["missed"] is True and status["heartbeat"]["due_at"] is None
    assert after_hours == [("cron#1", 1, 1), ("cron#1", 1, 2)]
    assert sorted(t for i, _, lv, t in steps(config) if lv == 1) == sorted(LEVEL1)
    assert missed == 1
    assert back["ok"] is True and back["state"] == "healthy"
    back_at = 5 * MINUTE + 0.01 + 3 * 3600
    assert back["heartbeat"]["due_at"] == at(back_at + 5 * MINUTE)
    events = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert events[0] == ("heartbeat_missed", "no heartbeat for 5m")
    assert ("heartbeat", "heartbeat restored") in events and events[-1] == ("closed", None)
    assert history["closed_at"] == at(back_at)
    assert second_history["timeline"] == history["timeline"]  # check-ins in time: not recorded


async def test_a_check_in_never_closes_an_incident_an_alert_opened_or_joined(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            # An alert opens it; the heartbeat goes quiet too; the check-in re-arms, not closes.
            await conn.request("heartbeat", service="cron")
            await conn.request("alert", service="cron", message="disk full")
            await trio.sleep(6 * MINUTE)
            counted = await conn.request("status", service="cron")
            still = await conn.request("heartbeat", service="cron")
            await conn.request("healthy", service="cron")
            # A miss opens it; an alert joins it: the check-in no longer closes it either.
            await trio.sleep(5 * MINUTE + 1)
            await conn.request("alert", service="cron", message="and the disk is full")
            joined = await conn.request("heartbeat", service="cron")
            await conn.request("healthy", service="cron")
            # A miss opens it and someone acks: the check-in still closes it.
            await trio.sleep(5 * MINUTE + 1)
            await conn.request("ack", service="cron", by="bob")
            acked = await conn.request("heartbeat", service="cron")
            history = await conn.request("history", incident="cron#1")
    assert counted["incident"]["alerts"] == 2  # the miss counted on the open incident
    assert counted["incident"]["message"] == "disk full"
    assert still["state"] == "unhealthy" and still["incident"]["id"] == "cron#1"
    assert still["heartbeat"]["missed"] is False
    assert joined["state"] == "unhealthy" and joined["incident"]["id"] == "cron#2"
    assert acked["state"] == "healthy"
    events = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert ("heartbeat_missed", "no heartbeat for 5m") in events
    assert ("heartbeat", "heartbeat restored; still open") in events
    assert paged(config)[0] == ("cron#1", 1, 1)
    assert {i for i, _, _ in paged(config)} == {"cron#1", "cron#2", "cron#3"}


async def test_healthy_closes_a_miss_and_the_monitor_watches_again_from_then(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
            await trio.sleep(5 * MINUTE + 30)
            await conn.request("ack", service="cron")
            closed = await conn.request("healthy", service="cron")
            await trio.sleep(5 * MINUTE + 1)  # still silent: paged for again, one interval later
            again = await conn.request("status", service="cron")
    assert closed["heartbeat"]["due_at"] == at(10 * MINUTE + 30)
    assert again["incident"]["id"] == "cron#2"
    assert again["incident"]["opened_at"] == at(10 * MINUTE + 30)


async def test_a_restart_before_the_deadline_neither_forgets_it_nor_fires_it_early(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
        # Stopped for two minutes, up again at 08:02: three minutes left.
        async with running(config, Clock(T0 + 2 * MINUTE)), connect(config.socket) as conn:
            status = await conn.request("status", service="cron")
            await trio.sleep(3 * MINUTE - 0.01)
            await settle()
            early = paged(config)
            await trio.sleep(0.02)
            await settle()
            on_time = await conn.request("status", service="cron")
    assert status["heartbeat"]["due_at"] == at(5 * MINUTE)
    assert early == []
    assert on_time["incident"]["opened_at"] == at(5 * MINUTE)
    assert paged(config) == [("cron#1", 1, 1)]


async def test_a_deadline_that_passed_while_pagerd_was_down_fires_at_once_on_start(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
        async with running(config, Clock(T0 + 3600)), connect(config.socket) as conn:
            await settle()
            status = await conn.request("status", service="cron")
            await trio.sleep(3600)
        # Restarted again while the incident is open: nothing is paged twice.
        async with running(config, Clock(T0 + 3 * 3600)):
            await trio.sleep(3600)
    assert status["incident"]["opened_at"] == at(3600)  # at once on start
    assert paged(config) == [("cron#1", 1, 1), ("cron#1", 1, 2)]
    assert len(steps(config)) == 3  # level 1's two targets, level 2's one: each once


async def test_a_reload_that_removes_the_heartbeat_disarms_it_and_a_new_interval_applies_from_the_next_check_in(  # noqa: E501
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m", api="5m")
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
            await conn.request("heartbeat", service="api")
            await trio.sleep(MINUTE)
            heartbeat_config(tmp_path, cron="1h")  # api loses its heartbeat
            assert await daemon.try_reload() == []
            await settle()
            api = await conn.request("status", service="api")
            refused = await conn.request("heartbeat", service="api")
            cron = await conn.request("status", service="cron")  # its deadline stays 08:05
            await trio.sleep(5 * MINUTE)
            await settle()
            missed_old = paged(config)
            back = await conn.request("heartbeat", service="cron")  # 08:06: due 09:06 now
            await trio.sleep(59 * MINUTE)
            await settle()
            before_hour = paged(config)
            await trio.sleep(2 * MINUTE)
            await settle()
            status = await conn.request("status", service="cron")
        # Restarted with the config that has no heartbeat for api: nothing of it comes back.
        async with running(load(config.path), Clock(T0 + 3 * 3600)), connect(config.socket) as conn:
            await settle()
            api_after = await conn.request("status", service="api")
    assert "heartbeat" not in api and api["state"] == "healthy"
    assert refused["ok"] is False and refused["error"]["code"] == "bad_request"
    assert "no heartbeat configured" in refused["error"]["message"]
    assert cron["heartbeat"]["due_at"] == at(5 * MINUTE)
    assert missed_old == [("cron#1", 1, 1)]  # the deadline armed under 5m held
    assert back["state"] == "healthy"
    assert back["heartbeat"]["due_at"] == at(6 * MINUTE + 3600)
    assert before_hour == [("cron#1", 1, 1)]  # closed by the check-in before level 2
    assert status["incident"]["id"] == "cron#2"
    assert status["incident"]["message"] == "no heartbeat for 1h"
    assert api_after["state"] == "healthy" and not any(
        i.startswith("api") for i, *_ in steps(config)
    )


async def test_the_socket_op_refuses_what_it_cannot_take_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            replies: list[dict[str, Any]] = [
                await conn.request("heartbeat", service="nope"),
                await conn.request("heartbeat", service="api"),
                await conn.request("heartbeat"),
                await conn.request("heartbeat", service="cron", message="x"),
            ]
            status = await conn.request("status", service="cron")
            await trio.sleep(DAY / 2)
    codes = [r["error"]["code"] for r in replies]
    assert codes == ["unknown_service", "bad_request", "bad_request", "bad_request"]
    assert "api has no heartbeat configured" in replies[1]["error"]["message"]
    assert status["heartbeat"]["due_at"] is None
    assert steps(config) == []


def test_the_documented_heartbeat_config_is_one_pagerd_takes(tmp_path: Path) -> None:
    """docs/configuration.md's Heartbeats example, with the harness's policy in place of the
    production one; and a heartbeat that is not a duration is refused with its key path."""
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = doc.split("## Heartbeats", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "pager.toml"
    path.write_text(CHANNELS + ONCALL + example.replace("payments-oncall", "oncall"))
    assert load(path).heartbeats == {"nightly-backup": 25 * 3600.0}
    path.write_text(CHANNELS + ONCALL + '[services.x]\npolicy = "oncall"\nheartbeat = 300\n')
    try:
        load(path)
    except ConfigError as exc:
        assert exc.errors == [
            'services.x.heartbeat: expected a duration string like "15m", got an integer'
        ]
    else:
        raise AssertionError("a heartbeat of 300 was taken")


async def test_a_removed_service_takes_its_monitor_with_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = heartbeat_config(tmp_path, cron="5m", api="5m")
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")
            await conn.request("heartbeat", service="api")
            armed = await metric(conn, "pagerd_heartbeats_armed")
            text = CHANNELS + ONCALL + '\n[services.api]\npolicy = "oncall"\nheartbeat = "5m"\n'
            config.path.write_text(text)  # cron removed
            assert await daemon.try_reload() == []
            await settle()
            after = await metric(conn, "pagerd_heartbeats_armed")
            await trio.sleep(4 * MINUTE)
            await conn.request("heartbeat", service="api")
            await trio.sleep(2 * MINUTE)  # past cron's old deadline
            await settle()
            heartbeat_config(tmp_path, cron="5m", api="5m")  # cron added back
            assert await daemon.try_reload() == []
            back = await conn.request("status", service="cron")
    assert (armed, after) == (2, 1)
    assert steps(config) == []
    assert back["heartbeat"] == {"every": "5m", "due_at": None, "last_at": None, "missed": False}
