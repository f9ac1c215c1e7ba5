"""One channel's backlog never delays another channel's pages: a storm of email waiting on a
slow provider, in memory or (past the outbox's capacity) only in the database, and a page to
SMS decided meanwhile goes out at once. Scripted transports under MockClock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd.config import load
from tests.harness import connect, running
from tests.test_outbox import DAY, Scripted

CHANNELS = """
[daemon]
socket = "pager.sock"
state_dir = "state"
idle_timeout = "48h"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
sender = "pager@example.com"
security = "none"
concurrency = 1
rate_limit = "1000/s"
timeout = "1m"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"

[policies.storm]
[[policies.storm.levels]]
targets = ["email:team@example.com"]
ack_timeout = "1h"
[policies.quiet]
[[policies.quiet.levels]]
targets = ["sms:+14155550100"]
ack_timeout = "1h"
"""

STORM = 40


@pytest.mark.parametrize("capacity", [4, 10_000])
async def test_a_page_on_an_idle_channel_does_not_wait_behind_another_channels_backlog(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, capacity: int
) -> None:
    (tmp_path / "token").write_text("secret-token\n")
    path = tmp_path / "pager.toml"
    services = "".join(f'\n[services.storm{i}]\npolicy = "storm"\n' for i in range(STORM))
    path.write_text(CHANNELS + services + '\n[services.quiet]\npolicy = "quiet"\n')
    config = load(path)
    email, sms = Scripted(), Scripted()
    email.scripts["team@example.com"] = [1.0] * STORM  # a slow provider: one a second
    with trio.fail_after(DAY):
        async with running(
            config, transports={"email": email, "sms": sms}, outbox_capacity=capacity
        ) as daemon:
            async with connect(config.socket) as conn:
                for i in range(STORM):
                    await conn.request("alert", service=f"storm{i}")
                await trio.sleep(2)
                assert sum(email.sent.values()) < STORM // 2  # the backlog is still there
                paged_at = trio.current_time()
                await conn.request("alert", service="quiet")
                await trio.sleep(1)
                (sms_at,) = sms.times("+14155550100")
            await trio.sleep(STORM * 2)
            stats = daemon.outbox.statistics()
    assert sms_at - paged_at < 0.1
    assert sum(email.sent.values()) == STORM and stats.in_hand == 0
