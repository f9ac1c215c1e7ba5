"""The gaps to come, looked for at start and after each reload, and logged: a schedule with
nobody on call, a policy level that would reach nobody, in the next `daemon.gap_weeks` weeks.

A gap never refuses a start or a reload (an operator mid-incident must still be able to reload):
each is logged as an error. Looking for them walks every schedule's changes over up to a year,
which can take seconds (found by review: 44 s of a reload, on the loop), so it is done after
the config is in force, in the background, off the loop (`pagerd.engine.compute`): a reload
answers and pages with the new config at once, and its gaps are logged when found. A reload
while the gaps of the one before are still being looked for drops that look: only the config
that runs is reported on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import attrs
import trio

from pager.budget import Budget
from pager.coverage import holes
from pager.schedules import Override
from pagerd.config import Config
from pagerd.engine.compute import CannotCompute, Compute

log = logging.getLogger("pagerd.gaps")


def gaps(
    config: Config, overrides: Iterable[Override], now: float, budget: Budget | None = None
) -> list[str]:
    """Every gap in the next `daemon.gap_weeks` weeks (none if 0): a schedule with nobody on
    call, a policy level that would reach nobody, each in a line with its window in the
    schedule's zone. For `pagerd --check`, and logged at every start and reload."""
    if not config.gap_weeks or not config.schedules:
        return []
    grouped: dict[str, list[Override]] = {}
    for o in overrides:
        grouped.setdefault(o.schedule, []).append(o)
    end = now + config.gap_weeks * 7 * 86400.0
    found = holes(config.schedules, config.policies, now, end, grouped, budget)
    return [h.describe() for h in found]


@attrs.define
class _Look:
    config: Config
    overrides: list[Override]
    now: float


class GapChecks:
    """Looks for the gaps of the config it is last given (`look`), one look at a time, in a
    task of its own (`run`)."""

    def __init__(self, compute: Compute) -> None:
        self._compute = compute
        self._wanted: _Look | None = None
        self._wake = trio.Event()
        self._current = trio.CancelScope()

    def look(self, config: Config, overrides: Iterable[Override], now: float) -> None:
        """Look for `config`'s gaps from `now` (wall clock), with `overrides`, soon; a look
        still going on for an earlier config is dropped."""
        self._wanted = _Look(config, list(overrides), now)
        self._current.cancel()
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            wanted, self._wanted = self._wanted, None
            if wanted is None:
                continue
            with trio.CancelScope() as self._current:
                await self._check(wanted)

    async def _check(self, wanted: _Look) -> None:
        config = wanted.config
        if not config.gap_weeks or not config.schedules:
            return  # nothing to look for
        schedules = len(config.schedules)
        what = f"the gaps of the next {config.gap_weeks} weeks (daemon.gap_weeks)"
        try:
            found = await self._compute(
                what,
                lambda budget: gaps(config, wanted.overrides, wanted.now, budget),
                scale=schedules,
            )
        except CannotCompute as exc:
            log.error("cannot look for gaps in the schedules: %s", exc.message)
            return
        except Exception:  # a bug in the check must not take paging down
            log.exception("cannot look for gaps in the schedules")
            return
        for line in found:
            log.error("gap: %s", line)
