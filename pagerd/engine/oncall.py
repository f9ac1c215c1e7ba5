"""Who is on call, as the engine resolves it: the config's people and schedules, and the stored
overrides, held as one snapshot (`pager.people.Directory`) that every decision reads.

An override is committed to the store before it is answered or used, then put in the snapshot
at once: the next level notified, by any incident, already sees it. The overrides are bounded
(`MAX_OVERRIDES` per schedule) and those that ended are pruned (at start, and before each one
added). Their times are on the wall clock; decisions are in pagerd's frame, so the resolver
handed to `decide` adds the clock's offset (`Clock.offset`) before it asks who is on call.

Who made and who removed each override is stored with it and logged. An override whose `by` is
no longer in `[people]` (removed from the config since) is kept but not used: the snapshot
leaves it out, so the schedule resolves (and `oncall`, the feed and the gaps show it) as if it
were not there, and the rotation's person is paged; each time it would have applied, the
resolver logs it as an error and counts it (`pagerd_overrides_ignored_total`), and every start,
reload and `pagerd --check` reports it with its id (`ignored_overrides`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Final

import trio

from pager.coverage import KINDS, Coverage
from pager.domain import Resolution, Resolver, Target
from pager.people import Directory
from pager.schedules import Override, override_problem
from pager.timefmt import isoformat
from pagerd.config import Config
from pagerd.engine.compute import CannotCompute, Compute
from pagerd.operations.metrics import Metrics
from pagerd.storage.offload import Offload
from pagerd.storage.port import Removal, Storage
from pagerd.timing.clock import Clock

log = logging.getLogger("pagerd.oncall")

MAX_OVERRIDES: Final = 100
"""Overrides one schedule may have that have not ended: one more is refused (`too_many`)."""


class Refused(Exception):
    """An override that cannot be made or removed: `code` as the protocol has it, and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


MAX_REMOVED_LISTED: Final = 20
"""Removed overrides `overrides` lists, beside those in use: the latest removed."""

Allowed = Callable[[str], str | None]
"""Whether the one asking may change a schedule's overrides: None if so, else why not."""


def ignored_because(o: Override, people: Container[str]) -> str | None:
    """Why override `o` is not used, None if it is: the person it puts on call is not in
    `[people]` (removed from the config since it was made)."""
    if o.by not in people:
        return f"{o.by} is not in [people]"
    return None


def in_use(
    overrides: Mapping[str, tuple[Override, ...]], people: Container[str]
) -> dict[str, tuple[Override, ...]]:
    """`overrides` without those `ignored_because` leaves out."""
    return {
        name: tuple(o for o in group if ignored_because(o, people) is None)
        for name, group in overrides.items()
    }


def ignored_overrides(
    overrides: Iterable[Override], people: Container[str], schedules: Container[str], now: float
) -> list[tuple[Override, str]]:
    """The overrides of configured schedules, not ended at `now`, that are not used, and why:
    for `--check`, every start and reload to report, each with its id."""
    return [
        (o, why)
        for o in overrides
        if o.schedule in schedules
        and o.end > now
        and (why := ignored_because(o, people)) is not None
    ]


def directory_of(config: Config, overrides: dict[str, tuple[Override, ...]]) -> Directory:
    return Directory(config.people, config.schedules, in_use(overrides, config.people))


class Rota:
    def __init__(
        self,
        config: Config,
        store: Storage,
        offload: Offload,
        clock: Clock,
        compute: Compute,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        # Questions about the schedules that may take long (an override's check, who is on
        # call next): off the loop, bounded.
        self.compute = compute
        self._offload = offload
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._overrides: dict[str, tuple[Override, ...]] = {}
        self._config = config
        self.directory = directory_of(config, self._overrides)
        self._lock = trio.Lock()  # one change at a time: the bound is checked, then written
        now = clock.wall_now()
        self.coverage = Coverage(now, now)
        """The gaps found at the last start or reload (`pagerd.app`), for the metrics."""

    async def load(self) -> None:
        """At start: prune the overrides that ended, then read the rest (`StoreError` if the
        store cannot: the start fails, as for any other stored state)."""
        now = self._clock.wall_now()
        pruned = await self._offload(lambda: self._store.prune_overrides(now))
        if pruned:
            log.info("pruned %d overrides that had ended", pruned)
        stored = await self._offload(self._store.overrides)
        self._set(stored)

    def reconfigure(self, config: Config) -> None:
        """People and schedules from `config`; the overrides stay (one of a schedule the config
        no longer has is kept, unused, until it ends; one whose person the config no longer
        has, likewise, until that person is back or it ends)."""
        self._config = config
        self.directory = directory_of(config, self._overrides)

    def _set(self, overrides: list[Override]) -> None:
        grouped: dict[str, list[Override]] = {}
        for o in sorted(overrides, key=lambda o: o.id):
            grouped.setdefault(o.schedule, []).append(o)
        self._overrides = {name: tuple(found) for name, found in grouped.items()}
        self.directory = directory_of(self._config, self._overrides)

    def wall_now(self) -> float:
        return self._clock.wall_now()

    def gap_counts(self) -> dict[tuple[str, ...], float]:
        """Gaps by kind, as the last start or reload found them (`pagerd_gaps`)."""
        return {(kind,): float(self.coverage.count(kind)) for kind in KINDS}

    def next_level_gap(self) -> float:
        """Seconds until a level or a whole policy next reaches nobody (0: now; +inf: not in
        the weeks looked at), as the last start or reload found the gaps
        (`pagerd_next_level_gap_seconds`)."""
        return self.coverage.next_level_gap(self._clock.wall_now())

    def all_overrides(self) -> list[Override]:
        """Every override stored and not removed, those not used too, by schedule then id."""
        return [o for group in self._overrides.values() for o in group]

    def resolver(self, report: bool = False) -> Resolver:
        """Resolves a target at a time of pagerd's frame (decide's `now`), on the wall clock.
        With `report` (paging, not `simulate`), an override that would have applied to a
        `schedule:` target but is not used (`ignored_because`) is logged as an error and
        counted, each time."""
        directory, offset = self.directory, self._clock.offset()
        unused = {
            name: found
            for name, group in self._overrides.items()
            if (found := [o for o in group if ignored_because(o, directory.people)])
        }

        def resolve(target: Target, at: float) -> Resolution:
            resolution = directory.resolve(target, at + offset)
            if report and target.channel == "schedule" and target.address in unused:
                self._report_unused(unused[target.address], target, at + offset)
            return resolution

        return resolve

    def _report_unused(self, unused: list[Override], target: Target, at: float) -> None:
        for o in unused:
            if o.start <= at < o.end:
                self._metrics.overrides_ignored.inc()
                log.error(
                    "override ignored: override %d of %s would put %s on call, but %s; paged as"
                    " if it were not there (remove it: pager override remove %d)",
                    o.id, target, o.by, ignored_because(o, self.directory.people), o.id,
                )  # fmt: skip

    def scheduled(self) -> list[str]:
        """The schedules that have overrides stored (a schedule the config no longer has, too)."""
        return list(self._overrides)

    def overrides(self, schedule: str) -> tuple[Override, ...]:
        """`schedule`'s overrides that have not ended, by id (those not used too)."""
        now = self._clock.wall_now()
        return tuple(o for o in self._overrides.get(schedule, ()) if o.end > now)

    async def removed(self, schedule: str) -> list[Removal]:
        """`schedule`'s overrides removed that had not ended yet, the latest
        `MAX_REMOVED_LISTED`, with who removed them and when (from the store)."""
        now = self._clock.wall_now()
        return await self._offload(
            lambda: self._store.removed_overrides(schedule, now, MAX_REMOVED_LISTED)
        )

    async def add(
        self,
        schedule: str,
        by: str,
        for_: str | None,
        start: float,
        end: float,
        made_by: str | None = None,
    ) -> Override:
        """Store a new override (`made_by`: who asks, for the record) and use it from now on;
        `Refused` with the reason if it cannot be made (nothing is stored then)."""
        async with self._lock:
            directory = self.directory
            found = directory.schedules.get(schedule)
            if found is None:
                raise Refused("unknown_schedule", f"no schedule named {schedule!r} is configured")
            for who in (by, for_):
                if who is not None and who not in directory.people:
                    raise Refused("unknown_person", f"no person named {who!r} is configured")
            now = self._clock.wall_now()
            current = self.overrides(schedule)
            used = [o for o in current if ignored_because(o, directory.people) is None]
            try:
                problem = await self.compute(
                    f"whether {for_ or 'anyone'} is on call in {schedule} from --from to --until",
                    lambda budget: override_problem(
                        found, by, for_, start, end, now, used, budget=budget
                    ),
                )
            except CannotCompute as exc:
                raise Refused(exc.code, exc.message) from None
            if problem is not None:
                raise Refused("bad_request", f"override refused: {problem}")
            if len(current) >= MAX_OVERRIDES:
                raise Refused(
                    "too_many",
                    f"{schedule} has {len(current)} overrides to come, the most pagerd keeps: "
                    "remove some first (pager override remove ID)",
                )
            new = Override(0, schedule, by, for_, start, end, made_by)
            await self._offload(lambda: self._store.prune_overrides(now))
            added = await self._offload(lambda: self._store.add_override(new, now))
            self._set([o for o in self.all_overrides() if o.end >= now] + [added])
            log.info(
                "override %d added schedule=%s by=%s for=%s from=%s until=%s made_by=%r",
                added.id, schedule, by, for_ or "anyone", isoformat(start), isoformat(end),
                made_by,
            )  # fmt: skip
            return added

    async def remove(
        self, id: int, removed_by: str | None = None, allowed: Allowed | None = None
    ) -> Override:
        """Remove override `id` (`removed_by`: who asks, for the record); `Refused` if there is
        none, or if `allowed` says the one asking may not change its schedule's overrides."""
        async with self._lock:
            known = next((o for o in self.all_overrides() if o.id == id), None)
            if allowed is not None:
                # A restricted caller learns nothing of overrides it may not change: one it
                # does not know of, ended or of another schedule, is "not found" alike.
                why = None if known is None else allowed(known.schedule)
                if known is None:
                    raise Refused("not_found", f"no override with id {id}")
                if why is not None:
                    raise Refused("forbidden", why)
            now = self._clock.wall_now()
            removed = await self._offload(lambda: self._store.remove_override(id, removed_by, now))
            if removed is None:
                raise Refused("not_found", f"no override with id {id}")
            self._set([o for o in self.all_overrides() if o.id != id])
            log.info(
                "override %d removed schedule=%s by=%s for=%s made_by=%r removed_by=%r",
                id, removed.schedule, removed.by, removed.for_ or "anyone", removed.made_by,
                removed_by,
            )  # fmt: skip
            return removed
