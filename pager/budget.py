"""A bound on the work of one computation that may be long: a schedule's shifts over weeks, who
is on call next, the gaps to come, a simulated incident.

The work such a computation does grows with what it is asked and with the config (layers,
restriction windows, shift lengths), so the question a person asks can cost more than anyone
should wait for. Each step of it (a change of who is on call looked at, a decision simulated)
is paid from a `Budget`; past its limit, `TooMuch` ends the computation with what it was
asked too much of, and a person gets that answer instead of a wait. The shell that runs the
computation in a worker thread can also `stop` it (a stop of the daemon, a time bound): the
computation ends at its next step. Pure: counts steps, reads no clock.
"""

from __future__ import annotations

import attrs


class TooMuch(Exception):
    """The computation was asked more than its budget allows (or was stopped): the message says
    so in words for the person who asked."""


class Stopped(TooMuch):
    """The computation was stopped from outside (its caller is gone, or out of time)."""


@attrs.define
class Budget:
    """`limit` steps at most; `spent` so far. `stop()` may be called from another thread."""

    limit: int
    spent: int = 0
    stopped: bool = False

    def spend(self, steps: int = 1) -> None:
        """Pay for `steps`; `TooMuch` past the limit, `Stopped` once `stop()` was called."""
        self.spent += steps
        if self.stopped:
            raise Stopped("stopped")
        if self.spent > self.limit:
            raise TooMuch(f"more than {self.limit:,} steps")

    def stop(self) -> None:
        self.stopped = True


def spend(budget: Budget | None, steps: int = 1) -> None:
    """`budget.spend(steps)`, for computations that may be given no budget (no bound)."""
    if budget is not None:
        budget.spend(steps)
