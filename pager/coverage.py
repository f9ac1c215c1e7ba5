"""Gaps: where a schedule has nobody on call, where a policy's level would reach nobody, and
where a whole policy would, over a span to come; and a summary of them a person can read.

`pagerd --check` and every start and reload look `daemon.gap_weeks` ahead. Three kinds of gap
are not alike, and are told apart, most severe first:

- **policy**: no level of a policy reaches anyone at that moment (every level's targets are
  schedules with nobody on call): an incident then pages nobody at all. Always an error.
- **level**: one level reaches nobody (all its targets are schedules, all empty at once), but
  another level of the policy does: paging skips to it at once, the level's people are missed.
- **schedule**: a schedule has nobody on call. A business-hours schedule, or one region of a
  follow-the-sun, has such gaps every day by design: its config says `gaps = "expected"`, and
  its gaps are then of the kind **expected**, counted but not reported (a level or a policy
  they leave empty still is).

`summarise` groups each place's gaps by their wall-clock shape (those that start and end at the
same times of day: "every Mon-Thu 17:00 until 09:00 the next day (80 times, ...)"), so twenty
weeks of a business-hours schedule are a line, not a hundred. Pure: the span, the schedules and
the overrides are passed in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

import attrs

from pager.budget import Budget
from pager.domain import Policy, Target
from pager.schedules import Override, Schedule, gaps
from pager.weekly import wall, when_text

Kind = Literal["policy", "level", "schedule", "expected"]
KINDS: Final[tuple[Kind, ...]] = ("policy", "level", "schedule", "expected")
"""Most severe first."""
WEEK: Final = 7 * 86400.0
MAX_GROUPS: Final = 4
"""Shapes of gap one place's summary names at most; the rest are counted."""
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Span = tuple[float, float]


@attrs.frozen
class Hole:
    """Nobody to page at `where` from `start` until `end` (instants), shown in `zone`."""

    where: str
    start: float
    end: float
    zone: dt.tzinfo
    why: str = ""
    kind: Kind = "schedule"


@attrs.frozen
class Finding:
    """One place's gaps in one line: `text`, of `kind`, `count` gaps, the first at `first`."""

    kind: Kind
    where: str
    count: int
    first: float
    text: str


@attrs.frozen
class Coverage:
    """The gaps found over [start, end), and their summary, most severe first."""

    start: float
    end: float
    holes: tuple[Hole, ...] = ()
    findings: tuple[Finding, ...] = ()

    def count(self, kind: Kind) -> int:
        """Gaps of `kind` (each window, not each place)."""
        return sum(1 for h in self.holes if h.kind == kind)

    def places(self, kind: Kind) -> int:
        """Places (schedules, levels, policies) with gaps of `kind`."""
        return sum(1 for f in self.findings if f.kind == kind)

    def next_level_gap(self, at: float) -> float:
        """Seconds from `at` until the next moment a level or a whole policy reaches nobody: 0
        in one, +inf if there is none before `end` (as far as it was looked for)."""
        starts = [h.start for h in self.holes if h.kind in ("policy", "level") and h.end > at]
        return max(0.0, min(starts) - at) if starts else math.inf


def _intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
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


def _subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """The parts of `a` (sorted, disjoint) outside every span of `b` (sorted, disjoint)."""
    found: list[Span] = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while start < end and k < len(b) and b[k][0] < end:
            if b[k][0] > start:
                found.append((start, b[k][0]))
            start = max(start, b[k][1])
            k += 1
        if start < end:
            found.append((start, end))
    return found


def holes(
    schedules: Mapping[str, Schedule],
    policies: Mapping[str, Policy],
    start: float,
    end: float,
    overrides: Mapping[str, Sequence[Override]] | None = None,
    budget: Budget | None = None,
) -> list[Hole]:
    """Every schedule's gaps in [start, end) (`expected` for a schedule whose gaps are meant);
    every policy's moments with no level reaching anyone (`policy`); and every level whose
    targets are all schedules (a person or an address always reaches someone), all empty at
    once, outside those moments (`level`). A level's or a policy's gaps are shown in the zone of
    its first schedule. Each boundary of a schedule looked at is a step of `budget` (`TooMuch`
    past it)."""
    overrides = overrides or {}
    found: list[Hole] = []
    spans: dict[str, list[Span]] = {}
    for name in sorted(schedules):
        schedule = schedules[name]
        spans[name] = [
            (g.start, g.end) for g in gaps(schedule, start, end, overrides.get(name, ()), budget)
        ]
        kind: Kind = "expected" if schedule.expected_gaps else "schedule"
        found += [Hole(f"schedule:{name}", s, e, schedule.zone, "", kind) for s, e in spans[name]]
    for name in sorted(policies):
        found += _policy_holes(name, policies[name], schedules, spans)
    return found


def _policy_holes(
    name: str, policy: Policy, schedules: Mapping[str, Schedule], spans: Mapping[str, list[Span]]
) -> list[Hole]:
    """A policy's moments with no level reaching anyone, then each level's other moments with
    nobody (a moment of the first kind is said once, as the policy's)."""
    found: list[Hole] = []
    levels = [_level(level.targets, schedules, spans) for level in policy.levels]
    everywhere: list[Span] = []
    known = [level for level in levels if level is not None]
    if known and len(known) == len(levels):
        everywhere = known[0][0]
        for empty, _ in known[1:]:
            everywhere = _intersect(everywhere, empty)
        zone = schedules[known[0][1][0]].zone
        names = list(dict.fromkeys(n for _, some in known for n in some))
        why = "no level reaches anyone: " + _nobody(names)
        found += [Hole(f"policies.{name}", s, e, zone, why, "policy") for s, e in everywhere]
    for i, level in enumerate(levels):
        if level is None:
            continue
        empty, names = level
        zone = schedules[names[0]].zone
        where = f"policies.{name}.levels[{i}]"
        found += [
            Hole(where, s, e, zone, _nobody(names), "level")
            for s, e in _subtract(empty, everywhere)
        ]
    return found


def _level(
    targets: Iterable[Target], schedules: Mapping[str, Schedule], spans: Mapping[str, list[Span]]
) -> tuple[list[Span], list[str]] | None:
    """When every target of a level is empty at once, and its schedules; None if it always
    reaches somebody (a target that is not a schedule)."""
    names = []
    for target in targets:
        if target.channel != "schedule" or target.address not in schedules:
            return None  # reaches somebody whatever the schedules say
        names.append(target.address)
    if not names:
        return None
    common = spans[names[0]]
    for other in names[1:]:
        common = _intersect(common, spans[other])
    return common, list(dict.fromkeys(names))


def _nobody(names: Sequence[str]) -> str:
    shown = " and ".join(f"schedule:{n}" for n in names)
    return shown + (" has nobody" if len(names) == 1 else " all have nobody")


def coverage(
    schedules: Mapping[str, Schedule],
    policies: Mapping[str, Policy],
    start: float,
    end: float,
    overrides: Mapping[str, Sequence[Override]] | None = None,
    budget: Budget | None = None,
) -> Coverage:
    """`holes` and their `summarise` (each boundary of a schedule a step of `budget`)."""
    found = holes(schedules, policies, start, end, overrides, budget)
    return Coverage(start, end, tuple(found), tuple(summarise(found, start, end)))


# The summary ----------------------------------------------------------------------------------


def summarise(found: Sequence[Hole], start: float, end: float) -> list[Finding]:
    """A line for each place with gaps, most severe kind first, then earliest first."""
    places: dict[tuple[Kind, str], list[Hole]] = {}
    for hole in found:
        places.setdefault((hole.kind, hole.where), []).append(hole)
    findings = [
        _finding(kind, where, sorted(group, key=lambda h: h.start), start, end)
        for (kind, where), group in places.items()
    ]
    return sorted(findings, key=lambda f: (KINDS.index(f.kind), f.first, f.where))


def _finding(kind: Kind, where: str, group: list[Hole], start: float, end: float) -> Finding:
    first = group[0]
    count = len(group)
    times = "once" if count == 1 else f"{count} times"
    weeks = max(1, round((end - start) / WEEK))
    span = f"in the next {weeks} week{'s' if weeks != 1 else ''}"
    shape = f"{_shapes(group, start, end)}, {first.zone}"
    why = f" ({first.why})" if first.why else ""
    if kind == "policy":
        text = (
            f"{where}: NO LEVEL REACHES ANYONE {times} {span}: {shape}{why}: an incident then"
            " pages nobody at all"
        )
    elif kind == "level":
        text = (
            f"{where}: nobody reachable {times} {span}: {shape}{why}; the policy's next level"
            " is paged at once then"
        )
    elif kind == "schedule":
        text = (
            f"{where}: nobody on call {times} {span}: {shape} (if its gaps are meant, say so:"
            ' gaps = "expected")'
        )
    else:
        text = f'{where}: nobody on call {times} {span}, as meant (gaps = "expected"): {shape}'
    return Finding(kind, where, count, first.start, text)


@attrs.frozen
class _Shape:
    """Gaps that start and end at the same times of day, `days` apart."""

    begins: dt.time
    ends: dt.time
    days: int
    holes: list[Hole] = attrs.field(factory=list, eq=False)
    weekdays: set[int] = attrs.field(factory=set, eq=False)

    @property
    def last_days(self) -> set[int]:
        """The weekdays its gaps end on."""
        return {(day + self.days) % 7 for day in self.weekdays}

    @property
    def longest(self) -> float:
        return max(h.end - h.start for h in self.holes)


def _shapes(group: list[Hole], start: float, end: float) -> str:
    """The gaps of one place in words: each shape of gap ("every Mon-Fri 17:00 until 09:00 the
    next day (100 times, ...)"), or the one window itself; a gap cut by the span's start or end
    is counted with the shape it would have."""
    zone = group[0].zone
    shapes: dict[tuple[dt.time, dt.time, int], _Shape] = {}
    cut: list[Hole] = []
    for hole in group:
        if hole.start <= start or hole.end >= end:
            cut.append(hole)
            continue
        a, b = wall(hole.start, zone), wall(hole.end, zone)
        key = (a.time(), b.time(), (b.date() - a.date()).days)
        shape = shapes.setdefault(key, _Shape(*key))
        shape.holes.append(hole)
        shape.weekdays.add(a.weekday())
    alone: list[Hole] = []
    for hole in cut:
        a, b = wall(hole.start, zone), wall(hole.end, zone)
        begun = hole.start <= start < hole.end < end  # cut at the span's start
        fits = [
            shape
            for shape in shapes.values()
            if hole.end - hole.start <= shape.longest + 3600  # (an hour more: a clock change)
            and (
                (begun and shape.ends == b.time() and b.weekday() in shape.last_days)
                or (not begun and shape.begins == a.time() and a.weekday() in shape.weekdays)
            )
        ]
        if fits:
            fits[0].holes.append(hole)
        else:
            alone.append(hole)
    parts: list[tuple[float, str]] = []
    for shape in shapes.values():
        if len(shape.holes) == 1 and len(shape.weekdays) == 1:
            alone.append(shape.holes[0])
            continue
        shape.holes.sort(key=lambda h: h.start)
        first, last = shape.holes[0], shape.holes[-1]
        text = (
            f"{_every(shape.weekdays)} {shape.begins:%H:%M} until {_until(shape)}"
            f" ({len(shape.holes)} times, {_day(first.start, zone)} to {_day(last.start, zone)})"
        )
        parts.append((first.start, text))
    for hole in alone:
        parts.append(
            (hole.start, f"from {when_text(hole.start, zone)} until {when_text(hole.end, zone)}")
        )
    parts.sort()
    shown = [text for _, text in parts[:MAX_GROUPS]]
    if len(parts) > MAX_GROUPS:
        left = len(parts) - MAX_GROUPS
        shown.append(f"and {left} more shape{'s' if left != 1 else ''} of gap")
    return "; ".join(shown)


def _every(weekdays: set[int]) -> str:
    """`every day`, `every Mon-Thu`, `every Sat-Mon`, `every Fri`, `every Mon, Wed, Fri`."""
    if len(weekdays) == 7:
        return "every day"
    days = sorted(weekdays)
    if len(days) >= 3:
        for first in days:  # a run of days, perhaps across Sunday
            run = [(first + i) % 7 for i in range(len(days))]
            if set(run) == weekdays:
                return f"every {_DAYS[run[0]]}-{_DAYS[run[-1]]}"
    return "every " + ", ".join(_DAYS[d] for d in days)


def _until(shape: _Shape) -> str:
    if shape.days == 0:
        return f"{shape.ends:%H:%M}"
    if shape.days == 1:
        return f"{shape.ends:%H:%M} the next day"
    if shape.days < 7 and len(shape.weekdays) == 1:
        (day,) = shape.weekdays
        return f"{_DAYS[(day + shape.days) % 7]} {shape.ends:%H:%M}"
    return f"{shape.ends:%H:%M} {shape.days} days later"


def _day(t: float, zone: dt.tzinfo) -> str:
    return f"{dt.datetime.fromtimestamp(round(t), zone):%a %Y-%m-%d}"
