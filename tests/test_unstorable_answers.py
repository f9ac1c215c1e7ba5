"""What a provider answers is stored with the attempt; JSON may carry a lone surrogate
(`"\\ud800"`), which SQLite cannot store as text. Such an answer once made the record fail for
good: the worker retried it for ever (its channel a worker short, the page never recorded as
sent, so sent again at the next start). Real loopback server, real clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from pager.domain import Notify
from pager.ports import PermanentError
from pagerd.config import Config, load
from pagerd.delivery.redact import Redactor
from pagerd.storage.port import Attempt, Write
from tests.harness import connect, running, settle
from tests.servers import Answer, HttpServer
from tests.test_delivery import wait_until


def test_a_lone_surrogate_is_made_storable_and_shown_escaped() -> None:
    clean = Redactor().clean("sid \ud800 and \udfff")
    clean.encode()  # would raise UnicodeEncodeError
    assert clean == "sid \\ud800 and \\udfff"


async def test_a_provider_answering_a_lone_surrogate_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("twilio-token-0123456789\n")
    with HttpServer() as http, trio.fail_after(30):
        http.default = Answer(201, {"sid": "SM\ud800"})
        http.answers = [Answer(400, {"message": "bad number \udc80"})]
        (tmp_path / "pager.toml").write_text(
            f"""
[daemon]
socket = "pager.sock"
state_dir = "state"
[channels.sms]
transport = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token_file = "token"
sender = "+14155550199"
api_base = "{http.url}"
concurrency = 1
[policies.p]
[[policies.p.levels]]
targets = ["sms:+14155550100", "sms:+14155550101"]
[services.api]
policy = "p"
"""
        )
        config = load(tmp_path / "pager.toml")
        async with running(config, offload=None):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            status = await wait_until(
                config, "api", lambda notes: all(n["state"] in ("sent", "failed") for n in notes)
            )
    notes = {n["target"]: n for n in status["incident"]["notifications"]}
    failed, sent = notes["sms:+14155550100"], notes["sms:+14155550101"]
    assert failed["state"] == "failed" and "bad number \\udc80" in failed["last_error"]
    assert sent["state"] == "sent" and sent["provider_id"] == "SM\\ud800"


class _Refusing:
    """A provider that refuses every page, with words the test's store will not take."""

    async def send(self, notification: Notify) -> str | None:
        raise PermanentError("no such user")


async def test_an_attempt_the_database_refuses_is_recorded_without_the_providers_words(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(600):
        async with running(config, transports={"email": _Refusing()}) as daemon:
            write = daemon.store.write

            def refusing(batch: Sequence[Write]) -> None:
                if any(isinstance(w, Attempt) and w.error == "no such user" for w in batch):
                    raise sqlite3.IntegrityError("CHECK constraint failed")
                write(batch)

            monkeypatch.setattr(daemon.store, "write", refusing)
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
                await settle()
                status = await conn.request("status", service="api")
    notes = status["incident"]["notifications"]
    emails = [n for n in notes if n["channel"] == "email"]
    assert emails and all(n["state"] == "failed" for n in emails)
    assert {n["last_error"] for n in emails} == {"(the answer could not be stored)"}
