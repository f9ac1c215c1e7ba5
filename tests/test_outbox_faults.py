"""Nothing that goes wrong inside delivery takes paging down: a transport raising anything, a
bug in the outbox's own tasks, a back-off after thousands of attempts. Each is contained,
logged, counted, and the notification is tried again (and never sent twice)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pager.domain import Notify
from pager.ports import TransientError
from pagerd.config import Config, ConfigError
from pagerd.config.channels import MAX_ATTEMPTS
from pagerd.storage.commits import Committer
from pagerd.storage.port import Attempt
from pagerd.storage.sqlite.store import Store, database_file
from pagerd.timing.clock import Clock
from pagerd.timing.timers import backoff_ceiling
from tests.harness import T0, connect, running, settle
from tests.harness import status as status_of
from tests.test_outbox import CHANNELS_WITH_RETRIES, POLICY, Scripted, by_target, write_with

DAY = 24 * 3600.0


class Weird(BaseException):
    pass


class Raising:
    """A transport with bugs: it raises whatever it is given, one per send, then succeeds."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.sent: list[str] = []

    async def send(self, notification: Notify) -> str | None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(notification.id)
        return "ok"


def config_with(folder: Path, extra: str = "", services: tuple[str, ...] = ("api",)) -> Config:
    (folder / "token").write_text("secret-token\n")
    block = 'max_attempts = 4\nretry_initial = "10s"\nretry_max = "1m"\n'
    assert block in CHANNELS_WITH_RETRIES
    text = CHANNELS_WITH_RETRIES.replace(block, extra or block)
    return write_with(folder, text + POLICY, list(services))


@pytest.mark.parametrize("attempts", [1, 2, 10, 1024, 1025, 1026, 5000, 10**6])
def test_backoff_ceiling_never_overflows(attempts: int) -> None:
    ceiling = backoff_ceiling(1.0, 300.0, attempts)
    assert 1.0 <= ceiling <= 300.0
    assert backoff_ceiling(0.001, 1e9, attempts) <= 1e9


def test_max_attempts_is_bounded_in_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, f"max_attempts = {MAX_ATTEMPTS + 1}\n")
    assert caught.value.errors == [f"channels.email.max_attempts: must be at most {MAX_ATTEMPTS}"]
    assert (
        config_with(tmp_path, f"max_attempts = {MAX_ATTEMPTS}\n").channels["email"].max_attempts
        == MAX_ATTEMPTS
    )


async def test_a_transport_raising_anything_is_retried_and_the_daemon_lives(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = config_with(tmp_path, "max_attempts = 20\n", ("api", "web"))
    email = Raising(
        [
            RuntimeError("boom"),
            ZeroDivisionError(),
            KeyError("x"),
            ExceptionGroup("many", [ValueError("a"), OSError("b")]),
            AttributeError("no such thing"),
            Weird("a BaseException a library should not raise"),
            TransientError(123),  # type: ignore[arg-type]  # a reason that is not text
        ]
    )
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(3600)
            async with connect(config.socket) as conn:
                assert (await conn.request("alert", service="web"))["ok"]
            await trio.sleep(3600)
            api = await status_of(config, "api")
    alice = by_target(api)["email:alice@example.com"]
    bob = by_target(api)["email:bob@example.com"]
    assert [alice["state"], bob["state"]] == ["sent", "sent"]
    assert alice["attempts"] + bob["attempts"] == 7 + 2
    assert sorted(email.sent) == sorted(set(email.sent))  # each once
    assert len(email.sent) == 4


async def test_thousands_of_attempts_end_in_failed_not_in_a_crash(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = config_with(
        tmp_path, f'max_attempts = {MAX_ATTEMPTS}\nretry_initial = "1s"\nretry_max = "2s"\n'
    )
    email = Raising([TransientError("down") for _ in range(2 * MAX_ATTEMPTS)])
    with trio.fail_after(10 * DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}) as daemon:
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(3 * MAX_ATTEMPTS)
            await settle()
            status = await status_of(config, "api")
            assert daemon.outbox.statistics().errors == 0
    alice = by_target(status)["email:alice@example.com"]
    assert (alice["state"], alice["attempts"]) == ("failed", MAX_ATTEMPTS)


async def test_a_row_retried_thousands_of_times_before_a_restart_is_read_back_safely(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """An old config allowed any max_attempts: a row may hold far more attempts than 1,025."""
    config = config_with(tmp_path, 'max_attempts = 20\nretry_initial = "1s"\nretry_max = "1m"\n')
    email = Raising([TransientError("down")])
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await settle()
    store = Store.open(database_file(config.state_dir))
    try:
        store._conn.execute("UPDATE notifications SET attempts = 5000 WHERE state = 'retrying'")
    finally:
        store.close()
    later = write_with(
        tmp_path,
        (CHANNELS_WITH_RETRIES + POLICY).replace("max_attempts = 4", "max_attempts = 1000"),
        ["api"],
    )
    with trio.fail_after(DAY):
        async with running(later, Clock(T0 + 5), transports={"email": email, "sms": Scripted()}):
            await trio.sleep(600)
            status = await status_of(later, "api")
    alice = by_target(status)["email:alice@example.com"]
    assert alice["state"] == "sent"


async def test_a_bug_in_the_read_back_is_contained_and_the_rows_are_read_later(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_with(tmp_path)
    email = Raising([TransientError("down")])
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}):
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await settle()
    real_undelivered, real_failed = Store.undelivered, Store.failed_counts
    calls = {"undelivered": 0, "failed": 0}

    def undelivered(
        self: Store, limit: int, channel: str | None = None, due_by: float | None = None
    ) -> Any:
        calls["undelivered"] += 1
        if calls["undelivered"] == 1:
            raise RuntimeError("a bug in the read-back")
        return real_undelivered(self, limit, channel, due_by)

    def failed_counts(self: Store) -> Any:
        calls["failed"] += 1
        if calls["failed"] == 1:
            raise RuntimeError("a bug in the count")
        return real_failed(self)

    monkeypatch.setattr(Store, "undelivered", undelivered)
    monkeypatch.setattr(Store, "failed_counts", failed_counts)
    with trio.fail_after(DAY), caplog.at_level(logging.ERROR):
        async with running(
            config, Clock(T0 + 5), transports={"email": email, "sms": Scripted()}
        ) as daemon:
            await trio.sleep(600)
            status = await status_of(config, "api")
            errors = daemon.outbox.statistics().errors
    assert by_target(status)["email:alice@example.com"]["state"] == "sent"
    assert email.sent.count("api#1/1/1/email:alice@example.com") == 1
    assert errors == 2
    assert "outbox read-back failed unexpectedly" in caplog.text


async def test_a_bug_while_recording_an_attempt_is_retried_without_sending_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_with(tmp_path)
    real_commit = Committer.commit
    failures = [RuntimeError("a bug in the commit path")] * 3

    async def commit(self: Committer, writes: Any) -> None:
        if failures and any(isinstance(w, Attempt) for w in writes):
            raise failures.pop()
        await real_commit(self, writes)

    monkeypatch.setattr(Committer, "commit", commit)
    email = Raising([])
    with trio.fail_after(DAY):
        async with running(config, transports={"email": email, "sms": Scripted()}) as daemon:
            async with connect(config.socket) as conn:
                await conn.request("alert", service="api")
            await trio.sleep(600)
            status = await status_of(config, "api")
            errors = daemon.outbox.statistics().errors
    assert {n["state"] for n in status["incident"]["notifications"]} == {"sent"}
    assert sorted(email.sent) == sorted(set(email.sent)) and len(email.sent) == 2
    assert errors == 3
