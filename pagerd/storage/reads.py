"""What both adapters make of the rows they read: the port's records, the services' states at
start-up, a phone's next reply code. Each adapter keeps its own SQL (its dialect, its
placeholders) and gives its rows here in the column order named below, so that SQLite and
PostgreSQL cannot drift apart in what they answer. Nothing here runs a statement but through
the `Execute` an adapter hands in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from pager.domain import Incident, Monitor, Notify, ServiceState, Source, Started, Target
from pager.silences import Silence
from pagerd.storage.history import Execute
from pagerd.storage.port import (
    REPLY_CODE_COOL_DOWN,
    REPLY_CODES,
    Delivery,
    NoReply,
    ReplyCode,
    Undelivered,
)

UNDELIVERED_COLUMNS: Final = (
    "service, incident, round, level, channel, address, message, opened_at, created_at,"
    " attempts, next_attempt_at, origin, step, via"
)
"""A notification's columns that `undelivered` reads, in its order."""

DELIVERY_COLUMNS: Final = (
    "id, channel, address, round, level, state, attempts, last_error, provider_id, sent_at,"
    " next_attempt_at, not_before - created_at"
)
"""A notification's columns (and its delay) that `delivery` reads, in its order."""


def undelivered(row: Sequence[Any]) -> Undelivered:
    """A notification still to deliver, from its `UNDELIVERED_COLUMNS`."""
    return Undelivered(
        Notify(
            service=row[0],
            incident=row[1],
            round=row[2],
            level=row[3],
            target=Target(row[4], row[5]),
            message=row[6],
            opened_at=row[7],
            origin=row[11],
            step=row[12],
            via=row[13] or "",
        ),
        created_at=row[8],
        attempts=row[9],
        next_attempt_at=row[10],
    )


def delivery(row: Sequence[Any]) -> Delivery:
    """A notification with its delivery state, from its `DELIVERY_COLUMNS`."""
    return Delivery(
        id=row[0],
        channel=row[1],
        target=str(Target(row[1], row[2])),
        round=row[3],
        level=row[4],
        state=row[5],
        attempts=row[6],
        last_error=row[7],
        provider_id=row[8],
        sent_at=row[9],
        due_at=row[10] if row[5] in ("pending", "retrying") else None,
        delay=row[11],
    )


@attrs.frozen
class StateQueries:
    """One adapter's statements for `load_states`, in its own dialect, each with `{where}`
    where the condition of the rows' shards goes (its parameters: those `load_states` is
    given)."""

    incidents: str
    """(service, its highest incident number, then the open incident's columns in `Incident`'s
    order, NULL if none) of every service that has had an incident."""
    firing: str
    """(service, integration, key) of every source firing."""
    started: str
    """(service, integration, key, starts_at, resolved_at) of every alert start kept."""
    heartbeats: str
    """(service, interval, due_at, last_at) of every heartbeat monitor."""
    silences: str
    """(service, then a silence's columns in `Silence`'s order) of every active silence, by
    id."""


def load_states(
    execute: Execute, queries: StateQueries, where: str, of: Sequence[Any]
) -> dict[str, ServiceState]:
    """Every service that has had an incident or has a heartbeat monitor, with its open
    incident, what fires for it, its alert starts, its monitor and its silences. One pass,
    objects built once: a restart with 100,000 open incidents waits on this."""
    states: dict[str, ServiceState] = {}
    for row in execute(queries.incidents.format(where=where), of):
        incident = None
        if row[2] is not None:
            incident = Incident(
                row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                bool(row[11]), bool(row[12]), bool(row[13]), row[14], row[15], bool(row[16]),
            )  # fmt: skip
        states[row[0]] = ServiceState(row[0], row[1], incident)
    firing: dict[str, set[Source]] = {}
    for service, integration, key in execute(queries.firing.format(where=where), of):
        firing.setdefault(service, set()).add(Source(integration, key))
    for service, sources in firing.items():
        state = states.get(service)
        if state is not None and state.incident is not None:  # only an open one fires
            states[service] = attrs.evolve(state, firing=frozenset(sources))
    started: dict[str, dict[Source, Started]] = {}
    for service, integration, key, starts_at, resolved_at in execute(
        queries.started.format(where=where), of
    ):
        started.setdefault(service, {})[Source(integration, key)] = Started(starts_at, resolved_at)
    for service, seen in started.items():
        state = states.get(service) or ServiceState(service)
        # What fires is kept only with the open incident it fires for, as `firing` is.
        kept = {s: v for s, v in seen.items() if v.resolved_at is not None or s in state.firing}
        if kept:
            states[service] = attrs.evolve(state, started=kept)
    for service, interval, due_at, last_at in execute(queries.heartbeats.format(where=where), of):
        state = states.get(service) or ServiceState(service)
        states[service] = attrs.evolve(state, heartbeat=Monitor(interval, due_at, last_at))
    silences: dict[str, list[Silence]] = {}
    for service, *fields in execute(queries.silences.format(where=where), of):
        silences.setdefault(service, []).append(Silence(*fields))
    for service, found in silences.items():
        state = states.get(service) or ServiceState(service)
        states[service] = attrs.evolve(state, silences=tuple(found))
    return states


def next_reply_code(codes: Iterable[tuple[int, float | None]], at: float) -> int:
    """The code to give a phone an incident on (`Storage.reply_code`), from the (code, its
    incident's closed_at) of every code the phone has: the smallest that is neither held (its
    incident still open) nor resting (its incident closed within `REPLY_CODE_COOL_DOWN` before
    `at`; a pruned incident closed long ago, and is neither), unless that is over `REPLY_CODES`:
    then the resting one whose incident closed first, if any (it has rested most)."""
    held: set[int] = set()
    resting: dict[int, float] = {}
    for code, closed_at in codes:
        if closed_at is None:
            held.add(code)
        elif closed_at > at - REPLY_CODE_COOL_DOWN:
            resting[code] = closed_at
    taken = len(held) + len(resting)
    chosen = next(c for c in range(1, taken + 2) if c not in held and c not in resting)
    if chosen > REPLY_CODES and resting:
        chosen = min(resting, key=lambda c: (resting[c], c))
    return chosen


@attrs.frozen
class ReplyQueries:
    """One adapter's statements for `reply_to`, in its own dialect."""

    latest: str
    """(service, incident) of the code last sent to the phone (its address)."""
    of_code: str
    """(service, incident) of the phone's code (its address, the code)."""
    known: str
    """A row if the phone (its address) has had any code."""


def reply_to(
    execute: Execute, queries: ReplyQueries, address: str, code: int | None
) -> ReplyCode | NoReply:
    """The incident an SMS reply from `address` answers (`Storage.take_reply`, once the message
    is taken): the one of its `code`, or the phone's latest without one; else whether the phone
    has a code at all ("unknown_code") or never had one ("unknown_number")."""
    if code is None:
        found = list(execute(queries.latest, (address,)))
    else:
        found = list(execute(queries.of_code, (address, code)))
    if found:
        return ReplyCode(str(found[0][0]), int(found[0][1]))
    return "unknown_code" if list(execute(queries.known, (address,))) else "unknown_number"
