"""The schedule ops of the socket (and of REST, which serves them through the same code):
`override`, `overrides`, `override_remove` and `oncall`.

Times go out in each schedule's own zone, as ISO 8601 with the offset (`2024-05-01T09:00:00+01:00`)
so a reader anywhere can convert them; `pager` also shows them in the reader's zone.

Each op is served for someone: `who` (the socket's user, `integration NAME` over HTTP), recorded
as who made or removed an override; and `allowed`, when given (a REST integration restricted to
some services), says which schedules' overrides they may see and change (`reach`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Iterable, Mapping
from typing import Any, Final

from pager.budget import Budget
from pager.domain import Policy
from pager.people import Directory
from pager.protocol import Request, error_reply, ok_reply
from pager.schedules import Override, Schedule, upcoming
from pagerd.engine.compute import CannotCompute
from pagerd.engine.oncall import Allowed, Refused, Rota, ignored_because
from pagerd.storage.port import Removal

DEFAULT_NEXT: Final = 3
HORIZON: Final = 26 * 7 * 86400.0
"""How far ahead `oncall` looks for hand-offs: past it, `until` is this `horizon`, no hand-off."""


def local_iso(t: float, zone: dt.tzinfo) -> str:
    """Instant `t` on `zone`'s wall clock, with its offset, to the second."""
    return dt.datetime.fromtimestamp(round(t), zone).isoformat()


def override_fields(
    o: Override, schedule: Schedule | None, people: Container[str] | None = None
) -> dict[str, Any]:
    """An override as the replies show it: its fields, who made it (`made_by`), and `ignored`,
    why it is not used (its person is no longer in `[people]`), null when it is."""
    zone = schedule.zone if schedule is not None else dt.UTC
    return {
        "id": o.id,
        "schedule": o.schedule,
        "by": o.by,
        "for": o.for_,
        "from": local_iso(o.start, zone),
        "until": local_iso(o.end, zone),
        "made_by": o.made_by,
        "ignored": None if people is None else ignored_because(o, people),
    }


def _removal_fields(r: Removal, schedule: Schedule | None) -> dict[str, Any]:
    zone = schedule.zone if schedule is not None else dt.UTC
    return {
        **override_fields(r.override, schedule),
        "removed_by": r.by,
        "removed_at": local_iso(r.at, zone),
    }


def reach(
    services: Iterable[str] | None,
    configured: Mapping[str, str],
    policies: Mapping[str, Policy],
) -> Allowed | None:
    """Whose overrides an integration restricted to `services` may see and change (None: not
    restricted, any schedule's). A schedule is in its reach when some service pages it (a
    `schedule:` target in any level of the service's policy) and every service that pages it
    is one of `services`: changing who is on call there changes who is paged for those
    services only. A schedule no policy pages is nobody's reach (a reload could make it page
    any service): only an unrestricted key, or the socket, changes it."""
    if services is None:
        return None
    mine = frozenset(services)
    paging: dict[str, set[str]] = {}
    for service, policy_name in configured.items():
        policy = policies.get(policy_name)
        for level in policy.levels if policy is not None else ():
            for target in level.targets:
                if target.channel == "schedule":
                    paging.setdefault(target.address, set()).add(service)

    def allowed(schedule: str) -> str | None:
        paged = paging.get(schedule)
        if not paged:
            return (
                f"schedule {schedule!r} pages no service: only an integration not restricted"
                " to some services (or the socket) may change or read its overrides"
            )
        outside = sorted(paged - mine)
        if outside:
            shown = ", ".join(repr(s) for s in outside[:5]) + (" ..." if len(outside) > 5 else "")
            return (
                f"schedule {schedule!r} also pages {shown}, which this integration may not send"
                " to (its services): it may not change or read that schedule's overrides"
            )
        return None

    return allowed


async def serve(
    request: Request, rota: Rota, who: str | None = None, allowed: Allowed | None = None
) -> tuple[bytes, str]:
    """One schedule op's reply line and result, for `who`, within `allowed` if given."""
    try:
        if request.op == "oncall":
            return await _serve_now(request, rota, allowed)
        return await _change(request, rota, who, allowed)
    except (Refused, CannotCompute) as refused:
        return error_reply(refused.code, refused.message), refused.code


def _check(name: str, rota: Rota, allowed: Allowed | None) -> Schedule:
    """The schedule `name`, if it is configured and within `allowed`; `Refused` otherwise."""
    schedule = rota.directory.schedules.get(name)
    if schedule is None:
        raise Refused("unknown_schedule", f"no schedule named {name!r} is configured")
    if allowed is not None and (why := allowed(name)) is not None:
        raise Refused("forbidden", why)
    return schedule


async def _change(
    request: Request, rota: Rota, who: str | None, allowed: Allowed | None
) -> tuple[bytes, str]:
    schedules, people = rota.directory.schedules, rota.directory.people
    if request.op == "override":
        assert request.schedule and request.by and request.starts_at is not None
        assert request.ends_at is not None  # the protocol requires them
        if request.schedule in schedules:
            _check(request.schedule, rota, allowed)
        added = await rota.add(
            request.schedule, request.by, request.for_, request.starts_at, request.ends_at, who
        )
        shown = override_fields(added, schedules.get(added.schedule), people)
        return ok_reply(override=shown), "ok"
    if request.op == "override_remove":
        assert request.id is not None
        removed = await rota.remove(request.id, who, allowed)
        shown = override_fields(removed, schedules.get(removed.schedule), people)
        return ok_reply(removed=shown, removed_by=who), "ok"
    assert request.op == "overrides", request.op
    name = request.schedule
    if name is None:  # every schedule's, by schedule then id (a removed schedule's too: unused)
        every = [
            override_fields(o, schedules.get(group), people)
            for group in sorted(rota.scheduled())
            if allowed is None or allowed(group) is None  # a restricted key: its reach's only
            for o in rota.overrides(group)
        ]
        return ok_reply(overrides=every), "ok"
    schedule = _check(name, rota, allowed)
    listed = [override_fields(o, schedule, people) for o in rota.overrides(name)]
    gone = [_removal_fields(r, schedule) for r in await rota.removed(name)]
    return ok_reply(
        schedule=name, timezone=str(schedule.zone), overrides=listed, removed=gone
    ), "ok"


async def _serve_now(request: Request, rota: Rota, allowed: Allowed | None) -> tuple[bytes, str]:
    directory = rota.directory
    at = rota.wall_now() if request.at is None else request.at
    count = DEFAULT_NEXT if request.next is None else request.next
    if request.schedule is not None:
        _check(request.schedule, rota, allowed)
        names = [request.schedule]
    else:
        names = [n for n in sorted(directory.schedules) if allowed is None or not allowed(n)]

    def look(budget: Budget) -> list[dict[str, Any]]:
        # Off the loop (`Rota.compute`): up to half a year ahead for each schedule.
        return [_on_call(directory, name, at, count, budget) for name in names]

    what = f"who is on call in {request.schedule or 'every schedule'} and the next {count}"
    found = await rota.compute(what, look, scale=len(names))
    return ok_reply(schedules=found), "ok"


def _on_call(
    directory: Directory, name: str, at: float, count: int, budget: Budget
) -> dict[str, Any]:
    schedule = directory.schedules[name]
    overrides = directory.overrides.get(name, ())
    segments = upcoming(schedule, at, count, overrides, HORIZON, budget)
    now = segments[0] if segments else None
    return {
        "schedule": name,
        "timezone": str(schedule.zone),
        "at": local_iso(at, schedule.zone),
        "on_call": None if now is None else now.person,
        "until": None if now is None else local_iso(now.end, schedule.zone),
        # Where the search stopped: an `until` (or a last `next`) ending there is no hand-off,
        # only as far as pagerd looked.
        "horizon": local_iso(at + HORIZON, schedule.zone),
        "next": [
            {
                "from": local_iso(s.start, schedule.zone),
                "until": local_iso(s.end, schedule.zone),
                "person": s.person,
            }
            for s in segments[1:]
        ],
    }
