"""Durable state in SQLite: incidents and the outbox of notifications (the `Storage` port).

Blocking by design: every method runs in one worker thread at a time (see `commits.py`). The
database is in WAL mode with `synchronous=FULL`, so a returned `write()` is on disk. SQLite's
errors leave as the port's: `StoreUnavailable` for the database itself (`OperationalError`: a
full disk, an I/O error, a lock), `StoreError` for the rest, the message as SQLite gave it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import secrets
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

import attrs
import msgspec

from pager.domain import (
    ServiceState,
    Source,
)
from pager.schedules import Override
from pager.shards import shard_of
from pagerd.storage import history, reads
from pagerd.storage.history import notification_ids
from pagerd.storage.port import (
    MAX_REMOVED_KEPT,
    PRUNE_ROWS,
    REPLAY_WINDOW,
    Delivery,
    Fence,
    History,
    NoReply,
    OpenCode,
    Pruned,
    Removal,
    ReplyCode,
    StorageStatistics,
    StoreError,
    StoreUnavailable,
    Undelivered,
    Write,
)
from pagerd.storage.sqlite import rows
from pagerd.storage.sqlite.schema import SCHEMA_VERSION, quick_check, upgrade
from pagerd.timing.clock import STEP, Reading, shift

DATABASE_NAME: Final = "pager.db"
"""The database's file in the state directory."""

P = ParamSpec("P")
R = TypeVar("R")

_STATES: Final = reads.StateQueries(
    incidents=(
        "SELECT m.service, m.last, i.number, i.opened_at, i.message, i.alerts, i.round,"
        " i.level, i.deadline, i.acknowledged_at, i.acknowledged_by, i.exhausted,"
        " i.heartbeat_only, i.held_by_alert, i.acknowledged_via, i.round_base, i.silenced"
        " FROM (SELECT service, MAX(number) AS last FROM incidents WHERE {where}"
        " GROUP BY service) AS m"
        " LEFT JOIN incidents AS i ON i.service = m.service AND i.closed_at IS NULL"
    ),
    firing="SELECT service, integration, key FROM firing WHERE {where}",
    started=(
        "SELECT service, integration, key, starts_at, resolved_at FROM alert_starts WHERE {where}"
    ),
    heartbeats="SELECT service, interval, due_at, last_at FROM heartbeats WHERE {where}",
    silences=(
        "SELECT service, id, starts_at, ends_at, reason, by, created_at, ended_at, ended_by"
        " FROM silences WHERE active = 1 AND {where} ORDER BY id"
    ),
)
"""The services' states at start-up (see `pagerd.storage.reads.load_states`)."""

# An incident's history, from its three sources (see `pagerd.storage.history`).
_REPLIES: Final = reads.ReplyQueries(
    latest=(
        "SELECT service, incident FROM reply_codes WHERE address = ? ORDER BY sent_at DESC LIMIT 1"
    ),
    of_code="SELECT service, incident FROM reply_codes WHERE address = ? AND code = ?",
    known="SELECT 1 FROM reply_codes WHERE address = ? LIMIT 1",
)
"""Which incident an SMS reply answers (see `pagerd.storage.reads.reply_to`)."""

_HISTORY: Final = history.Queries(
    incident="SELECT opened_at, closed_at, message FROM incidents WHERE service = ? AND number = ?",
    count_events="SELECT COUNT(*) FROM events WHERE service = ? AND incident = ?",
    select_events=(
        "SELECT at, seq, op, detail, by, peer_uid, peer_user, peer_pid, integration, via"
        " FROM events WHERE service = ? AND incident = ? ORDER BY seq {order} LIMIT ?"
    ),
    count_decided="SELECT COUNT(*) FROM notifications WHERE id >= ? AND id < ?",
    select_decided=(
        "SELECT created_at, seq, id, channel, address, round, level, via, not_before FROM"
        " notifications WHERE id >= ? AND id < ? ORDER BY created_at {order}, seq {order}"
        " LIMIT ?"
    ),
    count_attempts=(
        "SELECT COUNT(*) FROM delivery_attempts WHERE notification >= ? AND notification < ?"
    ),
    select_attempts=(
        "SELECT a.at, a.rowid, n.id, n.channel, n.address, n.round, n.level, a.outcome,"
        " a.provider_id, a.error FROM delivery_attempts a JOIN notifications n"
        " ON n.id = a.notification WHERE a.notification >= ? AND a.notification < ?"
        " ORDER BY a.at {order}, a.rowid {order} LIMIT ?"
    ),
)


def _port_errors(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """The method raising the port's errors for SQLite's, with SQLite's message."""

    @functools.wraps(method)
    def call(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(store, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    return call


def database_file(state_dir: Path) -> Path:
    """Where the database of the state directory `state_dir` is."""
    return state_dir / DATABASE_NAME


class Store:
    """The SQLite adapter of `Storage`: one database file, one connection, one writer."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.origin = secrets.token_hex(8)
        """This run's identity, stored with every notification it writes (`Notify.origin`)."""

    @classmethod
    def open_in(cls, state_dir: Path, *, check: bool = True) -> Store:
        """`open` the database of the state directory `state_dir`."""
        return cls.open(database_file(state_dir), check=check)

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
            # A node's part of the services (`shards=` of the reads), by the same hash as
            # `pager.shards`: computed, not stored, since a single node rarely asks.
            conn.create_function("shard_of", 1, shard_of, deterministic=True)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {path} has schema version {version}, newer than this pagerd "
                    f"knows ({SCHEMA_VERSION}): it was made by a newer pagerd. Run that "
                    "version, or restore a backup taken before the upgrade"
                )
            if check or version != SCHEMA_VERSION:
                quick_check(conn, path)
            if version != SCHEMA_VERSION:
                upgrade(conn, path, version)
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
                quick_check(conn, self.path)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from None

    def statistics(self) -> StorageStatistics:
        """Bytes of the database and its write-ahead log: no query, no thread needed."""
        size = 0
        for path in _files(self.path):
            with contextlib.suppress(OSError):  # no WAL (yet): nothing on disk
                size += path.stat().st_size
        return StorageStatistics(bytes_on_disk=size)

    @_port_errors
    def ping(self) -> None:
        """A trivial query: the database answers (the watchdog's proof of progress)."""
        self._conn.execute("SELECT 1").fetchone()

    def load_states(self, *, shards: Collection[int] | None = None) -> dict[str, ServiceState]:
        """Every service that has had an incident or has a heartbeat monitor, with its open
        incident and its monitor if any; of `shards` only if they are given."""
        try:
            return self._load_states(shards)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from exc

    def _load_states(self, shards: Collection[int] | None) -> dict[str, ServiceState]:
        where, of = _of_shards(shards)
        return reads.load_states(self._conn.execute, _STATES, where, of)

    @_port_errors
    def last_silence_id(self) -> int:
        """The highest silence id ever stored (0 if none): `prune` always keeps its row."""
        row = self._conn.execute("SELECT MAX(id) FROM silences").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    @_port_errors
    def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """(A single node never asks: its memory has every service. For the port's contract.)"""
        found: dict[Source, str] = {}
        for source in sources:
            row = self._conn.execute(
                "SELECT f.service FROM firing AS f JOIN incidents AS i ON i.service = f.service"
                " AND i.closed_at IS NULL WHERE f.integration = ? AND f.key = ?"
                " ORDER BY f.service LIMIT 1",
                (source.integration, source.key),
            ).fetchone()
            if row is not None:
                found[source] = str(row[0])
        return found

    @_port_errors
    def silence_service(self, id: int) -> str | None:
        row = self._conn.execute(
            "SELECT service FROM silences WHERE id = ? AND active = 1", (id,)
        ).fetchone()
        return None if row is None else str(row[0])

    @_port_errors
    def undelivered(
        self,
        limit: int,
        channel: str | None = None,
        due_by: float | None = None,
        *,
        shards: Collection[int] | None = None,
    ) -> list[Undelivered]:
        """Up to `limit` notifications not yet delivered (pending or retrying), oldest first;
        of one channel only if `channel` is given (the outbox reads each channel's backlog on
        its own, so that one channel's backlog never waits behind another's); only those due
        by `due_by` if it is given (retries waiting for their time do not crowd out new rows); of
        `shards` only if they are given."""
        where, of = _of_shards(shards)
        rows = self._conn.execute(
            f"SELECT {reads.UNDELIVERED_COLUMNS} FROM notifications"
            " WHERE state IN ('pending', 'retrying') AND (? IS NULL OR channel = ?)"
            " AND (? IS NULL OR next_attempt_at IS NULL OR next_attempt_at <= ?)"
            f" AND {where} ORDER BY seq LIMIT ?",
            (channel, channel, due_by, due_by, *of, limit),
        )
        return [reads.undelivered(row) for row in rows]

    @_port_errors
    def next_retry_at(
        self, channel: str, after: float, *, shards: Collection[int] | None = None
    ) -> float | None:
        """The earliest retry time after `after` of the channel's undelivered rows (of
        `shards` only if they are given)."""
        where, of = _of_shards(shards)
        row = self._conn.execute(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE state IN ('pending', 'retrying')"
            f" AND channel = ? AND next_attempt_at > ? AND {where}",
            (channel, after, *of),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_port_errors
    def undelivered_elsewhere(
        self, channels: Sequence[str], limit: int
    ) -> list[tuple[str, Undelivered]]:
        """Up to `limit` notifications not yet delivered on a channel not in `channels`, each
        with its id as stored: rows no lane will ever read back (written by a newer pagerd, or
        by hand), whose ids this pagerd would not make the same way."""
        rows = self._conn.execute(
            f"SELECT {reads.UNDELIVERED_COLUMNS}, id FROM notifications"
            " WHERE state IN ('pending', 'retrying')"
            f" AND channel NOT IN ({', '.join('?' * len(channels))}) ORDER BY seq LIMIT ?",
            (*channels, limit),
        )
        return [(row[14], reads.undelivered(row)) for row in rows]

    @_port_errors
    def deliveries(self, service: str, incident: int) -> list[Delivery]:
        """Every notification of one incident with its delivery state, in the order decided."""
        rows = self._conn.execute(
            f"SELECT {reads.DELIVERY_COLUMNS} FROM notifications WHERE id >= ? AND id < ?"
            " ORDER BY seq",
            notification_ids(service, incident),
        )
        return [reads.delivery(row) for row in rows]

    @_port_errors
    def latest_incident(self, service: str) -> int | None:
        row = self._conn.execute(
            "SELECT MAX(number) FROM incidents WHERE service = ?", (service,)
        ).fetchone()
        return None if row is None else row[0]

    @_port_errors
    def history(self, service: str, incident: int) -> History | None:
        """`pagerd.storage.history.read`, bounded as it says."""
        return history.read(self._conn.execute, _HISTORY, service, incident)

    @_port_errors
    def overrides(self) -> list[Override]:
        return [
            Override(*row)
            for row in self._conn.execute(
                f"SELECT {_OVERRIDE} FROM overrides WHERE removed_at IS NULL ORDER BY id"
            )
        ]

    @_port_errors
    def add_override(self, override: Override, at: float) -> Override:
        o = override
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO overrides (schedule, by_person, for_person, starts_at, ends_at,"
                " created_at, made_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (o.schedule, o.by, o.for_, o.start, o.end, at, o.made_by),
            )
        assert cursor.lastrowid is not None
        return attrs.evolve(override, id=cursor.lastrowid)

    @_port_errors
    def remove_override(self, id: int, by: str | None = None, at: float = 0.0) -> Override | None:
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE overrides SET removed_at = ?, removed_by = ? WHERE id = ? AND removed_at"
                f" IS NULL RETURNING {_OVERRIDE}",
                (at, by, id),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "DELETE FROM overrides WHERE removed_at IS NOT NULL AND id NOT IN (SELECT id"
                    " FROM overrides WHERE removed_at IS NOT NULL ORDER BY removed_at DESC, id"
                    " DESC LIMIT ?)",
                    (MAX_REMOVED_KEPT,),
                )
        return None if row is None else Override(*row)

    @_port_errors
    def removed_overrides(self, schedule: str, after: float, limit: int) -> list[Removal]:
        rows = self._conn.execute(
            f"SELECT {_OVERRIDE}, removed_by, removed_at FROM overrides WHERE schedule = ? AND"
            " removed_at IS NOT NULL AND ends_at > ? ORDER BY removed_at DESC, id DESC LIMIT ?",
            (schedule, after, limit),
        ).fetchall()
        return [Removal(Override(*row[:-2]), row[-2], row[-1]) for row in reversed(rows)]

    @_port_errors
    def prune_overrides(self, before: float) -> int:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM overrides WHERE ends_at < ?", (before,)).rowcount

    @_port_errors
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

    @_port_errors
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
        rows = 0
        with self._transaction() as conn:
            # Silences over and dropped from their service's state, the last one aside (new
            # ones number on from it): a few rows a day at most, so no resume of their own.
            rows += conn.execute(
                "DELETE FROM silences WHERE id IN (SELECT id FROM silences WHERE active = 0"
                " AND MIN(ends_at, COALESCE(ended_at, ends_at)) < ?"
                " AND id < (SELECT MAX(id) FROM silences) LIMIT ?)",
                (before, budget),
            ).rowcount
            candidates = conn.execute(
                "SELECT closed_at, rowid, service, number FROM incidents"
                " WHERE closed_at IS NOT NULL AND closed_at < ? AND (closed_at, rowid) > (?, ?)"
                " ORDER BY closed_at, rowid LIMIT ?",
                (before, *after, budget),
            ).fetchall()
            return history.prune_oldest(candidates, self._prune_incident, rows, budget, after)

    def _prune_incident(self, service: str, number: int, budget: int) -> int | None:
        """Delete one incident's history, its own row last: the rows deleted (0 if it is kept),
        or None if `budget` ran out first, with `budget` rows deleted and the rest left."""
        conn = self._conn
        latest = conn.execute("SELECT MAX(number) FROM incidents WHERE service = ?", (service,))
        if latest.fetchone()[0] == number:
            return 0
        first, end = notification_ids(service, number)
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

    @_port_errors
    def reply_code(self, address: str, service: str, incident: int, at: float) -> int:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT code FROM reply_codes WHERE address = ? AND service = ? AND incident = ?",
                (address, service, incident),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE reply_codes SET sent_at = ? WHERE address = ? AND code = ?",
                    (at, address, row[0]),
                )
                return int(row[0])
            code = reads.next_reply_code(
                conn.execute(
                    "SELECT r.code, i.closed_at FROM reply_codes r JOIN incidents i"
                    " ON i.service = r.service AND i.number = r.incident WHERE r.address = ?",
                    (address,),
                ),
                at,
            )
            conn.execute(
                "INSERT OR REPLACE INTO reply_codes (address, code, service, incident, sent_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (address, code, service, incident, at),
            )
            return code

    @_port_errors
    def take_reply(
        self, message_id: str, address: str, code: int | None, at: float
    ) -> ReplyCode | NoReply:
        with self._transaction() as conn:
            # Forget old ids a few at a time: each reply pays for a little of the clean-up.
            conn.execute(
                "DELETE FROM sms_replies WHERE message_id IN"
                " (SELECT message_id FROM sms_replies WHERE at < ? LIMIT 10)",
                (at - REPLAY_WINDOW,),
            )
            taken = conn.execute(
                "INSERT OR IGNORE INTO sms_replies (message_id, at) VALUES (?, ?)",
                (message_id, at),
            )
            if taken.rowcount == 0:
                return "replayed"
            return reads.reply_to(conn.execute, _REPLIES, address, code)

    @_port_errors
    def open_codes(self, address: str, limit: int) -> list[OpenCode]:
        found = self._conn.execute(
            "SELECT r.code, r.service, r.incident FROM reply_codes r JOIN incidents i"
            " ON i.service = r.service AND i.number = r.incident"
            " WHERE r.address = ? AND i.closed_at IS NULL"
            " ORDER BY r.sent_at DESC, r.code LIMIT ?",
            (address, limit),
        ).fetchall()
        return [OpenCode(int(code), service, int(incident)) for code, service, incident in found]

    def restart_clock(self, reading: Reading) -> tuple[Reading | None, float]:
        """At start: move the open incidents' deadlines, the retry times of undelivered
        notifications and the times resolves were taken (`alert_starts`) by `clock.shift` from
        the last recorded reading to `reading` (when it is a step, not jitter), and record
        `reading`, in one transaction, so a crash cannot move them twice. The last reading, and
        how far they moved (0.0: not at all)."""
        try:
            with self._transaction() as conn:
                last = rows.last_clock(conn)
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
                        "UPDATE heartbeats SET due_at = due_at + ? WHERE due_at IS NOT NULL",
                        (moved,),
                    )
                    conn.execute(
                        "UPDATE silences SET starts_at = starts_at + ?1, ends_at = ends_at + ?1,"
                        " ended_at = ended_at + ?1 WHERE active = 1",
                        (moved,),
                    )
                    conn.execute(
                        "UPDATE notifications SET next_attempt_at = next_attempt_at + ?"
                        " WHERE state IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL",
                        (moved,),
                    )
                    # How long ago each resolve was taken, for `RESOLVED_FOR`: kept, too.
                    conn.execute(
                        "UPDATE alert_starts SET resolved_at = resolved_at + ?"
                        " WHERE resolved_at IS NOT NULL",
                        (moved,),
                    )
                rows.record_clock(conn, reading)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from None
        return last, moved

    @_port_errors
    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        """Apply `batch` in one transaction, durable on return; on error, none of it. `fence`
        is not checked: the state directory's lock already makes this run the one writer."""
        with self._transaction() as conn:
            rows.write(conn, batch, self.origin)

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


def stored_overrides(state_dir: Path) -> list[Override]:
    """The overrides in the state directory's database, opened read-only (`pagerd --check` may
    run beside the daemon): none if there is no database yet, or it is of a version before
    overrides. `StoreError` if it cannot be read (another user's file)."""
    path = database_file(state_dir)
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if "overrides" not in tables:
                return []
            columns = {row[1] for row in conn.execute("PRAGMA table_info(overrides)")}
            if "removed_at" not in columns:  # of a pagerd before overrides were audited
                query = (
                    "SELECT id, schedule, by_person, for_person, starts_at, ends_at FROM"
                    " overrides ORDER BY id"
                )
            else:
                query = f"SELECT {_OVERRIDE} FROM overrides WHERE removed_at IS NULL ORDER BY id"
            return [Override(*row) for row in conn.execute(query)]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None


_OVERRIDE: Final = "id, schedule, by_person, for_person, starts_at, ends_at, made_by"
"""An override's columns, in `Override`'s order."""


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


def _of_shards(shards: Collection[int] | None) -> tuple[str, tuple[str, ...]]:
    """(condition, parameters) of a query's rows being of `shards`' services (any, if None)."""
    if shards is None:
        return "true", ()
    return "shard_of(service) IN (SELECT value FROM json_each(?))", (
        msgspec.json.encode(sorted(shards)).decode(),
    )
