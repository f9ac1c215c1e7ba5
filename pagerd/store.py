"""Durable state in SQLite: incidents and the outbox of notifications.

Blocking by design: every method runs in one worker thread at a time (see `commits.py`). The
database is in WAL mode with `synchronous=FULL`, so a returned `write()` is on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import attrs

from pager.domain import Incident, Notify, ServiceState, Target

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
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
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY,
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
    state TEXT NOT NULL DEFAULT 'pending',
    sent_at REAL,
    UNIQUE (service, incident, round, level, channel, address)
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (seq) WHERE state = 'pending';
"""


class StoreError(Exception):
    """The database cannot be used: the message says what and where."""


@attrs.frozen
class Transition:
    """One decided event: the service's state before and after, and what to notify."""

    before: ServiceState
    after: ServiceState
    notifications: tuple[Notify, ...]
    at: float


@attrs.frozen
class Delivered:
    """Notifications handed to their transport, to be marked sent."""

    ids: tuple[str, ...]
    at: float


Write: TypeAlias = Transition | Delivered


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if new) the database at `path`, refusing one it cannot trust."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path} has schema version {version}; this pagerd knows "
                    f"{SCHEMA_VERSION}: upgrade pagerd"
                )
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"database {path} is corrupt: {check}")
            conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot use database {path}: {exc}") from None
        except StoreError:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def load_states(self) -> dict[str, ServiceState]:
        """Every service that has had an incident, with its open incident if any."""
        states = {
            service: ServiceState(name=service, last_incident=last)
            for service, last in self._conn.execute(
                "SELECT service, MAX(number) FROM incidents GROUP BY service"
            )
        }
        for row in self._conn.execute(
            "SELECT service, number, opened_at, message, alerts, round, level, deadline,"
            " acknowledged_at, acknowledged_by, exhausted FROM incidents WHERE closed_at IS NULL"
        ):
            incident = Incident(
                number=row[1],
                opened_at=row[2],
                message=row[3],
                alerts=row[4],
                round=row[5],
                level=row[6],
                deadline=row[7],
                acknowledged_at=row[8],
                acknowledged_by=row[9],
                exhausted=bool(row[10]),
            )
            states[row[0]] = attrs.evolve(states[row[0]], incident=incident)
        return states

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, Notify]]:
        """Up to `limit` undelivered notifications after `after_seq`, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, service, incident, round, level, channel, address, message, opened_at"
            " FROM notifications WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [
            (
                row[0],
                Notify(
                    service=row[1],
                    incident=row[2],
                    round=row[3],
                    level=row[4],
                    target=Target(row[5], row[6]),
                    message=row[7],
                    opened_at=row[8],
                ),
            )
            for row in rows
        ]

    def write(self, batch: Sequence[Write]) -> None:
        """Apply `batch` in one transaction, durable on return; on error, none of it."""
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            for item in batch:
                if isinstance(item, Transition):
                    _apply_transition(cur, item)
                else:
                    cur.executemany(
                        "UPDATE notifications SET state = 'sent', sent_at = ? WHERE id = ?",
                        ((item.at, id) for id in item.ids),
                    )
            cur.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise
        finally:
            cur.close()

    def notifications(self, service: str) -> list[tuple[str, str]]:
        """(id, state) of every notification of `service`, oldest first; for tests and tools."""
        return list(
            self._conn.execute(
                "SELECT id, state FROM notifications WHERE service = ? ORDER BY seq", (service,)
            )
        )


def _apply_transition(cur: sqlite3.Cursor, t: Transition) -> None:
    before, after = t.before.incident, t.after.incident
    if before is not None and (after is None or after.number != before.number):
        cur.execute(
            "UPDATE incidents SET closed_at = ?, deadline = NULL WHERE service = ? AND number = ?",
            (t.at, t.before.name, before.number),
        )
    if after is not None and after != before:
        cur.execute(
            "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
            " deadline, acknowledged_at, acknowledged_by, exhausted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (service, number) DO UPDATE SET alerts = excluded.alerts,"
            " round = excluded.round, level = excluded.level, deadline = excluded.deadline,"
            " acknowledged_at = excluded.acknowledged_at,"
            " acknowledged_by = excluded.acknowledged_by, exhausted = excluded.exhausted",
            (
                t.after.name,
                after.number,
                after.opened_at,
                after.message,
                after.alerts,
                after.round,
                after.level,
                after.deadline,
                after.acknowledged_at,
                after.acknowledged_by,
                after.exhausted,
            ),
        )
    cur.executemany(
        "INSERT INTO notifications (id, service, incident, round, level, channel, address,"
        " message, opened_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _notification_rows(t.notifications, t.at),
    )


def _notification_rows(
    notes: Iterable[Notify], at: float
) -> Iterable[tuple[str, str, int, int, int, str, str, str, float, float]]:
    for n in notes:
        yield (
            n.id,
            n.service,
            n.incident,
            n.round,
            n.level,
            n.target.channel,
            n.target.address,
            n.message,
            n.opened_at,
            at,
        )
