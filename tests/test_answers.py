"""Every way to answer is the same ack, through the service's actor: concurrent acks over the
socket, REST, a link and the phone's and console's path (`submit.answer`) acknowledge once, and
the others are told who was first. An acknowledgement that outlives the policy's `ack_expiry`
pages again from level 1, on time across a restart. No token or key reaches a log, a metric,
the history or the database."""

from __future__ import annotations

import logging
import re
import sqlite3
import tempfile
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pager.domain import Ack, Healthy
from pagerd import app
from pagerd.access.keys import SigningKeys
from pagerd.access.links import Link
from pagerd.access.sessions import open_session
from pagerd.config import Config, load
from pagerd.delivery.transports.slack import open_button
from pagerd.front.http.console.app import SESSION_COOKIE
from pagerd.front.local import answer
from pagerd.main import main
from pagerd.timing.clock import Clock
from tests.console import sign_in, user_table
from tests.harness import (
    ONCALL,
    T0,
    connect,
    metrics_text,
    running,
    settle,
    steps,
    until,
    write_config,
)
from tests.http import auth, base_url, front, http_config
from tests.http_clients import senders
from tests.servers import Answer, HttpServer
from tests.test_slack_buttons import Slack, calls, config_text
from tests.test_slack_buttons import alert as slack_alert
from tests.test_slack_buttons import status as slack_status

ALICE: Final = "email:alice@example.com"
WAYS: Final = ("socket", "rest", "link", "sms", "console")


async def _ack(
    way: str, i: int, daemon: app.Daemon, client: httpx.AsyncClient, config: Config
) -> tuple[str, str, dict[str, Any] | None]:
    """Acknowledge api's open incident one `way`, as `who`; (who, via, who was first if not
    this one)."""
    who = f"{way}-{i}"
    if way == "socket":
        async with connect(config.socket) as conn:
            reply = await conn.request("ack", service="api", by=who)
        assert reply["ok"]
        return who, "socket", reply["already_acknowledged"]
    if way == "rest":
        response = await client.post(
            "/acknowledge", json={"service": "api", "by": who}, headers=auth()
        )
        assert response.status_code == 200
        return who, "ops", response.json()["already_acknowledged"]
    if way == "link":
        incident = daemon.services.state("api").incident
        assert incident is not None and daemon.keys is not None
        who = f"email:{who}@example.com"
        token = Link("api", incident.number, incident.opened_at, who).token(daemon.keys)
        response = await client.post("/ack", data={"token": token})
        assert response.status_code in (200, 409), response.text
        if response.status_code == 200:
            return who, "link", None
        return who, "link", {"page": " ".join(response.text.split())}
    line, result = await answer(
        daemon.services, "api", Ack(by=who, incident=incident_number(daemon)), way
    )
    assert result == "ok"
    answered: dict[str, Any] = msgspec.json.decode(line)
    return who, way, answered["already_acknowledged"]


def incident_number(daemon: app.Daemon) -> int:
    incident = daemon.services.state("api").incident
    assert incident is not None
    return incident.number


async def _acks_at_once(config: Config, ways: list[str]) -> None:
    with trio.fail_after(600):
        async with running(config) as daemon:  # noqa: SIM117  # the client needs its port
            async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client:
                async with connect(config.socket) as conn:
                    await conn.request("alert", service="api", message="down")
                answers: list[tuple[str, str, dict[str, Any] | None]] = []

                async def one(way: str, i: int) -> None:
                    answers.append(await _ack(way, i, daemon, client, config))

                async with trio.open_nursery() as nursery:
                    for i, way in enumerate(ways):
                        nursery.start_soon(one, way, i)
                await settle()
                async with connect(config.socket) as conn:
                    status = (await conn.request("status", service="api"))["incident"]
                    history = await conn.request("history", service="api")
    acks = [e for e in history["timeline"] if e["event"] == "ack"]
    assert len(acks) == 1, acks  # one ack in history, however many came
    winners = [(who, via) for who, via, first in answers if first is None]
    assert winners == [(status["acknowledged_by"], status["acknowledged_via"])]
    winner, how = winners[0]
    assert acks[0]["by"] == winner
    for _, _, first in answers:
        if first is None:
            continue
        if "page" in first:  # a link's page says it in words
            assert f"already acknowledged by {winner} via {how} at" in first["page"]
        else:
            assert (first["by"], first["via"]) == (winner, how)
            assert first["at"] == status["acknowledged_at"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ways=st.lists(st.sampled_from(WAYS), min_size=2, max_size=8))
def test_acks_through_every_way_at_once_acknowledge_once(ways: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="pagerd-acks-") as folder:
        config = http_config(Path(folder), http='public_url = "https://pager.example"\n')
        trio.run(
            partial(_acks_at_once, config, ways),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )


POLICY_WITH_EXPIRY: Final = """
[policies.oncall]
ack_expiry = "1h"
[[policies.oncall.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "5m"
[[policies.oncall.levels]]
targets = ["email:lead@example.com"]
ack_timeout = "15m"
"""


async def test_ack_expiry_pages_level_1_again_on_time_across_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = write_config(tmp_path, POLICY_WITH_EXPIRY, {"api": "oncall"})
    with trio.fail_after(3 * 3600):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await trio.sleep(60)
            reply = await conn.request("ack", service="api", by="alice")
            assert reply["already_acknowledged"] is None
            assert reply["incident"]["next_escalation_at"] == "2027-01-15T09:01:00.000Z"
            assert reply["incident"]["ack_expires_at"] == "2027-01-15T09:01:00.000Z"
            await trio.sleep(1800)  # half of it: then pagerd stops
        assert steps(config) == [("api#1", 1, 1, ALICE)]
        # Back at 09:00 (down for 28 minutes): the expiry is where it was, at 09:01, neither
        # forgotten nor early.
        async with running(config, Clock(T0 + 3600)), connect(config.socket) as conn:
            await trio.sleep(59)  # a second before T0 + 1h01m, when the ack expires
            await settle()
            assert steps(config) == [("api#1", 1, 1, ALICE)]
            await trio.sleep(2)
            await settle()
            assert steps(config) == [("api#1", 1, 1, ALICE), ("api#1", 2, 1, ALICE)]
            status = (await conn.request("status", service="api"))["incident"]
            assert (status["acknowledged"], status["round"], status["level"]) == (False, 2, 1)
            assert status["ack_expires_at"] is None  # not acknowledged any more
            history = await conn.request("history", service="api")
            (expired,) = [e for e in history["timeline"] if e["event"] == "ack_expired"]
            assert expired["detail"] == (
                "acknowledged by alice via socket 1h ago and still open: escalation restarts"
                " at level 1 (round 2)"
            )
            await trio.sleep(300)  # and it escalates again as a new incident would
            await settle()
            assert steps(config)[-1] == ("api#1", 2, 2, "email:lead@example.com")


async def test_an_expiry_fired_late_after_downtime_says_how_long_the_ack_truly_held(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """pagerd was stopped when the acknowledgement expired: the start fires it at once, and
    the history says how long ago the ack was (2h59m), not the policy's `ack_expiry` (1h)."""
    config = write_config(tmp_path, POLICY_WITH_EXPIRY, {"api": "oncall"})
    with trio.fail_after(4 * 3600):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await trio.sleep(60)
            assert (await conn.request("ack", service="api", by="alice"))["ok"]
        # Back at 11:00, two hours after the ack expired at 09:01.
        async with running(config, Clock(T0 + 3 * 3600)), connect(config.socket) as conn:
            await settle()
            assert steps(config) == [("api#1", 1, 1, ALICE), ("api#1", 2, 1, ALICE)]
            history = await conn.request("history", service="api")
            (expired,) = [e for e in history["timeline"] if e["event"] == "ack_expired"]
            assert expired["detail"] == (
                "acknowledged by alice via socket 2h59m ago and still open: escalation restarts"
                " at level 1 (round 2)"
            )


async def test_no_token_or_key_reaches_a_log_a_metric_the_history_or_the_database(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = http_config(tmp_path, http='public_url = "https://pager.example"\n')
    with trio.fail_after(60):
        async with front(config) as (daemon, client):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api", message="down")
            incident = daemon.services.state("api").incident
            assert incident is not None and daemon.keys is not None
            token = Link("api", 1, incident.opened_at, ALICE).token(daemon.keys)
            tampered = token[:-3] + "AAA"
            await client.get(f"/ack/{token}")
            await client.get(f"/resolve/{tampered}")
            await client.post("/ack", data={"token": tampered})
            await client.post("/ack", data={"token": token})
            await client.post("/ack", data={"token": token})
            await client.post("/resolve", content=b"token=" + token.encode() + b"%ff")
            await settle()
            secrets = [token, tampered, token.split(".")[1], *(k.hex() for k in daemon.keys.keys)]
            metrics = await metrics_text(config.socket)
            async with connect(config.socket) as conn:
                history = msgspec.json.encode(await conn.request("history", service="api"))
                status = msgspec.json.encode(await conn.request("status"))
    with closing(sqlite3.connect(config.state_dir / "pager.db")) as db:
        dump = "\n".join(db.iterdump())
    # The test's own client (httpx) logs the URLs it fetches: pagerd's side only.
    logged = "\n".join(
        record.getMessage() + str(record.exc_info)
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    assert "stopping" in logged
    for where, text in (
        ("log", logged),
        ("metrics", metrics),
        ("history", history.decode()),
        ("status", status.decode()),
        ("database", dump),
    ):
        for secret in secrets:
            assert secret not in text, where
    assert "/ack/{token}" in metrics  # counted by route, never by path


async def test_a_rotation_reaches_links_slack_buttons_and_console_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], delivery_workers: int | None
) -> None:
    """The daemon holds the keys in one place, read by every use at each use: after `pagerd
    rotate-key` and a reload, new links, new Slack buttons and new console sessions are signed
    with the new key alone, and the link, the button and the session signed before still work.
    On the real clock, as test_slack_buttons (its Slack stand-in is a server in a thread); with
    delivery workers, the rotated key reaches them before the next page."""
    with HttpServer() as api, trio.fail_after(60):
        api.default = Answer(200, {"ok": True, "channel": "C0OPS1234", "ts": "1700000000.0001"})
        text = config_text(tmp_path, api.url, "slack:app").replace(
            'listen = "127.0.0.1:0"\n',
            'listen = "127.0.0.1:0"\npublic_url = "http://pager.example"\n',
        )
        (tmp_path / "pager.toml").write_text(text + "\n[console]\n" + user_table("alice"))
        config = load(tmp_path / "pager.toml")
        running_daemon = running(config, offload=None, delivery_workers=delivery_workers)
        async with running_daemon as daemon:  # noqa: SIM117  # the client needs its port
            async with (
                httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as client,
                httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as later,
            ):
                slack = Slack(client, daemon, api)
                await slack_alert(config)
                await until(lambda: calls(api, "/api/chat.postMessage"), "the first page")
                [first_page] = [r.json() for r in calls(api, "/api/chat.postMessage")]
                incident = daemon.services.state("api").incident
                assert incident is not None
                old_link = Link("api", 1, incident.opened_at, ALICE).token(daemon.keys)
                assert (await sign_in(client, "alice")).status_code == 303
                old_session = client.cookies[SESSION_COOKIE]
                old = daemon.keys

                assert main(["rotate-key", "--config", str(config.path)]) == 0
                assert "reload pagerd" in capsys.readouterr().out
                assert await daemon.reload()  # SIGHUP
                new = SigningKeys(daemon.keys.keys[:1])  # the new key alone
                assert daemon.keys.keys[1:] == old.keys

                # What was signed before still verifies: the link, the session, the button.
                assert (await client.get(f"/ack/{old_link}")).status_code == 200
                overview = await client.get("/console/")
                assert overview.status_code == 200 and "Sign out" in overview.text
                assert (await slack.click(first_page, "ack", "alice")).status_code == 200
                acked = (await slack_status(config))["incident"]
                assert acked["acknowledged_by"] == "slack:@alice"

                # What is signed now is signed with the new key: a console session...
                assert (await sign_in(later, "alice")).status_code == 303
                session = later.cookies[SESSION_COOKIE]
                assert open_session(new, session, daemon.clock.now()) is not None
                assert open_session(old, session, daemon.clock.now()) is None
                assert open_session(daemon.keys, old_session, daemon.clock.now()) is not None
                # ... a page's buttons (through a lane the reload kept) and its links.
                async with connect(config.socket) as conn:
                    assert (await conn.request("healthy", service="api"))["ok"]
                await slack_alert(config)
                await until(lambda: len(calls(api, "/api/chat.postMessage")) == 2, "page 2")
                second_page = calls(api, "/api/chat.postMessage")[1].json()
                values = [
                    b["value"]
                    for block in second_page["blocks"] if block["type"] == "actions"
                    for b in block["elements"]
                ]  # fmt: skip
                assert values and all(open_button(new, v) is not None for v in values)
                assert all(open_button(old, v) is None for v in values)
                link = re.search(r"/ack/([^|>]+)\|", second_page["text"])
                assert link is not None
                assert Link.open(new, link.group(1)) is not None
                assert Link.open(old, link.group(1)) is None
                answered = await client.post("/ack", data={"token": link.group(1)})
                assert answered.status_code == 200, answered.text
    pages = calls(api, "/api/chat.postMessage")
    assert senders(pages) == {"httpx" if delivery_workers == 0 else "curl"}


@pytest.mark.parametrize("via", ["link", "sms", "slack", "console"])
async def test_a_page_s_resolve_is_refused_where_the_policy_keeps_it_off_pages(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, via: str
) -> None:
    """`allow_resolve = false` is checked where the answer is decided, with the policy in
    force: a resolve from a page (a link, an SMS's "c", a Slack button) is refused with
    `not_allowed` and closes nothing, however the page came to offer it; the console, an
    operator's sign-in rather than a page, still closes it."""
    config = write_config(
        tmp_path, ONCALL.replace("repeat = 0\n", "repeat = 0\nallow_resolve = false\n")
    )
    with trio.fail_after(60):
        async with running(config) as daemon:
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="api"))["ok"]
            line, result = await answer(
                daemon.services, "api", Healthy(by="alice", incident=1), via
            )
            state = daemon.services.state("api")
            if via == "console":
                assert result == "ok" and state.incident is None
            else:
                assert result == "not_allowed", line
                assert b"does not let a page close api#1" in line
                assert state.incident is not None and state.incident.number == 1
