"""The schedule ops of the socket (and of REST, which serves them through the socket's reads):
`override`, `overrides`, `override_remove` and `oncall`.

Times go out in each schedule's own zone, as ISO 8601 with the offset (`2024-05-01T09:00:00+01:00`)
so a reader anywhere can convert them; `pager` also shows them in the reader's zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from pager.budget import Budget
from pager.people import Directory
from pager.protocol import Request, error_reply, ok_reply
from pager.schedules import Override, Schedule, upcoming
from pagerd.engine.compute import CannotCompute
from pagerd.engine.oncall import Refused, Rota

DEFAULT_NEXT: Final = 3
HORIZON: Final = 26 * 7 * 86400.0
"""How far ahead `oncall` looks for hand-offs: past it, `until` is this `horizon`, no hand-off."""


def local_iso(t: float, zone: dt.tzinfo) -> str:
    """Instant `t` on `zone`'s wall clock, with its offset, to the second."""
    return dt.datetime.fromtimestamp(round(t), zone).isoformat()


def override_fields(o: Override, schedule: Schedule | None) -> dict[str, Any]:
    zone = schedule.zone if schedule is not None else dt.UTC
    return {
        "id": o.id,
        "schedule": o.schedule,
        "by": o.by,
        "for": o.for_,
        "from": local_iso(o.start, zone),
        "until": local_iso(o.end, zone),
    }


async def serve(request: Request, rota: Rota) -> tuple[bytes, str]:
    """One schedule op's reply line and result."""
    try:
        if request.op == "oncall":
            return await _serve_now(request, rota)
        return await _change(request, rota)
    except (Refused, CannotCompute) as refused:
        return error_reply(refused.code, refused.message), refused.code


async def _change(request: Request, rota: Rota) -> tuple[bytes, str]:
    schedules = rota.directory.schedules
    if request.op == "override":
        assert request.schedule and request.by and request.starts_at is not None
        assert request.ends_at is not None  # the protocol requires them
        added = await rota.add(
            request.schedule, request.by, request.for_, request.starts_at, request.ends_at
        )
        return ok_reply(override=override_fields(added, schedules.get(added.schedule))), "ok"
    if request.op == "override_remove":
        assert request.id is not None
        removed = await rota.remove(request.id)
        return ok_reply(removed=override_fields(removed, schedules.get(removed.schedule))), "ok"
    assert request.op == "overrides", request.op
    name = request.schedule
    if name is None:  # every schedule's, by schedule then id (a removed schedule's too: unused)
        every = [
            override_fields(o, schedules.get(group))
            for group in sorted(rota.scheduled())
            for o in rota.overrides(group)
        ]
        return ok_reply(overrides=every), "ok"
    schedule = schedules.get(name)
    if schedule is None:
        raise Refused("unknown_schedule", f"no schedule named {name!r} is configured")
    listed = [override_fields(o, schedule) for o in rota.overrides(name)]
    return ok_reply(schedule=name, timezone=str(schedule.zone), overrides=listed), "ok"


async def _serve_now(request: Request, rota: Rota) -> tuple[bytes, str]:
    directory = rota.directory
    at = rota.wall_now() if request.at is None else request.at
    count = DEFAULT_NEXT if request.next is None else request.next
    if request.schedule is not None:
        if request.schedule not in directory.schedules:
            raise Refused(
                "unknown_schedule", f"no schedule named {request.schedule!r} is configured"
            )
        names = [request.schedule]
    else:
        names = sorted(directory.schedules)

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
