"""One group commit folded into the rows it leaves, table by table, whatever the store.

A batch that touches one incident ten times writes its last state once; a service's firing set,
alert starts and heartbeat monitor are diffed from before its first transition in the batch to
after its last. Each adapter turns these lists into its own statements (one per table); nothing
here is SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pager.domain import Incident, Source, Started
from pager.silences import Silence
from pagerd.storage.port import Attempt, ClockMark, Handled, Transition, Write
from pagerd.timing.clock import Reading

INCIDENT_COLUMNS: Final = (
    "service", "number", "opened_at", "message", "alerts", "round", "level", "deadline",
    "acknowledged_at", "acknowledged_by", "exhausted", "closed_at", "heartbeat_only",
    "held_by_alert", "acknowledged_via", "round_base", "silenced",
)  # fmt: skip
"""The incidents table's columns, in the order of an incident's row here (`_incident_row`)."""

INCIDENT_CHANGES: Final = INCIDENT_COLUMNS[4:]
"""The columns a later row of the same incident (service, number) overwrites: all but its key,
when it opened and its first message."""


def _incident_row(service: str, i: Incident, closed_at: float | None) -> list[Any]:
    return [
        service,
        i.number,
        i.opened_at,
        i.message,
        i.alerts,
        i.round,
        i.level,
        None if closed_at is not None else i.deadline,
        i.acknowledged_at,
        i.acknowledged_by,
        int(i.exhausted),
        closed_at,
        int(i.heartbeat_only),
        int(i.held_by_alert),
        i.acknowledged_via,
        i.round_base,
        int(i.silenced and closed_at is None),
    ]


def _silence_row(service: str, s: Silence, active: bool) -> list[Any]:
    return [
        s.id, service, s.starts_at, s.ends_at, s.reason, s.by, s.created_at, s.ended_at,
        s.ended_by, int(active),
    ]  # fmt: skip


class Rows:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.incidents: dict[tuple[str, int], list[Any]] = {}
        self.events: list[list[Any]] = []
        self.notifications: list[list[Any]] = []
        self.attempts: list[list[Any]] = []
        self.updates: dict[str, list[Any]] = {}
        self.clock: Reading | None = None
        # service -> its monitor's row, None to delete it (disarmed)
        self.heartbeats: dict[str, list[Any] | None] = {}
        # service -> (firing before its first transition here, after its last)
        self.firing: dict[str, tuple[frozenset[Source], frozenset[Source]]] = {}
        # service -> (started before its first transition here, after its last)
        self.started: dict[str, tuple[Mapping[Source, Started], Mapping[Source, Started]]] = {}
        # silence id -> its row as the batch leaves it (dropped from its state: not active)
        self.silences: dict[int, list[Any]] = {}
        # inbox events handled (a shared store's: `Handled`), in the batch's order
        self.handled: list[Handled] = []

    def transition(self, t: Transition) -> None:
        name = t.after.name
        if t.before.firing or t.after.firing or name in self.firing:
            first = self.firing.get(name, (t.before.firing, t.before.firing))[0]
            self.firing[name] = (first, t.after.firing)
        if t.before.started or t.after.started or name in self.started:
            was = self.started.get(name, (t.before.started, t.before.started))[0]
            self.started[name] = (was, t.after.started)
        before, after = t.before.incident, t.after.incident
        if before is not None and (after is None or after.number != before.number):
            self.incidents[(name, before.number)] = _incident_row(name, before, t.at)
        if after is not None and after != before:
            self.incidents[(name, after.number)] = _incident_row(name, after, None)
        monitor = t.after.heartbeat
        if monitor != t.before.heartbeat:
            self.heartbeats[name] = None
            if monitor is not None:
                self.heartbeats[name] = [name, monitor.interval, monitor.due_at, monitor.last_at]
        if t.after.silences is not t.before.silences and t.after.silences != t.before.silences:
            kept = {s.id for s in t.after.silences}
            for s in t.before.silences:
                if s.id not in kept:
                    self.silences[s.id] = _silence_row(name, s, active=False)
            for s in set(t.after.silences) - set(t.before.silences):
                self.silences[s.id] = _silence_row(name, s, active=True)
        incident = after or before
        if t.event is not None and incident is not None:
            peer = t.event.peer
            self.events.append(
                [
                    name,
                    incident.number,
                    t.at,
                    t.event.op,
                    t.event.detail,
                    t.event.by,
                    None if peer is None else peer.uid,
                    None if peer is None else peer.user,
                    None if peer is None else peer.pid,
                    t.event.integration,
                    t.event.via,
                ]
            )
        for n in t.notifications:
            self.notifications.append(
                [
                    n.id,
                    n.service,
                    n.incident,
                    n.round,
                    n.level,
                    n.target.channel,
                    n.target.address,
                    n.message,
                    n.opened_at,
                    t.at,
                    self.origin,
                    n.step,
                    n.via or None,
                    n.not_before,  # a delayed step waits as a retry does, for its time
                ]
            )

    def attempt(self, a: Attempt) -> None:
        self.attempts.append([a.id, a.at, a.outcome, a.provider_id, a.error])
        previous = self.updates.get(a.id)
        # A cancellation is recorded like an attempt but is none: the count stays.
        count = (0 if a.outcome == "cancelled" else 1) + (0 if previous is None else previous[2])
        provider_id = a.provider_id if a.provider_id is not None else (previous or [None] * 6)[5]
        sent_at = a.at if a.outcome == "sent" else None
        self.updates[a.id] = [
            a.id, a.outcome, count, a.next_attempt_at, a.error, provider_id, sent_at
        ]  # fmt: skip

    def firing_changes(self) -> tuple[list[list[str]], list[list[str]]]:
        """(rows to insert, rows to delete) of the `firing` table."""
        added: list[list[str]] = []
        removed: list[list[str]] = []
        for name, (before, after) in self.firing.items():
            added.extend([name, s.integration, s.key] for s in after - before)
            removed.extend([name, s.integration, s.key] for s in before - after)
        return added, removed

    def started_changes(self) -> tuple[list[list[Any]], list[list[str]]]:
        """(rows to insert or update, rows to delete) of the `alert_starts` table."""
        put: list[list[Any]] = []
        removed: list[list[str]] = []
        for name, (before, after) in self.started.items():
            if before is after:
                continue  # mostly: a change of the incident alone
            put.extend(
                [name, s.integration, s.key, seen.starts_at, seen.resolved_at]
                for s, seen in after.items()
                if before.get(s) != seen
            )
            removed.extend([name, s.integration, s.key] for s in before if s not in after)
        return put, removed


def fold(batch: Iterable[Write], origin: str = "") -> Rows:
    rows = Rows(origin)
    for item in batch:
        if isinstance(item, Transition):
            rows.transition(item)
        elif isinstance(item, ClockMark):
            rows.clock = item.reading
        elif isinstance(item, Handled):
            rows.handled.append(item)
        else:
            rows.attempt(item)
    return rows
