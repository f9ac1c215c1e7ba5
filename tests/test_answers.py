"""Every way to answer is the same ack, through the service's actor: concurrent acks over the
socket, REST, a link and the phone's and console's path (`submit_answer`) acknowledge once, and
the others are told who was first. An acknowledgement that outlives the policy's `ack_expiry`
pages again from level 1, on time across a restart. No token or key reaches a log, a metric,
the history or the database."""

from __future__ import annotations

import logging
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

from pager.domain import Ack
from pagerd import app
from pagerd.access.links import Link
from pagerd.config import Config
from pagerd.front.http.submit import submit_answer
from pagerd.timing.clock import Clock
from tests.harness import T0, connect, metrics_text, running, settle, steps, write_config
from tests.http import auth, base_url, front, http_config

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
    line, result = await submit_answer(
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
            history = await conn.request("history", service="api")
            (expired,) = [e for e in history["timeline"] if e["event"] == "ack_expired"]
            assert expired["detail"] == (
                "acknowledged by alice via socket 1h ago and still open: escalation restarts"
                " at level 1 (round 2)"
            )
            await trio.sleep(300)  # and it escalates again as a new incident would
            await settle()
            assert steps(config)[-1] == ("api#1", 2, 2, "email:lead@example.com")


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
