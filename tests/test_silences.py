"""Silences on the real daemon, over its socket, under Trio's MockClock: pages held and sent at
the silence's end, to the second; durable across restarts and reloads; refused when nonsensical."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pager import cli
from pagerd.config import Config
from pagerd.engine import actors
from pagerd.timing.clock import Clock
from tests.harness import (
    T0,
    Connection,
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


def times(config: Config) -> list[str]:
    """The time of each notification sent, hh:mm:ss on the test's day (2027-01-15)."""
    return [n["time"][11:19] for n in notifications(config)]


async def silence(conn: Connection, **fields: Any) -> dict[str, Any]:
    """`pager silence api --for 2h --reason "db migration"`, or as `fields` say."""
    request = {"service": "api", "reason": "db migration", "for": "2h", **fields}
    return await conn.request("silence", **{k: v for k, v in request.items() if v is not None})


async def test_an_alert_during_a_silence_is_recorded_and_pages_level_1_when_it_ends(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            started = await silence(conn, by="bob")
            await trio.sleep(600)
            alert = await conn.request("alert", service="api", message="db down")
            again = await conn.request("alert", service="api", message="still down")
            await trio.sleep(3600)
            await settle()
            quiet = notifications(config)
            status = await conn.request("status", service="api")
            held = metric_samples(await metrics_text(config.socket))
            await trio.sleep(3600 + 1)  # 10:00:01: the silence is over
            await settle()
            history = await conn.request("history", service="api")
            listed = await conn.request("silences")
            over = metric_samples(await metrics_text(config.socket))
    assert started["silence"] == {
        "id": 1, "service": "api", "from": "2027-01-15T08:00:00.000Z",
        "until": "2027-01-15T10:00:00.000Z", "reason": "db migration", "by": "bob",
        "created_at": "2027-01-15T08:00:00.000Z", "ended_at": None, "ended_by": None,
    }  # fmt: skip
    assert started["silenced_until"] == "2027-01-15T10:00:00.000Z"
    assert started["silences"] == [started["silence"]]
    assert alert["incident"]["id"] == "api#1" and alert["incident"]["level"] == 0
    assert alert["incident"]["silenced"] is True
    assert alert["incident"]["next_escalation_at"] == "2027-01-15T10:00:00.000Z"
    assert again["incident"]["alerts"] == 2
    assert quiet == []  # nothing in two hours
    assert status["incident"]["notifications"] == []
    # Then level 1, at the end, as if the alert had just come; level 2 its ack timeout later.
    assert sorted(steps(config)) == LEVEL1 + LEVEL2
    assert times(config) == ["10:00:00", "10:00:00", "10:05:00"]
    events = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert events[:4] == [
        ("alert", "db down"),
        ("silenced", "paging held by a silence: nobody notified yet"),
        ("alert", "still down"),
        ("timeout", "the silence is over: notified level 1 round 1"),
    ]
    assert listed == {"ok": True, "silences": []}  # over
    assert (held["pagerd_silences"], held["pagerd_silenced_incidents"]) == (1, 1)
    assert (over["pagerd_silences"], over["pagerd_silenced_incidents"]) == (0, 0)


async def test_a_restart_in_the_middle_of_a_silence_neither_forgets_nor_fires_early(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn)
            await trio.sleep(600)
            await conn.request("alert", service="api", message="db down")
            await trio.sleep(3000)  # 09:00
        # Restarted at once, on the same frame: the hold and the silence come back from disk.
        async with running(config, Clock(T0 + 3600)), connect(config.socket) as conn:
            await settle()
            after_restart = notifications(config)
            status = await conn.request("status", service="api")
            await trio.sleep(3600 - 1)  # 09:59:59
            await settle()
            before_end = notifications(config)
            await trio.sleep(2)
            await settle()
    assert after_restart == [] and before_end == []
    assert status["incident"]["silenced"] is True
    assert status["silences"][0]["until"] == "2027-01-15T10:00:00.000Z"
    assert sorted(steps(config)) == LEVEL1
    assert times(config) == ["10:00:00", "10:00:00"]


async def test_a_silence_that_ended_while_pagerd_was_down_pages_at_once_on_start(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn, **{"for": "1h"})
            await conn.request("alert", service="api")
        async with running(config, Clock(T0 + 3 * 3600)):  # down until 11:00
            await settle()
    assert sorted(steps(config)) == LEVEL1
    assert times(config) == ["11:00:00", "11:00:00"]


async def test_healthy_during_the_silence_closes_the_incident_quietly(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn)
            await conn.request("alert", service="api")
            closed = await conn.request("healthy", service="api")
            await trio.sleep(5 * 3600)
            await settle()
    assert closed["state"] == "healthy"
    assert notifications(config) == []


async def test_ending_a_silence_early_pages_at_once_as_its_end_would(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            number = (await silence(conn))["silence"]["id"]
            await conn.request("alert", service="api")
            await trio.sleep(1800)
            ended = await conn.request("silence_end", id=number, by="carol")
            await settle()
            paged = steps(config)
            again = await conn.request("silence_end", id=number)
            history = await conn.request("history", service="api")
    assert ended["silence"]["ended_at"] == "2027-01-15T08:30:00.000Z"
    assert ended["silence"]["until"] == "2027-01-15T08:30:00.000Z"
    assert ended["silence"]["ended_by"] == "carol"
    assert ended["incident"]["level"] == 1 and ended["incident"]["silenced"] is False
    assert "silences" not in ended and "silenced_until" not in ended
    assert sorted(paged) == LEVEL1
    assert times(config)[:2] == ["08:30:00", "08:30:00"]
    assert again["error"]["code"] == "not_found"
    entry = next(e for e in history["timeline"] if e["event"] == "silence_end")
    assert entry["detail"] == "silence 1 ended: notified level 1 round 1"
    assert entry["by"] == "carol"


async def test_an_incident_already_paging_escalates_no_further_until_the_silence_ends(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")  # level 1 at 08:00, level 2 due 08:05
            await trio.sleep(60)
            started = await silence(conn, **{"for": "1h"})
            await trio.sleep(3600 + 1)
            await settle()
            history = await conn.request("history", service="api")
    assert sorted(steps(config)) == LEVEL1 + LEVEL2  # level 1's pages stay sent
    assert times(config) == ["08:00:00", "08:00:00", "09:01:00"]
    assert started["incident"]["silenced"] is False  # not due yet: left alone until it is
    entries = [(e["event"], e.get("detail")) for e in history["timeline"]]
    assert ("silence", "silence 1 until 2027-01-15T09:01:00.000Z: db migration") in entries
    assert ("silenced", "paging held by a silence after level 1") in entries


async def test_pager_history_says_which_silence_held_paging_until_when_who_and_why(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """`pager history` words each silence event: the silence (id, until, reason, who), the hold,
    its end by a silence's natural end (not an "acknowledgement timeout") and an early end."""
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")  # level 1 at 08:00, level 2 due 08:05
            await trio.sleep(60)
            await silence(conn, by="alice", **{"for": "1h"})  # 08:01-09:01: holds level 2
            await trio.sleep(3600 + 60)  # 09:02: level 2 was notified at 09:01
            second = await silence(conn, by="bob", reason="failover", **{"for": "1h"})
            await trio.sleep(60)
            await conn.request("silence_end", id=second["silence"]["id"], by="carol")
            await settle()
            history = await conn.request("history", service="api")
    assert history["ok"], history
    shown = cli.render("history", {k: v for k, v in history.items() if k != "ok"})
    # Without who asked over the socket (" from USER (pid N)"), which varies.
    lines = [re.sub(r" from \S+ \(pid \d+\)", "", line.split("  ", 2)[-1])
             for line in shown.splitlines()[1:]]  # fmt: skip
    assert "silenced by alice: silence 1 until 2027-01-15T09:01:00.000Z: db migration" in lines
    assert "held: paging held by a silence after level 1" in lines
    assert "hold over: the silence is over: notified level 2 round 1" in lines
    assert "silenced by bob: silence 2 until 2027-01-15T10:02:00.000Z: failover" in lines
    assert "silence 2 ended by carol" in lines
    assert not any(line.startswith("acknowledgement timeout") for line in lines), lines
    assert not any(line in ("silence", "silenced", "silence_end") for line in lines), lines


async def test_overlapping_silences_hold_until_the_end_of_their_union(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn, **{"for": "1h"})  # 08:00-09:00
            later = await silence(conn, **{"for": "1h", "from": "2027-01-15T08:30:00Z"})
            gap = await silence(conn, **{"for": "1h", "from": "2027-01-15T10:00:00Z"})
            await conn.request("alert", service="api")
            listed = await conn.request("silences", service="api")
            await trio.sleep(6 * 3600)
            await settle()
    assert later["silenced_until"] == "2027-01-15T09:30:00.000Z"
    assert gap["silence"]["from"] == "2027-01-15T10:00:00.000Z"
    assert [s["id"] for s in listed["silences"]] == [1, 2, 3]
    assert times(config) == ["09:30:00", "09:30:00", "09:35:00"]  # 10:00 came too late


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"service": "nope"}, "unknown_service", "no service named 'nope'"),
        ({"reason": None}, "bad_request", "needs a \"reason\""),
        ({"reason": "  "}, "bad_request", "needs a \"reason\""),
        ({"for": None}, "bad_request", '"for" (a duration) or "until"'),
        ({"until": "2027-01-15T09:00:00Z"}, "bad_request", "not both"),
        ({"for": None, "until": "2027-01-15T07:00:00Z"}, "bad_request", "its end is past"),
        ({"for": None, "until": "2027-01-15T09:00:00"}, "bad_request", "needs its zone"),
        ({"for": None, "until": "tomorrow"}, "bad_request", "not a time"),
        ({"for": "2 hours"}, "bad_request", "not a duration"),
        ({"for": "91d"}, "bad_request", "at most 90d from now"),
        ({"from": "2027-01-15T10:00:00Z", "for": None, "until": "2027-01-15T09:00:00Z"},
         "bad_request", "end before it starts"),
        ({"service": "a b"}, "bad_request", '"service"'),
        ({"reason": 7}, "bad_request", '"reason" must be a string'),
    ],
)  # fmt: skip
async def test_nonsensical_silences_are_refused_with_the_reason_and_change_nothing(
    autojump_clock: trio.testing.MockClock,
    config: Config,
    fields: dict[str, Any],
    code: str,
    says: str,
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            refused = await silence(conn, **fields)
            listed = await conn.request("silences")
            status = await conn.request("status", service="api")
    assert refused["ok"] is False
    assert refused["error"]["code"] == code
    assert says in refused["error"]["message"]
    assert listed == {"ok": True, "silences": []}
    assert "silences" not in status


async def test_ending_a_silence_that_is_not_there_is_refused(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            unknown = await conn.request("silence_end", id=42)
            no_id = await conn.request("silence_end")
            not_a_number = await conn.request("silence_end", id="1")
    assert unknown["error"]["code"] == "not_found"
    assert "no silence 42" in unknown["error"]["message"]
    assert no_id["error"]["code"] == "bad_request"
    assert not_a_number["error"]["code"] == "bad_request"


async def test_silences_survive_a_reload_and_a_restart_and_show_in_status(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await silence(conn, service="web", reason="deploy", by="bob")
            assert await daemon.reload()
            reloaded = await conn.request("silences")
        async with running(config, Clock(T0 + 600)), connect(config.socket) as conn:
            restarted = await conn.request("silences")
            every = await conn.request("status")
            third = await silence(conn)
    assert [s["service"] for s in reloaded["silences"]] == ["web"]
    assert restarted == reloaded
    web = next(s for s in every["services"] if s["service"] == "web")
    assert web["silenced_until"] == "2027-01-15T10:00:00.000Z"
    assert web["silences"][0]["reason"] == "deploy" and web["silences"][0]["by"] == "bob"
    api = next(s for s in every["services"] if s["service"] == "api")
    assert "silences" not in api and "silenced_until" not in api
    assert third["silence"]["id"] == 2  # numbers go on after a restart


async def test_a_silence_names_its_asker_when_it_does_not_say(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            started = await silence(conn)
    assert started["silence"]["by"]  # the socket's user: root, or whoever runs the tests


async def test_a_removed_service_loses_its_silences(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config) as daemon, connect(config.socket) as conn:
            await silence(conn, service="web")
            write_config(tmp_path, services={"api": "oncall"})
            assert await daemon.reload()
            await settle()
            gone = await conn.request("silences")
            unknown = await conn.request("silences", service="web")
    assert gone == {"ok": True, "silences": []}
    assert unknown["error"]["code"] == "unknown_service"
    # Ended for good, not only hidden: added back, the service is not silenced.
    write_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config, Clock(T0 + 60)), connect(config.socket) as conn:
            back = await conn.request("silences", service="web")
            status = await conn.request("status", service="web")
    assert back == {"ok": True, "silences": []} and "silenced_until" not in status


async def test_a_silence_s_text_is_escaped_in_the_logs(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            started = await silence(conn, reason="db\x1b[31m migration\nfake line", by="b\u202eob")
    assert started["silence"]["reason"] == "db\x1b[31m migration\nfake line"
    logged = [r.getMessage() for r in caplog.records if "silence=" in r.getMessage()]
    assert logged and all("\x1b" not in m and "\n" not in m and "\u202e" not in m for m in logged)
    assert any("db\\x1b[31m migration\\nfake line" in m for m in logged)


async def test_silences_over_all_services_are_bounded(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actors, "MAX_ALL_SILENCES", 2)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn)
            await silence(conn, service="web")
            refused = await silence(conn, service="web")
            await trio.sleep(2 * 3600 + 1)  # both over: room again
            again = await silence(conn)
    assert refused["error"]["code"] == "too_many_silences"
    assert again["ok"] is True


async def test_simulate_is_asked_of_the_daemon_with_its_silences(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await silence(conn, **{"for": "1h"})
            timeline = await conn.request("simulate", service="api", ack_after="1h7m")
            later = await conn.request("simulate", service="api", at="2027-01-16T03:00:00Z")
            one = await conn.request("simulate", service="api", rounds=1)
            unknown = await conn.request("simulate", service="nope")
            bad = await conn.request("simulate", service="api", rounds=0)
    assert [(s["at"][11:19], s["after"], s["event"], s["level"]) for s in timeline["timeline"]] == [
        ("08:00:00", "0s", "held", 0),
        ("09:00:00", "1h", "notify", 1),
        ("09:05:00", "1h5m", "notify", 2),
        ("09:07:00", "1h7m", "acknowledged", 2),
    ]
    assert timeline["end"] == "acknowledged"
    assert [n["target"] for n in timeline["timeline"][1]["notify"]] == [
        "email:alice@example.com", "sms:+14155550100",
    ]  # fmt: skip
    assert later["opened_at"] == "2027-01-16T03:00:00.000Z"
    assert [s["event"] for s in later["timeline"]] == ["notify", "notify", "exhausted"]
    assert one["end"] == "exhausted"  # the policy has one round
    assert unknown["error"]["code"] == "unknown_service"
    assert bad["error"]["code"] == "bad_request"
    assert notifications(config) == []  # a simulation pages nobody
