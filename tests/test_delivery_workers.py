"""Deliveries in worker processes (`[delivery] workers`): real worker processes, real HTTP servers
on loopback, the daemon in-process on the real clock. A worker killed mid-send, a worker that
hangs, one channel's slow provider beside another channel's pages, a reload, a stop with a send
in progress. Every wait is for the event itself (a request arriving, a state recorded)."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from pager.domain import Notify, Target
from pager.templates import Templates
from pagerd.access.keys import SigningKeys
from pagerd.app import Daemon
from pagerd.config import Config, load
from pagerd.delivery.wording import Words
from pagerd.delivery.workers import wire
from pagerd.delivery.workers.pool import HANG_GRACE
from tests.harness import connect, metric_samples, metrics_text, running, until
from tests.servers import Answer, HttpServer

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[daemon]
socket = "pager.sock"
state_dir = "state"

[channels.webhook]
transport = "webhook"
timeout = "{timeout}"
retry_initial = "100ms"
retry_max = "200ms"
secret_file = "hook-secret"
headers = {{ X-Team = "{team}" }}

[channels.slack]
transport = "slack"
timeout = "5s"
rate_limit = "100/s"

[policies.hook]
[[policies.hook.levels]]
targets = ["webhook:{hook}/hooks/pager"]
ack_timeout = "1h"

[policies.chat]
[[policies.chat.levels]]
targets = ["slack:{chat}/services/T0/B0/CHATSECRET"]
ack_timeout = "1h"

[services.api]
policy = "hook"
"""

SECRET = "hmac-signing-SECRET-0123"


def write(
    folder: Path,
    hook: HttpServer,
    chat: HttpServer | None = None,
    timeout: str = "10s",
    team: str = "payments",
    chatty: int = 0,
) -> Config:
    (folder / "hook-secret").write_text(SECRET + "\n")
    text = CONFIG.format(
        timeout=timeout, team=team, hook=hook.url, chat=(chat or hook).url
    ) + "".join(f'\n[services.chat{i}]\npolicy = "chat"\n' for i in range(chatty))
    (folder / "pager.toml").write_text(text)
    return load(folder / "pager.toml")


async def alert(config: Config, service: str) -> None:
    async with connect(config.socket) as conn:
        assert (await conn.request("alert", service=service, message="down"))["ok"]


async def notes(config: Config, service: str) -> list[dict[str, Any]]:
    async with connect(config.socket) as conn:
        status = await conn.request("status", service=service)
    found: list[dict[str, Any]] = status["incident"]["notifications"]
    return found


async def until_sent(config: Config, service: str) -> dict[str, Any]:
    while True:
        (note,) = await notes(config, service)
        if note["state"] == "sent":
            return note
        await trio.sleep(0.02)


async def metrics(config: Config) -> dict[str, float]:
    return metric_samples(await metrics_text(config.socket))


def _proc(pid: int, name: str) -> bytes:
    """/proc/PID/NAME, or nothing if the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except FileNotFoundError:
        return b""


def worker_pids(daemon: Daemon) -> list[int]:
    assert daemon.workers is not None
    return daemon.workers.pids()


async def test_a_worker_killed_mid_send_is_replaced_and_the_page_sent_again_with_the_same_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pagerd.workers")
    held = threading.Event()
    with HttpServer() as hook, trio.fail_after(60):
        hook.answers.append(Answer(200, hold=held))  # the first POST: held until the kill
        config = write(tmp_path, hook)
        try:
            async with running(config, offload=None, delivery_workers=1) as daemon:
                await until(lambda: worker_pids(daemon), "a worker is ready")
                (pid,) = worker_pids(daemon)
                await alert(config, "api")
                await until(lambda: hook.requests, "the page reached the receiver")
                os.kill(pid, signal.SIGKILL)  # while the receiver holds the request
                note = await until_sent(config, "api")
                figures = await metrics(config)
                replaced = worker_pids(daemon)
        finally:
            held.set()
    first, second = hook.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body
    assert note["attempts"] == 2
    assert replaced and pid not in replaced
    assert figures['pagerd_delivery_ambiguous_sends_total{channel="webhook"}'] == 1
    assert figures['pagerd_delivery_worker_deaths_total{reason="died"}'] == 1
    assert figures["pagerd_delivery_worker_restarts_total"] == 1
    assert figures["pagerd_delivery_workers"] == 1
    # The death's line counts the send it had, not what was left once its sender took it back.
    deaths = [r.getMessage() for r in caplog.records if "killed by signal" in r.getMessage()]
    assert len(deaths) == 1 and "with 1 sends in progress" in deaths[0], deaths


async def test_a_hung_worker_is_killed_after_the_timeout_and_its_send_retried(
    tmp_path: Path,
) -> None:
    held = threading.Event()
    with HttpServer() as hook, trio.fail_after(60):
        hook.answers.append(Answer(200, hold=held))
        # 3 s, not 1: the replacement worker (a new process) must send within the timeout, or
        # it too is taken as hung: on a loaded machine its start alone took over 1 s.
        config = write(tmp_path, hook, timeout="3s")
        try:
            async with running(config, offload=None, delivery_workers=1) as daemon:
                await until(lambda: worker_pids(daemon), "a worker is ready")
                (pid,) = worker_pids(daemon)
                await alert(config, "api")
                await until(lambda: hook.requests, "the page reached the receiver")
                os.kill(pid, signal.SIGSTOP)  # hung: it answers nothing, keeps no timeout
                held.set()
                note = await until_sent(config, "api")
                figures = await metrics(config)
        finally:
            held.set()
    first, second = hook.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert note["attempts"] == 2
    assert figures['pagerd_delivery_worker_deaths_total{reason="hung"}'] == 1
    assert figures['pagerd_delivery_ambiguous_sends_total{channel="webhook"}'] == 1
    assert HANG_GRACE < 5.0  # replaced before the outbox's own grace gives the send up


async def test_a_slow_provider_on_one_channel_does_not_hold_up_another_in_the_same_worker(
    tmp_path: Path,
) -> None:
    held = threading.Event()
    with HttpServer() as hook, HttpServer() as chat, trio.fail_after(60):
        hook.default = Answer(200, hold=held)  # every webhook POST hangs until the end
        config = write(tmp_path, hook, chat, chatty=5)
        try:
            async with running(config, offload=None, delivery_workers=1):
                await alert(config, "api")
                await until(lambda: hook.requests, "the webhook is being sent")
                for i in range(5):
                    await alert(config, f"chat{i}")
                await until(lambda: len(chat.requests) == 5, "every Slack page arrived")
                assert not held.is_set() and len(hook.requests) == 1  # still held meanwhile
                for i in range(5):
                    assert (await until_sent(config, f"chat{i}"))["attempts"] == 1
                held.set()
                await until_sent(config, "api")
        finally:
            held.set()


async def test_a_reload_that_changes_a_channel_reaches_the_workers(tmp_path: Path) -> None:
    with HttpServer() as hook, trio.fail_after(60):
        config = write(tmp_path, hook, team="payments")
        async with running(config, offload=None, delivery_workers=2) as daemon:
            await alert(config, "api")
            await until_sent(config, "api")
            write(tmp_path, hook, team="checkout")
            assert await daemon.reload()
            async with connect(config.socket) as conn:
                assert (await conn.request("healthy", service="api"))["ok"]
            await alert(config, "api")
            await until(lambda: len(hook.requests) == 2, "the second page arrived")
    assert [r.headers["x-team"] for r in hook.requests] == ["payments", "checkout"]


async def test_a_stop_lets_a_send_in_progress_finish_and_records_it(tmp_path: Path) -> None:
    held = threading.Event()

    async def release_once_stopping(daemon: Daemon) -> None:
        await until(lambda: daemon.outbox.stopping, "the stop began")
        held.set()  # the provider answers only now, while pagerd stops

    with HttpServer() as hook, trio.fail_after(60):
        hook.answers.append(Answer(200, hold=held))
        config = write(tmp_path, hook)
        try:
            async with (
                trio.open_nursery() as outer,
                running(config, offload=None, delivery_workers=1) as daemon,
            ):
                await alert(config, "api")
                await until(lambda: hook.requests, "the page is being sent")
                pids = worker_pids(daemon)
                outer.start_soon(release_once_stopping, daemon)
        finally:
            held.set()
        assert pids and not any(_proc(pid, "stat") for pid in pids), "the workers exited"
        async with running(config, offload=None, delivery_workers=1) as daemon:
            (note,) = await notes(config, "api")
            assert (note["state"], note["attempts"]) == ("sent", 1)
            assert daemon.outbox.statistics().in_hand == 0
    assert len(hook.requests) == 1


async def test_secrets_reach_a_worker_by_its_pipe_only(tmp_path: Path) -> None:
    with HttpServer() as hook, trio.fail_after(60):
        config = write(tmp_path, hook)
        async with running(config, offload=None, delivery_workers=1) as daemon:
            await until(lambda: worker_pids(daemon), "a worker is ready")
            (pid,) = worker_pids(daemon)
            cmdline, environ = _proc(pid, "cmdline"), _proc(pid, "environ")
            await alert(config, "api")
            await until_sent(config, "api")
    assert SECRET.encode() not in cmdline and SECRET.encode() not in environ
    assert b"hook-secret" not in cmdline + environ
    for key in daemon.keys.keys:  # the signing keys (links, Slack buttons) go the same way
        for form in (key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key)):
            assert form not in cmdline + environ
    (request,) = hook.requests
    assert request.headers["x-pager-signature"].startswith("sha256=")  # it had the secret


def test_a_channel_crosses_the_pipe_whole_and_frames_are_bounded() -> None:
    from pagerd.config.channels import Channel, Secret, SlackSettings, WebhookSettings

    channel = Channel(
        "webhook", "webhook", settings=WebhookSettings({"A": "b"}, Secret("s3cr3t"), ROOT)
    )
    message = wire.open_lane(7, channel)
    (data,) = wire.Frames().feed(wire.frame(message))
    decoded = wire.to_worker(data)
    assert isinstance(decoded, wire.Open) and wire.channel_of(decoded) == channel
    app = Channel(
        "slack",
        "slack",
        settings=SlackSettings(ROOT, Secret("xoxb-1"), Secret("signing"), "#ops", "https://s"),
    )
    (data,) = wire.Frames().feed(wire.frame(wire.open_lane(8, app, answering=True)))
    decoded = wire.to_worker(data)
    assert isinstance(decoded, wire.Open) and decoded.answering
    assert wire.channel_of(decoded) == app
    frames = wire.Frames()
    whole = wire.frame(wire.Sent(1, "x")) * 2
    assert frames.feed(whole[:3]) == [] and len(frames.feed(whole[3:])) == 2
    with pytest.raises(ValueError, match="at most"):
        wire.Frames().feed((wire.MAX_FRAME + 1).to_bytes(4, "big"))


def test_what_pages_are_worded_with_crosses_the_pipe_whole() -> None:
    keys = SigningKeys((b"\x01" * 32, b"\x02" * 32))
    words = Words(Templates({"sms": "{{ service }} down"}), "https://pager.example", keys)
    (data,) = wire.Frames().feed(wire.frame(wire.texts_of(words)))
    decoded = wire.to_worker(data)
    assert isinstance(decoded, wire.Texts)
    assert wire.words_of(decoded) == words
    assert wire.words_of(wire.texts_of(Words())) == Words()  # defaults, no keys: no links
    send = wire.Send(3, 1, notify_of("sms:+14155550100"), reply_code=4, resolve=True)
    (data,) = wire.Frames().feed(wire.frame(send))
    assert wire.to_worker(data) == send


def notify_of(target: str) -> Notify:
    return Notify("api", 1, 1, 1, Target.parse(target), "down", 1.8e9, origin="o")


def test_the_systemd_unit_lets_pagerd_start_its_worker_processes() -> None:
    unit = (ROOT / "config" / "pagerd.service").read_text()
    filters = [
        line.partition("=")[2].split()
        for line in unit.splitlines()
        if line.startswith("SystemCallFilter=")
    ]
    # @system-service includes @process (fork, execve, kill); nothing may take it back.
    assert ["@system-service"] in filters
    denied = {name for words in filters if words[0].startswith("~") for name in words}
    assert not {"~@process", "@process", "execve", "fork", "clone"} & denied, filters
    assert "TasksMax=" not in unit or "TasksMax=infinity" in unit
    assert "NotifyAccess=main" in unit  # the workers never speak to systemd
    assert json.dumps(unit)  # the unit is text
