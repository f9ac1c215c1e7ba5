"""One incident's history as the `history` reply has it, made the same way by both adapters.

An incident's timeline comes from three sources: the events clients and timeouts made, the
notifications decided, and their delivery attempts (a few per target). Each adapter keeps its
own SQL for them (`Queries`: its placeholders, its row ids); what is read, how each source is
bounded and how the timeline is merged and elided is here, once, so that the two adapters
cannot drift apart in what an operator sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs

from pager.domain import Target, incident_id
from pagerd.storage.port import History, Pruned

HISTORY_HEAD: Final = 50
HISTORY_TAIL: Final = 200
"""Entries of an incident's timeline kept from its start and up to now; those between are
counted, not listed. With every entry at its largest (an alert of 4096 characters, each escaped
in 6 bytes of JSON), a `history` reply stays under 7 MB; a usual one is a few kB."""

Execute = Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]]
"""A statement run with its parameters, its rows given back (a connection's `execute`)."""


@attrs.frozen
class Queries:
    """One adapter's statements for `read`, in its own dialect. Each `select_*` has `{order}`
    where its sort direction goes ("ASC" or "DESC") and takes the source's key and a limit;
    each `count_*` takes the source's key and gives one row of one count."""

    incident: str
    """(opened_at, closed_at, message) of the incident (service, number)."""
    count_events: str
    select_events: str
    """(at, seq, op, detail, by, peer_uid, peer_user, peer_pid, integration, via) of the
    incident's events (service, number), by `seq`: the events_incident index's own order,
    whose `at` only grows within an incident."""
    count_decided: str
    select_decided: str
    """(created_at, seq, id, channel, address, round, level, via, not_before) of the
    notifications whose ids are in `notification_ids`, by (created_at, seq)."""
    count_attempts: str
    select_attempts: str
    """(at, row id, notification id, channel, address, round, level, outcome, provider_id,
    error) of the delivery attempts of those notifications, by (at, row id)."""


def notification_ids(service: str, incident: int) -> tuple[str, str]:
    """The ids of one incident's notifications: those starting "service#N/". "/" is followed
    by "0" in ASCII, so they are exactly the ids from "service#N/" up to "service#N0" in byte
    order (PostgreSQL's column has the collation "C" for it)."""
    prefix = f"{incident_id(service, incident)}/"
    return prefix, prefix[:-1] + "0"


def read(execute: Execute, queries: Queries, service: str, incident: int) -> History | None:
    """What happened to one incident, in order; None if there is no such one.

    At most `HISTORY_HEAD` entries from its start and `HISTORY_TAIL` up to now: a storm of
    alerts on one open incident is an event each (with a message of up to 4096 characters),
    and all of them made replies of hundreds of megabytes, read whole into memory by pagerd
    and by the client. What lies between is one `elided` entry: how many, from when to when.
    Each source is read from both ends only (its index's order, a `LIMIT` each), never whole:
    the first `HISTORY_HEAD` entries of the merged timeline are among the first `HISTORY_HEAD`
    of their own source, and likewise at the end. The caller gives `execute` on one snapshot
    where it has one, so that the sources agree with each other.
    """
    found = list(execute(queries.incident, (service, incident)))
    if not found:
        return None
    opened_at, closed_at, message = found[0]
    ids = notification_ids(service, incident)
    total = 0
    entries: list[tuple[float, int, int, dict[str, object]]] = []
    for kind, count_sql, select_sql, key in (
        (0, queries.count_events, queries.select_events, (service, incident)),
        (1, queries.count_decided, queries.select_decided, ids),
        (2, queries.count_attempts, queries.select_attempts, ids),
    ):
        count = sum(int(row[0]) for row in execute(count_sql, key))
        total += count
        for order, limit in ends(count):
            for at, seq, *fields in execute(select_sql.format(order=order), (*key, limit)):
                entries.append((at, kind, seq, entry(kind, fields)))
    if closed_at is not None:
        total += 1
        entries.append((closed_at, 3, 0, {"event": "closed"}))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    elided = total - HISTORY_HEAD - HISTORY_TAIL
    timeline = [(at, each) for at, _, _, each in entries]
    if elided > 0:
        marker: dict[str, object] = {
            "event": "elided",
            "count": elided,
            "until": timeline[-HISTORY_TAIL - 1][0],
        }
        first = timeline[HISTORY_HEAD][0]
        timeline = [*timeline[:HISTORY_HEAD], (first, marker), *timeline[-HISTORY_TAIL:]]
    return History(
        opened_at=opened_at,
        closed_at=closed_at,
        message=message,
        timeline=timeline,
        elided=max(elided, 0),
    )


def ends(count: int) -> list[tuple[str, int]]:
    """(order, limit) of the queries that read a source of `count` history entries: all of it,
    or one more than the timeline can keep from each end (the first and last left out say
    when the elided span starts and ends)."""
    if count <= HISTORY_HEAD + HISTORY_TAIL + 2:
        return [("ASC", count)] if count else []
    return [("ASC", HISTORY_HEAD + 1), ("DESC", HISTORY_TAIL + 1)]


def entry(kind: int, fields: Sequence[Any]) -> dict[str, object]:
    """One history entry as the `history` reply has it (but `at`), from a source's row (without
    its `at` and its order): an event (`kind` 0), a notification decided (1), an attempt (2)."""
    if kind == 0:
        op, detail, by, uid, user, pid, integration, via = fields
        event: dict[str, object] = {"event": op}
        if detail is not None:
            event["detail"] = detail
        if by is not None:
            event["by"] = by
        if uid is not None:
            event["peer"] = {"uid": uid, "user": user, "pid": pid}
        if integration is not None:
            event["integration"] = integration
        if via is not None:
            event["via"] = via
        return event
    due = None
    if kind == 1:
        *fields, via, due = fields
    nid, channel, address, round_, level, *attempt = fields
    notification: dict[str, object] = {
        "event": "notification" if kind == 1 else "delivery",
        "notification": nid,
        "target": str(Target(channel, address)),
        "round": round_,
        "level": level,
    }
    if kind == 1 and via:
        notification["via"] = via
    if due is not None:  # a delayed step: when it was due (its own entry is at its decision)
        notification["due_at"] = due
    if attempt:
        outcome, provider, error = attempt
        notification["outcome"] = outcome
        notification["provider_id"] = provider
        notification["error"] = error
    return notification


def prune_oldest(
    candidates: Sequence[Sequence[Any]],
    prune_incident: Callable[[str, int, int], int | None],
    count: int,
    budget: int,
    after: tuple[float, int],
) -> Pruned:
    """One `Storage.prune` transaction's walk through its `candidates` (closed incidents,
    oldest first: closed_at, the row's order, service, number), `count` rows deleted already
    and `budget` the most: each incident's history deleted by `prune_incident(service, number,
    rows left)` (the rows deleted, 0 if kept, None if the budget ran out inside it, which is
    taken up again next time). Where the next transaction goes on from: the last incident dealt
    with, or None once fewer candidates than the budget were all dealt with."""
    incidents = 0
    resume: tuple[float, int] | None = after
    for closed_at, order, service, number in candidates:
        if count >= budget:
            break
        deleted = prune_incident(str(service), int(number), budget - count)
        if deleted is None:
            count = budget
            break
        count += deleted
        incidents += deleted > 0
        resume = (float(closed_at), int(order))
    else:
        if len(candidates) < budget:
            resume = None  # every candidate is dealt with
    return Pruned(count, incidents, resume)
