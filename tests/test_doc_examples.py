"""The docs' examples are what pagerd really prints: each is produced here and compared."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing

from pager import cli
from tests.harness import Connection, running, settle, write_config

CLIENT_DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "client.md"

PAYMENTS: Final = """
[policies.payments-oncall]
[[policies.payments-oncall.levels]]
targets = ["email:alice@example.com", "sms:+14155550100"]
ack_timeout = "15m"
[[policies.payments-oncall.levels]]
targets = ["email:payments-lead@example.com"]
"""


def _example(after: str) -> str:
    """The first fenced block of docs/client.md after the line `after`."""
    text = CLIENT_DOC.read_text()
    found = re.search(re.escape(after) + r"\n\n```\w*\n(.*?)```", text, re.DOTALL)
    assert found is not None, f"no example after {after!r} in docs/client.md"
    return found.group(1)


def test_the_status_json_example_is_real_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, PAYMENTS, {"payments-api": "payments-oncall"})

    async def scenario() -> None:
        async with running(config):
            conn = await Connection.open(config.socket)
            await conn.request("alert", service="payments-api", message="p99 latency over 2s")
            for _ in range(3):
                await conn.request("alert", service="payments-api", message="still slow")
            await conn.aclose()
            await settle()  # the notifications are sent
            argv = ["--socket", str(config.socket), "status", "--json", "payments-api"]
            # The real client, in a thread; the clock stands still meanwhile.
            assert await trio.to_thread.run_sync(cli.main, argv) == 0

    trio.run(scenario, clock=trio.testing.MockClock())
    printed = capsys.readouterr().out
    assert printed == _example("`pager status --json SERVICE` prints:")
