"""Computations that may be long, off the decision loop: a schedule's shifts for its calendar
feed, who is on call next, whether an override changes anything, the gaps to come, a simulated
incident.

Each is pure code of `pager/` whose work grows with what it is asked and with the config. Run
on the loop, one of them held up every decision behind it (found by review: an `oncall` of a
heavy schedule never answered, nor did pagerd answer SIGTERM meanwhile; a `simulate` took 15 s
of the loop; a calendar request held a reload up for 30 s). Here each runs in a worker thread,
behind a limiter of its own (neither the database's nor a reload's), paid for from a
`pager.budget.Budget` and bounded in time:

- past its budget (`work` steps) or its time (`seconds`), the caller gets `CannotCompute`
  (`too_complex`, "too much to compute: ...") and the computation stops at its next step;
- with `room` callers in already (running or waiting for the thread), the next gets
  `CannotCompute` (`busy`) at once: the wait is bounded, like every queue of pagerd;
- a caller cancelled (a stop, a client gone) returns at once and the computation stops at its
  next step: a stop never waits for one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, TypeVar

import trio

from pager.budget import Budget, TooMuch
from pagerd.storage.offload import Offload, in_thread

T = TypeVar("T")

THREADS: Final = 1
"""Computations running at once: each a thread that competes with the loop for the
interpreter, so one, and the rest wait for it."""
ROOM: Final = 16
"""Computations in at once, running or waiting: one more is answered `busy`."""
WORK: Final = 300_000
"""Steps one computation may take (a change of who is on call looked at, a decision
simulated): a second or two of work at most. The config's limits (`pagerd.config.people`) keep
every question a person may ask of a valid config within it, a schedule at a time."""
SECONDS: Final = 10.0
"""How long one computation may take, however loaded the machine: past it, `too_complex`."""


class CannotCompute(Exception):
    """Not computed: `code` (`too_complex` or `busy`, as the protocol has them), and why."""

    def __init__(self, code: Literal["too_complex", "busy"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def in_threads(threads: int = THREADS) -> Offload:
    """The offload `Compute` runs in outside tests: threads of their own, abandoned by a
    cancelled caller (its computation is told to stop, and does at its next step)."""
    return in_thread(trio.CapacityLimiter(threads), abandon_on_cancel=True)


class Compute:
    def __init__(
        self,
        offload: Offload,
        *,
        work: int = WORK,
        seconds: float | None = SECONDS,
        room: int = ROOM,
    ) -> None:
        self._offload = offload
        self.work = work
        self.seconds = seconds  # None: no bound in time (tests under MockClock)
        self._room = room
        self._in = 0

    @property
    def running(self) -> int:
        """Computations in (running or waiting for a thread)."""
        return self._in

    async def __call__(self, what: str, fn: Callable[[Budget], T], *, scale: int = 1) -> T:
        """`fn(budget)` in a worker thread: its result, or `CannotCompute`. `what` names the
        question in the refusal ("the shifts of payments-primary"); `scale` multiplies the
        budget (a question about that many schedules)."""
        if self._in >= self._room:
            raise CannotCompute(
                "busy", f"{self._in} computations are running or waiting already: try again"
            )
        budget = Budget(self.work * max(1, scale))
        self._in += 1
        try:
            with trio.move_on_after(self.seconds if self.seconds is not None else float("inf")):
                return await self._offload(lambda: fn(budget))
            raise CannotCompute(
                "too_complex",
                f"too much to compute: {what} took longer than {self.seconds:g}s",
            )
        except TooMuch as exc:
            raise CannotCompute("too_complex", f"too much to compute: {what} takes {exc}") from None
        finally:
            budget.stop()  # the thread, if still running (abandoned), stops at its next step
            self._in -= 1
