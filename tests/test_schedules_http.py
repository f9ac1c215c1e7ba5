"""Schedules over HTTP, on 127.0.0.1 with httpx: the iCalendar feed lists exactly the shifts that
resolution computes and parses with icalendar's own parser; a calendar client's key in the URL
opens the feed and nothing else, and is never logged; overrides over REST as over the socket.
Under the mock clock with HTTP in the daemon's process (`http.workers = 0`), and once through
real front processes (`workers = 2`, on the real clock), where these routes are served in the
core and forwarded whole by the fronts."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import httpx
import icalendar
import pytest
import trio
import trio.testing

from pager.ical import feed_shifts
from pagerd.config import Config, load
from pagerd.front.http.fronts import Fronts
from tests.harness import T0, connect, running
from tests.http import INTEGRATIONS, KEYS, auth, base_url, front, keyed_config

CALENDAR_KEY = "calendar-key-9d8c7b6a5f4e"

SCHEDULES = """
[integrations.calendars]
type = "calendar"
key_file = "calendars.key"

[people.alice]
email = "alice@example.com"
[people.bob]
sms = "+14155550100"

[schedules.primary]
timezone = "Europe/London"
[[schedules.primary.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2027-01-04
handoff = "09:00"
[[schedules.primary.layers]]
people = ["bob"]
shift = "1w"
start = 2027-01-04
restrict = [{ days = ["sat", "sun"], from = "10:00", until = "12:00" }]
"""


def schedules_config(folder: Path, workers: int = 0) -> Config:
    text = INTEGRATIONS.replace("workers = 0", f"workers = {workers}")
    return keyed_config(folder, {**KEYS, "calendars": CALENDAR_KEY}, text + SCHEDULES)


def events(body: bytes) -> tuple[float, list[tuple[float, float, str]]]:
    calendar = icalendar.Calendar.from_ical(body)
    stamp = None
    found = []
    for event in calendar.walk("VEVENT"):
        stamp = event.decoded("dtstamp").timestamp()
        person = str(event.get("summary")).split(" on call")[0]
        found.append(
            (event.decoded("dtstart").timestamp(), event.decoded("dtend").timestamp(), person)
        )
    assert stamp is not None
    return stamp, found


async def test_the_feed_lists_exactly_the_shifts_resolution_computes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = schedules_config(tmp_path)
    schedule = config.schedules["primary"]
    with trio.fail_after(60):
        async with front(config) as (_, client):
            whole = await client.get("/schedules/primary.ics", headers=auth())
            mine = await client.get("/schedules/primary.ics?person=alice", headers=auth())
            unknown = await client.get("/schedules/nope.ics", headers=auth())
            nobody = await client.get("/schedules/primary.ics?person=zed", headers=auth())
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("text/calendar")
    now, listed = events(whole.content)
    assert abs(now - T0) < 3600
    # The shifts in force from 8 weeks ago to 8 weeks ahead, whole.
    expected = feed_shifts(schedule, now)
    assert listed == [(s.start, s.end, s.person) for s in expected]
    assert expected[-1].end > now + 8 * 7 * 86400  # the last one not cut at "now + 8 weeks"
    assert {p for _, _, p in listed} == {"alice", "bob"}
    _, alices = events(mine.content)
    assert alices == [(s.start, s.end, s.person) for s in expected if s.person == "alice"]
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_schedule")
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "unknown_person")
    # The weekend layer's shift in alice's week: Saturday 9 January 2027, 10:00 to 12:00 London.
    saturday = dt.datetime(2027, 1, 9, 10, tzinfo=dt.UTC).timestamp()
    assert (saturday, saturday + 7200, "bob") in listed


async def test_a_calendar_key_in_the_url_opens_the_feed_only_and_is_never_logged(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = schedules_config(tmp_path)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            good = await client.get(f"/calendar/{CALENDAR_KEY}/primary.ics")
            wrong = await client.get("/calendar/not-the-key-at-all/primary.ics")
            as_bearer = await client.get(
                "/schedules/primary.ics", headers={"authorization": f"Bearer {CALENDAR_KEY}"}
            )
            rest_key_in_path = await client.get(f"/calendar/{KEYS['ops']}/primary.ics")
    assert good.status_code == 200 and b"BEGIN:VCALENDAR" in good.content
    assert wrong.status_code == 404
    assert as_bearer.status_code == 401  # a calendar's key is no REST key
    assert rest_key_in_path.status_code == 404
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("pagerd")]
    assert ours and not any(CALENDAR_KEY in line for line in ours)  # (httpx, the client, logs it)


async def test_overrides_over_rest_as_over_the_socket(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = schedules_config(tmp_path)
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    with trio.fail_after(60):
        async with front(config) as (_, client):
            made = await client.post(
                "/schedules/primary/overrides", json={"by": "alice", "for": "bob", **window},
                headers=auth(),
            )  # fmt: skip
            assert made.status_code == 200, made.text
            override = made.json()["override"]
            listed = await client.get("/schedules/primary/overrides", headers=auth())
            assert listed.json()["overrides"] == [override]
            oncall = await client.get(
                "/oncall/primary", params={"at": "2027-01-16T12:00:00Z"}, headers=auth()
            )
            assert oncall.json()["schedules"][0]["on_call"] == "alice"
            refusals = [
                await client.post("/schedules/nope/overrides", json={"by": "bob", **window},
                                  headers=auth()),
                await client.post("/schedules/primary/overrides", json={"by": "bob"},
                                  headers=auth()),
                await client.post("/schedules/primary/overrides",
                                  json={"by": "bob", "from": window["until"],
                                        "until": window["from"]}, headers=auth()),
                await client.post("/schedules/primary/overrides", json=["by"], headers=auth()),
                await client.post("/schedules/primary/overrides", json={"by": "bob", **window}),
            ]  # fmt: skip
            assert [r.status_code for r in refusals] == [404, 400, 400, 400, 401]
            removed = await client.delete(f"/overrides/{override['id']}", headers=auth())
            assert removed.json()["removed"] == override
            again = await client.delete(f"/overrides/{override['id']}", headers=auth())
            assert again.status_code == 404


@pytest.mark.e2e
async def test_through_front_processes_the_feed_and_an_override_are_served_in_the_core(
    tmp_path: Path,
) -> None:
    """`http.workers = 2`: real front processes take the requests; the feed (a calendar key in
    the path, checked by the front) and the override (REST) are served by the core, which
    holds the schedules and the overrides: the override is in force at once, in the next feed
    and in who is on call."""
    config = schedules_config(tmp_path, workers=2)
    schedule = config.schedules["primary"]
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    noon = dt.datetime(2027, 1, 16, 12, tzinfo=dt.UTC).timestamp()
    with trio.fail_after(60):
        async with running(config, offload=None) as daemon:
            fronts = daemon.http
            assert isinstance(fronts, Fronts) and len(fronts.pids()) == 2
            assert os.getpid() not in fronts.pids()
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=10) as client:
                before = await client.get(f"/calendar/{CALENDAR_KEY}/primary.ics")
                assert before.status_code == 200, before.text
                now, listed = events(before.content)
                assert listed == [(s.start, s.end, s.person) for s in feed_shifts(schedule, now)]
                assert any(a <= noon < b and who == "bob" for a, b, who in listed)
                made = await client.post(
                    "/schedules/primary/overrides", json={"by": "alice", "for": "bob", **window},
                    headers=auth(),
                )  # fmt: skip
                assert made.status_code == 200, made.text
                rota = daemon.services.rota
                assert rota is not None
                stored = rota.overrides("primary")
                assert [o.id for o in stored] == [made.json()["override"]["id"]]
                after = await client.get("/schedules/primary.ics", headers=auth())
                assert after.status_code == 200, after.text
                now, listed = events(after.content)
                expected = feed_shifts(schedule, now, stored)
                assert listed == [(s.start, s.end, s.person) for s in expected]
                assert any(a <= noon < b and who == "alice" for a, b, who in listed)
                oncall = await client.get(
                    "/oncall/primary", params={"at": "2027-01-16T12:00:00Z"}, headers=auth()
                )
                assert oncall.json()["schedules"][0]["on_call"] == "alice"
                # The front checks the keys: a wrong one reaches nothing.
                wrong = await client.get("/calendar/not-the-key-at-all/primary.ics")
                assert wrong.status_code == 404
                refused = await client.post(
                    "/schedules/primary/overrides", json={"by": "bob", **window}
                )
                assert refused.status_code == 401
                assert [o.id for o in rota.overrides("primary")] == [o.id for o in stored]


RESTRICTED = """
[integrations.shop]
type = "rest"
key_file = "shop.key"
services = ["shop"]

[people.alice]
email = "alice@example.com"
[people.bob]
sms = "+14155550100"

[schedules.shoprota]
timezone = "Europe/London"
[[schedules.shoprota.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2027-01-04

[schedules.primary]
timezone = "Europe/London"
[[schedules.primary.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2027-01-04

[schedules.spare]
timezone = "Europe/London"
[[schedules.spare.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2027-01-04

[policies.shopping]
[[policies.shopping.levels]]
targets = ["schedule:shoprota"]
[[policies.shopping.levels]]
targets = ["schedule:primary"]
[policies.paying]
[[policies.paying.levels]]
targets = ["email:lead@example.com"]
[[policies.paying.levels]]
targets = ["schedule:primary"]
"""

SHOP_KEY = "rest-key-only-shop-3c1d"


async def test_an_integration_restricted_to_some_services_changes_only_their_schedules(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`shop` may send to service shop only. shoprota pages shop alone (shop's policy): its
    overrides are shop's to see, add and remove. primary is paged by shop and by pay too (each
    policy's second level), spare by no service: 403 forbidden, with the reason, for each of
    the routes, and nothing changed. Who made and who removed each override is recorded,
    logged, and listed, across a restart."""
    services = '[services.shop]\npolicy = "shopping"\n[services.pay]\npolicy = "paying"\n'
    config = keyed_config(tmp_path, {**KEYS, "shop": SHOP_KEY}, INTEGRATIONS + RESTRICTED, services)
    shop = {"authorization": f"Bearer {SHOP_KEY}"}
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with front(config) as (_, client):
            mine = await client.post(
                "/schedules/shoprota/overrides", json={"by": "bob", **window}, headers=shop
            )
            assert mine.status_code == 200, mine.text
            made = mine.json()["override"]
            assert made["made_by"] == "integration shop"
            theirs = await client.post(
                "/schedules/primary/overrides", json={"by": "bob", **window}, headers=auth()
            )
            assert theirs.status_code == 200, theirs.text
            other = theirs.json()["override"]
            assert other["made_by"] == "integration ops"
            refused = {
                "add": await client.post(
                    "/schedules/primary/overrides", json={"by": "alice", **window}, headers=shop
                ),
                "add unpaged": await client.post(
                    "/schedules/spare/overrides", json={"by": "alice", **window}, headers=shop
                ),
                "remove": await client.delete(f"/overrides/{other['id']}", headers=shop),
                "list": await client.get("/schedules/primary/overrides", headers=shop),
                "oncall": await client.get("/oncall/primary", headers=shop),
                "feed": await client.get("/schedules/primary.ics", headers=shop),
            }
            everyone = await client.get("/oncall", headers=shop)
            listed = await client.get("/schedules/shoprota/overrides", headers=shop)
            removed = await client.delete(f"/overrides/{made['id']}", headers=shop)
            unknown = await client.delete("/overrides/999", headers=shop)
            kept = await client.get("/schedules/primary/overrides", headers=auth())
        async with front(config) as (_, client):
            after = await client.get("/schedules/shoprota/overrides", headers=auth())
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"]["code"] == "forbidden", what
    assert "also pages 'pay'" in refused["add"].json()["error"]["message"]
    assert "pages no service" in refused["add unpaged"].json()["error"]["message"]
    assert [s["schedule"] for s in everyone.json()["schedules"]] == ["shoprota"]
    assert listed.json()["overrides"] == [made]
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed"] == made
    assert removed.json()["removed_by"] == "integration shop"
    assert unknown.status_code == 404
    assert kept.json()["overrides"] == [other]  # nothing a refusal touched
    (gone,) = after.json()["removed"]
    assert after.json()["overrides"] == []
    assert gone["id"] == made["id"] and gone["made_by"] == "integration shop"
    assert gone["removed_by"] == "integration shop"
    assert gone["removed_at"] == "2027-01-15T08:00:00+00:00"
    logged = [r.getMessage() for r in caplog.records if r.name == "pagerd.oncall"]
    assert any(
        line.startswith(f"override {made['id']} added schedule=shoprota")
        and "made_by='integration shop'" in line
        for line in logged
    ), logged
    assert any(
        line.startswith(f"override {made['id']} removed schedule=shoprota")
        and "removed_by='integration shop'" in line
        for line in logged
    ), logged


async def test_the_feed_shows_no_override_whose_person_left_people(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """carol stands in for bob on Saturday; carol is then removed from [people] and the config
    reloaded: the override is not used, so the feed shows bob's shift as the rotation has it,
    never carol, and `GET /oncall` says bob."""
    config = schedules_config(tmp_path)
    config.path.write_text(
        config.path.read_text() + '\n[people.carol]\nemail = "carol@example.com"\n'
    )
    config = load(config.path)
    window = {"from": "2027-01-16T09:00:00Z", "until": "2027-01-17T09:00:00Z"}
    with trio.fail_after(60):
        async with front(config) as (_, client), connect(config.socket) as conn:
            made = await client.post(
                "/schedules/primary/overrides", json={"by": "carol", "for": "bob", **window},
                headers=auth(),
            )  # fmt: skip
            assert made.status_code == 200, made.text
            before = await client.get("/schedules/primary.ics", headers=auth())
            config.path.write_text(
                config.path.read_text().replace('[people.carol]\nemail = "carol@example.com"\n', "")
            )
            assert (await conn.request("reload"))["ok"]
            after = await client.get("/schedules/primary.ics", headers=auth())
            oncall = await client.get(
                "/oncall/primary", params={"at": "2027-01-16T12:00:00Z"}, headers=auth()
            )
    assert {who for _, _, who in events(before.content)[1]} == {"alice", "bob", "carol"}
    assert {who for _, _, who in events(after.content)[1]} == {"alice", "bob"}
    assert oncall.json()["schedules"][0]["on_call"] == "bob"
