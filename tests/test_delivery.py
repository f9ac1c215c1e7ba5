"""Delivery end to end in the daemon, on the real clock, to real servers on loopback: an SMTP
server and a Twilio-shaped HTTP server. Providers go down and come back; storms hit one service."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from pagerd.config import Config, load
from tests.harness import connect, running
from tests.servers import Answer, HttpServer, SmtpServer


@pytest.fixture(params=[0, 2], ids=["in-process", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """Sent by the daemon's own process, or by two delivery worker processes."""
    workers: int = request.param
    return workers


def write(folder: Path, smtp_port: int, api_base: str, services: list[str]) -> Config:
    (folder / "token").write_text("secret-token\n")
    text = f"""
[daemon]
socket = "pager.sock"
state_dir = "state"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
port = {smtp_port}
sender = "pager@example.com"
security = "none"
timeout = "2s"
retry_initial = "100ms"
retry_max = "200ms"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"
api_base = "{api_base}"
timeout = "2s"
retry_initial = "100ms"
retry_max = "200ms"
rate_limit = "100/s"

[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:alice@example.com", "sms:+14155550100", "email:bob@example.com"]
ack_timeout = "1h"
"""
    text += "".join(f'\n[services.{s}]\npolicy = "oncall"\n' for s in services)
    (folder / "pager.toml").write_text(text)
    return load(folder / "pager.toml")


async def wait_until(
    config: Config, service: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> dict[str, Any]:
    """Poll `service`'s status until its incident's notifications satisfy `ready`."""
    while True:
        async with connect(config.socket) as conn:
            status = await conn.request("status", service=service)
        if ready(status["incident"]["notifications"]):
            return status
        await trio.sleep(0.05)


async def wait_until_sent(config: Config, service: str, count: int) -> dict[str, Any]:
    return await wait_until(
        config, service, lambda notes: sum(n["state"] == "sent" for n in notes) >= count
    )


async def test_provider_down_then_up_delivers_exactly_once(tmp_path: Path, workers: int) -> None:
    smtp = SmtpServer()
    with HttpServer() as http, trio.fail_after(30):
        config = write(tmp_path, smtp.port, http.url, ["api"])
        async with running(config, offload=None, delivery_workers=workers):
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="api", message="down"))["ok"]
            # The SMTP server is not up yet: both emails fail and wait to be retried.
            await wait_until(
                config,
                "api",
                lambda notes: all(
                    n["state"] == "retrying" for n in notes if n["channel"] == "email"
                ),
            )
            with smtp:
                status = await wait_until_sent(config, "api", 3)
                received = smtp.wait_for(2)
                await trio.sleep(0.5)  # nothing more may arrive
                assert len(smtp.received) == 2
    assert sorted(r.recipients[0] for r in received) == ["alice@example.com", "bob@example.com"]
    assert len(http.requests) == 1
    email = [n for n in status["incident"]["notifications"] if n["channel"] == "email"]
    assert all(n["attempts"] >= 2 and n["provider_id"].startswith("Q") for n in email)


async def test_alert_storm_on_real_channels_sends_one_message_per_target(
    tmp_path: Path, workers: int
) -> None:
    with SmtpServer() as smtp, HttpServer() as http, trio.fail_after(60):
        config = write(tmp_path, smtp.port, http.url, ["api"])
        async with running(config, offload=None, delivery_workers=workers):

            async def client() -> None:
                async with connect(config.socket) as conn:
                    for _ in range(5):
                        assert (await conn.request("alert", service="api"))["ok"]

            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(client)
            await wait_until_sent(config, "api", 3)
            await trio.sleep(0.5)
    assert Counter(r.recipients[0] for r in smtp.received) == {
        "alice@example.com": 1,
        "bob@example.com": 1,
    }
    assert [r.form()["To"] for r in http.requests] == ["+14155550100"]


async def test_webhook_urls_never_reach_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    caplog.set_level(logging.DEBUG)
    with HttpServer() as http, trio.fail_after(30):
        http.answers.append(Answer(500, "try later"))
        secret_url = f"{http.url}/services/T0/B0/XOXB-SECRET"
        (tmp_path / "pager.toml").write_text(
            f"""
[daemon]
socket = "pager.sock"
state_dir = "state"
[channels.slack]
transport = "slack"
retry_initial = "100ms"
[policies.p]
[[policies.p.levels]]
targets = ["slack:{secret_url}"]
[services.api]
policy = "p"
"""
        )
        config = load(tmp_path / "pager.toml")
        async with running(config, offload=None, delivery_workers=workers):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await wait_until_sent(config, "api", 1)
            async with connect(config.socket) as conn:
                status = await conn.request("status", service="api")
    assert len(http.requests) == 2
    assert "XOXB-SECRET" not in caplog.text
    assert "XOXB-SECRET" not in json.dumps(status)
