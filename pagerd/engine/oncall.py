"""Who is on call, as the engine resolves it: the config's people and schedules, and the stored
overrides, held as one snapshot (`pager.people.Directory`) that every decision reads.

An override is committed to the store before it is answered or used, then put in the snapshot
at once: the next level notified, by any incident, already sees it. The overrides are bounded
(`MAX_OVERRIDES` per schedule) and those that ended are pruned (at start, and before each one
added). Their times are on the wall clock; decisions are in pagerd's frame, so the resolver
handed to `decide` adds the clock's offset (`Clock.offset`) before it asks who is on call.
"""

from __future__ import annotations

import logging
from typing import Final

import attrs
import trio

from pager.coverage import KINDS, Coverage
from pager.domain import Resolution, Resolver, Target
from pager.people import Directory
from pager.schedules import Override, override_problem
from pagerd.config import Config
from pagerd.engine.compute import CannotCompute, Compute
from pagerd.storage.offload import Offload
from pagerd.storage.port import Storage
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


def directory_of(config: Config, overrides: dict[str, tuple[Override, ...]]) -> Directory:
    return Directory(config.people, config.schedules, overrides)


class Rota:
    def __init__(
        self, config: Config, store: Storage, offload: Offload, clock: Clock, compute: Compute
    ) -> None:
        self._store = store
        # Questions about the schedules that may take long (an override's check, who is on
        # call next): off the loop, bounded.
        self.compute = compute
        self._offload = offload
        self._clock = clock
        self._overrides: dict[str, tuple[Override, ...]] = {}
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
        no longer has is kept, unused, until it ends)."""
        self.directory = directory_of(config, self._overrides)

    def _set(self, overrides: list[Override]) -> None:
        grouped: dict[str, list[Override]] = {}
        for o in sorted(overrides, key=lambda o: o.id):
            grouped.setdefault(o.schedule, []).append(o)
        self._overrides = {name: tuple(found) for name, found in grouped.items()}
        self.directory = attrs.evolve(self.directory, overrides=self._overrides)

    def all_overrides(self) -> list[Override]:
        """Every override stored (of every schedule, ended or not)."""
        return [o for group in self._overrides.values() for o in group]

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

    def resolver(self) -> Resolver:
        """Resolves a target at a time of pagerd's frame (decide's `now`), on the wall clock."""
        directory, offset = self.directory, self._clock.offset()

        def resolve(target: Target, at: float) -> Resolution:
            return directory.resolve(target, at + offset)

        return resolve

    def scheduled(self) -> list[str]:
        """The schedules that have overrides stored (a schedule the config no longer has, too)."""
        return list(self._overrides)

    def overrides(self, schedule: str) -> tuple[Override, ...]:
        """`schedule`'s overrides that have not ended, by id."""
        now = self._clock.wall_now()
        return tuple(o for o in self._overrides.get(schedule, ()) if o.end > now)

    async def add(
        self, schedule: str, by: str, for_: str | None, start: float, end: float
    ) -> Override:
        """Store a new override and use it from now on; `Refused` with the reason if it cannot
        be made (nothing is stored then)."""
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
            try:
                problem = await self.compute(
                    f"whether {for_ or 'anyone'} is on call in {schedule} from --from to --until",
                    lambda budget: override_problem(
                        found, by, for_, start, end, now, current, budget=budget
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
            new = Override(0, schedule, by, for_, start, end)
            await self._offload(lambda: self._store.prune_overrides(now))
            added = await self._offload(lambda: self._store.add_override(new, now))
            self._set(
                [o for group in self._overrides.values() for o in group if o.end >= now] + [added]
            )
            log.info(
                "override %d added schedule=%s by=%s for=%s",
                added.id,
                schedule,
                by,
                for_ or "anyone",
            )
            return added

    async def remove(self, id: int) -> Override:
        async with self._lock:
            removed = await self._offload(lambda: self._store.remove_override(id))
            if removed is None:
                raise Refused("not_found", f"no override with id {id}")
            self._set([o for group in self._overrides.values() for o in group if o.id != id])
            log.info("override %d removed schedule=%s", id, removed.schedule)
            return removed
