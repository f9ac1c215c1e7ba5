"""After the wall clock steps while pagerd runs, its frame stays continuous (deadlines keep
their time left, see `pagerd.clock`), but every time it shows or sends is on the wall clock:
status, history, what the transports get (the log file's `time` and `opened_at`, an email's
Date). Deadlines stay stored in the frame: the escalation still fires on time."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import trio
import trio.testing

from pager.timefmt import isoformat, timestamp
from pagerd.config import Config
from pagerd.delivery.transports.smtp import SmtpTransport
from pagerd.timing.clock import Clock
from tests.harness import T0, connect, notifications, running, settle
from tests.servers import SmtpServer
from tests.test_clock import DAY, Machine
from tests.test_transports import notify, smtp_settings

STEP = -DAY  # NTP corrects a clock that was a day ahead


async def test_after_a_step_every_time_shown_or_sent_is_on_the_wall_clock(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    machine = Machine()
    clock = machine.clock()
    with trio.fail_after(3 * DAY):
        async with running(config, clock), connect(config.socket) as conn:
            await conn.request("alert", service="api")  # at T0; level 2 due at T0 + 300
            await settle()
            await trio.sleep(30)
            machine.step = STEP
            await trio.sleep(1)  # before pagerd's own look at the clocks (every 10 s)
            status = await conn.request("status", service="api")
            await trio.sleep(300)  # level 2 goes out, on time
            history = await conn.request("history", service="api")
            now = trio.current_time()
    incident = status["incident"]
    assert incident["opened_at"] == isoformat(T0 + STEP)
    assert incident["next_escalation_at"] == isoformat(T0 + 300 + STEP)
    assert incident["notifications"][0]["sent_at"] == isoformat(T0 + STEP)
    assert history["opened_at"] == isoformat(T0 + STEP)
    assert history["timeline"][0]["at"] == isoformat(T0 + STEP)
    *_, level2 = notifications(config)
    assert level2["level"] == 2
    assert level2["time"] == isoformat(T0 + 300 + STEP)  # fired on time, shown as the wall's
    assert level2["opened_at"] == isoformat(T0 + STEP)
    assert timestamp(history["timeline"][-1]["at"]) <= T0 + now + STEP


async def test_an_emails_date_is_the_wall_clocks_after_a_step() -> None:
    step = [0.0]
    clock = Clock(wall=lambda: time.time() + step[0])
    step[0] = STEP
    with SmtpServer() as server, trio.fail_after(10):
        transport = SmtpTransport(smtp_settings(server.port), 5.0, 1, clock)
        await transport.send(notify("email:alice@example.com"))
    (received,) = server.received
    date = parsedate_to_datetime(str(received.message["Date"])).timestamp()
    assert abs(date - (time.time() + STEP)) < 60
