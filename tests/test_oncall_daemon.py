"""Schedules in the daemon, over its real socket, under MockClock: a `schedule:` target pages
whoever is on call when its level is notified; overrides made over the socket apply at once and
survive a restart; a level with nobody on call is recorded and skipped at once; a person's
rule sends its delayed steps at their time, and not at all once the incident is acknowledged.

T0 is Friday 15 January 2027, 08:00 UTC (and London time: winter).
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pager import cli
from pager.simulate import Step, Timeline
from pagerd import main as pagerd_main
from pagerd.config import Config, load
from pagerd.front.server import timeline_object
from pagerd.timing.clock import Clock
from tests.harness import (
    CHANNELS,
    T0,
    Connection,
    connect,
    metric_samples,
    metrics_text,
    notifications,
    running,
    settle,
    steps,
)

DAY = 86400
HOUR = 3600
MINUTE = 60

PEOPLE = """
[people.alice]
email = "alice@example.com"

[people.bob]
sms = "+14155550100"

[people.carol]
email = "carol@example.com"

[people.dave]
sms = "+14155550199"
email = "dave@example.com"
notify = ["sms", "email after 2m"]

[schedules.primary]
timezone = "Europe/London"
[[schedules.primary.layers]]
people = ["alice", "bob"]
shift = "1d"
start = 2027-01-14
handoff = "09:00"

[schedules.business]
timezone = "Europe/London"
[[schedules.business.layers]]
people = ["carol"]
shift = "1w"
start = 2027-01-04
handoff = "09:00"
restrict = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", until = "17:00" }]
"""

POLICIES = """
[policies.rota]
[[policies.rota.levels]]
targets = ["schedule:primary"]
ack_timeout = "1h"
[[policies.rota.levels]]
targets = ["schedule:primary"]
ack_timeout = "1h"

[policies.hours]
[[policies.hours.levels]]
targets = ["schedule:business"]
[[policies.hours.levels]]
targets = ["email:lead@example.com"]

[policies.dave]
[[policies.dave.levels]]
targets = ["person:dave"]

[policies.expiring]
ack_expiry = "2h"
[[policies.expiring.levels]]
targets = ["schedule:primary"]
ack_timeout = "1h"
"""


def oncall_config(folder: Path) -> Config:
    text = CHANNELS + PEOPLE + POLICIES
    for name, policy in (("api", "rota"), ("shop", "hours"), ("db", "dave"), ("pay", "expiring")):
        text += f'\n[services.{name}]\npolicy = "{policy}"\n'
    path = folder / "pager.toml"
    path.write_text(text)
    return load(path)


def targets(config: Config) -> list[tuple[int, int, str]]:
    return [(r, lv, target) for _, r, lv, target in steps(config)]


def history_reply(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """A `history` reply around `timeline`, as `pager history` renders it."""
    return {"incident": "db#2", "message": "again", "timeline": timeline}


async def history(conn: Connection, service: str) -> list[dict[str, Any]]:
    reply = await conn.request("history", service=service)
    assert reply["ok"], reply
    timeline: list[dict[str, Any]] = reply["timeline"]
    return timeline


async def test_a_rotation_hands_off_during_an_incident_and_the_next_level_pages_the_new_person(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            assert (await conn.request("alert", service="api", message="down"))["ok"]
            await settle()
            assert targets(config) == [(1, 1, "email:alice@example.com")]
            await trio.sleep(HOUR + MINUTE)  # 09:00: bob's day starts, level 2 is notified
            await settle()
            assert targets(config)[1:] == [(1, 2, "sms:+14155550100")]
            timeline = await history(conn, "api")
    shown = [(e.get("via"), e["target"]) for e in timeline if e["event"] == "notification"]
    assert shown == [
        ("schedule:primary → alice", "email:alice@example.com"),
        ("schedule:primary → bob", "sms:+14155550100"),
    ]


async def test_an_override_made_over_the_socket_applies_to_the_next_level_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await trio.sleep(10 * MINUTE)
            reply = await conn.request(
                "override", schedule="primary", by="carol", **{"for": "bob"},
                **{"from": "2027-01-15T08:30:00Z", "until": "2027-01-15T12:00:00+00:00"},
            )  # fmt: skip
            assert reply["ok"], reply
            assert reply["override"] == {
                "id": 1, "schedule": "primary", "by": "carol", "for": "bob",
                "from": "2027-01-15T08:30:00+00:00", "until": "2027-01-15T12:00:00+00:00",
                "made_by": pwd.getpwuid(os.getuid()).pw_name, "ignored": None,
            }  # fmt: skip
            listed = await conn.request("overrides", schedule="primary")
            assert [o["id"] for o in listed["overrides"]] == [1]
            now = await conn.request("oncall", schedule="primary", at="2027-01-15T10:00:00Z")
            assert now["schedules"][0]["on_call"] == "carol"
            await trio.sleep(HOUR + MINUTE)
            await settle()
            assert targets(config) == [
                (1, 1, "email:alice@example.com"),
                (1, 2, "email:carol@example.com"),
            ]


async def test_overrides_are_refused_with_the_reason_and_survive_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            refusals = [
                await conn.request("override", schedule="nope", by="carol", **window),
                await conn.request("override", schedule="primary", by="zed", **window),
                await conn.request(
                    "override",
                    schedule="primary",
                    by="carol",
                    **{"from": window["until"], "until": window["from"]},
                ),
                await conn.request(
                    "override", schedule="primary", by="carol", **{"for": "bob"}, **window
                ),  # 16 January is alice's day
                await conn.request(
                    "override",
                    schedule="primary",
                    by="carol",
                    **{"from": "2027-01-16T09:00"},
                    until=window["until"],
                ),
                await conn.request("override_remove", id=99),
            ]
            codes = [r["error"]["code"] for r in refusals]
            assert codes == [
                "unknown_schedule", "unknown_person", "bad_request", "bad_request",
                "bad_request", "not_found",
            ]  # fmt: skip
            assert "ends before it starts" in refusals[2]["error"]["message"]
            assert "bob is not on call" in refusals[3]["error"]["message"]
            assert "offset" in refusals[4]["error"]["message"]
            assert (await conn.request("overrides", schedule="primary"))["overrides"] == []
            made = await conn.request("override", schedule="primary", by="carol", **window)
            assert made["ok"], made
        async with running(config), connect(config.socket) as conn:
            listed = await conn.request("overrides", schedule="primary")
            assert listed["overrides"] == [made["override"]]
            later = await conn.request("oncall", schedule="primary", at="2027-01-16T12:00:00Z")
            assert later["schedules"][0]["on_call"] == "carol"
            removed = await conn.request("override_remove", id=made["override"]["id"])
            assert removed["removed"] == made["override"]
            later = await conn.request("oncall", schedule="primary", at="2027-01-16T12:00:00Z")
            assert later["schedules"][0]["on_call"] == "alice"
        async with running(config), connect(config.socket) as conn:
            listed = await conn.request("overrides", schedule="primary")
    # Who made it and who removed it (the socket's user, both times), kept across a restart.
    user = pwd.getpwuid(os.getuid()).pw_name
    assert made["override"]["made_by"] == user and removed["removed_by"] == user
    assert listed["overrides"] == []
    assert listed["removed"] == [
        {**made["override"], "removed_by": user, "removed_at": "2027-01-15T08:00:00+00:00"}
    ]


async def test_a_level_with_nobody_on_call_is_recorded_counted_and_skipped_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            # 08:00 on a Friday: business hours start at 09:00, so level 1 has nobody.
            assert (await conn.request("alert", service="shop", message="down"))["ok"]
            await settle()
            assert targets(config) == [(1, 2, "email:lead@example.com")]
            status = await conn.request("status", service="shop")
            assert status["incident"]["level"] == 2
            timeline = await history(conn, "shop")
            text = (await conn.request("metrics"))["text"]
    unreached = [e for e in timeline if e["event"] == "unreached"]
    assert [e["detail"] for e in unreached] == [
        "level 1 round 1 has nobody to notify: schedule:business has nobody on call"
    ]
    assert "pagerd_levels_unreached_total 1" in text.splitlines()


async def test_a_persons_delayed_step_is_sent_at_its_time_and_cancelled_by_an_ack(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="db", message="down")
            await settle()
            assert targets(config) == [(1, 1, "sms:+14155550199")]
            waiting = await conn.request("status", service="db")
            await trio.sleep(2 * MINUTE + 1)
            await settle()
            assert targets(config)[1:] == [(1, 1, "email:dave@example.com")]
            await conn.request("healthy", service="db")
            await conn.request("alert", service="db", message="again")
            await trio.sleep(MINUTE)
            assert (await conn.request("ack", service="db", by="dave"))["ok"]
            await trio.sleep(10 * MINUTE)
            await settle()
            timeline = await history(conn, "db")
    assert [t for t in steps(config) if t[0] == "db#2"] == [("db#2", 1, 1, "sms:+14155550199")]
    cancelled = [e for e in timeline if e.get("outcome") == "cancelled"]
    assert [e["target"] for e in cancelled] == ["email:dave@example.com"]
    # While it waits, the status says when it is due, not only "pending 0".
    sms, email = waiting["incident"]["notifications"]
    assert (sms["state"], sms["due_at"], sms["delay"]) == ("sent", None, None)
    assert (email["state"], email["due_at"], email["delay"]) == (
        "pending",
        "2027-01-15T08:02:00.000Z",
        "2m",
    )
    shown = {k: v for k, v in waiting.items() if k != "ok"}
    table = cli.render("status", shown, None, "2027-01-15").splitlines()
    (row,) = [line for line in table if "email:dave@example.com" in line]
    assert "pending, due 08:02:00Z (after 2m)" in row
    # The history says it was decided with the level and due 2 minutes on.
    notified = [e for e in timeline if e["event"] == "notification"]
    assert [(e["target"], e.get("due_at"), e.get("delay")) for e in notified] == [
        ("sms:+14155550199", None, None),
        ("email:dave@example.com", "2027-01-15T08:04:01.000Z", "2m"),
    ]
    text = cli.render("history", history_reply(timeline))
    assert (
        "notify person:dave: email:dave@example.com (level 1, round 1, due"
        " 2027-01-15T08:04:01.000Z, after 2m)"
    ) in text


@pytest.mark.parametrize("quiet", ["silence", "window"])
async def test_a_delayed_step_due_during_a_silence_or_window_is_cancelled_as_simulate_says(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, quiet: str
) -> None:
    """dave's rule is "sms, email after 2m". A silence (or a maintenance window) from 08:01:
    the email due at 08:02 is not sent but cancelled, its reason recorded, and `simulate`,
    asked before the alert, said so; nothing more is paged until the quiet ends at 09:01."""
    config = oncall_config(tmp_path)
    if quiet == "window":
        text = config.path.read_text() + (
            '[[services.db.maintenance]]\ndays = ["fri"]\nfrom = "08:01"\nuntil = "09:01"\n'
            'timezone = "UTC"\n'
        )
        config.path.write_text(text)
        config = load(config.path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            if quiet == "silence":
                silenced = await conn.request(
                    "silence", service="db", reason="upgrade",
                    **{"from": "2027-01-15T08:01:00Z", "for": "1h"},
                )  # fmt: skip
                assert silenced["ok"], silenced
            simulated = await conn.request("simulate", service="db")
            assert (await conn.request("alert", service="db", message="down"))["ok"]
            await trio.sleep(2 * MINUTE + 1)
            await settle()
            assert targets(config) == [(1, 1, "sms:+14155550199")]
            timeline = await history(conn, "db")
            await trio.sleep(HOUR)
            await settle()
    cancelled = [e for e in timeline if e.get("outcome") == "cancelled"]
    assert [e["target"] for e in cancelled] == ["email:dave@example.com"]
    assert "silenced until 2027-01-15T09:01:00.000Z" in cancelled[0]["error"]
    first = simulated["timeline"][0]
    assert [n["target"] for n in first["notify"]] == ["sms:+14155550199"]
    assert [(n["target"], n["at"]) for n in first["silenced"]] == [
        ("email:dave@example.com", "2027-01-15T08:02:00.000Z")
    ]
    shown = cli.render("simulate", {k: v for k, v in simulated.items() if k != "ok"})
    assert "(not sent, silenced then: person:dave (email:dave@example.com after 2m))" in shown
    # The level's timeout (08:15) came during the quiet: held to its end, then the policy's
    # only level is done; nobody was paged in the quiet.
    sent = [n["time"] for n in notifications(config)]
    assert all(not "2027-01-15T08:01" <= t < "2027-01-15T09:01" for t in sent), sent


async def test_an_override_whose_person_left_people_is_ignored_reported_and_counted(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """carol stands in for alice (08:30 to 12:00, alice's shift until 09:00), then carol is
    removed from [people] and the config reloaded. The override is kept, but not used: the
    reload reports it as a gap with its id, `pagerd --check` too (a gap: exit 65); alice, the
    rotation's person, is on call (`oncall`) and paged, not nobody; the resolution logs the
    override as an error and counts it; `override list` says it is ignored."""
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            made = await conn.request(
                "override", schedule="primary", by="carol", **{"for": "alice"},
                **{"from": "2027-01-15T07:30:00Z", "until": "2027-01-15T12:00:00Z"},
            )  # fmt: skip
            assert made["ok"], made
            before = await conn.request("oncall", schedule="primary")
            assert before["schedules"][0]["on_call"] == "carol"
            text = config.path.read_text()
            text = text.replace('[people.carol]\nemail = "carol@example.com"\n', "")
            config.path.write_text(text.replace('people = ["carol"]', 'people = ["dave"]'))
            caplog.clear()
            reloaded = await conn.request("reload")
            assert reloaded["ok"], reloaded
            gaps = [r for r in caplog.records if r.getMessage().startswith("gap: override")]
            now = await conn.request("oncall", schedule="primary")
            listed = await conn.request("overrides", schedule="primary")
            alerted = await conn.request("alert", service="api", message="down")
            await settle()
            timeline = await history(conn, "api")
            text = (await conn.request("metrics"))["text"]
    assert [(r.levelname, r.getMessage()) for r in gaps] == [
        ("ERROR", "gap: override 1 of schedule:primary (carol from Fri 2027-01-15 07:30 until"
         " Fri 2027-01-15 12:00 Europe/London) is ignored: carol is not in [people]; the"
         " schedule pages as if it were not there (remove it: pager override remove 1)")
    ]  # fmt: skip
    assert now["schedules"][0]["on_call"] == "alice"
    assert now["schedules"][0]["until"] == "2027-01-15T09:00:00+00:00"
    assert listed["overrides"][0]["ignored"] == "carol is not in [people]"
    assert alerted["ok"] and "unreached" not in alerted
    assert targets(config) == [(1, 1, "email:alice@example.com")]
    assert not [e for e in timeline if e["event"] == "unreached"]
    ignored = [r for r in caplog.records if r.getMessage().startswith("override ignored")]
    assert [r.levelname for r in ignored] == ["ERROR"]
    assert "override 1 of schedule:primary would put carol on call" in ignored[0].getMessage()
    assert "pagerd_overrides_ignored_total 1" in text.splitlines()
    # `pagerd --check` reads the stored overrides, and says the same.
    reloaded_config = load(config.path)
    report = pagerd_main.check_gaps(reloaded_config, T0 + MINUTE)
    assert report.lines[0].startswith("override 1 of schedule:primary (carol from")
    assert "is ignored: carol is not in [people]" in report.lines[0]
    assert report.overrides == 1
    refused = report.refusal(config.path, 4, allowed=False)
    assert refused is not None and "pager override remove" in refused  # --check exits 65
    assert report.refusal(config.path, 4, allowed=True) is None  # unless --allow-gaps


async def test_the_alert_reply_says_when_a_level_reached_nobody(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A policy of one level, schedule:business, at 08:00 (before business hours): the level
    reaches nobody and the incident is exhausted. The alert's reply says so (`unreached`), and
    `pager alert` prints it: not "level 1 notified". With a second level that reaches somebody,
    the reply says which level reached nobody and which was notified."""
    text = (
        CHANNELS
        + PEOPLE
        + POLICIES
        + """
[policies.lonely]
[[policies.lonely.levels]]
targets = ["schedule:business"]

[services.lonely]
policy = "lonely"
[services.shop]
policy = "hours"
"""
    )
    (tmp_path / "pager.toml").write_text(text)
    config = load(tmp_path / "pager.toml")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            alone = await conn.request("alert", service="lonely", message="down")
            helped = await conn.request("alert", service="shop", message="down")
    assert alone["ok"], alone
    assert alone["unreached"] == [
        {"round": 1, "level": 1, "skipped": True,
         "reasons": ["schedule:business has nobody on call"]},
    ]  # fmt: skip
    assert alone["incident"]["exhausted"]
    shown = cli.render("alert", {k: v for k, v in alone.items() if k != "ok"})
    assert "notified" not in shown.replace("NOBODY NOTIFIED", "")
    assert "NOBODY NOTIFIED" in shown
    assert "level 1 round 1 reached nobody (schedule:business has nobody on call)" in shown
    shown = cli.render("alert", {k: v for k, v in helped.items() if k != "ok"})
    assert "level 2 notified" in shown
    assert "level 1 round 1 reached nobody (schedule:business has nobody on call)" in shown


async def test_oncall_lists_who_is_on_call_and_the_next_handoffs_in_the_schedules_zone(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            reply = await conn.request("oncall", next=2)
    by_name = {s["schedule"]: s for s in reply["schedules"]}
    assert by_name["primary"] == {
        "schedule": "primary",
        "timezone": "Europe/London",
        "at": "2027-01-15T08:00:00+00:00",
        "on_call": "alice",
        "until": "2027-01-15T09:00:00+00:00",
        "horizon": "2027-07-16T09:00:00+01:00",
        "next": [
            {"from": "2027-01-15T09:00:00+00:00", "until": "2027-01-16T09:00:00+00:00",
             "person": "bob"},
            {"from": "2027-01-16T09:00:00+00:00", "until": "2027-01-17T09:00:00+00:00",
             "person": "alice"},
        ],
    }  # fmt: skip
    assert by_name["business"]["on_call"] is None
    assert by_name["business"]["next"][0]["person"] == "carol"


async def test_a_reload_with_a_gap_is_applied_and_logs_it_and_keeps_the_overrides(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = oncall_config(tmp_path)
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            made = await conn.request("override", schedule="primary", by="carol", **window)
            assert made["ok"], made
            # The primary rotation now starts a week later: a week with nobody on call.
            config.path.write_text(
                config.path.read_text().replace("start = 2027-01-14", "start = 2027-01-21")
            )
            caplog.clear()
            reloaded = await conn.request("reload")
            assert reloaded["ok"], reloaded
            await settle()  # the gaps are looked for once the reload is done, in the background
            logged = [(r.levelname, r.getMessage()) for r in caplog.records]
            gaps = [(level, line) for level, line in logged if line.startswith("gap: ")]
            metrics = metric_samples(await metrics_text(config.socket))
            # A line a place, most severe first: the two policies that page primary alone
            # reach nobody at all; business hours' nights leave a level with nobody; then
            # primary's own gaps, until the override and from its end to the new start.
            assert [line.removeprefix("gap: ").split(": ")[0] for _, line in gaps] == [
                "policies.expiring",
                "policies.rota",
                "policies.hours.levels[0]",
                "schedule:business",
                "schedule:primary",
            ]
            assert [level for level, _ in gaps] == ["ERROR"] * 3 + ["WARNING"] * 2
            assert gaps[-1][1] == (
                "gap: schedule:primary: nobody on call 2 times in the next 4 weeks: from Fri"
                " 2027-01-15 08:00 until Sat 2027-01-16 09:00; from Sun 2027-01-17 09:00 until Thu"
                " 2027-01-21 09:00, Europe/London (if its gaps are meant, say so: gaps ="
                ' "expected")'
            )
            assert gaps[0][1].startswith("gap: policies.expiring: NO LEVEL REACHES ANYONE 2 times")
            assert metrics["pagerd_next_level_gap_seconds"] == 0.0  # in one now
            assert metrics['pagerd_gaps{kind="policy"}'] == 4.0  # 2 policies, 2 windows each
            assert metrics['pagerd_gaps{kind="expected"}'] == 0.0
            listed = await conn.request("overrides", schedule="primary")
            assert listed["overrides"] == [made["override"]]
            now = await conn.request("oncall", schedule="primary", at="2027-01-16T12:00:00Z")
            assert now["schedules"][0]["on_call"] == "carol"  # the override fills part of it


async def test_simulate_resolves_schedules_and_overrides_as_paging_does(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """`pager simulate` is given the daemon's resolver: the schedule resolved to a person at each
    level's time, an override made over the socket applied, each step on the schedule's clock,
    and a person's rule shown with its delays."""
    text = (
        CHANNELS
        + PEOPLE
        + POLICIES
        + """
[policies.mixed]
[[policies.mixed.levels]]
targets = ["schedule:primary", "person:dave"]
ack_timeout = "30m"
[[policies.mixed.levels]]
targets = ["schedule:primary"]
ack_timeout = "1h"

[services.api]
policy = "mixed"
"""
    )
    (tmp_path / "pager.toml").write_text(text)
    config = load(tmp_path / "pager.toml")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            reply = await conn.request(
                "override", schedule="primary", by="carol", **{"for": "bob"},
                **{"from": "2027-01-15T09:00:00Z", "until": "2027-01-15T12:00:00Z"},
            )  # fmt: skip
            assert reply["ok"], reply
            simulated = await conn.request("simulate", service="api", at="2027-01-15T08:40:00Z")
    assert simulated["ok"], simulated
    first, second = simulated["timeline"][:2]
    assert (first["schedule"], first["timezone"]) == ("primary", "Europe/London")
    assert first["local_at"] == "2027-01-15T08:40:00+00:00"
    assert [(n["target"], n["via"], n["delay"]) for n in first["notify"]] == [
        ("email:alice@example.com", "schedule:primary → alice", "0s"),
        ("sms:+14155550199", "person:dave", "0s"),
        ("email:dave@example.com", "person:dave", "2m"),
    ]
    assert first["notify"][2]["at"] == "2027-01-15T08:42:00.000Z"
    # 09:10: bob's day from 09:00, but carol stands in for him.
    assert second["at"] == "2027-01-15T09:10:00.000Z"
    assert [(n["target"], n["via"]) for n in second["notify"]] == [
        ("email:carol@example.com", "schedule:primary → carol")
    ]
    shown = cli.render("simulate", {k: v for k, v in simulated.items() if k != "ok"})
    line = shown.splitlines()[1].split()
    assert line[:3] == ["2027-01-15T08:40:00+00:00", "Europe/London", "+0s"]
    assert " ".join(line[3:]) == (
        "notify level 1 round 1: schedule:primary → alice (email:alice@example.com),"
        " person:dave (sms:+14155550199, email:dave@example.com after 2m)"
    )
    assert "schedule:primary → carol (email:carol@example.com)" in shown


async def test_an_expired_ack_pages_whoever_is_on_call_at_the_expiry_across_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """alice, on call at 08:00, acknowledges at 08:01 (`ack_expiry = "2h"`); pagerd stops, and
    starts again at 10:00, when bob is on call and an override made then gives his shift to
    carol: at 10:01 the restarted escalation pages carol, resolved at the expiry."""
    config = oncall_config(tmp_path)
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            assert (await conn.request("alert", service="pay", message="down"))["ok"]
            await trio.sleep(MINUTE)
            acked = await conn.request("ack", service="pay", by="alice")
            assert acked["incident"]["next_escalation_at"] == "2027-01-15T10:01:00.000Z"
            await trio.sleep(30 * MINUTE)
        assert targets(config) == [(1, 1, "email:alice@example.com")]
        async with running(config, Clock(T0 + 2 * HOUR)), connect(config.socket) as conn:
            reply = await conn.request(
                "override", schedule="primary", by="carol", **{"for": "bob"},
                **{"from": "2027-01-15T09:30:00Z", "until": "2027-01-15T11:00:00Z"},
            )  # fmt: skip
            assert reply["ok"], reply
            await trio.sleep(59)  # a second before the expiry: nothing yet
            await settle()
            assert targets(config) == [(1, 1, "email:alice@example.com")]
            await trio.sleep(2)
            await settle()
            assert targets(config) == [
                (1, 1, "email:alice@example.com"),
                (2, 1, "email:carol@example.com"),
            ]
            timeline = await history(conn, "pay")
    shown = [(e.get("via"), e["target"]) for e in timeline if e["event"] == "notification"]
    assert shown[-1] == ("schedule:primary → carol", "email:carol@example.com")


async def test_every_schedule_s_overrides_the_search_s_end_and_simulate_s_whole_seconds(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """`overrides` without a schedule lists every schedule's; `oncall` before a rotation starts
    says where its search stopped (`horizon`, equal to `until`: no hand-off there); `simulate`
    from an instant with milliseconds gives its offsets to the second."""
    config = oncall_config(tmp_path)
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            one = await conn.request("override", schedule="primary", by="carol", **window)
            two = await conn.request("override", schedule="business", by="alice", **window)
            every = await conn.request("overrides")
            assert every["ok"], every
            assert every["overrides"] == [two["override"], one["override"]]  # by schedule
            early = await conn.request("oncall", schedule="primary", at="2026-01-01T00:00:00Z")
            simulated = await conn.request("simulate", service="api", at="2027-01-15T08:40:00.654Z")
    (shown,) = early["schedules"]
    assert (shown["on_call"], shown["next"]) == (None, [])
    assert shown["until"] == shown["horizon"] == "2026-07-02T01:00:00+01:00"  # 26 weeks on
    assert "nobody (no shift within 26 weeks)" in cli.render("oncall", early)
    assert [step["after"] for step in simulated["timeline"][:2]] == ["0s", "1h"]
    # A step at a whole time after an opening with milliseconds (a window's end, a hand-off).
    opened = T0 + 0.654
    steps = (
        Step(opened, "held", until=T0 + 4 * DAY + 5 * HOUR),
        Step(T0 + 4 * DAY + 5 * HOUR, "exhausted"),
    )
    timeline = timeline_object(Timeline("api", opened, steps, "exhausted"), 0.0)
    assert [step["after"] for step in timeline["timeline"]] == ["0s", "4d4h59m59s"]


async def test_a_level_partly_reached_is_a_note_and_one_reached_by_nobody_is_loud(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Follow-the-sun as two schedules in one level: at 08:00 on Friday business hours have
    nobody, primary has alice. alice is paged, and the empty schedule is a quiet note (INFO,
    `partly_unreached`, not counted), not NOBODY TO NOTIFY in capitals and an error."""
    text = CHANNELS + PEOPLE + """
[policies.sun]
[[policies.sun.levels]]
targets = ["schedule:primary", "schedule:business"]

[services.api]
policy = "sun"
"""  # fmt: skip
    (tmp_path / "pager.toml").write_text(text)
    config = load(tmp_path / "pager.toml")
    with trio.fail_after(DAY):
        async with running(config), connect(config.socket) as conn:
            caplog.clear()
            caplog.set_level(logging.INFO, logger="pagerd")
            assert (await conn.request("alert", service="api", message="down"))["ok"]
            await settle()
            timeline = await history(conn, "api")
            metrics = (await conn.request("metrics"))["text"]
            simulated = await conn.request("simulate", service="api")
    assert targets(config) == [(1, 1, "email:alice@example.com")]
    (note,) = [e for e in timeline if e["event"] == "partly_unreached"]
    assert note["detail"] == (
        "level 1 round 1: schedule:business has nobody on call; the level's other targets were"
        " notified"
    )
    assert not [e for e in timeline if e["event"] == "unreached"]
    shown = cli.render("history", {"incident": "api#1", "message": "down", "timeline": timeline})
    assert "note: level 1 round 1: schedule:business has nobody on call" in shown
    assert "NOBODY" not in shown
    assert "pagerd_levels_unreached_total 0" in metrics.splitlines()
    logged = [r for r in caplog.records if "schedule:business has nobody" in r.getMessage()]
    assert [r.levelname for r in logged] == ["INFO"]
    partial = simulated["timeline"][0]
    assert (partial["event"], partial["partial"]) == ("unreached", True)
    said = cli.render("simulate", {k: v for k, v in simulated.items() if k != "ok"})
    assert "level 1 round 1: schedule:business has nobody on call (its other targets are" in said
    assert "reached nobody" not in said
