"""What a config is looked at for once it runs, after a start and after each reload, in the
background and off the decision loop (`pagerd.engine.compute`):

- its maintenance windows' days around now are worked out (`pager.weekly.Weekly` keeps them),
  so that the first `pager status` after a start or reload, which reads every service's
  windows, does not work out thousands of them on the loop;
- its gaps are looked for, logged and counted (`Rota.coverage`, the `pagerd_gaps` gauges): whole
  policies, levels and schedules with nobody, in the next `daemon.gap_weeks` weeks. A gap never
  refuses a start or a reload (an operator mid-incident must still be able to reload): a few
  lines are logged, most severe first. Looking for them walks every schedule's changes over up
  to a year, which can take seconds (found by review: 44 s of a reload, on the loop).

A reload answers, and pages with the new config, at once; its gaps are logged when found. A
reload while the config before is still being looked at drops that look: only the config that
runs is reported on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

import attrs
import trio

from pager.budget import Budget, spend
from pager.coverage import Coverage, coverage
from pager.schedules import Override
from pager.weekly import maintenance, when_text
from pagerd.config import Config
from pagerd.engine.compute import CannotCompute, Compute
from pagerd.engine.oncall import Rota, ignored_because, ignored_overrides

log = logging.getLogger("pagerd.lookahead")


def ignored_lines(config: Config, overrides: Iterable[Override], now: float) -> list[str]:
    """A line for each override not used (`ignored_overrides`: its person is no longer in
    `[people]`), with its id and why: for `pagerd --check`, and at every start and reload (none
    if `daemon.gap_weeks` is 0, which turns the check off)."""
    if not config.gap_weeks or not config.schedules:
        return []
    found = []
    for o, why in ignored_overrides(overrides, config.people, config.schedules, now):
        zone = config.schedules[o.schedule].zone
        begins, ends = when_text(o.start, zone), when_text(o.end, zone)
        found.append(
            f"override {o.id} of schedule:{o.schedule} ({o.by} from {begins}"
            f" until {ends} {zone}) is ignored: {why}; the schedule pages as"
            f" if it were not there (remove it: pager override remove {o.id})"
        )
    return found


def gaps(
    config: Config, overrides: Iterable[Override], now: float, budget: Budget | None = None
) -> Coverage:
    """The gaps of the next `daemon.gap_weeks` weeks (none if 0): whole policies, levels and
    schedules with nobody, each place summarised in a line (`pager.coverage`), as paging
    resolves them: an override not used (`ignored_because`) left out. For `pagerd --check`,
    and at every start and reload. Each boundary of a schedule looked at is a step of
    `budget`."""
    if not config.gap_weeks or not config.schedules:
        return Coverage(now, now)
    grouped: dict[str, list[Override]] = {}
    for o in overrides:
        if ignored_because(o, config.people) is None:
            grouped.setdefault(o.schedule, []).append(o)
    end = now + config.gap_weeks * 7 * 86400.0
    return coverage(config.schedules, config.policies, now, end, grouped, budget)


MAX_GAP_LINES: Final = 10
"""Places with gaps a start or a reload logs at most; `pagerd --check` lists every one."""


def log_gaps(found: Coverage) -> None:
    """A few lines, most severe first: a policy or a level with nobody at ERROR, a schedule's
    own gaps at WARNING, those meant not at all."""
    told = [f for f in found.findings if f.kind != "expected"]
    for finding in told[:MAX_GAP_LINES]:
        level = logging.WARNING if finding.kind == "schedule" else logging.ERROR
        log.log(level, "gap: %s", finding.text)
    if len(told) > MAX_GAP_LINES:
        log.warning(
            "gap: and %d more places with gaps (pagerd --check lists them all)",
            len(told) - MAX_GAP_LINES,
        )


def work_out_windows(config: Config, now: float, budget: Budget | None = None) -> None:
    """Where every service's maintenance windows stand at `now` (wall clock), for the days it
    works out and leaves kept in the config's windows."""
    for windows in config.maintenance.values():
        spend(budget, len(windows))
        maintenance(windows, now)


@attrs.define
class _Look:
    config: Config
    overrides: list[Override]
    now: float


class Lookahead:
    """Looks at the config it is last given (`look`), one look at a time, in a task of its own
    (`run`); the gaps found go to `rota` (its `coverage`, which the gauges read)."""

    def __init__(self, compute: Compute, rota: Rota | None = None) -> None:
        self._compute = compute
        self._rota = rota
        self._wanted: _Look | None = None
        self._wake = trio.Event()
        self._current = trio.CancelScope()

    def look(self, config: Config, overrides: Iterable[Override], now: float) -> None:
        """Look at `config` from `now` (wall clock), with `overrides`, soon; a look still going
        on at an earlier config is dropped."""
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
                await self._windows(wanted)
                await self._gaps(wanted)

    async def _windows(self, wanted: _Look) -> None:
        config = wanted.config
        if not config.maintenance:
            return
        try:
            await self._compute(
                "the maintenance windows' days",
                lambda budget: work_out_windows(config, wanted.now, budget),
            )
        except CannotCompute as exc:  # the loop works them out as they are asked for
            log.warning("cannot work out the maintenance windows ahead: %s", exc.message)
        except Exception:  # a bug must not take paging down
            log.exception("cannot work out the maintenance windows ahead")

    async def _gaps(self, wanted: _Look) -> None:
        config = wanted.config
        if not config.gap_weeks or not config.schedules:
            if self._rota is not None:
                self._rota.coverage = Coverage(wanted.now, wanted.now)
            return  # nothing to look for
        try:
            ignored = ignored_lines(config, wanted.overrides, wanted.now)
        except Exception:  # a bug in the check must not take paging down
            log.exception("cannot look for overrides not used")
            ignored = []
        for line in ignored[:MAX_GAP_LINES]:  # an override not used: an error, whatever else
            log.error("gap: %s", line)
        what = f"the gaps of the next {config.gap_weeks} weeks (daemon.gap_weeks)"
        try:
            found = await self._compute(
                what,
                lambda budget: gaps(config, wanted.overrides, wanted.now, budget),
                scale=len(config.schedules),
            )
        except CannotCompute as exc:
            log.error("cannot look for gaps in the schedules: %s", exc.message)
            return
        except Exception:  # a bug in the check must not take paging down
            log.exception("cannot look for gaps in the schedules")
            return
        if self._rota is not None:
            self._rota.coverage = found
        log_gaps(found)
