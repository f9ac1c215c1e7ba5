"""Found by review: notifications waiting for a retry counted against their channel's outbox
capacity, so one dead target's retries (even of incidents long closed) filled the channel, and a
new page to a healthy target on the same channel waited in the database until half of them had
given up (6783 s late). Capacity 4 here stands for the production 10_000. Now retries wait apart
(bounded on their own), and those of a closed incident leave at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from pager.ports import TransientError
from pagerd.config import load
from tests.harness import connect, running
from tests.test_outbox import DAY, Scripted

CONFIG = """
[daemon]
socket = "pager.sock"
state_dir = "state"
idle_timeout = "48h"

[channels.email]
transport = "smtp"
host = "127.0.0.1"
sender = "pager@example.com"
security = "none"
rate_limit = "1000/s"
max_attempts = 10
retry_initial = "1m"
retry_max = "30m"
[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"

[policies.storm]
[[policies.storm.levels]]
targets = ["email:dead@example.com"]
ack_timeout = "1h"
[policies.quiet]
[[policies.quiet.levels]]
targets = ["email:oncall@example.com"]
ack_timeout = "1h"
"""

CAPACITY = 4


@pytest.mark.parametrize(
    ("close", "capacity"),
    [(True, CAPACITY), (False, CAPACITY), (False, 200)],
)
async def test_a_dead_targets_retries_do_not_hold_up_a_new_page_on_the_same_channel(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, close: bool, capacity: int
) -> None:
    storm = capacity
    (tmp_path / "token").write_text("secret-token\n")
    path = tmp_path / "pager.toml"
    services = "".join(f'\n[services.storm{i}]\npolicy = "storm"\n' for i in range(storm))
    path.write_text(CONFIG + services + '\n[services.quiet]\npolicy = "quiet"\n')
    config = load(path)
    email = Scripted()
    email.scripts["dead@example.com"] = [TransientError("421 mailbox busy")] * (10 * storm)
    with trio.fail_after(DAY):
        async with (
            running(
                config, transports={"email": email, "sms": Scripted()}, outbox_capacity=capacity
            ) as daemon,
            connect(config.socket) as conn,
        ):
            for start in range(0, storm, 200):  # pipelined, 200 at a time
                chunk = range(start, min(start + 200, storm))
                for i in chunk:
                    await conn.send_json({"op": "alert", "service": f"storm{i}"})
                for _ in chunk:
                    assert (await conn.receive())["ok"]
            await trio.sleep(5)
            if close:  # the storm is over: every one of its incidents is closed
                for i in range(storm):
                    await conn.request("healthy", service=f"storm{i}")
                await trio.sleep(0.1)
                # Their waiting retries left at once, not at their retry time.
                assert daemon.outbox.statistics().retrying == 0
            paged_at = trio.current_time()
            await conn.request("alert", service="quiet")
            await trio.sleep(6 * 3600)
            sent = email.times("oncall@example.com")
    assert sent, "the quiet service's page was never sent within 6 hours"
    assert sent[0] - paged_at < 1.0, f"the page went out {sent[0] - paged_at:.0f}s late"


async def test_retries_past_the_bound_wait_in_the_database_and_come_back_at_their_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Three times more retries waiting than the bound: those past it are kept only in the
    database, read back at their time (within `SPILL_POLL`), and each page is sent once."""
    storm = 3 * CAPACITY
    (tmp_path / "token").write_text("secret-token\n")
    path = tmp_path / "pager.toml"
    services = "".join(f'\n[services.storm{i}]\npolicy = "storm"\n' for i in range(storm))
    path.write_text(CONFIG + services)
    config = load(path)
    email = Scripted()
    email.scripts["dead@example.com"] = [TransientError("421 mailbox busy")] * storm
    with trio.fail_after(DAY):
        async with (
            running(
                config, transports={"email": email, "sms": Scripted()}, outbox_capacity=CAPACITY
            ) as daemon,
            connect(config.socket) as conn,
        ):
            for i in range(storm):
                await conn.request("alert", service=f"storm{i}")
            await trio.sleep(1)
            assert daemon.outbox.statistics().retrying <= CAPACITY  # memory stays bounded
            await trio.sleep(3600)
            assert daemon.outbox.statistics().in_hand == 0
    tries = email.times("dead@example.com")
    assert len(tries) == 2 * storm  # each failed once, then was retried once and sent
    assert sorted(email.sent.values()) == [1] * storm
    # Retried within a minute's back-off (`retry_initial`) plus `SPILL_POLL`, not later.
    assert max(tries) - min(tries) <= 60 + 1 + 1
