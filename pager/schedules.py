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
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal

import attrs

from pager.budget import Budget, spend
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
    return list(_cuts(schedule, start, end, tuple(overrides)))


def _cuts(
    schedule: Schedule, start: float, end: float, overrides: Sequence[Override]
) -> Iterator[float]:
    """`boundaries`, by time, each once, found as they are taken: one hand-off of each layer,
    one edge of each restriction at a time, so that a caller who stops early (the next
    hand-offs, anyone on call at all) pays only for what it took."""
    sources: list[Iterable[float]] = [(start, end)]
    for layer in schedule.layers:
        sources.append(_handoffs(layer.rotation, schedule.zone, start, end))
        if layer.restrict is not None:
            sources.append(_edges(layer.restrict, start, end))
    sources.append(sorted(t for o in overrides for t in (o.start, o.end)))
    last: float | None = None
    for t in heapq.merge(*sources):
        if t > end:
            break
        if t >= start and t != last:
            last = t
            yield t


def _handoffs(rotation: Rotation, zone: dt.tzinfo, start: float, end: float) -> Iterator[float]:
    """The rotation's hand-offs in (start, end), in order."""
    k = rotation.turn(start, zone)
    k = 0 if k is None else k + 1
    while (at := rotation.handoff(k, zone)) < end:
        yield at
        k += 1


def _edges(restrict: Weekly, start: float, end: float) -> Iterator[float]:
    """The starts and ends of `restrict.intervals(start, end)`, in order."""
    run: tuple[float, float] | None = None
    for s, e in restrict.spans(start, end):
        if e <= start:
            continue
        if s >= end:
            break
        s, e = max(s, start), min(e, end)
        if run is not None and s <= run[1]:
            run = (run[0], max(run[1], e))
            continue
        if run is not None:
            yield from run
        run = (s, e)
    if run is not None:
        yield from run


class _Turns:
    """Which hand-off of a rotation each instant follows, for instants taken in order: the
    hand-offs are worked out once each, as `Rotation.turn` would find them."""

    def __init__(self, rotation: Rotation, zone: dt.tzinfo, start: float) -> None:
        self._rotation = rotation
        self._zone = zone
        self._k = rotation.turn(start, zone)
        self._next = rotation.handoff(0 if self._k is None else self._k + 1, zone)

    def at(self, t: float) -> int | None:
        """`rotation.turn(t)`, for `t` no earlier than the last asked (or the start)."""
        while self._next <= t:
            self._k = 0 if self._k is None else self._k + 1
            self._next = self._rotation.handoff(self._k + 1, self._zone)
        return self._k


class _Covers:
    """Whether a restriction is in force at each instant (`Weekly.covers`), for instants taken
    in order: a walk along its merged occurrences, not a look at four days each time."""

    def __init__(self, restrict: Weekly, start: float, end: float) -> None:
        # Two days past the end: as far as `covers` would look for the last instant asked.
        self._runs = _runs(restrict.spans(start, end + 2 * 86400.0))
        self._run = next(self._runs, None)

    def at(self, t: float) -> bool:
        """`restrict.covers(t)`, for `t` no earlier than the last asked (or the start)."""
        while self._run is not None and self._run[1] <= t:
            self._run = next(self._runs, None)
        return self._run is not None and self._run[0] < t + 1e-3


def _runs(spans: Iterable[tuple[float, float]]) -> Iterator[tuple[float, float]]:
    """Occurrences by start, those that overlap or touch joined."""
    run: tuple[float, float] | None = None
    for s, e in spans:
        if run is not None and s <= run[1]:
            run = (run[0], max(run[1], e))
            continue
        if run is not None:
            yield run
        run = (s, e)
    if run is not None:
        yield run


def _steps(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override],
    budget: Budget | None,
) -> Iterator[tuple[float, float, list[str | None]]]:
    """Each piece [a, b) of [start, end) between two boundaries, with who would be on call
    there in turn (`stand_ins`: the layers' person, then each override that takes over): who
    the layers put on call is worked out once a boundary, each layer's hand-offs and
    restriction followed along, so that the work grows with the boundaries met, not with the
    layers' days worked out again at each. Each piece is a step of `budget`."""
    layers = [
        (
            layer.rotation,
            _Turns(layer.rotation, schedule.zone, start),
            None if layer.restrict is None else _Covers(layer.restrict, start, end),
        )
        for layer in reversed(schedule.layers)
    ]
    meeting = [o for o in overrides if o.end > start and o.start < end]
    cuts = _cuts(schedule, start, end, meeting)
    a = next(cuts, None)
    if a is None:  # an empty span
        return
    for b in cuts:
        spend(budget)
        base = None
        for rotation, turns, covers in layers:
            if covers is not None and not covers.at(a):
                continue
            k = turns.at(a)
            if k is not None:
                base = rotation.person(k)
                break
        yield a, b, stand_ins(base, a, [o for o in meeting if o.start <= a < o.end])
        a = b


def _pieces(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override],
    budget: Budget | None,
) -> Iterator[Segment]:
    """`segments`, each given as soon as the next begins (see `_steps`)."""
    run: Segment | None = None
    for a, b, chain in _steps(schedule, start, end, overrides, budget):
        who = chain[-1]
        if run is not None and run.person == who:
            run = Segment(run.start, b, who)
        else:
            if run is not None:
                yield run
            run = Segment(a, b, who)
    if run is not None:
        yield run


def segments(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override] = (),
    budget: Budget | None = None,
) -> list[Segment]:
    """[start, end) cut where who is on call changes, each piece with its person (or None),
    neighbours with the same person joined. Covers the whole span, gaps included. Each
    boundary looked at is a step of `budget` (`TooMuch` past it)."""
    return list(_pieces(schedule, start, end, overrides, budget))


def shifts(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override] = (),
    person: str | None = None,
    budget: Budget | None = None,
) -> list[Segment]:
    """The shifts in [start, end) (of `person` only, if given): where somebody is on call."""
    return [
        s
        for s in _pieces(schedule, start, end, overrides, budget)
        if s.person is not None and (person is None or s.person == person)
    ]


def gaps(
    schedule: Schedule,
    start: float,
    end: float,
    overrides: Sequence[Override] = (),
    budget: Budget | None = None,
) -> list[Segment]:
    """Where nobody is on call in [start, end): exactly the complement of `shifts`."""
    return [s for s in _pieces(schedule, start, end, overrides, budget) if s.person is None]


def upcoming(
    schedule: Schedule,
    t: float,
    count: int,
    overrides: Sequence[Override] = (),
    horizon: float = 26 * 7 * 86400.0,
    budget: Budget | None = None,
) -> list[Segment]:
    """The segment in force at `t` and the next `count` after it (hand-offs, to somebody or to
    nobody), looking at most `horizon` seconds ahead (the last one found may end there).

    Found by walking on from `t` until the one after the last wanted begins: the usual answer
    (the next hand-offs are soon) costs a few boundaries, whatever the horizon."""
    return list(itertools.islice(_pieces(schedule, t, t + horizon, overrides, budget), count + 1))


def override_problem(
    schedule: Schedule,
    by: str,
    for_: str | None,
    start: float,
    end: float,
    now: float,
    existing: Sequence[Override] = (),
    longest: float = 366 * 86400.0,
    budget: Budget | None = None,
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
    if for_ is not None and not _ever_on_call(
        schedule, for_, max(start, now), end, existing, budget
    ):
        return (
            f"{for_} is not on call in {schedule.name} at any time in that window: the "
            "override would change nothing"
        )
    return None


def _ever_on_call(
    schedule: Schedule,
    person: str,
    start: float,
    end: float,
    overrides: Sequence[Override],
    budget: Budget | None = None,
) -> bool:
    """Whether `person` would be on call at some moment of [start, end), but for overrides (by
    the layers, or by an earlier override: one more override for them then applies over it):
    walking on from `start` until they are, so that the usual answer (soon) does not cost a
    year of hourly shifts; and without a walk at all for somebody no layer has and no
    override puts on call."""
    if person not in schedule.people and all(o.by != person for o in overrides):
        return False
    return any(
        b > a and person in chain for a, b, chain in _steps(schedule, start, end, overrides, budget)
    )
