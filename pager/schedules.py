"""Who is on call: rotations, layers, overrides, and the shifts and gaps they make.

A schedule has a time zone and one or more layers. A layer is a rotation (people in order, a
shift of N hours, days or weeks, handed off at the wall-clock time of its `start`), optionally
restricted to weekly windows (business hours; one layer per region for follow-the-sun). Then:

- **Hand-offs are on the wall clock.** Hand-off k is at `start + k * shift` as the zone's wall
  clock shows it, turned into an instant by `pager.weekly.instant` (the first occurrence of a
  time shown twice; the moment the clocks jump past one never shown). So a weekly hand-off at
  09:00 stays at 09:00 local across the clock changes, and the shift that spans one is an hour
  shorter or longer. Before its `start` a rotation covers nothing.
- **Layer precedence: the last layer wins where it covers.** At an instant, the on-call person
  is the one of the last layer (in the config's order) that covers it: its rotation has started
  and the instant is inside its restrictions, if it has any. So a base layer with an evening
  layer after it means the evening layer's person in the evening, the base's otherwise (as in
  PagerDuty). No layer covering means nobody: a gap.
- **Overrides come last, in the order they were made.** An override from..until makes `by` on
  call in place of `for` where `for` would be on call, or in place of whoever is on call
  (nobody included: an override without `for` fills a gap) where `for` is not given. A later
  override applies on top of an earlier one: `for` matches whoever the rotation or an earlier
  override put on call there, so of two overrides for alice the later wins where they overlap
  (bob for alice 09-17, then carol for alice 12-20: bob 09-12, carol 12-20), and an override
  for bob takes the shift an earlier one gave him.

Everything is pure: instants are seconds since the epoch, zones are `tzinfo` objects passed in.
`on_call` answers for one instant; `segments` for a span, from which `shifts` and `gaps` come,
so the shifts, the gaps and the one-instant answer cannot disagree (a property test holds them
equal, and against a slow model of the same rules).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import attrs

from pager.weekly import Weekly, instant, wall

Unit = Literal["hours", "days", "weeks"]
UNITS: Final[dict[str, Unit]] = {"h": "hours", "d": "days", "w": "weeks"}


def parse_shift(text: str) -> tuple[int, Unit]:
    """`"12h"`, `"1d"`, `"2w"` -> (12, "hours") ...; a `ValueError` says what is wrong."""
    number, unit = text[:-1], text[-1:]
    if unit not in UNITS or not number.isascii() or not number.isdigit():
        raise ValueError(f'expected a shift length like "12h", "1d" or "1w", got {text!r}')
    count = int(number)
    if not 1 <= count <= 9999:
        raise ValueError(f"{text!r}: a shift is 1 to 9999 {UNITS[unit]} long")
    return count, UNITS[unit]


@attrs.frozen
class Rotation:
    """People taking turns: `people[k % len(people)]` from hand-off k to hand-off k + 1.

    `start` is hand-off 0 on the zone's wall clock (naive): its time of day is the hand-off
    time. `every` `unit`s is the shift length, counted on the wall clock."""

    people: tuple[str, ...]
    start: dt.datetime
    every: int = 1
    unit: Unit = "weeks"

    @property
    def step(self) -> dt.timedelta:
        if self.unit == "hours":
            return dt.timedelta(hours=self.every)
        return dt.timedelta(days=self.every * (7 if self.unit == "weeks" else 1))

    def handoff(self, k: int, zone: dt.tzinfo) -> float:
        """When hand-off k happens (k may be past any date a datetime holds: +inf then)."""
        try:
            return instant(self.start + k * self.step, zone)
        except OverflowError:
            return math.inf

    def turn(self, t: float, zone: dt.tzinfo) -> int | None:
        """The hand-off k that `t` follows (hand-off k ≤ t < hand-off k + 1), None before the
        first. Estimated on the wall clock, then moved to where the instants say: a fold or a
        gap moves it by one at most."""
        if t < self.handoff(0, zone):
            return None
        k = max(0, (wall(t, zone) - self.start) // self.step)
        while self.handoff(k + 1, zone) <= t:
            k += 1
        while k > 0 and self.handoff(k, zone) > t:
            k -= 1
        return k

    def person(self, k: int) -> str:
        return self.people[k % len(self.people)]


@attrs.frozen
class Layer:
    """A rotation, on call only inside `restrict` when given (business hours, one region's
    part of the day)."""

    rotation: Rotation
    restrict: Weekly | None = None
    name: str = ""


@attrs.frozen
class Schedule:
    name: str
    zone: dt.tzinfo
    layers: tuple[Layer, ...]
    expected_gaps: bool = False
    """Its gaps are meant (business hours, one region of a follow-the-sun: `gaps = "expected"`):
    not reported on their own (`pager.coverage`), only when they leave a level empty."""

    @property
    def people(self) -> frozenset[str]:
        return frozenset(p for layer in self.layers for p in layer.rotation.people)


@attrs.frozen
class Override:
    """`by` on call instead of `for_` (instead of whoever, nobody included, if None) from
    `start` until `end` (instants). `id` orders them: a later one applies over an earlier."""

    id: int
    schedule: str
    by: str
    for_: str | None
    start: float
    end: float
    made_by: str | None = None
    """Who made it (the socket's user, an HTTP integration), for the record only."""


@attrs.frozen
class Segment:
    """[start, end) with `person` on call throughout (None: nobody)."""

    start: float
    end: float
    person: str | None


def base_on_call(schedule: Schedule, t: float) -> str | None:
    """Who the layers put on call at `t`, before overrides: the last layer covering it."""
    for layer in reversed(schedule.layers):
        if layer.restrict is not None and not layer.restrict.covers(t):
            continue
        k = layer.rotation.turn(t, schedule.zone)
        if k is not None:
            return layer.rotation.person(k)
    return None


def stand_ins(who: str | None, t: float, overrides: Iterable[Override]) -> list[str | None]:
    """Who would be on call at `t`, in turn: `who` (the layers' person), then each override in
    force that takes over (by id), the last one the person on call. An override `for` X takes
    over wherever X is in that chain so far: X is on call there but for earlier overrides."""
    chain = [who]
    for o in sorted(overrides, key=lambda o: o.id):
        if o.start <= t < o.end and (o.for_ is None or o.for_ in chain):
            chain.append(o.by)
    return chain


def apply_overrides(who: str | None, t: float, overrides: Iterable[Override]) -> str | None:
    return stand_ins(who, t, overrides)[-1]


def on_call(schedule: Schedule, t: float, overrides: Iterable[Override] = ()) -> str | None:
    """The person on call at instant `t`, overrides applied; None if nobody is."""
    return apply_overrides(base_on_call(schedule, t), t, overrides)


def boundaries(
    schedule: Schedule, start: float, end: float, overrides: Iterable[Override] = ()
) -> list[float]:
    """Every instant in (start, end) where who is on call may change: hand-offs, the edges of
    restrictions and of overrides. Between two of them nothing changes."""
    found = {start, end}
    for layer in schedule.layers:
        rotation = layer.rotation
        k = rotation.turn(start, schedule.zone)
        k = 0 if k is None else k + 1
        while (at := rotation.handoff(k, schedule.zone)) < end:
            found.add(at)
            k += 1
        if layer.restrict is not None:
            for s, e in layer.restrict.intervals(start, end):
                found.update((s, e))
    for o in overrides:
        found.update((o.start, o.end))
    return sorted(t for t in found if start <= t <= end)


def segments(
    schedule: Schedule, start: float, end: float, overrides: Sequence[Override] = ()
) -> list[Segment]:
    """[start, end) cut where who is on call changes, each piece with its person (or None),
    neighbours with the same person joined. Covers the whole span, gaps included."""
    cuts = boundaries(schedule, start, end, overrides)
    found: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        if b <= a:
            continue
        who = on_call(schedule, a, overrides)
        if found and found[-1].person == who and found[-1].end == a:
            found[-1] = Segment(found[-1].start, b, who)
        else:
            found.append(Segment(a, b, who))
    return found


def shifts(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override] = (),
    person: str | None = None,
) -> list[Segment]:
    """The shifts in [start, end) (of `person` only, if given): where somebody is on call."""
    return [
        s
        for s in segments(schedule, start, end, overrides)
        if s.person is not None and (person is None or s.person == person)
    ]


def gaps(
    schedule: Schedule, start: float, end: float, overrides: Sequence[Override] = ()
) -> list[Segment]:
    """Where nobody is on call in [start, end): exactly the complement of `shifts`."""
    return [s for s in segments(schedule, start, end, overrides) if s.person is None]


def upcoming(
    schedule: Schedule,
    t: float,
    count: int,
    overrides: Sequence[Override] = (),
    horizon: float = 26 * 7 * 86400.0,
) -> list[Segment]:
    """The segment in force at `t` and the next `count` after it (hand-offs, to somebody or to
    nobody), looking at most `horizon` seconds ahead (the last one found may end there)."""
    span = 7 * 86400.0
    while True:
        found = segments(schedule, t, t + span, overrides)
        # One more than wanted: the last one found is cut at the span's end, not a hand-off.
        if len(found) > count + 1 or span >= horizon:
            return found[: count + 1]
        span = min(span * 4, horizon)


def override_problem(
    schedule: Schedule,
    by: str,
    for_: str | None,
    start: float,
    end: float,
    now: float,
    existing: Sequence[Override] = (),
    longest: float = 366 * 86400.0,
) -> str | None:
    """Why an override cannot be made, in words for the person making it; None if it can.
    People must exist (checked by the caller, who knows them)."""
    if end <= start:
        return "it ends before it starts (--until must be after --from)"
    if end <= now:
        return "it is over already (--until is in the past)"
    if end - start > longest:
        return f"it is longer than {longest / 86400:g} days"
    if for_ is not None and for_ == by:
        return f"{by} cannot stand in for themselves"
    if for_ is not None and not _ever_on_call(schedule, for_, max(start, now), end, existing):
        return (
            f"{for_} is not on call in {schedule.name} at any time in that window: the "
            "override would change nothing"
        )
    return None


def _ever_on_call(
    schedule: Schedule, person: str, start: float, end: float, overrides: Sequence[Override]
) -> bool:
    """Whether `person` would be on call at some moment of [start, end), but for overrides (by
    the layers, or by an earlier override: one more override for them then applies over it): a
    week at a time, so that the usual answer (soon) does not cost a year of hourly shifts."""
    week = 7 * 86400.0
    while start < end:
        stop = min(start + week, end)
        cuts = boundaries(schedule, start, stop, overrides)
        for a, b in itertools.pairwise(cuts):
            if b > a and person in stand_ins(base_on_call(schedule, a), a, overrides):
                return True
        start = stop
    return False
