"""The wall clock stepping, while pagerd runs and while it is stopped: every escalation keeps
the time it had left. The wall and boot clocks are the test's (no real clock is stepped)."""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from pagerd.config import Config
from pagerd.storage.sqlite.store import Store
from pagerd.timing.clock import Clock, Reading, shift, system_boot, watch
from tests.harness import T0, connect, running, settle, steps
from tests.history import incident
from tests.test_heartbeats import heartbeat_config

DAY = 86400.0
LEVEL2 = ("api#1", 1, 2, "email:lead@example.com")


@attrs.define
class Machine:
    """The clocks of a machine under test: true time is Trio's (mock) clock; the wall clock can
    be stepped; the boot clock counts true time from its boot."""

    step: float = 0.0
    boot_id: str = "boot-1"
    booted_at: float = 0.0  # Trio time of the boot

    def wall(self) -> float:
        return T0 + trio.current_time() + self.step

    def boot(self) -> tuple[str, float]:
        return self.boot_id, 100.0 + trio.current_time() - self.booted_at

    def reboot(self) -> None:
        self.boot_id += "'"
        self.booted_at = trio.current_time()

    def clock(self) -> Clock:
        return Clock(wall=self.wall, boot=self.boot)


def test_shift_within_a_boot_is_the_wall_clocks_error_against_true_time() -> None:
    last = Reading(frame=T0, wall=T0, boot_id="b", boottime=1000.0)
    # An hour down, the clock set back a day meanwhile: deadlines move back a day.
    back = Reading(frame=T0 + 3600 - DAY, wall=T0 + 3600 - DAY, boot_id="b", boottime=4600.0)
    assert shift(last, back) == -DAY
    ahead = Reading(frame=T0 + 3600 + DAY, wall=T0 + 3600 + DAY, boot_id="b", boottime=4600.0)
    assert shift(last, ahead) == DAY
    same = Reading(frame=T0 + 3600, wall=T0 + 3600, boot_id="b", boottime=4600.0)
    assert shift(last, same) == 0.0


def test_shift_across_a_reboot_trusts_the_wall_clock_from_the_last_known_skew() -> None:
    # Before the reboot the frame was a day behind the wall clock (a step while running).
    last = Reading(frame=T0 - DAY, wall=T0, boot_id="b", boottime=1000.0)
    now = Reading(frame=T0 + 3600, wall=T0 + 3600, boot_id="c", boottime=50.0)
    assert shift(last, now) == DAY
    assert shift(None, now) == 0.0
    unknown = Reading(frame=T0 + 3600, wall=T0 + 3600)
    assert shift(Reading(frame=T0, wall=T0), unknown) == 0.0


@pytest.mark.parametrize("step", [-DAY, DAY], ids=["set-back-a-day", "set-forward-a-day"])
async def test_a_step_while_stopped_keeps_each_escalation_its_time(
    autojump_clock: trio.testing.MockClock, config: Config, step: float
) -> None:
    machine = Machine()
    with trio.fail_after(3 * DAY):
        async with running(config, machine.clock()), connect(config.socket) as conn:
            await conn.request("alert", service="api")  # level 2 due in 5 minutes
            await trio.sleep(60)
        await trio.sleep(60)  # stopped for a minute, and the wall clock steps meanwhile
        machine.step = step
        async with running(config, machine.clock()):
            await trio.sleep(180 - 1)
            early = LEVEL2 in steps(config)
            await trio.sleep(2)
            on_time = LEVEL2 in steps(config)
    assert (early, on_time) == (False, True)  # not at once, not a day late: at 5 minutes


@pytest.mark.parametrize("step", [-DAY, DAY], ids=["set-back-a-day", "set-forward-a-day"])
async def test_a_step_while_stopped_keeps_a_heartbeat_deadline_its_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, step: float
) -> None:
    config = heartbeat_config(tmp_path, cron="5m")
    machine = Machine()
    with trio.fail_after(3 * DAY):
        async with running(config, machine.clock()), connect(config.socket) as conn:
            await conn.request("heartbeat", service="cron")  # due in 5 minutes
            await trio.sleep(60)
        await trio.sleep(60)  # stopped for a minute, and the wall clock steps meanwhile
        machine.step = step
        async with running(config, machine.clock()):
            await trio.sleep(180 - 1)
            early = steps(config)
            await trio.sleep(2)
            on_time = {s[0] for s in steps(config)}
    assert (early, on_time) == ([], {"cron#1"})  # not at once, not a day late: at 5 minutes


async def test_a_step_while_running_is_logged_and_a_restart_after_a_reboot_still_keeps_time(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    machine = Machine()
    with trio.fail_after(3 * DAY):
        async with running(config, machine.clock()), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await trio.sleep(30)
            machine.step = -DAY  # NTP corrects a clock a day ahead
            await trio.sleep(30)
            fired_early = LEVEL2 in steps(config)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        machine.reboot()  # now only the wall clock tells how long pagerd was down
        await trio.sleep(60)
        async with running(config, machine.clock()):
            await settle()
            await trio.sleep(180 - 1)
            early = LEVEL2 in steps(config)
            await trio.sleep(2)
            on_time = LEVEL2 in steps(config)
    assert not fired_early
    assert any("wall clock stepped -86400.0s" in w for w in warnings), warnings
    assert (early, on_time) == (False, True)


async def test_a_step_while_running_neither_fires_nor_delays_an_escalation(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    machine = Machine()
    with trio.fail_after(3 * DAY):
        async with running(config, machine.clock()), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await trio.sleep(100)
            machine.step = DAY
            await trio.sleep(100)
            machine.step = -DAY
            await trio.sleep(99)
            early = LEVEL2 in steps(config)
            await trio.sleep(2)
            on_time = LEVEL2 in steps(config)
    assert (early, on_time) == (False, True)


async def test_a_restart_with_no_step_moves_nothing(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    machine = Machine()
    with trio.fail_after(DAY):
        async with running(config, machine.clock()), connect(config.socket) as conn:
            await conn.request("alert", service="api")
        await trio.sleep(3600)  # down an hour: level 2 is overdue
        async with running(config, machine.clock()):
            await settle()
            assert LEVEL2 in steps(config)
    assert not [r for r in caplog.records if "moved" in r.getMessage()]


def test_a_restart_moves_open_deadlines_and_retry_times_once(tmp_path: Path) -> None:
    with closing(Store.open(tmp_path / "pager.db")) as store:
        incident(store, "api", 1, closed_at=None, notifications=("retrying", "sent"))
        incident(store, "web", 1, closed_at=T0 - 10, notifications=("sent",))
        store._conn.execute("UPDATE incidents SET deadline = ? WHERE closed_at IS NULL", (T0,))
        store._conn.execute("UPDATE notifications SET next_attempt_at = ?", (T0 + 5,))
        first = Reading(frame=T0 - 100, wall=T0 - 100, boot_id="b", boottime=1000.0)
        assert store.restart_clock(first) == (None, 0.0)
        # 100 s later by the boot clock, the wall clock a day behind: moved back a day, once.
        later = Reading(frame=T0 - DAY, wall=T0 - DAY, boot_id="b", boottime=1100.0)
        assert store.restart_clock(later) == (first, -DAY)
        assert store.restart_clock(later) == (later, 0.0)
        rows = store._conn.execute(
            "SELECT service, deadline FROM incidents ORDER BY service"
        ).fetchall()
        retries = store._conn.execute(
            "SELECT state, next_attempt_at FROM notifications ORDER BY seq"
        ).fetchall()
    assert rows == [("api", T0 - DAY), ("web", None)]
    assert retries == [("retrying", T0 + 5 - DAY), ("sent", T0 + 5), ("sent", T0 + 5)]


def test_the_system_clocks_are_read() -> None:
    boot = system_boot()
    assert boot is not None and len(boot[0]) == 36 and boot[1] > 0


def test_a_reading_that_cannot_be_read_moves_nothing(tmp_path: Path) -> None:
    with closing(Store.open(tmp_path / "pager.db")) as store:
        store._conn.execute("INSERT INTO meta (key, value) VALUES ('clock', '{\"frame\": \"x\"}')")
        now = Reading(frame=T0, wall=T0, boot_id="b", boottime=1.0)
        assert store.restart_clock(now) == (None, 0.0)
        assert store.restart_clock(now) == (now, 0.0)


async def test_a_step_whose_record_fails_is_recorded_at_the_next_look(
    autojump_clock: trio.testing.MockClock,
) -> None:
    machine = Machine()
    clock = machine.clock()
    recorded: list[Reading] = []
    failures = [OSError("disk full")]

    async def record(reading: Reading) -> None:
        if failures:
            raise failures.pop()
        recorded.append(reading)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, clock, record)
        await trio.sleep(15)
        machine.step = -DAY
        await trio.sleep(10)  # seen, its record fails
        assert recorded == []
        await trio.sleep(10)  # recorded at the next look
        nursery.cancel_scope.cancel()
    assert len(recorded) == 1 and recorded[0].wall - recorded[0].frame == -DAY
