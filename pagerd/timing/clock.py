"""The daemon's one notion of time, and what it does when the wall clock steps.

Deadlines are stored as seconds since the epoch so they mean the same after a restart, but the
running daemon measures time with Trio's monotonic clock, anchored to the wall clock once at
start: its *frame*. A step of the system clock while it runs (NTP correcting a clock that was
wrong at boot, an operator's `date -s`) changes neither the frame nor any deadline in it: every
escalation keeps its remaining time. The step is seen (`watch`), logged, and recorded. What
people read (replies, pages) is on the wall clock all the same: each time of the frame is shown
plus the step (`Clock.offset`).

What a step would still break is the next start, which anchors a new frame to the wall clock
and reads the stored deadlines in it: a clock set back a day while pagerd ran (or while it was
stopped) would hold every open escalation a day. So pagerd records how its frame stood against
the wall clock and, within one boot, against `CLOCK_BOOTTIME` (which counts the true time
elapsed, whatever the wall clock does), and a start moves the stored deadlines by the difference
between the time that truly passed and the time the wall clock says passed (`shift`). Across a
reboot only the wall clock is known: the time down is measured by it.

In tests Trio's clock is a `MockClock`, so hours pass in milliseconds; the wall clock and the
boot clock are parameters, so a test can step them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import attrs
import trio

log = logging.getLogger("pagerd.clock")

# Wall -> Trio -> wall can lose a float ulp (~0.2 us at today's epoch). Waking this much later
# guarantees the wall-clock reading on waking is not below the deadline it waited for.
_SLACK: Final = 1e-6

STEP: Final = 1.0
"""A change of the wall clock against the frame beyond this (seconds) is a step; less is the
jitter of reading two clocks, or NTP slewing, which moves both alike."""
WATCH_EVERY: Final = 10.0
"""How often the wall clock is compared with the frame while running."""
RECORD_EVERY: Final = 3600.0
"""How often the reading is recorded without a step: it bounds what a suspend of the machine
(the frame stops, the boot clock does not) can make a restart misjudge."""

BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")


@attrs.frozen
class Reading:
    """One moment as each clock saw it: pagerd's frame, the wall clock, and (when known) which
    boot this is and `CLOCK_BOOTTIME`, the seconds since it."""

    frame: float
    wall: float
    boot_id: str | None = None
    boottime: float | None = None


def system_boot() -> tuple[str, float] | None:
    """(boot id, CLOCK_BOOTTIME) of this machine, or None where they cannot be read."""
    try:
        return BOOT_ID.read_text().strip(), time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, AttributeError):
        return None


def boot_warning(boot: Callable[[], tuple[str, float] | None] = system_boot) -> str | None:
    """What to log at start if the boot clock cannot be read (no /proc/sys: systemd's
    `ProcSubset=pid` hides it): a restart then measures the time it was down by the wall clock,
    and a wall clock stepped while pagerd was stopped moves every stored deadline."""
    if boot() is not None:
        return None
    return (
        f"cannot read {BOOT_ID} (is /proc/sys hidden, e.g. by systemd's ProcSubset=pid?):"
        " restarts will trust the wall clock for the time pagerd was down"
    )


class Clock:
    def __init__(
        self,
        wall_at_start: float | None = None,
        *,
        wall: Callable[[], float] | None = None,
        boot: Callable[[], tuple[str, float] | None] | None = None,
    ) -> None:
        """Anchor to the wall clock once; call inside `trio.run`.

        `Clock()` reads the system's wall and boot clocks. `Clock(T)` starts the frame at T and
        has a wall clock that never steps (it follows the frame) and no boot clock, unless
        `wall` and `boot` say otherwise: tests step those.
        """
        if wall is None and wall_at_start is None:
            wall = time.time
            boot = system_boot if boot is None else boot
        start = (wall or time.time)() if wall_at_start is None else wall_at_start
        self._offset = start - trio.current_time()
        self._wall = wall
        self._boot = boot
        self._skew = 0.0 if wall is None else wall() - self.now()
        """The wall clock minus the frame, as last seen: 0 until the wall clock steps."""

    def now(self) -> float:
        """Seconds since the epoch in pagerd's frame, advancing with Trio's clock."""
        return trio.current_time() + self._offset

    def trio_deadline(self, wall: float) -> float:
        """The Trio time at which the frame reaches `wall`, surely."""
        return wall - self._offset + _SLACK

    @property
    def skew(self) -> float:
        """How far the wall clock is ahead of pagerd's frame (negative: behind)."""
        return self._skew

    def offset(self) -> float:
        """What to add to a time of the frame to show it on the wall clock, as it stands now.

        The frame keeps deadlines continuous through a step; people read the wall clock. So
        every time shown or sent (replies, pages, the log transport) is the frame's plus this:
        the step, seen at once, not at `watch`'s next look; the jitter of reading two clocks is
        not (the last step seen stands until the next one), so a time reads the same twice."""
        if self._wall is None:
            return 0.0
        live = self._wall() - self.now()
        return self._skew if abs(live - self._skew) <= STEP else live

    def shown(self, t: float) -> float:
        """`t`, a time of the frame, on the wall clock (see `offset`)."""
        return t + self.offset()

    def wall_now(self) -> float:
        """Now on the wall clock, as a page or a log record says it."""
        return self.shown(self.now())

    def reading(self) -> Reading:
        frame = self.now()
        wall = frame if self._wall is None else self._wall()
        boot = None if self._boot is None else self._boot()
        if boot is None:
            return Reading(frame, wall)
        return Reading(frame, wall, boot[0], boot[1])

    def stepped(self, reading: Reading) -> float | None:
        """How far the wall clock stepped against the frame since last seen (None: it did not).
        The frame stays as it is, and so does every deadline in it."""
        skew = reading.wall - reading.frame
        step = skew - self._skew
        if abs(step) <= STEP:
            return None
        self._skew = skew
        return step


def shift(last: Reading | None, now: Reading) -> float:
    """How far to move deadlines stored in the frame of `last` into the frame of `now`, so each
    keeps the time it had left, less the time that truly passed.

    Within one boot, `CLOCK_BOOTTIME` says how much time passed, whatever the wall clock did
    meanwhile. Across a reboot (or where the boot clock is unknown) only the wall clock does:
    the old frame stood `last.wall - last.frame` from it, and is taken to have gone on so.
    """
    if last is None:
        return 0.0
    if (
        last.boot_id is not None
        and last.boot_id == now.boot_id
        and last.boottime is not None
        and now.boottime is not None
        and now.boottime >= last.boottime
    ):
        elapsed = now.boottime - last.boottime
    else:
        elapsed = now.wall - last.wall
    return now.frame - (last.frame + elapsed)


async def watch(clock: Clock, record: Callable[[Reading], Awaitable[None]]) -> None:
    """Until cancelled: compare the wall clock with the frame, log a step, and record the
    reading (then, and every `RECORD_EVERY`), so the next start knows how the frame stood."""
    last_recorded = trio.current_time()
    unrecorded = False  # a step whose record failed: tried again at the next look
    while True:
        await trio.sleep(WATCH_EVERY)
        reading = clock.reading()
        step = clock.stepped(reading)
        if step is not None:
            log.warning(
                "the wall clock stepped %+.1fs: open escalations and retries keep the time they "
                "had left; the times shown follow the wall clock",
                step,
            )
            unrecorded = True
        if unrecorded or trio.current_time() - last_recorded >= RECORD_EVERY:
            try:
                await record(reading)
            except Exception as exc:  # the database: tried again at the next look
                log.error("cannot record the clock reading, retried in %.0fs: %s", WATCH_EVERY, exc)
            else:
                last_recorded = trio.current_time()
                unrecorded = False
