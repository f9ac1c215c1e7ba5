"""A front process's port to the core (`RemoteCore`), with the core's end of the channel held by
the test: what waits to be written is bounded (503 busy at once past it, never the front's
memory), a request given up on takes back its message if it is not written yet, `ready` is asked
once for every request that asks meanwhile, and a front's application answers `/v2/enqueue` in
PagerDuty's shape whatever goes wrong (the core gone, or not reading). And the core's end of a
channel (`fronts._Channel`, the test the front): a front silent to its pings is hung, unless the
core was not reading it.

The channel is an in-memory stream (lockstep: a write waits until the other end reads, as a
socket whose buffer is full does), under the mock clock; the HTTP test serves a front's real
application and server (`process.Front`) on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from pager.domain import Alert
from pagerd.config import Config
from pagerd.config.channels import Secret
from pagerd.config.http import FrontConfig, HttpConfig, HttpLimits, Integration
from pagerd.front.core import Busy
from pagerd.front.http import fronts as fronts_module
from pagerd.front.http.channel import (
    Ping,
    Pong,
    Reader,
    Ready,
    ReadyAnswer,
    Serving,
    Status,
    Submit,
    ToCore,
    configure,
    encode,
    from_wire,
    to_core,
    to_front,
    to_wire,
)
from pagerd.front.http.fronts import PING_EVERY, PING_WITHIN, Fronts, _Channel
from pagerd.front.http.process import Front
from pagerd.front.http.remote import GONE, READY_FOR, RemoteCore
from pagerd.front.http.shared import SharedSeats, SharedWrongKeys
from pagerd.operations.metrics import Metrics
from tests.harness import running

PD_KEY = "pd-key-for-the-front-0123"
REST_KEY = "rest-key-for-the-front-45"
INTEGRATIONS = {
    "pd": Integration("pd", "events-v2", Secret(PD_KEY), service_label="source"),
    "ops": Integration("ops", "rest", Secret(REST_KEY)),
}
TRIGGER = {
    "routing_key": PD_KEY,
    "event_action": "trigger",
    "payload": {"summary": "disk full", "source": "api", "severity": "critical"},
}


def front_config() -> FrontConfig:
    http = HttpConfig(limits=HttpLimits(4096, 5.0, 5.0, 16, 100.0, 100))
    return FrontConfig.of(http, INTEGRATIONS, {"api": "oncall"})


@asynccontextmanager
async def remote(
    ours: trio.abc.Stream, theirs: trio.abc.Stream
) -> AsyncIterator[tuple[RemoteCore, trio.Nursery]]:
    """A `RemoteCore` on `ours`, configured (the core's end, `theirs`, is the test's)."""
    metrics = Metrics()
    core = RemoteCore(
        ours, metrics.http_requests, metrics.http_auth_failures, metrics.http_events_refused
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(theirs.send_all, encode(configure(front_config())))
        await nursery.start(core.run)
        yield core, nursery
        nursery.cancel_scope.cancel()


async def messages(reader: Reader[ToCore], count: int) -> list[ToCore]:
    found: list[ToCore] = []
    while len(found) < count:
        found += await reader.receive()
    return found


async def test_a_core_that_does_not_read_gets_503_busy_at_once_not_the_fronts_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    with trio.fail_after(60):
        async with remote(ours, theirs) as (core, nursery):
            core.max_queued = 4
            scopes: dict[int, trio.CancelScope] = {}

            async def alert(i: int) -> None:
                with trio.CancelScope() as scopes[i]:
                    await core.submit("pd", [("api", Alert(f"alert {i}"))])

            for i in range(5):  # the first is being written (nobody reads it); four wait
                nursery.start_soon(alert, i)
                await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(Busy) as busy:
                await core.submit("pd", [("api", Alert("one too many"))])
            assert busy.value.retry_after == 1
            # One given up on (its client went) before it was written: taken back, and its
            # place taken by another.
            scopes[2].cancel()
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(alert, 5)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(Busy):
                await core.submit("pd", [("api", Alert("one too many"))])
            # So is one past the bytes allowed, when others wait already.
            core.max_queued = 100
            core.max_queued_bytes = 1000
            with pytest.raises(Busy):
                await core.submit("pd", [("api", Alert("x" * 1000))])
            # The core reads at last: each message whole, but the one given up on.
            got = await messages(Reader(theirs, to_core), 5)
            texts = []
            for message in got:
                assert isinstance(message, Submit)
                texts += [from_wire(event)[1] for event in message.events]
            assert texts == [Alert(f"alert {i}") for i in (0, 1, 3, 4, 5)]


async def test_ready_is_asked_once_for_every_request_that_asks_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    reader = Reader(theirs, to_core)
    with trio.fail_after(60):
        async with remote(ours, theirs) as (core, nursery):
            answers: list[str | None] = []

            async def ask() -> None:
                answers.append(await core.ready())

            for _ in range(50):
                nursery.start_soon(ask)
            [asked] = await reader.receive()  # one question for fifty requests
            assert isinstance(asked, Ready)
            await theirs.send_all(encode(ReadyAnswer(asked.id, "the database does not answer")))
            await trio.testing.wait_all_tasks_blocked()
            assert answers == ["the database does not answer"] * 50
            # Its answer serves for READY_FOR seconds: no question until then.
            assert await core.ready() == "the database does not answer"
            nursery.start_soon(partial(core.status, "ops", None))
            [status] = await reader.receive()
            assert isinstance(status, Status)
            await trio.sleep(READY_FOR)
            nursery.start_soon(ask)
            [again] = await reader.receive()
            assert isinstance(again, Ready)
            # A request that gives up (its client went) does not take the question with it.
            with trio.move_on_after(0.5):
                await core.ready()
            await theirs.send_all(encode(ReadyAnswer(again.id, None)))
            await trio.testing.wait_all_tasks_blocked()
            assert answers[-1] is None and await core.ready() is None


async def test_once_the_core_has_gone_ready_says_so_at_once_not_its_cached_yes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A front outliving its core (killed -9) must not answer "ready" from its cache: a
    restarted pagerd would be taken as serving while this front still holds the port."""
    ours, theirs = trio.testing.memory_stream_pair()
    reader = Reader(theirs, to_core)
    with trio.fail_after(60):
        async with remote(ours, theirs) as (core, nursery):
            nursery.start_soon(core.ready)
            [asked] = await reader.receive()
            assert isinstance(asked, Ready)
            await theirs.send_all(encode(ReadyAnswer(asked.id, None)))
            await trio.testing.wait_all_tasks_blocked()
            assert await core.ready() is None  # cached for READY_FOR seconds
            await theirs.aclose()
            await core.gone.wait()
            assert await core.ready() == GONE


async def test_a_fronts_events_v2_answers_are_pagerdutys_when_the_core_is_busy_or_gone() -> None:
    seats = SharedSeats.create(1)
    ours, theirs = trio.testing.memory_stream_pair()
    try:
        with trio.fail_after(30):
            async with remote(ours, theirs) as (core, nursery):
                wrong_keys = SharedWrongKeys(seats.fd, 1)
                front = Front(core, SharedSeats(seats.fd, 1, 0), wrong_keys, Metrics())
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                await nursery.start(front.server.serve, listeners)
                url = f"http://127.0.0.1:{front.server.ports[0]}"
                async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                    core.max_queued = 0  # the core is not reading: nothing more goes
                    busy = await client.post("/v2/enqueue", json=TRIGGER)
                    assert (busy.status_code, busy.headers["retry-after"]) == (503, "1")
                    assert busy.json() == {
                        "status": "busy",
                        "message": "pagerd's core is not keeping up; try again",
                        "errors": ["pagerd's core is not keeping up; try again"],
                    }
                    rest = await client.post(
                        "/alert",
                        json={"service": "api", "message": "x"},
                        headers={"authorization": f"Bearer {REST_KEY}"},
                    )
                    assert rest.status_code == 503
                    assert rest.json()["error"]["code"] == "busy"  # the socket's shape, as ever
                    await theirs.aclose()  # the core has gone
                    await core.gone.wait()
                    gone = await client.post("/v2/enqueue", json=TRIGGER)
                    assert gone.status_code == 503
                    assert gone.json() == {
                        "status": "unavailable",
                        "message": "the core of pagerd is not running",
                        "errors": ["the core of pagerd is not running"],
                    }
                    large = await client.post("/v2/enqueue", content=b"{" * 5000)
                    assert large.status_code == 413
                    assert large.json()["status"] == "too_large" and "errors" in large.json()
                front.server.drain()
                wrong_keys.close()
    finally:
        seats.close()


async def test_a_front_silent_to_two_pings_is_hung_unless_the_core_is_not_reading_it(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fronts_module, "MAX_IN_FLIGHT", 1)  # one submission, then back-pressure
    async with running(config) as daemon:
        committer = daemon.committer
        commit = committer.commit
        release = trio.Event()

        async def slow(batch: Any) -> None:
            await release.wait()
            await commit(batch)

        fronts = Fronts(1, [], daemon.core, Metrics(), daemon.core.front)
        ours, theirs = trio.testing.memory_stream_pair()
        hung = trio.Event()
        channel = _Channel(ours, fronts, lambda: None, hung.set)
        answering = True

        async def front() -> None:
            """The front's side: a pong for each ping, while `answering`."""
            reader = Reader(theirs, to_front)
            while got := await reader.receive():
                for message in got:
                    if isinstance(message, Ping) and answering:
                        await theirs.send_all(encode(Pong(message.id)))

        try:
            with trio.fail_after(600):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(channel.serve)
                    nursery.start_soon(front)
                    await theirs.send_all(encode(Serving(12345)))
                    await trio.sleep(20 * PING_EVERY)
                    assert not hung.is_set()  # it answers
                    # The core stops reading it: its one submission's commit is slow, and the
                    # next waits for room. A silent front is not blamed meanwhile.
                    monkeypatch.setattr(committer, "commit", slow)
                    answering = False
                    for i in range(2):
                        alert = Submit(i, "am", [to_wire(("api", Alert(f"alert {i}")))])
                        await theirs.send_all(encode(alert))
                    await trio.sleep(20 * (PING_EVERY + PING_WITHIN))
                    assert not hung.is_set()
                    # Read again, and still silent: hung, two pings later.
                    release.set()
                    await hung.wait()
                    nursery.cancel_scope.cancel()
        finally:
            fronts.wrong_keys.close()
            fronts._seats.close()


async def test_a_ready_and_a_status_are_answered_while_a_submission_waits_to_be_handed_over(
    autojump_clock: trio.testing.MockClock, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-over may wait (an event for a service another node owns goes to the inbox: a
    commit, seconds on a hung database): the front's `Ready` and reads are not read behind it
    (found by an operator: `/-/ready` took 2 s, a health check's whole timeout)."""
    async with running(config) as daemon:
        core = daemon.core
        release = trio.Event()
        hand_over = core.hand_over

        async def waiting(*args: Any, **kwargs: Any) -> None:
            await release.wait()
            await hand_over(*args, **kwargs)

        monkeypatch.setattr(core, "hand_over", waiting)
        fronts = Fronts(1, [], core, Metrics(), core.front)
        ours, theirs = trio.testing.memory_stream_pair()
        channel = _Channel(ours, fronts, lambda: None, lambda: None)
        got: list[Any] = []
        heard = trio.Event()

        async def front() -> None:
            reader = Reader(theirs, to_front)
            while messages := await reader.receive():
                got.extend(messages)
                heard.set()

        try:
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(channel.serve)
                    nursery.start_soon(front)
                    await theirs.send_all(encode(Submit(1, "am", [to_wire(("api", Alert("a")))])))
                    await theirs.send_all(encode(Ready(2)) + encode(Status(3, "am", "api")))
                    while not {2, 3} <= {getattr(m, "id", None) for m in got}:
                        heard = trio.Event()
                        await heard.wait()
                    assert not release.is_set()  # the submission still waits
                    assert isinstance(next(m for m in got if getattr(m, "id", 0) == 2), ReadyAnswer)
                    release.set()
                    while 1 not in {getattr(m, "id", None) for m in got}:
                        heard = trio.Event()
                        await heard.wait()
                    nursery.cancel_scope.cancel()
        finally:
            fronts.wrong_keys.close()
            fronts._seats.close()
