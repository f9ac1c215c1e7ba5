"""Deadlines earliest first, one at a time or a restart's worth at once, and the scheduler's
timeouts fired at their time with the step they were set for."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pager.domain import Incident, ServiceState, Timeout
from pagerd.engine.scheduler import Due, Scheduler
from pagerd.timing.clock import Clock
from pagerd.timing.timers import Timers
from tests.harness import T0


def _drain(timers: Timers[str], now: float) -> list[str]:
    out = []
    while timers.due(now) is not None:
        out.append(timers.pop())
    return out


async def test_many_pushed_at_once_come_out_earliest_first_ties_in_order() -> None:
    timers: Timers[str] = Timers(Clock(T0))
    timers.push(T0 + 5, "single-5")
    timers.push_many([(T0 + 9, "a-9"), (T0 + 1, "a-1"), (T0 + 5, "a-5"), (T0 + 1, "b-1")])
    timers.push(T0 + 1, "single-1")
    assert len(timers) == 6
    assert _drain(timers, T0 + 4) == ["a-1", "b-1", "single-1"]
    assert _drain(timers, T0 + 100) == ["single-5", "a-5", "a-9"]


async def test_a_wait_ends_when_many_pushed_at_once_bring_an_earlier_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = Clock(T0)
    timers: Timers[str] = Timers(clock)
    timers.push(T0 + 3600, "late")
    woke_at = []

    async def waiter() -> None:
        await timers.wait()
        woke_at.append(clock.now())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(10)
        timers.push_many([(T0 + 60, "sooner"), (T0 + 7200, "later still")])
    assert woke_at == [T0 + 10]  # woken to wait for the new earliest, not an hour later


async def test_the_scheduler_fires_each_timeout_at_its_deadline_with_its_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = Clock(T0)
    scheduler = Scheduler(clock)
    states = [
        ServiceState("api", 3, Incident(3, T0, "down", round=2, level=1, deadline=T0 + 300)),
        ServiceState("db", 1, Incident(1, T0, "down", deadline=T0 - 60)),  # overdue at start
        ServiceState("web", 1, Incident(1, T0, "down", acknowledged_at=T0)),  # no deadline
        ServiceState("idle"),
    ]
    scheduler.schedule_all(states)
    scheduler.schedule(ServiceState("mail", 2, Incident(2, T0, "x", level=2, deadline=T0 + 30)))
    assert len(scheduler) == 3
    fired: list[tuple[float, str, Due]] = []

    def deliver(service: str, timeout: Due) -> bool:
        fired.append((clock.now(), service, timeout))
        return True

    with trio.move_on_after(3600):
        await scheduler.run(deliver)
    assert [(service, timeout) for _, service, timeout in fired] == [
        ("db", Timeout(1, 1, 1)),
        ("mail", Timeout(2, 1, 2)),
        ("api", Timeout(3, 2, 1)),
    ]
    assert [at for at, _, _ in fired] == pytest.approx([T0, T0 + 30, T0 + 300], abs=1e-3)


async def test_a_timeout_that_cannot_be_handed_over_is_offered_again_not_dropped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    scheduler = Scheduler(clock)
    scheduler.schedule(ServiceState("api", 1, Incident(1, T0, "down", deadline=T0 + 30)))
    scheduler.schedule(ServiceState("web", 1, Incident(1, T0, "down", deadline=T0 + 30.2)))
    fired: list[tuple[float, str]] = []

    def deliver(service: str, timeout: Due) -> bool:
        if service == "api" and not fired:
            fired.append((clock.now(), "raised"))
            raise RuntimeError("a bug")
        fired.append((clock.now(), service))
        return True

    with trio.move_on_after(3600):
        await scheduler.run(deliver)
    assert [what for _, what in fired] == ["raised", "web", "api"]  # web was not held up
    assert fired[-1][0] - fired[0][0] == pytest.approx(0.5, abs=1e-3)  # after a back-off
    assert "cannot hand over the timeout of service=api" in caplog.text
    assert len(scheduler) == 2  # handed over, not yet decided: still counted
