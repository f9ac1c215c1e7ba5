"""The database's layout: the schema of each version, and the steps from one to the next.

A new database is made as `_BASE`, then every step after it, so a new database and an upgraded
one are the same by construction (tests/test_schema.py holds them equal for every layout ever
shipped, from tests/schemas).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Final

from pagerd.storage.port import StoreError

SCHEMA_VERSION: Final = 17
"""The layout of the database this pagerd makes and expects.

Every change of the layout bumps it, with a step in `_MIGRATIONS` from the version before. Up
to 2 that rule was not kept: version 1 came in four layouts (columns, tables and indexes added
or dropped without a bump), and version 2 is what its `CREATE ... IF NOT EXISTS` script made of
any of them. So a database of version 1 or 2 is first repaired to `_BASE`, the layout of
version 3, whatever it held; tests/schemas has a script for each layout ever shipped."""

BASE_VERSION: Final = 3
"""The version `_BASE` is: a new database is made as `_BASE`, then every step after it, so a new
database and an upgraded one are the same by construction."""

_BASE: Final = """
CREATE TABLE IF NOT EXISTS incidents (
    service TEXT NOT NULL,
    number INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    message TEXT NOT NULL,
    alerts INTEGER NOT NULL,
    round INTEGER NOT NULL,
    level INTEGER NOT NULL,
    deadline REAL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    exhausted INTEGER NOT NULL,
    closed_at REAL,
    PRIMARY KEY (service, number)
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (service) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_closed ON incidents (closed_at) WHERE closed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY,
    -- service#incident/round/level/target: the unique key that makes a second row for one
    -- step impossible, and (by its prefix) the index of an incident's notifications.
    id TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    incident INTEGER NOT NULL,
    round INTEGER NOT NULL,
    level INTEGER NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_at REAL NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending, retrying, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    provider_id TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS notifications_undelivered ON notifications (seq)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS notifications_failed ON notifications (service, incident)
    WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS delivery_attempts (
    notification TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,  -- sent, retrying, failed
    provider_id TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_notification ON delivery_attempts (notification);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    incident INTEGER NOT NULL,
    at REAL NOT NULL,
    op TEXT NOT NULL,  -- alert, ack, healthy, timeout
    detail TEXT,
    by TEXT,
    peer_uid INTEGER,
    peer_user TEXT,
    peer_pid INTEGER
);
CREATE INDEX IF NOT EXISTS events_incident ON events (service, incident);
"""

_HEARTBEATS: Final = """
ALTER TABLE incidents ADD COLUMN heartbeat_only INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS heartbeats (
    service TEXT PRIMARY KEY,
    interval REAL NOT NULL,
    due_at REAL,  -- NULL: missed, waiting for the next check-in
    last_at REAL
) WITHOUT ROWID;
"""
"""Heartbeat monitors (`pager.domain.Monitor`), and why an incident is open: `heartbeat_only`
when only a missed heartbeat opened it. One step of its own, so that renumbering it beside
another branch's step is a change of its key below."""

_HELD_BY_ALERT: Final = """
ALTER TABLE incidents ADD COLUMN held_by_alert INTEGER NOT NULL DEFAULT 0;
UPDATE incidents SET held_by_alert = 1 WHERE closed_at IS NULL AND heartbeat_only = 0
    AND NOT EXISTS (SELECT 1 FROM firing WHERE firing.service = incidents.service);
"""
"""Whether a plain alert (no source: socket, REST, cron) holds an incident open, so that no
integration's resolve closes it (`Incident.held_by_alert`). An older pagerd did not record it,
so for the incidents open at the upgrade it is inferred, on the side that keeps paging where
it can be known: an open incident with nothing firing through integrations (and not opened by a
missed heartbeat alone) was opened by plain alerts, which only `healthy` ends: held. One with
something firing is not known to have had a plain alert: not held, so that the integration's
resolve closes it as it did before the upgrade (held, it would need a `healthy` that the
integration's senders never send, and page on forever for an alert that is over)."""

_REPLY_CODES: Final = """
CREATE TABLE IF NOT EXISTS reply_codes (
    address TEXT NOT NULL,
    code INTEGER NOT NULL,
    service TEXT NOT NULL,
    incident INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (address, code)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reply_codes_incident ON reply_codes (address, service, incident);
CREATE INDEX IF NOT EXISTS reply_codes_latest ON reply_codes (address, sent_at);
CREATE TABLE IF NOT EXISTS sms_replies (message_id TEXT PRIMARY KEY, at REAL NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sms_replies_at ON sms_replies (at);
"""
"""SMS reply codes (`Storage.reply_code`: a number per phone and incident, given again an hour after
the incident closed) and the replies taken (`Storage.take_reply`: a replayed message changes
nothing). One step of its own, so that renumbering it beside another branch's step is a change
of its key below."""
_ALERT_STARTS: Final = """
CREATE TABLE IF NOT EXISTS alert_starts (
    service TEXT NOT NULL,
    integration TEXT NOT NULL,
    key TEXT NOT NULL,
    starts_at INTEGER NOT NULL,  -- the sender's startsAt: nanoseconds since the epoch, its clock
    resolved_at REAL,  -- when pagerd took its resolve; NULL while it fires
    PRIMARY KEY (service, integration, key)
) WITHOUT ROWID;
"""
"""When each integration's alert started, in its sender's words (`ServiceState.started`): kept
while it fires and for a while after it resolved, so that a copy of an earlier firing is told
from a new one (see "Late firings" in `pager.domain`). Nothing to infer for a database of an
older pagerd: with nothing remembered, every firing is taken as new, as it was."""
_SILENCES: Final = """
ALTER TABLE incidents ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    reason TEXT NOT NULL,
    by TEXT,
    created_at REAL NOT NULL,
    ended_at REAL,
    ended_by TEXT,
    active INTEGER NOT NULL DEFAULT 1  -- 0: over, and dropped from its service's state
);
CREATE INDEX IF NOT EXISTS silences_active ON silences (service) WHERE active = 1;
"""
"""Durable silences (`pager.silences.Silence`, `ServiceState.silences`), and whether an open
incident's next step is held by one (`Incident.silenced`). A silence's row stays once it is
over (`active` 0), for the record, until `keep_history` prunes it."""

_ANSWERS: Final = """
ALTER TABLE incidents ADD COLUMN acknowledged_via TEXT;
ALTER TABLE incidents ADD COLUMN round_base INTEGER NOT NULL DEFAULT 0;
"""
"""How an incident was acknowledged (`Incident.acknowledged_via`: what a later ack is told with
who was first), and the rounds before an expired acknowledgement restarted its escalation
(`Incident.round_base`, so that `repeat` counts from the restart). An incident acknowledged
before the upgrade has no `via`; none had restarted."""

_SCHEDULES: Final = """
ALTER TABLE notifications ADD COLUMN step INTEGER NOT NULL DEFAULT 1;
ALTER TABLE notifications ADD COLUMN via TEXT;
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule TEXT NOT NULL,
    by_person TEXT NOT NULL,
    for_person TEXT,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS overrides_schedule ON overrides (schedule, ends_at);
"""
"""People and schedules: a notification's `step` within a person's rule (`Notify.step`, part of
its id from 2 on) and how its target was reached (`via`: "schedule:primary → alice"); and the
schedules' overrides, durable so that a reload or a restart keeps them. Their times are on the
wall clock (seconds since the epoch), not in pagerd's frame: a start does not move them.
`AUTOINCREMENT` so that an id is never given twice (a later override applies over an earlier,
by id)."""

_DUE: Final = "ALTER TABLE notifications ADD COLUMN not_before REAL;"
"""When a person's delayed step (`"email after 2m"`) was due (`Notify.not_before`), kept after
it is sent (`next_attempt_at` is its retry time, then nothing): the history shows it ("due
08:02:00, after 2m"). In pagerd's frame as `created_at`, not moved by a start; null for a page
sent at once, and for every notification stored before."""

_OVERRIDE_AUDIT: Final = """
ALTER TABLE overrides ADD COLUMN made_by TEXT;
ALTER TABLE overrides ADD COLUMN removed_by TEXT;
ALTER TABLE overrides ADD COLUMN removed_at REAL;
"""
"""Who made each override and who removed it (the socket's user, `integration NAME` over HTTP),
for the record: a removed override's row stays, `removed_at` set, used no more, until it ends
(pruned with the rest) or until `MAX_REMOVED_KEPT` later removals push it out. An override made
before the upgrade says nobody."""

_MIGRATIONS: Final[dict[int, str]] = {
    # The run of pagerd that decided each notification, part of its idempotency key.
    3: "ALTER TABLE notifications ADD COLUMN origin TEXT NOT NULL DEFAULT '';",
    # Facts about the database as a whole: how the stored times stand to the clocks (`clock`).
    4: "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    # Which integration an event came in through (the HTTP front door), as `peer_*` say who
    # sent one over the socket.
    5: "ALTER TABLE events ADD COLUMN integration TEXT;",
    # What integrations report still firing for each open incident (`ServiceState.firing`).
    6: (
        "CREATE TABLE IF NOT EXISTS firing (service TEXT NOT NULL, integration TEXT NOT NULL,"
        " key TEXT NOT NULL, PRIMARY KEY (service, integration, key)) WITHOUT ROWID;"
    ),
    # Each service's heartbeat monitor (`ServiceState.heartbeat`).
    7: _HEARTBEATS,
    # Whether a plain alert holds an incident open (`Incident.held_by_alert`).
    8: _HELD_BY_ALERT,
    # How a person answered (`EventRecord.via`: link, sms, slack, console).
    9: "ALTER TABLE events ADD COLUMN via TEXT;",
    # SMS reply codes and the replies taken (`reply_codes`, `sms_replies`).
    10: _REPLY_CODES,
    # The startsAt of alerts firing and recently resolved (`ServiceState.started`).
    11: _ALERT_STARTS,
    # Silences, and whether a silence holds an incident's next step.
    12: _SILENCES,
    # How an incident was acknowledged, and where an expired ack restarted its escalation.
    13: _ANSWERS,
    # People and schedules: notifications' `step` and `via`, and the `overrides`.
    14: _SCHEDULES,
    # When a delayed step was due.
    15: _DUE,
    # Who made and who removed each override.
    16: _OVERRIDE_AUDIT,
}
"""Version N -> the statements that make a database of version N one of version N + 1."""


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        lines = result.splitlines()
        more = f" (and {len(lines) - 4} more lines)" if len(lines) > 4 else ""
        shown = "\n".join(lines[:4])
        raise StoreError(f"database {path} is corrupt: {shown}{more}")


def upgrade(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring the database from `version` to `SCHEMA_VERSION`, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version == 0:
            if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
                raise StoreError(
                    f"database {path} has tables but no schema version: it is not pagerd's"
                )
            _run_script(conn, _BASE)
        elif version < BASE_VERSION:
            _repair(conn)
        repaired = 0 < version < BASE_VERSION
        for step in range(max(version, BASE_VERSION), SCHEMA_VERSION):
            _run_script(conn, _MIGRATIONS[step], repaired)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


_ADD_COLUMN: Final = re.compile(r"\s*ALTER TABLE (\w+) ADD COLUMN (\w+) ", re.IGNORECASE)


def _run_script(conn: sqlite3.Connection, script: str, repaired: bool = False) -> None:
    """The statements of `script`, one by one inside the caller's transaction
    (`executescript` would commit it first).

    `repaired`: the database was of version 1 or 2, made `_BASE` by `_repair`, which rebuilds
    only `_BASE`'s tables: a table a later step made (`CREATE TABLE IF NOT EXISTS`) may be
    there already, as a newer pagerd left it (its file given back to an old one, which set its
    version back), with a column a later step adds; that column is kept, not added twice."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            added = _ADD_COLUMN.match(statement) if repaired else None
            if added is None or not _has_column(conn, added.group(1), added.group(2)):
                conn.execute(statement)
            statement = ""
    assert not statement.strip(), f"incomplete SQL: {statement}"


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _objects(conn: sqlite3.Connection, kind: str) -> dict[str, str]:
    """name -> CREATE statement of the tables or indexes made by a script (not SQLite's own)."""
    return dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = ? AND sql IS NOT NULL"
            " AND name NOT LIKE 'sqlite_%'",
            (kind,),
        ).fetchall()
    )


def _repair(conn: sqlite3.Connection) -> None:
    """Make a database of version 1 or 2, in whichever layout it came, exactly `_BASE`.

    A table whose definition differs from `_BASE`'s (columns missing, a constraint since
    dropped) is made anew and its rows copied, with the new columns' defaults; an index
    `_BASE` no longer has is dropped, a missing one created. Rows are kept as they are.
    """
    base = sqlite3.connect(":memory:")
    try:
        base.executescript(_BASE)
        tables, indexes = _objects(base, "table"), _objects(base, "index")
    finally:
        base.close()
    have = _objects(conn, "table")
    for name, sql in tables.items():
        if name not in have:
            conn.execute(sql)
        elif have[name] != sql:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
            conn.execute(f"ALTER TABLE {name} RENAME TO {name}_before_repair")
            conn.execute(sql)
            new = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
            kept = ", ".join(c for c in new if c in columns)
            conn.execute(f"INSERT INTO {name} ({kept}) SELECT {kept} FROM {name}_before_repair")
            conn.execute(f"DROP TABLE {name}_before_repair")
    for name, sql in _objects(conn, "index").items():
        if indexes.get(name) != sql:
            conn.execute(f"DROP INDEX {name}")
    have = _objects(conn, "index")
    for name, sql in indexes.items():
        if name not in have:
            conn.execute(sql)
