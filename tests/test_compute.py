"""Questions about schedules that may take long never hold up paging, escalation or a reload
(found by review: a `simulate` took 15 s of the decision loop, an `oncall` never answered and
pagerd ignored SIGTERM meanwhile, a calendar request held a reload up for 30 s). They are
answered by `pagerd.engine.compute`: off the loop, bounded in work and in time (`too_complex`),
in room (`busy`), and stopped with the daemon.

Under MockClock, a computation that takes long is one whose offload waits (`Gate`): meanwhile
another service's escalation is paged at its exact time, and a reload answers. With real threads,
a computation that is told to stop (a time bound, a stop of the daemon) ends at its next step."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
import trio.testing

from pager.budget import Budget, Stopped
from pagerd.config import Config, load
from pagerd.engine.compute import CannotCompute, Compute, in_threads
from pagerd.storage.offload import inline
from tests.harness import Connection, connect, notifications, running, settle
from tests.http import auth, front
from tests.test_oncall_daemon import oncall_config
from tests.test_schedules_http import schedules_config

T = TypeVar("T")
DAY = 86400


class Gate:
    """An offload whose computations wait until `opened` is set: each takes that long."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.waiting = 0  # computations waiting for the gate
        self.ran = 0

    async def __call__(self, fn: Callable[[], T]) -> T:
        self.waiting += 1
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1
        self.ran += 1
        return fn()


class ThreadGate:
    """Real worker threads (as the daemon's), whose computations wait for `release` first; and
    what each computation did once released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.outcome: list[object] = []
        self._threads = in_threads()

    async def __call__(self, fn: Callable[[], T]) -> T:
        return await self._threads(lambda: self._run(fn))

    def _run(self, fn: Callable[[], T]) -> T:
        self.entered.set()
        try:
            self.release.wait(30)
            result = fn()
            self.outcome.append(result)
            return result
        except BaseException as exc:
            self.outcome.append(exc)
            raise
        finally:
            self.finished.set()


def endless(budget: Budget) -> None:
    """A computation that never ends by itself: only its budget ends it."""
    while True:
        budget.spend()


def spent(budget: Budget, steps: int) -> int:
    budget.spend(steps)
    return budget.spent


# Compute. ----------------------------------------------------------------------------------


async def test_a_computation_runs_in_a_worker_thread_and_its_answer_comes_back() -> None:
    compute = Compute(in_threads())
    loop = threading.get_ident()
    with trio.fail_after(10):
        ident, answer = await compute("a sum", lambda budget: (threading.get_ident(), 6 * 7))
    assert ident != loop and answer == 42
    assert compute.running == 0


async def test_past_its_budget_a_computation_is_too_complex_with_the_reason() -> None:
    compute = Compute(inline, work=500)
    with pytest.raises(CannotCompute) as caught:
        await compute("the shifts of primary", endless)
    assert caught.value.code == "too_complex"
    assert caught.value.message == (
        "too much to compute: the shifts of primary takes more than 500 steps"
    )
    # A question about three schedules may take three times as much.
    assert await compute("three", lambda budget: spent(budget, 1500), scale=3) == 1500
    with pytest.raises(CannotCompute):
        await compute("three", lambda budget: spent(budget, 1501), scale=3)


async def test_computations_past_the_room_are_busy_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = Gate()
    compute = Compute(gate, room=2, seconds=None)
    answers: list[int] = []

    async def ask(k: int) -> None:
        answers.append(await compute("k", lambda budget: k))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, 1)
            nursery.start_soon(ask, 2)
            await trio.testing.wait_all_tasks_blocked()
            asked_at = trio.current_time()
            with pytest.raises(CannotCompute) as caught:
                await compute("a third", lambda budget: 3)
            assert trio.current_time() == asked_at  # at once, not after the others
            assert caught.value.code == "busy"
            gate.opened.set()
    assert sorted(answers) == [1, 2] and compute.running == 0


async def test_past_its_time_a_computation_is_too_complex_and_its_thread_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    threads = ThreadGate()
    compute = Compute(threads, seconds=10.0)
    with trio.fail_after(60):
        started = trio.current_time()
        with pytest.raises(CannotCompute) as caught:
            await compute("who is on call in primary", endless)
        assert trio.current_time() - started == pytest.approx(10.0)
    assert caught.value.code == "too_complex"
    assert caught.value.message == (
        "too much to compute: who is on call in primary took longer than 10s"
    )
    assert not threads.finished.is_set()  # answered without waiting for the thread
    threads.release.set()
    assert await trio.to_thread.run_sync(threads.finished.wait, 30)
    assert [type(o) for o in threads.outcome] == [Stopped]  # at its next step
    assert compute.running == 0


async def test_a_cancelled_caller_returns_at_once_and_its_computation_stops() -> None:
    threads = ThreadGate()
    compute = Compute(threads)
    with trio.fail_after(30):
        with trio.CancelScope() as scope:

            async def cancel_once_running() -> None:
                await trio.to_thread.run_sync(threads.entered.wait, 10)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_once_running)
                await compute("the gaps", endless)
        assert scope.cancelled_caught and not threads.finished.is_set()
        threads.release.set()
        assert await trio.to_thread.run_sync(threads.finished.wait, 10)
    assert [type(o) for o in threads.outcome] == [Stopped]


# The daemon: nothing waits for a computation. ---------------------------------------------


def without_gap_check(folder: Path) -> Config:
    """The on-call tests' config (people, schedules, services api on `schedule:primary` and
    shop), with no look for gaps (`gap_weeks = 0`): the only computations are the test's."""
    config = oncall_config(folder)
    text = config.path.read_text().replace("[daemon]\n", "[daemon]\ngap_weeks = 0\n")
    config.path.write_text(text)
    return load(config.path)


HEAVY: list[tuple[str, dict[str, Any]]] = [
    ("simulate", {"service": "shop", "at": "2027-01-18T08:00:00Z"}),
    ("oncall", {"schedule": "primary", "next": 20}),
    ("oncall", {}),
    ("override", {"schedule": "primary", "by": "carol", "for": "bob",
                  "from": "2027-01-20T09:00:00Z", "until": "2027-02-20T09:00:00Z"}),
]  # fmt: skip


@pytest.mark.parametrize(("op", "fields"), HEAVY, ids=[f"{op}{len(f)}" for op, f in HEAVY])
async def test_an_escalation_is_paged_at_its_time_while_a_long_question_is_computed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, op: str, fields: dict[str, Any]
) -> None:
    config = without_gap_check(tmp_path)
    gate = Gate()
    replies: list[dict[str, Any]] = []

    async def ask() -> None:
        async with connect(config.socket) as conn:
            replies.append(await conn.request(op, **fields))

    with trio.fail_after(DAY):
        async with running(config, compute=Compute(gate, seconds=None)) as daemon:
            async with connect(config.socket) as conn:
                opened = await conn.request("alert", service="api", message="down")
                assert opened["ok"], opened
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await settle()
                computing = gate.waiting, daemon.compute.running
                await trio.sleep(2 * 3600)  # 10:00: the question is still being computed
                await settle()
                paged = [(n["level"], n["time"][11:19]) for n in notifications(config)]
                waiting = list(replies)
                gate.opened.set()
    assert computing == (1, 1) and waiting == []
    # Level 1 at once, level 2 at 09:00 exactly (its ack_timeout is an hour), meanwhile.
    assert paged == [(1, "08:00:00"), (2, "09:00:00")]
    [reply] = replies
    assert reply["ok"], reply
    assert gate.ran == 1


async def test_a_reload_answers_while_a_calendar_and_the_gaps_are_computed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = schedules_config(tmp_path)
    gate = Gate()
    feeds: list[httpx.Response] = []
    with trio.fail_after(600):
        async with front(config, compute=Compute(gate, seconds=None)) as (_, client):

            async def feed() -> None:
                feeds.append(await client.get("/schedules/primary.ics", headers=auth()))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                await settle()
                assert gate.waiting == 2  # the feed, and the start's look for gaps
                # A week with nobody on call: a gap for the reload to report.
                config.path.write_text(
                    config.path.read_text().replace("start = 2027-01-04", "start = 2027-01-21")
                )
                async with connect(config.socket) as conn:
                    reloaded = await conn.request("reload")
                await settle()
                looked = [r.getMessage() for r in caplog.records if "gap: " in r.getMessage()]
                pending = list(feeds)
                assert gate.waiting == 2  # the feed, and the reload's look (the start's dropped)
                gate.opened.set()
            await settle()
    assert reloaded["ok"], reloaded
    assert pending == [] and looked == []  # the reload did not wait for either
    [response] = feeds
    assert response.status_code == 200 and b"BEGIN:VCALENDAR" in response.content
    assert any("gap: schedule:primary" in r.getMessage() for r in caplog.records)


OVERRIDE = {
    "schedule": "primary",
    "by": "carol",
    "for": "bob",
    "from": "2027-01-15T08:30:00Z",
    "until": "2027-01-20T12:00:00Z",
}


OVERRIDE = {
    "schedule": "primary",
    "by": "carol",
    "for": "bob",
    "from": "2027-01-15T08:30:00Z",
    "until": "2027-01-20T12:00:00Z",
}


async def test_too_much_to_compute_is_answered_with_the_reason(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = oncall_config(tmp_path)
    with trio.fail_after(600):
        async with running(config, compute=Compute(inline, work=1)), connect(config.socket) as conn:
            asked = {
                "oncall": await conn.request("oncall", schedule="primary", next=20),
                "simulate": await conn.request("simulate", service="api"),
                "override": await conn.request("override", **OVERRIDE),
            }
            listed = await conn.request("overrides", schedule="primary")
    for op, reply in asked.items():
        assert reply["ok"] is False and reply["error"]["code"] == "too_complex", (op, reply)
        assert reply["error"]["message"].startswith("too much to compute: "), reply
    assert asked["oncall"]["error"]["message"] == (
        "too much to compute: who is on call in primary and the next 20 takes more than 1 steps"
    )
    assert listed["overrides"] == []  # an override not checked is not made


async def test_a_calendar_too_much_to_compute_is_a_422(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    config = schedules_config(tmp_path)
    with trio.fail_after(600):
        async with front(config, compute=Compute(inline, work=1)) as (_, client):
            response = await client.get("/schedules/primary.ics", headers=auth())
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "too_complex",
        "message": "too much to compute: the calendar of primary takes more than 1 steps",
    }


async def test_a_stop_does_not_wait_for_a_computation_and_the_computation_stops(
    tmp_path: Path,
) -> None:
    """On the real clock, with real threads: the stop cancels the question being computed
    (its connection is stopped being read), leaves its thread, and tells it to stop."""
    config = without_gap_check(tmp_path)
    threads = ThreadGate()
    with trio.fail_after(30):
        async with running(config, compute=Compute(threads, seconds=None)):
            conn = await Connection.open(config.socket)
            await conn.send_json({"op": "oncall", "schedule": "primary", "next": 50})
            assert await trio.to_thread.run_sync(threads.entered.wait, 10)
        # The daemon has stopped, its computation still in its thread (not waited for).
        stopped = not threads.finished.is_set()
        threads.release.set()
        assert await trio.to_thread.run_sync(threads.finished.wait, 10)
        await conn.aclose()
    assert stopped
    assert [type(o) for o in threads.outcome] == [Stopped]  # told to stop, at its next step
