"""Delivery through the daemon with a scripted transport (a fake of our own port) under MockClock:
retries, back-off, Retry-After, permanent failures, rate limits, bounded memory, restarts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pager.domain import Incident, Notify, ServiceState, Target
from pager.ports import PermanentError, TransientError
from pagerd import app
from pagerd.config import Config, load
from pagerd.delivery.outbox import cancelled_by
from pagerd.timing.clock import Clock
from tests.harness import T0, connect, running, settle

DAY = 24 * 3600.0

CHANNELS_WITH_RETRIES = """
[daemon]
socket = "pager.sock"
state_dir = "state"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
sender = "pager@example.com"
security = "none"
max_attempts = 4
retry_initial = "10s"
retry_max = "1m"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"
rate_limit = "1/s"
burst = 5
"""

POLICY = """
[policies.oncall]
[[policies.oncall.levels]]
targets = ["email:alice@example.com", "sms:+14155550100", "email:bob@example.com"]
ack_timeout = "1h"
"""


class Scripted:
    """Answers each send from a per-address script of outcomes; then succeeds."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Exception | float]] = {}
        self.calls: list[tuple[float, str]] = []  # (trio time, address)
        self.sent: Counter[str] = Counter()  # notification id -> accepted sends

    async def send(self, notification: Notify) -> str | None:
        address = notification.target.address
        self.calls.append((trio.current_time(), address))
        script = self.scripts.get(address, [])
        outcome = script.pop(0) if script else None
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, float):
            await trio.sleep(outcome)  # a slow provider
        self.sent[notification.id] += 1
        return f"P{len(self.calls)}"

    def times(self, address: str) -> list[float]:
        return [t for t, a in self.calls if a == address]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "token").write_text("secret-token\n")
    return write_with(tmp_path, CHANNELS_WITH_RETRIES + POLICY, ["api", "web"])


def write_with(folder: Path, text: str, services: list[str]) -> Config:
    path = folder / "pager.toml"
    path.write_text(text + "".join(f'\n[services.{s}]\npolicy = "oncall"\n' for s in services))
    return load(path)


async def status_of(config: Config, service: str) -> dict[str, Any]:
    async with connect(config.socket) as conn:
        reply = await conn.request("status", service=service)
    return reply


def by_target(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["target"]: n for n in status["incident"]["notifications"]}


async def test_transient_failures_are_retried_with_growing_backoff_then_sent_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["alice@example.com"] = [TransientError("421 busy"), TransientError("421 busy")]
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(600)
            status = await status_of(config, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert alice["state"] == "sent"
    assert alice["attempts"] == 3
    assert alice["provider_id"] is not None
    assert alice["last_error"] is None
    assert sum(email.sent.values()) == 2  # alice once, bob once
    t = email.times("alice@example.com")
    assert 5 <= t[1] - t[0] <= 10  # first retry: 10s with jitter down to half
    assert 10 <= t[2] - t[1] <= 20  # then twice that
    assert status["incident"]["failed_deliveries"] == 0


async def test_retry_after_is_honoured(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    sms = Scripted()
    sms.scripts["+14155550100"] = [TransientError("HTTP 429", retry_after=120.0)]
    with trio.fail_after(DAY):
        async with running(config, transports={"email": Scripted(), "sms": sms}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(600)
    first, second = sms.times("+14155550100")
    assert second - first >= 120


async def test_permanent_failure_is_not_retried_and_shows_in_status(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["bob@example.com"] = [PermanentError("SMTP RCPT TO 550: no such user")]
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(3000)
            status = await status_of(config, "api")
            async with connect(config.socket) as conn:
                every = await conn.request("status")
    assert email.times("bob@example.com") == email.times("bob@example.com")[:1]
    bob = by_target(status)["email:bob@example.com"]
    assert (bob["state"], bob["attempts"]) == ("failed", 1)
    assert bob["last_error"] == "SMTP RCPT TO 550: no such user"
    assert status["incident"]["failed_deliveries"] == 1
    flags = {
        s["service"]: s["incident"] and s["incident"]["failed_deliveries"]
        for s in every["services"]
    }
    assert flags == {"api": 1, "web": None}


async def test_giving_up_after_max_attempts(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["alice@example.com"] = [TransientError("connection refused")] * 10
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(3600)
            status = await status_of(config, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert alice["state"] == "failed"
    assert alice["attempts"] == 4  # max_attempts
    assert alice["last_error"] == "gave up after 4 attempts: connection refused"
    assert len(email.times("alice@example.com")) == 4


async def test_a_slow_target_does_not_delay_others(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["alice@example.com"] = [8.0]  # slow, but within the 10s timeout
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
                await conn.request("alert", service="web")
            await trio.sleep(1)
            delivered_quickly = sum(email.sent.values())
            await trio.sleep(60)
    assert delivered_quickly == 3  # bob for api, alice and bob for web: alice's api send is slow
    assert sum(email.sent.values()) == 4


async def test_rate_limit_holds_back_a_storm_without_dropping_any(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("secret-token")
    services = [f"svc{i}" for i in range(20)]
    config = write_with(tmp_path, CHANNELS_WITH_RETRIES + POLICY, services)
    sms = Scripted()
    with trio.fail_after(DAY):
        async with running(config, transports={"email": Scripted(), "sms": sms}):
            start = trio.current_time()
            async with connect(config.socket) as conn:
                for name in services:
                    await conn.request("alert", service=name)
            await trio.sleep(3600)
    times = sorted(t - start for t, _ in sms.calls)
    assert len(times) == 20 and len(sms.sent) == 20  # all of them, each once
    assert times[-1] >= 14  # 1/s after a burst of 5
    within_any_second = max(sum(1 for t in times if a <= t < a + 1) for a in times)
    assert within_any_second <= 5


async def test_backlog_beyond_capacity_waits_in_the_database(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("secret-token")
    services = [f"svc{i}" for i in range(15)]
    config = write_with(tmp_path, CHANNELS_WITH_RETRIES + POLICY, services)
    email, sms = Scripted(), Scripted()
    with trio.fail_after(DAY):
        async with running(
            config, transports={"email": email, "sms": sms}, outbox_capacity=4
        ) as daemon:
            async with connect(config.socket) as conn:
                for name in services:
                    await conn.request("alert", service=name)
            peak = daemon.outbox.statistics().in_hand
            await trio.sleep(3600)
            stats = daemon.outbox.statistics()
    assert peak <= 4 * 2  # the capacity holds for each channel: email and sms
    assert stats.in_hand == 0 and stats.sent == 45
    assert sorted(Counter(email.sent).values()) == [1] * 30
    assert sorted(Counter(sms.sent).values()) == [1] * 15


async def test_retries_continue_after_a_restart(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["alice@example.com"] = [TransientError("down")] * 2
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await settle()
        async with running(config, Clock(T0 + 5), transports={"email": email, "sms": Scripted()}):
            await trio.sleep(600)
            status = await status_of(config, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert (alice["state"], alice["attempts"]) == ("sent", 3)
    assert email.sent["api#1/1/1/email:alice@example.com"] == 1


async def test_a_clean_stop_waits_for_a_send_in_progress_then_records_it(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = Scripted()
    email.scripts["alice@example.com"] = [8.0]  # in progress when the stop comes
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(1)
            stopped_at = trio.current_time()
        took = trio.current_time() - stopped_at
        async with running(config, Clock(T0 + 60), transports={"email": email, "sms": Scripted()}):
            await settle()
            status = await status_of(config, "api")
    assert 7 <= took < 8
    assert by_target(status)["email:alice@example.com"]["state"] == "sent"
    assert email.sent["api#1/1/1/email:alice@example.com"] == 1


async def test_a_clean_stop_does_not_wait_for_ever_for_a_hung_send(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("secret-token\n")
    text = (CHANNELS_WITH_RETRIES + POLICY).replace("max_attempts = 4", 'timeout = "1h"')
    config = write_with(tmp_path, text, ["api"])
    email = Scripted()
    email.scripts["alice@example.com"] = [3000.0]
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(1)
            stopped_at = trio.current_time()
        took = trio.current_time() - stopped_at
    assert took <= app.STOP_TIMEOUT + 1


def test_a_page_of_an_incident_newer_than_the_state_knows_is_wanted() -> None:
    """The outbox's read-back can find a committed row before its actor has set the state it
    decided (a heartbeat missed while pagerd was down opens an incident at start): not closed."""
    page = Notify("cron", 3, 1, 1, Target("email", "alice@example.com"), "no heartbeat", T0)
    lagging = ServiceState("cron", 2, None)
    assert cancelled_by(lagging, page) is None
    assert cancelled_by(ServiceState("cron", 3, None), page) == "incident closed"
    older = ServiceState("cron", 3, Incident(2, T0, "x"))
    assert cancelled_by(older, page) == "incident closed"
    acked = ServiceState("cron", 3, Incident(3, T0, "x", acknowledged_at=T0))
    assert cancelled_by(acked, page) == "incident acknowledged"
