"""A page that waits to be retried when its incident is acknowledged or closed is not sent any
more: it is recorded as `cancelled` with the reason, in the status and the history, also when
the retry comes after a restart. Scripted transports (our own port) under MockClock."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from pager.domain import Alert, Notify, ServiceState, Target
from pager.ports import TransientError
from pagerd.config import Config
from pagerd.delivery.outbox import cancelled_by
from pagerd.engine.actors import Envelope
from pagerd.timing.clock import Clock
from tests.harness import T0, connect, notifications, running, settle, steps, write_config
from tests.test_outbox import (
    CHANNELS_WITH_RETRIES,
    DAY,
    POLICY,
    Scripted,
    by_target,
    status_of,
    write_with,
)

ALICE = "api#1/1/1/email:alice@example.com"


def failing_alice() -> Scripted:
    email = Scripted()
    email.scripts["alice@example.com"] = [TransientError("421 busy")] * 5
    return email


async def test_an_ack_stops_the_retries(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = failing_alice()
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
                await settle()
                assert (
                    by_target(await status_of(config, "api"))["email:alice@example.com"]["state"]
                    == "retrying"
                )
                assert (await conn.request("ack", service="api", by="bob"))["ok"]
            await trio.sleep(3600)
            status = await status_of(config, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert (alice["state"], alice["attempts"]) == ("cancelled", 1)
    assert alice["last_error"] == "incident acknowledged"
    assert len(email.times("alice@example.com")) == 1
    assert status["incident"]["failed_deliveries"] == 0
    assert by_target(status)["sms:+14155550100"]["state"] == "sent"


async def test_healthy_stops_the_retries_and_the_history_says_so(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = failing_alice()
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
                await settle()
                assert (await conn.request("healthy", service="api"))["ok"]
            await trio.sleep(3600)
            async with connect(config.socket) as conn:
                history = await conn.request("history", service="api")
    assert len(email.times("alice@example.com")) == 1
    outcomes = [
        (e["outcome"], e.get("error"))
        for e in history["timeline"]
        if e.get("event") == "delivery" and e["target"] == "email:alice@example.com"
    ]
    assert outcomes == [("retrying", "421 busy"), ("cancelled", "incident closed")]


async def test_a_retry_after_a_restart_is_checked_too(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    email = failing_alice()
    with trio.fail_after(DAY):
        async with (
            running(config, transports={"email": email, "sms": Scripted()}),
            connect(config.socket) as conn,
        ):
            await conn.request("alert", service="api")
            await settle()
            await conn.request("ack", service="api")
        # Stopped before the retry was due: the row is still `retrying` in the database.
        async with running(config, Clock(T0 + 5), transports={"email": email, "sms": Scripted()}):
            await trio.sleep(3600)
            status = await status_of(config, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert (alice["state"], alice["last_error"]) == ("cancelled", "incident acknowledged")
    assert email.sent[ALICE] == 0
    assert len(email.times("alice@example.com")) == 1


async def test_a_page_waiting_on_the_rate_limit_is_checked_again_after_the_wait(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("secret-token\n")
    text = (CHANNELS_WITH_RETRIES + POLICY).replace(
        'rate_limit = "1/s"\nburst = 5', 'rate_limit = "1/h"\nburst = 1'
    )
    config = write_with(tmp_path, text, ["api", "web"])
    sms = Scripted()
    with trio.fail_after(DAY):
        async with running(config, transports={"email": Scripted(), "sms": sms}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")  # takes the one token
                await conn.request("alert", service="web")  # waits an hour for the next
                await trio.sleep(60)
                await conn.request("ack", service="web")
            await trio.sleep(2 * 3600)
            status = await status_of(config, "web")
    assert [address for _, address in sms.calls] == ["+14155550100"]  # api's only
    sms_note = by_target(status)["sms:+14155550100"]
    assert (sms_note["state"], sms_note["attempts"]) == ("cancelled", 0)


def test_a_page_of_an_incident_the_state_does_not_know_yet_is_wanted() -> None:
    page = Notify("api", 2, 1, 1, Target.parse("email:alice@example.com"), "down", T0)
    assert cancelled_by(ServiceState("api", 1), page) is None  # committed, state not set yet
    closed = ServiceState("api", 2)
    assert cancelled_by(closed, page) == "incident closed"
    assert cancelled_by(ServiceState("api", 3), page) == "incident closed"


def _fresh(folder: Path) -> Config:
    folder.mkdir()
    return write_config(folder)


async def test_a_page_committed_while_the_outbox_reads_back_its_backlog_is_sent(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """At start the outbox reads its backlog from the database; a page committed meanwhile
    could be read back before its actor had set the service's state, and was cancelled as
    `incident closed` (about one start in two, for an alert routed at once)."""
    for attempt in range(8):
        config = _fresh(tmp_path / str(attempt))
        with trio.fail_after(DAY):
            async with running(config) as daemon:
                await daemon.services.route([("api", Envelope(Alert("down"), None))])
                await trio.sleep(10)
        assert len(steps(config)) == 2, (attempt, notifications(config))
