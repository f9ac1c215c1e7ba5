"""Gaps: where a schedule has nobody on call, or a policy's level would reach nobody, over a
span to come. `pagerd --check` and every reload report them (`daemon.gap_weeks` ahead), each
with its exact window on the schedule's wall clock: a gap is a page that reaches nobody, found
before the page is missed. Pure: the span, the schedules and the overrides are passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import attrs

from pager.budget import Budget
from pager.domain import Policy, Target
from pager.schedules import Override, Schedule, gaps


@attrs.frozen
class Hole:
    """Nobody to page at `where` from `start` until `end` (instants), shown in `zone`."""

    where: str
    start: float
    end: float
    zone: dt.tzinfo
    why: str = ""

    def describe(self) -> str:
        start = dt.datetime.fromtimestamp(round(self.start), self.zone)
        end = dt.datetime.fromtimestamp(round(self.end), self.zone)
        why = f" ({self.why})" if self.why else ""
        return (
            f"{self.where}: nobody on call from {start:%a %Y-%m-%d %H:%M} until "
            f"{end:%a %Y-%m-%d %H:%M} {self.zone}{why}"
        )


def _intersect(
    a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    found = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            found.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return found


def holes(
    schedules: Mapping[str, Schedule],
    policies: Mapping[str, Policy],
    start: float,
    end: float,
    overrides: Mapping[str, Sequence[Override]] | None = None,
    budget: Budget | None = None,
) -> list[Hole]:
    """Every schedule's gaps in [start, end), then every policy level whose targets are all
    schedules (a person or an address always reaches someone) with nobody on any of them at
    once, in the zone of the level's first schedule. Each boundary of a schedule looked at is
    a step of `budget` (`TooMuch` past it)."""
    overrides = overrides or {}
    found: list[Hole] = []
    spans: dict[str, list[tuple[float, float]]] = {}
    for name in sorted(schedules):
        schedule = schedules[name]
        spans[name] = [
            (g.start, g.end) for g in gaps(schedule, start, end, overrides.get(name, ()), budget)
        ]
        found += [Hole(f"schedule:{name}", s, e, schedule.zone) for s, e in spans[name]]
    for name in sorted(policies):
        for i, level in enumerate(policies[name].levels):
            found += _level_holes(name, i, level.targets, schedules, spans)
    return found


def _level_holes(
    policy: str,
    index: int,
    targets: Iterable[Target],
    schedules: Mapping[str, Schedule],
    spans: Mapping[str, list[tuple[float, float]]],
) -> list[Hole]:
    names = []
    for target in targets:
        if target.channel != "schedule" or target.address not in schedules:
            return []  # reaches somebody whatever the schedules say
        names.append(target.address)
    if not names:
        return []
    common = spans[names[0]]
    for other in names[1:]:
        common = _intersect(common, spans[other])
    zone = schedules[names[0]].zone
    unique = list(dict.fromkeys(names))
    why = " and ".join(f"schedule:{n}" for n in unique)
    why += " has nobody" if len(unique) == 1 else " all have nobody"
    return [Hole(f"policies.{policy}.levels[{index}]", s, e, zone, why) for s, e in common]
