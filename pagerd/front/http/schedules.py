"""Schedules over HTTP: the iCalendar feed of a schedule's shifts, and its overrides.

- `GET /schedules/NAME.ics` (a `rest` integration's key, as Bearer) and
  `GET /calendar/KEY/NAME.ics` (a `calendar` integration's key in the path: a calendar client
  sends no header, so the URL carries a key of its own, which gives nothing but the feeds):
  the shifts in force from 8 weeks ago to 8 weeks ahead, whole, overrides applied
  and marked (`pager.ical.feed_shifts`); `?person=alice` for one person's.
- `GET /schedules/NAME/overrides`, `POST /schedules/NAME/overrides` (`by`, `for`, `from`,
  `until` as the socket's `override` takes them), `DELETE /overrides/ID`, `GET /oncall` and
  `GET /oncall/NAME` (`?at=`, `?next=`): the socket's ops, served by the socket's own code,
  for the integration (recorded as who made or removed an override: `integration NAME`).

An integration restricted to some services (`services = [...]`) sees and changes only the
overrides (and the feed, and who is on call) of schedules in its reach: schedules that page
some service and only services it may send to (`pagerd.front.oncall.reach`); any other is
`403 forbidden`, with the reason, as a silence of a service outside its list is.

Served in the core (`in_core` in `pagerd/app.py`): the schedules, the people and the overrides
are the core's (`Services.rota`), and an override changes them. With front processes
(`http.workers`), a front checks the key and forwards the request whole. Each request takes a
token of its integration's rate (`LocalCore.admit`), as every request of the `Core` port does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from pager.budget import Budget
from pager.domain import is_service_name
from pager.ical import feed, feed_shifts
from pager.protocol import ProtocolError, Request, encode, parse_request
from pagerd.engine.compute import CannotCompute, Compute
from pagerd.engine.oncall import Allowed
from pagerd.front.http.asgi import Response
from pagerd.front.http.rest import answer, refuse
from pagerd.front.http.routes import Call, Route
from pagerd.front.oncall import reach

if TYPE_CHECKING:
    from pagerd.engine.actors import Services
    from pagerd.front.local import LocalCore

_decode = msgspec.json.Decoder().decode


class Schedules:
    def __init__(
        self,
        services: Services,
        core: LocalCore,
        serve: Callable[[Request, str, Allowed | None], Awaitable[tuple[bytes, str]]],
        compute: Compute,
    ) -> None:
        self._services = services
        self._core = core
        self._serve = serve
        self._compute = compute
        self._reach_of: object = None  # the config `_reach` was worked out for
        self._reach: dict[frozenset[str], Allowed] = {}

    def routes(self) -> list[Route]:
        reads = ("200", "400", "401", "403", "404", "422", "429", "503")
        changes = ("200", "400", "401", "403", "404", "409", "413", "422", "429", "503")
        return [
            Route("GET", "/schedules/{file}", self._feed, auth="rest",
                  doc={"summary": "A schedule's shifts as iCalendar: /schedules/NAME.ics"
                       " (?person=NAME for one person's)", "responses": reads}),
            Route("GET", "/calendar/{key}/{file}", self._feed, auth="calendar", key_in_path=True,
                  doc={"summary": "The same feed for a calendar client: a calendar"
                       " integration's key in the path",
                       "responses": ("200", "404", "422", "429", "503")}),
            Route("GET", "/schedules/{schedule}/overrides", self._list, auth="rest",
                  doc={"summary": "A schedule's overrides to come", "responses": reads}),
            Route("POST", "/schedules/{schedule}/overrides", self._add, auth="rest", body=True,
                  doc={"summary": "Add an override (by, for, from, until)", "op": "override",
                       "responses": changes}),
            Route("DELETE", "/overrides/{id}", self._remove, auth="rest",
                  doc={"summary": "Remove an override", "responses": reads}),
            Route("GET", "/oncall", self._oncall, auth="rest",
                  doc={"summary": "Who is on call on every schedule (?at=, ?next=)",
                       "responses": reads}),
            Route("GET", "/oncall/{schedule}", self._oncall, auth="rest",
                  doc={"summary": "Who is on call on one schedule (?at=, ?next=)",
                       "responses": reads}),
        ]  # fmt: skip

    async def _feed(self, call: Call) -> Response:
        self._admit(call)
        name, dot, extension = call.params["file"].rpartition(".")
        if not dot or extension != "ics" or not is_service_name(name):
            return refuse("not_found", "no such endpoint: a schedule's feed is NAME.ics")
        rota = self._services.rota
        schedule = None if rota is None else rota.directory.schedules.get(name)
        if rota is None or schedule is None:
            return refuse("unknown_schedule", f"no schedule named {name!r} is configured")
        allowed = self._allowed(call)
        if allowed is not None and (why := allowed(name)) is not None:
            return refuse("forbidden", why)
        person = call.arguments.get("person")
        if person is not None and person not in rota.directory.people:
            return refuse("unknown_person", "no such person is configured")
        now = float(round(rota.wall_now()))  # as DTSTAMP says it: a reader can recompute
        overrides = rota.directory.overrides.get(name, ())

        def make(budget: Budget) -> bytes:
            found = feed_shifts(schedule, now, overrides, person, budget)
            return feed(schedule, found, now, person, overrides, budget)

        # Sixteen weeks of hourly shifts take a while to compute: not on the event loop, nor in
        # the reload's thread (a calendar client held a reload up), but in the computations'
        # own, bounded: calendar clients never hold up paging or a reload.
        try:
            body = await self._compute(f"the calendar of {name}", make)
        except CannotCompute as exc:
            return refuse(exc.code, exc.message)
        return Response(200, body, "text/calendar; charset=utf-8", (("cache-control", "no-store"),))

    async def _list(self, call: Call) -> Response:
        return await self._socket(call, {"op": "overrides", "schedule": call.params["schedule"]})

    async def _add(self, call: Call) -> Response:
        try:
            fields = _decode(call.body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return refuse("bad_request", "the body must be a JSON object")
        if not isinstance(fields, dict):
            return refuse("bad_request", "the body must be a JSON object")
        if "op" in fields or "schedule" in fields:
            return refuse("bad_request", 'the body takes no "op" or "schedule": the path says')
        return await self._socket(
            call, {"op": "override", "schedule": call.params["schedule"], **fields}
        )

    async def _remove(self, call: Call) -> Response:
        text = call.params["id"]
        if not text.isascii() or not text.isdigit() or len(text) > 15:
            return refuse("not_found", "no override with that id")
        return await self._socket(call, {"op": "override_remove", "id": int(text)})

    async def _oncall(self, call: Call) -> Response:
        fields: dict[str, Any] = {"op": "oncall"}
        if "schedule" in call.params:
            fields["schedule"] = call.params["schedule"]
        if "at" in call.arguments:
            fields["at"] = call.arguments["at"]
        if "next" in call.arguments:
            count = call.arguments["next"]
            if not count.isascii() or not count.isdigit() or len(count) > 3:
                return refuse("bad_request", '"next" must be a whole number from 0 to 50')
            fields["next"] = int(count)
        return await self._socket(call, fields)

    def _allowed(self, call: Call) -> Allowed | None:
        """The schedules `call`'s integration may see and change (None: any), worked out once
        a config for each restricted integration (a walk over every service's policy)."""
        integration = call.integration
        assert integration is not None  # every route takes a key
        if integration.services is None:
            return None
        config = self._services.config
        if config is not self._reach_of:
            self._reach_of, self._reach = config, {}
        found = self._reach.get(integration.services)
        if found is None:
            found = reach(integration.services, config.services, config.policies)
            assert found is not None  # restricted
            self._reach[integration.services] = found
        return found

    def _admit(self, call: Call) -> None:
        """Take a token of the integration's rate, or raise `OverRate` (answered 429 with
        `Retry-After`, nothing done)."""
        integration = call.integration
        assert integration is not None  # every route takes a key
        self._core.admit(integration.name)

    async def _socket(self, call: Call, fields: dict[str, Any]) -> Response:
        """The socket's op for `fields`, checked by the socket's own parser and served by its
        own code: the same refusals, with the same codes, as HTTP statuses."""
        self._admit(call)
        try:
            request = parse_request(encode(fields).rstrip(b"\n"))
        except ProtocolError as exc:
            return refuse(exc.code, exc.message)
        integration = call.integration
        assert integration is not None  # every route takes a key
        who = f"integration {integration.name}"
        return answer(*await self._serve(request, who, self._allowed(call)))
