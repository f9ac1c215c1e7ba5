"""Durable state in SQLite: incidents and the outbox of notifications.

Blocking by design: every method runs in one worker thread at a time (see `commits.py`). The
database is in WAL mode with `synchronous=FULL`, so a returned `write()` is on disk.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from pager.domain import Incident, Notify, ServiceState, Target, incident_id
from pagerd import bulk
from pagerd.clock import STEP, Reading, shift
from pagerd.writes import Write

PRUNE_ROWS: Final = 500
"""Rows one `prune()` transaction deletes at most: a few milliseconds of the one writer."""

HISTORY_HEAD: Final = 50
HISTORY_TAIL: Final = 200
"""Entries of an incident's timeline kept from its start and up to now; those between are
counted, not listed. With every entry at its largest (an alert of 4096 characters, each escaped
in 6 bytes of JSON), a `history` reply stays under 7 MB; a usual one is a few kB."""

# An incident's history, from three sources: the events clients and timeouts made (by `seq`,
# the events_incident index's own order, whose `at` only grows within an incident), the
# notifications decided, and their delivery attempts (a few per target).
_COUNT_EVENTS: Final = "SELECT COUNT(*) FROM events WHERE service = ? AND incident = ?"
_SELECT_EVENTS: Final = (
    "SELECT at, seq, op, detail, by, peer_uid, peer_user, peer_pid FROM events"
    " WHERE service = ? AND incident = ? ORDER BY seq {order} LIMIT ?"
)
_COUNT_DECIDED: Final = "SELECT COUNT(*) FROM notifications WHERE id >= ? AND id < ?"
_SELECT_DECIDED: Final = (
    "SELECT created_at, seq, id, channel, address, round, level FROM notifications"
    " WHERE id >= ? AND id < ? ORDER BY created_at {order}, seq {order} LIMIT ?"
)
_COUNT_ATTEMPTS: Final = (
    "SELECT COUNT(*) FROM delivery_attempts WHERE notification >= ? AND notification < ?"
)
_SELECT_ATTEMPTS: Final = (
    "SELECT a.at, a.rowid, n.id, n.channel, n.address, n.round, n.level, a.outcome,"
    " a.provider_id, a.error FROM delivery_attempts a JOIN notifications n"
    " ON n.id = a.notification WHERE a.notification >= ? AND a.notification < ?"
    " ORDER BY a.at {order}, a.rowid {order} LIMIT ?"
)

SCHEMA_VERSION: Final = 5
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

_MIGRATIONS: Final[dict[int, str]] = {
    # The run of pagerd that decided each notification, part of its idempotency key.
    3: "ALTER TABLE notifications ADD COLUMN origin TEXT NOT NULL DEFAULT '';",
    # Facts about the database as a whole: how the stored times stand to the clocks (`clock`).
    4: "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
}
"""Version N -> the statements that make a database of version N one of version N + 1."""


class StoreError(Exception):
    """The database cannot be used: the message says what and where."""


@attrs.frozen
class Undelivered:
    """A notification not yet delivered, as read back from the outbox."""

    notify: Notify
    created_at: float
    attempts: int
    next_attempt_at: float | None


@attrs.frozen
class Delivery:
    """Where one notification stands, for `pager status SERVICE`."""

    id: str
    channel: str
    target: str
    round: int
    level: int
    state: str
    attempts: int
    last_error: str | None
    provider_id: str | None
    sent_at: float | None


@attrs.frozen
class History:
    opened_at: float
    closed_at: float | None
    message: str
    timeline: list[tuple[float, dict[str, object]]]
    elided: int = 0
    """Entries left out of `timeline` (see `Store.history`); its `elided` entry says where."""


@attrs.frozen
class Pruned:
    """What one `prune()` transaction deleted, and where the next one goes on from."""

    rows: int
    incidents: int
    resume: tuple[float, int] | None
    """(closed_at, rowid) of the last incident dealt with; None once nothing is left."""


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.origin = secrets.token_hex(8)
        """This run's identity, stored with every notification it writes (`Notify.origin`)."""

    @classmethod
    def open(cls, path: Path, *, check: bool = True) -> Store:
        """Open (creating if new) the database at `path`, refusing one it cannot trust.

        With `check=False`, a database already at this schema version is not checked here: the
        caller runs `verify()` alongside its first reads, and trusts nothing until it passes. A
        new or older database is always checked before it is changed.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # It holds addresses and webhook URLs: readable by pagerd alone.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            _read_through(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # 32 MiB of page cache (the default is 2 MiB): with 100,000 incidents the indexes
            # a commit touches no longer fall out of it between commits.
            conn.execute("PRAGMA cache_size=-32768")
            conn.execute("PRAGMA foreign_keys=ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path} has schema version {version}, newer than this pagerd "
                    f"knows ({SCHEMA_VERSION}): it was made by a newer pagerd. Run that "
                    "version, or restore a backup taken before the upgrade"
                )
            if check or version != SCHEMA_VERSION:
                _quick_check(conn, path)
            if version != SCHEMA_VERSION:
                _upgrade(conn, path, version)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot use database {path}: {exc}") from None
        except StoreError:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def verify(self) -> None:
        """`PRAGMA quick_check` of the whole database, on a connection of its own: it can run in
        another thread while this one reads. Raises `StoreError` if the database is corrupt."""
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            try:
                _quick_check(conn, self.path)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from None

    def size_on_disk(self) -> int:
        """Bytes of the database and its write-ahead log: no query, no thread needed."""
        size = 0
        for path in _files(self.path):
            with contextlib.suppress(OSError):  # no WAL (yet): nothing on disk
                size += path.stat().st_size
        return size

    def ping(self) -> None:
        """A trivial query: the database answers (the watchdog's proof of progress)."""
        self._conn.execute("SELECT 1").fetchone()

    def load_states(self) -> dict[str, ServiceState]:
        """Every service that has had an incident, with its open incident if any."""
        # One pass, objects built once: a restart with 100,000 open incidents waits on this.
        states: dict[str, ServiceState] = {}
        for row in self._conn.execute(
            "SELECT m.service, m.last, i.number, i.opened_at, i.message, i.alerts, i.round,"
            " i.level, i.deadline, i.acknowledged_at, i.acknowledged_by, i.exhausted"
            " FROM (SELECT service, MAX(number) AS last FROM incidents GROUP BY service) AS m"
            " LEFT JOIN incidents AS i ON i.service = m.service AND i.closed_at IS NULL"
        ):
            incident = None
            if row[2] is not None:
                incident = Incident(
                    row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                    bool(row[11]),
                )  # fmt: skip
            states[row[0]] = ServiceState(row[0], row[1], incident)
        return states

    def undelivered(self, limit: int, channel: str | None = None) -> list[Undelivered]:
        """Up to `limit` notifications not yet delivered (pending or retrying), oldest first;
        of one channel only if `channel` is given (the outbox reads each channel's backlog on
        its own, so that one channel's backlog never waits behind another's)."""
        rows = self._conn.execute(
            "SELECT service, incident, round, level, channel, address, message, opened_at,"
            " created_at, attempts, next_attempt_at, origin FROM notifications"
            " WHERE state IN ('pending', 'retrying') AND (?1 IS NULL OR channel = ?1)"
            " ORDER BY seq LIMIT ?2",
            (channel, limit),
        )
        return [_undelivered(row) for row in rows]

    def undelivered_elsewhere(
        self, channels: Sequence[str], limit: int
    ) -> list[tuple[str, Undelivered]]:
        """Up to `limit` notifications not yet delivered on a channel not in `channels`, each
        with its id as stored: rows no lane will ever read back (written by a newer pagerd, or
        by hand), whose ids this pagerd would not make the same way."""
        rows = self._conn.execute(
            "SELECT service, incident, round, level, channel, address, message, opened_at,"
            " created_at, attempts, next_attempt_at, origin, id FROM notifications"
            " WHERE state IN ('pending', 'retrying')"
            f" AND channel NOT IN ({', '.join('?' * len(channels))}) ORDER BY seq LIMIT ?",
            (*channels, limit),
        )
        return [(row[12], _undelivered(row)) for row in rows]

    def deliveries(self, service: str, incident: int) -> list[Delivery]:
        """Every notification of one incident with its delivery state, in the order decided."""
        rows = self._conn.execute(
            "SELECT id, channel, address, round, level, state, attempts, last_error, provider_id,"
            " sent_at FROM notifications WHERE id >= ? AND id < ? ORDER BY seq",
            _id_range(service, incident),
        )
        return [
            Delivery(
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
            )
            for row in rows
        ]

    def latest_incident(self, service: str) -> int | None:
        row = self._conn.execute(
            "SELECT MAX(number) FROM incidents WHERE service = ?", (service,)
        ).fetchone()
        return None if row is None else row[0]

    def history(self, service: str, incident: int) -> History | None:
        """What happened to one incident, in order; None if there is no such one.

        At most `HISTORY_HEAD` entries from its start and `HISTORY_TAIL` up to now: a storm of
        alerts on one open incident is an event each (with a message of up to 4096 characters),
        and all of them made replies of hundreds of megabytes, read whole into memory by pagerd
        and by the client. What lies between is one `elided` entry: how many, from when to when.
        Each source is read from both ends only (its index's order, a `LIMIT` each), never
        whole: the first `HISTORY_HEAD` entries of the merged timeline are among the first
        `HISTORY_HEAD` of their own source, and likewise at the end.
        """
        row = self._conn.execute(
            "SELECT opened_at, closed_at, message FROM incidents WHERE service = ? AND number = ?",
            (service, incident),
        ).fetchone()
        if row is None:
            return None
        ids = _id_range(service, incident)
        total = 0
        entries: list[tuple[float, int, int, dict[str, object]]] = []
        for kind, count_sql, select_sql, key in (
            (0, _COUNT_EVENTS, _SELECT_EVENTS, (service, incident)),
            (1, _COUNT_DECIDED, _SELECT_DECIDED, ids),
            (2, _COUNT_ATTEMPTS, _SELECT_ATTEMPTS, ids),
        ):
            count = self._conn.execute(count_sql, key).fetchone()[0]
            total += count
            ends = _ends(count)
            for order, limit in ends:
                rows = self._conn.execute(select_sql.format(order=order), (*key, limit))
                for at, seq, *fields in rows:
                    entries.append((at, kind, seq, _timeline_entry(kind, fields)))
        if row[1] is not None:
            total += 1
            entries.append((row[1], 3, 0, {"event": "closed"}))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        elided = total - HISTORY_HEAD - HISTORY_TAIL
        timeline = [(at, entry) for at, _, _, entry in entries]
        if elided > 0:
            marker: dict[str, object] = {
                "event": "elided",
                "count": elided,
                "until": timeline[-HISTORY_TAIL - 1][0],
            }
            first = timeline[HISTORY_HEAD][0]
            timeline = [*timeline[:HISTORY_HEAD], (first, marker), *timeline[-HISTORY_TAIL:]]
        return History(
            opened_at=row[0],
            closed_at=row[1],
            message=row[2],
            timeline=timeline,
            elided=max(elided, 0),
        )

    def failed_counts(self) -> dict[tuple[str, int], int]:
        """(service, incident) -> notifications that failed for good, for open incidents."""
        return {
            (service, incident): count
            for service, incident, count in self._conn.execute(
                "SELECT n.service, n.incident, COUNT(*) FROM notifications n JOIN incidents i"
                " ON i.service = n.service AND i.number = n.incident"
                " WHERE n.state = 'failed' AND i.closed_at IS NULL GROUP BY 1, 2"
            )
        }

    def prune(
        self, before: float, after: tuple[float, int] = (-math.inf, 0), budget: int = PRUNE_ROWS
    ) -> Pruned:
        """Delete the history of incidents closed before `before`, in one transaction of at most
        `budget` rows, starting after the incident `after` (closed_at, rowid): oldest first,
        events, deliveries and notifications before the incident itself, so a storm's incident
        with millions of events goes in many short transactions, not one that stalls commits.

        Kept whatever their age: a service's latest incident, because the next one's number
        continues from it and numbers are the providers' idempotency keys (a number used again
        could have a page dropped as a duplicate); and an incident with a notification still
        to deliver, which the outbox may hold.
        """
        rows = incidents = 0
        resume: tuple[float, int] | None = after
        with self._transaction() as conn:
            candidates = conn.execute(
                "SELECT closed_at, rowid, service, number FROM incidents"
                " WHERE closed_at IS NOT NULL AND closed_at < ? AND (closed_at, rowid) > (?, ?)"
                " ORDER BY closed_at, rowid LIMIT ?",
                (before, *after, budget),
            ).fetchall()
            for closed_at, rowid, service, number in candidates:
                deleted = self._prune_incident(service, number, budget - rows)
                if deleted is None:
                    rows = budget
                    break  # the budget ran out inside this incident: it is taken up next time
                rows += deleted
                incidents += deleted > 0
                resume = (closed_at, rowid)
            else:
                if len(candidates) < budget:
                    resume = None  # every candidate is dealt with
        return Pruned(rows, incidents, resume)

    def _prune_incident(self, service: str, number: int, budget: int) -> int | None:
        """Delete one incident's history, its own row last: the rows deleted (0 if it is kept),
        or None if `budget` ran out first, with `budget` rows deleted and the rest left."""
        conn = self._conn
        latest = conn.execute("SELECT MAX(number) FROM incidents WHERE service = ?", (service,))
        if latest.fetchone()[0] == number:
            return 0
        first, end = _id_range(service, number)
        if conn.execute(
            "SELECT 1 FROM notifications WHERE id >= ? AND id < ?"
            " AND state IN ('pending', 'retrying') LIMIT 1",
            (first, end),
        ).fetchone():
            return 0
        rows = 0
        for sql, key in (
            (
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                " WHERE service = ? AND incident = ? LIMIT ?)",
                (service, number),
            ),
            (
                "DELETE FROM delivery_attempts WHERE rowid IN (SELECT rowid FROM delivery_attempts"
                " WHERE notification >= ? AND notification < ? LIMIT ?)",
                (first, end),
            ),
            (
                "DELETE FROM notifications WHERE seq IN (SELECT seq FROM notifications"
                " WHERE id >= ? AND id < ? LIMIT ?)",
                (first, end),
            ),
        ):
            rows += conn.execute(sql, (*key, budget - rows)).rowcount
            if rows >= budget:
                return None
        conn.execute("DELETE FROM incidents WHERE service = ? AND number = ?", (service, number))
        return rows + 1

    def restart_clock(self, reading: Reading) -> tuple[Reading | None, float]:
        """At start: move the open incidents' deadlines and the retry times of undelivered
        notifications by `clock.shift` from the last recorded reading to `reading` (when it is
        a step, not jitter), and record `reading`, in one transaction, so a crash cannot move
        them twice. The last reading, and how far they moved (0.0: not at all)."""
        try:
            with self._transaction() as conn:
                last = bulk.last_clock(conn)
                moved = shift(last, reading)
                if abs(moved) <= STEP:
                    moved = 0.0
                else:
                    conn.execute(
                        "UPDATE incidents SET deadline = deadline + ?"
                        " WHERE closed_at IS NULL AND deadline IS NOT NULL",
                        (moved,),
                    )
                    conn.execute(
                        "UPDATE notifications SET next_attempt_at = next_attempt_at + ?"
                        " WHERE state IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL",
                        (moved,),
                    )
                bulk.record_clock(conn, reading)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from None
        return last, moved

    def write(self, batch: Sequence[Write]) -> None:
        """Apply `batch` in one transaction, durable on return; on error, none of it."""
        with self._transaction() as conn:
            bulk.write(conn, batch, self.origin)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (durable) if the block returns, else rolled back."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise


def _undelivered(row: Sequence[Any]) -> Undelivered:
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
        ),
        created_at=row[8],
        attempts=row[9],
        next_attempt_at=row[10],
    )


def _ends(count: int) -> list[tuple[str, int]]:
    """(order, limit) of the queries that read a source of `count` history entries: all of it,
    or one more than the timeline can keep from each end (the first and last left out say
    when the elided span starts and ends)."""
    if count <= HISTORY_HEAD + HISTORY_TAIL + 2:
        return [("ASC", count)] if count else []
    return [("ASC", HISTORY_HEAD + 1), ("DESC", HISTORY_TAIL + 1)]


def _timeline_entry(kind: int, fields: Sequence[Any]) -> dict[str, object]:
    """One history entry as the `history` reply has it (but `at`), from a source's row."""
    if kind == 0:
        op, detail, by, uid, user, pid = fields
        entry: dict[str, object] = {"event": op}
        if detail is not None:
            entry["detail"] = detail
        if by is not None:
            entry["by"] = by
        if uid is not None:
            entry["peer"] = {"uid": uid, "user": user, "pid": pid}
        return entry
    nid, channel, address, round_, level, *attempt = fields
    entry = {
        "event": "notification" if kind == 1 else "delivery",
        "notification": nid,
        "target": str(Target(channel, address)),
        "round": round_,
        "level": level,
    }
    if attempt:
        outcome, provider, error = attempt
        entry["outcome"] = outcome
        entry["provider_id"] = provider
        entry["error"] = error
    return entry


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        lines = result.splitlines()
        more = f" (and {len(lines) - 4} more lines)" if len(lines) > 4 else ""
        shown = "\n".join(lines[:4])
        raise StoreError(f"database {path} is corrupt: {shown}{more}")


def _read_through(path: Path) -> None:
    """Read the database (and its WAL) once from start to end, into the page cache.

    `quick_check` reads every page, in B-tree order: after a reboot, with nothing cached, that
    was random I/O, 2.4 s for a 180 MB database here. Read in order first, the same file takes
    0.25 s, and the check 0.65 s. With the file cached already, this costs a copy (0.04 s).
    """
    buffer = bytearray(1 << 20)
    for name in _files(path):
        with contextlib.suppress(FileNotFoundError), open(name, "rb", buffering=0) as file:
            while file.readinto(buffer):
                pass


def _files(path: Path) -> tuple[Path, Path]:
    """The database's files: itself, and its write-ahead log."""
    return path, path.with_name(path.name + "-wal")


def _id_range(service: str, incident: int) -> tuple[str, str]:
    """The ids of one incident's notifications: those starting "service#N/". "/" is followed
    by "0" in ASCII, so they are exactly the ids from "service#N/" up to "service#N0"."""
    prefix = f"{incident_id(service, incident)}/"
    return prefix, prefix[:-1] + "0"


def _upgrade(conn: sqlite3.Connection, path: Path, version: int) -> None:
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
        for step in range(max(version, BASE_VERSION), SCHEMA_VERSION):
            _run_script(conn, _MIGRATIONS[step])
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """The statements of `script`, one by one inside the caller's transaction
    (`executescript` would commit it first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    assert not statement.strip(), f"incomplete SQL: {statement}"


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
