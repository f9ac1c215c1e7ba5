"""One group commit as a handful of SQL statements, whatever its size.

The rows of each table travel as one JSON array and are inserted by a single statement over
`json_each`. That matters beyond SQLite's own speed: the commit runs in a worker thread, and
every statement hands the GIL back and forth with the event loop, which under a storm is busy;
a statement per row made a commit of 150 events take ten times as long as the work itself.

Rows are folded first: a batch that touches one incident ten times writes its last state once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import attrs
import msgspec

from pagerd.storage.folding import INCIDENT_CHANGES, INCIDENT_COLUMNS, fold
from pagerd.storage.port import StoreError, Write
from pagerd.timing.clock import Reading

_COLUMNS: Final = ", ".join(INCIDENT_COLUMNS)


def _select(count: int) -> str:
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(count))


def _changes(columns: Sequence[str]) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in columns)


_UPSERT_INCIDENTS: Final = (
    f"INSERT INTO incidents ({_COLUMNS}) SELECT {_select(len(INCIDENT_COLUMNS))}"
    " FROM json_each(?) WHERE true"
    f" ON CONFLICT (service, number) DO UPDATE SET {_changes(INCIDENT_CHANGES)}"
)
_UPSERT_SILENCES: Final = (
    "INSERT INTO silences (id, service, starts_at, ends_at, reason, by, created_at, ended_at,"
    f" ended_by, active) SELECT {_select(10)} FROM json_each(?) WHERE true"
    " ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at,"
    " ended_at = excluded.ended_at, ended_by = excluded.ended_by, active = excluded.active"
)
_UPSERT_HEARTBEATS: Final = (
    f"INSERT INTO heartbeats (service, interval, due_at, last_at) SELECT {_select(4)}"
    " FROM json_each(?) WHERE true ON CONFLICT (service) DO UPDATE SET"
    " interval = excluded.interval, due_at = excluded.due_at, last_at = excluded.last_at"
)
_DELETE_HEARTBEATS: Final = (
    "DELETE FROM heartbeats WHERE service IN (SELECT value FROM json_each(?))"
)
_INSERT_EVENTS: Final = (
    "INSERT INTO events (service, incident, at, op, detail, by, peer_uid, peer_user, peer_pid,"
    f" integration, via) SELECT {_select(11)} FROM json_each(?)"
)
_INSERT_NOTIFICATIONS: Final = (
    "INSERT INTO notifications (id, service, incident, round, level, channel, address, message,"
    f" opened_at, created_at, origin, step, via, next_attempt_at, not_before) SELECT {_select(14)},"
    " json_extract(value, '$[13]') FROM json_each(?)"  # a delayed step: its time, kept too
)
_INSERT_FIRING: Final = (
    "INSERT INTO firing (service, integration, key)"
    f" SELECT {_select(3)} FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
)
_DELETE_FIRING: Final = (
    "DELETE FROM firing WHERE (service, integration, key) IN"
    f" (SELECT {_select(3)} FROM json_each(?))"
)
_UPSERT_STARTS: Final = (
    "INSERT INTO alert_starts (service, integration, key, starts_at, resolved_at)"
    f" SELECT {_select(5)} FROM json_each(?) WHERE true"
    " ON CONFLICT (service, integration, key) DO UPDATE SET"
    " starts_at = excluded.starts_at, resolved_at = excluded.resolved_at"
)
_DELETE_STARTS: Final = (
    "DELETE FROM alert_starts WHERE (service, integration, key) IN"
    f" (SELECT {_select(3)} FROM json_each(?))"
)
_INSERT_ATTEMPTS: Final = (
    "INSERT INTO delivery_attempts (notification, at, outcome, provider_id, error)"
    f" SELECT {_select(5)} FROM json_each(?)"
)
_UPDATE_NOTIFICATIONS: Final = (
    "UPDATE notifications SET state = u.state, attempts = notifications.attempts + u.count,"
    " next_attempt_at = u.next_attempt_at, last_error = u.error,"
    " provider_id = COALESCE(u.provider_id, notifications.provider_id),"
    " sent_at = COALESCE(u.sent_at, notifications.sent_at)"
    " FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS state,"
    " json_extract(value, '$[2]') AS count, json_extract(value, '$[3]') AS next_attempt_at,"
    " json_extract(value, '$[4]') AS error, json_extract(value, '$[5]') AS provider_id,"
    " json_extract(value, '$[6]') AS sent_at FROM json_each(?)) AS u"
    " WHERE notifications.id = u.id"
)


_encode = msgspec.json.Encoder().encode


def write(conn: sqlite3.Connection, batch: Sequence[Write], origin: str) -> None:
    """The statements of one transaction (the caller begins and commits it). New notifications
    are stored with `origin`, the run deciding them (`Notify.origin`)."""
    rows = fold(batch, origin)
    if rows.handled:  # a single node has no inbox to hand events through
        raise StoreError("SQLite has no inbox: a Handled write belongs to a shared store")
    added, removed = rows.firing_changes()
    put, forgotten = rows.started_changes()
    for sql, values in (
        (_DELETE_FIRING, removed),
        (_INSERT_FIRING, added),
        (_DELETE_STARTS, forgotten),
        (_UPSERT_STARTS, put),
        (_UPSERT_INCIDENTS, list(rows.incidents.values())),
        (_INSERT_EVENTS, rows.events),
        (_INSERT_NOTIFICATIONS, rows.notifications),
        (_INSERT_ATTEMPTS, rows.attempts),
        (_UPDATE_NOTIFICATIONS, list(rows.updates.values())),
    ):
        if values:
            # Text, not bytes: SQLite would take a BLOB for its binary JSONB.
            conn.execute(sql, (_encode(values).decode(),))
    armed = [row for row in rows.heartbeats.values() if row is not None]
    disarmed = [name for name, row in rows.heartbeats.items() if row is None]
    if armed:
        conn.execute(_UPSERT_HEARTBEATS, (_encode(armed).decode(),))
    if disarmed:
        conn.execute(_DELETE_HEARTBEATS, (_encode(disarmed).decode(),))
    if rows.silences:
        conn.execute(_UPSERT_SILENCES, (_encode(list(rows.silences.values())).decode(),))
    if rows.clock is not None:
        record_clock(conn, rows.clock)


def record_clock(conn: sqlite3.Connection, reading: Reading) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('clock', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_encode(attrs.asdict(reading)).decode(),),
    )


def last_clock(conn: sqlite3.Connection) -> Reading | None:
    """The reading recorded last; None if there is none, or none that can be read (a value
    written by hand): then nothing is moved, as for a new database."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
    if row is None:
        return None
    try:
        return msgspec.json.decode(row[0], type=Reading)
    except (msgspec.DecodeError, TypeError):
        return None
