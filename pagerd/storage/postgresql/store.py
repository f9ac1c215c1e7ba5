"""Durable state in PostgreSQL, shared by several pagerd nodes: the `Storage` port and the
`Cluster` port in one adapter, so that a fenced write and the leases it is fenced by are one
transaction.

Blocking by design: every method runs in a worker thread, on a connection of a psycopg pool
(one connection per thread at a time, as psycopg wants); `wait` has a connection of its own.
A returned `write` is committed (`synchronous_commit` as the server has it: on, by default).
Errors leave as the port's: `StoreUnavailable` for the database itself (connection lost, server
shutting down, a statement or a lock past its timeout, no connection within `connect_timeout`,
a deadlock or serialization failure), `StoreError` for the rest; their messages never hold the
DSN nor its password (`pagerd.config.storage.redact`).

Time: leases and nodes expire by the database's clock (`clock_timestamp()`), the only clock all
nodes share. Deadlines stored in rows are wall-clock seconds, as every node reads them: see
`restart_clock`.
"""

from __future__ import annotations

import functools
import math
import secrets
import select
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import attrs
import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from pager.domain import (
    ServiceState,
    Source,
)
from pager.schedules import Override
from pager.shards import SHARDS, shard_of
from pagerd.config.storage import StorageConfig, describe, redact
from pagerd.storage import history, reads
from pagerd.storage.cluster import INBOX_CHANNEL, Fenced, Lease, Node, Queued
from pagerd.storage.folding import fold
from pagerd.storage.history import notification_ids
from pagerd.storage.port import (
    MAX_REMOVED_KEPT,
    PRUNE_ROWS,
    REPLAY_WINDOW,
    Attempt,
    Delivery,
    Fence,
    Handled,
    History,
    NoReply,
    OpenCode,
    Pruned,
    Removal,
    ReplyCode,
    StorageStatistics,
    StoreError,
    StoreUnavailable,
    Transition,
    Undelivered,
    Write,
)
from pagerd.storage.postgresql import rows
from pagerd.storage.postgresql.links import (
    LOCK_TIMEOUT,
    STALL_GRACE,
    PoolLog,
    Watchdog,
    client_settings,
    session_options,
)
from pagerd.storage.postgresql.schema import (
    LOCK_CLASS,
    SCHEMA_VERSION,
    SchemaMismatch,
    check_version,
    migrate,
    missing_tables,
)
from pagerd.timing.clock import Reading

P = ParamSpec("P")
R = TypeVar("R")
Conn = psycopg.Connection[TupleRow]

ANSWERS_KEPT: Final = 600.0
"""Seconds an inbox event's answer is kept after it was handled (by the database's clock): its
sender reads it at once (`answers`), woken by `ANSWER_CHANNEL`; `prune` deletes older ones."""

LOCK_PRUNE: Final = 2
LOCK_REPLY_CODE: Final = 3
LOCK_INBOX: Final = 4
"""Second keys of the advisory locks (first key `schema.LOCK_CLASS`): one `prune` at a time
over all nodes; one `reply_code` per phone (the key: a hash of its address, `hashtext`); one
`put` per shard at a time (the key: the shard)."""

_UNAVAILABLE: Final = (
    psycopg.OperationalError,  # connection lost, server shutting down, the pool's timeout
    psycopg.errors.QueryCanceled,  # statement_timeout
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.InsufficientResources,  # a full disk on the server
    psycopg.errors.ConnectionException,
)

LEASE_BOUND: Final = LOCK_TIMEOUT + STALL_GRACE
"""Seconds a lease call (`join`, `claim`, `release`, `leases`, `leave`) may take before its
connection is cut: its statements are quick but for a wait on lease locks (`lock_timeout`),
and a claim answered later than the lease's margin is of no use (7 s against a default
`lease_ttl` of 10 s, held 8 s by the node's clock). The round after it is tried at once."""

_OVERRIDE: Final = "id, schedule, by_person, for_person, starts_at, ends_at, made_by"


def _port_errors(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """The method raising the port's errors for psycopg's, in words that never hold the DSN."""

    @functools.wraps(method)
    def call(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(store, *args, **kwargs)
        except psycopg.Error as exc:
            raise store._error(exc) from None

    return call


class Store:
    """The PostgreSQL adapter of `Storage` and `Cluster`: a pool of connections to one database
    that every node of the cluster shares.

    Open it with `Store.open(dsn, node=...)` or `Store.from_config(config.storage, node=...)`;
    the database must be at this pagerd's schema version (`pagerd migrate` makes it so).
    """

    def __init__(
        self,
        pool: ConnectionPool[Conn],
        dsn: str,
        node: str,
        connect_timeout: float,
        statement_timeout: float = 10.0,
        watchdog: Watchdog | None = None,
    ):
        self._pool = pool
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._watchdog = watchdog or Watchdog()
        self._bound = statement_timeout + STALL_GRACE
        """How long one transaction may take before its connection is cut (`Watchdog`): the
        server cancels a statement at `statement_timeout`, and says so within the grace
        unless the link forwards nothing."""
        self.node = node
        """This node's name: whose clock reading `restart_clock` records."""
        self.origin = secrets.token_hex(8)
        """This run's identity, stored with every notification it writes (`Notify.origin`)."""
        self._listener: Conn | None = None
        self._listening: set[str] = set()
        self._listener_lock = threading.Lock()
        self.where = describe(dsn)
        """The database, as messages name it (no user, no password)."""

    @classmethod
    def open(
        cls,
        dsn: str,
        *,
        node: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
    ) -> Store:
        """Connect to the database `dsn` names (`pool_size` connections, each opened within
        `connect_timeout` seconds, each statement cancelled after `statement_timeout`), and
        check that its schema is this pagerd's (else `SchemaMismatch`, naming `pagerd
        migrate`). `node`: this node's name (default: the host's). `StoreUnavailable` if the
        database cannot be reached."""
        watchdog = Watchdog()
        node = node or socket.gethostname()

        def check(conn: Conn) -> None:
            if _said_nothing(conn):
                return
            # The round trip that finds a broken connection before it is lent: bounded too,
            # or a stalled link would hang the call that asked for a connection.
            with watchdog.watching(conn, LOCK_TIMEOUT + STALL_GRACE):
                ConnectionPool.check_connection(conn)

        pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=pool_size,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(2, math.ceil(connect_timeout)),
                "options": session_options(dsn, statement_timeout),
                # Which node each session is, in pg_stat_activity (an operator could not tell).
                "application_name": _application("pagerd", node),
                **client_settings(dsn),
            },
            timeout=connect_timeout,
            # A connection a server restart broke is found out before it is lent, not by the
            # call it is lent to (much cheaper than a failed commit).
            check=check,
            configure=_configure,
            open=False,
            # Its own name: the log of a pool's failed connections is told apart by it.
            name=f"pagerd-{secrets.token_hex(4)}",
        )
        PoolLog.installed()
        store = cls(pool, dsn, node, connect_timeout, statement_timeout, watchdog)
        try:
            pool.open(wait=True, timeout=connect_timeout)
            with pool.connection() as conn:
                check_version(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            pool.close()
            raise store._error(exc) from None
        except SchemaMismatch as exc:
            pool.close()
            # As `pagerd --check` says it: which database, on which host.
            raise SchemaMismatch(f"{store.where}: {exc}") from None
        except StoreError:
            pool.close()
            raise
        return store

    @classmethod
    def from_config(cls, config: StorageConfig, *, node: str | None = None) -> Store:
        """`open` with `[storage]`'s settings (its backend must be "postgresql")."""
        assert config.backend == "postgresql" and config.dsn is not None, config.backend
        return cls.open(
            config.dsn.value,
            node=node,
            pool_size=config.pool_size,
            connect_timeout=config.connect_timeout,
            statement_timeout=config.statement_timeout,
        )

    def close(self) -> None:
        self._pool.close()
        PoolLog.installed().forget(self._pool.name)
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._watchdog.close()

    def _error(self, exc: BaseException) -> StoreError:
        # No connection in time: the last connection attempt's failure says why.
        last = PoolLog.installed().last_error(self._pool.name)
        return port_error(exc, self._dsn, self._connect_timeout, last)

    @contextmanager
    def _transaction(self, bound: float | None = None) -> Iterator[Conn]:
        """One transaction on a connection of the pool: committed if the block returns, else
        rolled back. Its connection is cut if it takes longer than `bound` seconds (default:
        the statement timeout and a grace): a stalled link fails it (`StoreUnavailable`)
        rather than block its thread, and whoever waits on it, until the link heals."""
        try:
            with (
                self._pool.connection() as conn,
                self._watchdog.watching(conn, self._bound if bound is None else bound),
                conn.transaction(),
            ):
                yield conn
        except PoolTimeout as exc:
            raise self._error(exc) from None

    @contextmanager
    def _connection(self, bound: float | None = None) -> Iterator[Conn]:
        """A connection of the pool, in autocommit: each statement its own transaction (one
        round trip for a read of one statement, where `_transaction` takes three). Cut, as
        `_transaction`'s, if the block takes longer than `bound` seconds."""
        try:
            with (
                self._pool.connection() as conn,
                self._watchdog.watching(conn, self._bound if bound is None else bound),
            ):
                yield conn
        except PoolTimeout as exc:
            raise self._error(exc) from None

    @contextmanager
    def _pipelined(self, bound: float | None = None) -> Iterator[Conn]:
        """One transaction in one round trip: `BEGIN`, the block's statements and `COMMIT` sent
        as one pipeline, with one Sync, their results read after the block (a cursor keeps its
        rows; a fetch inside the block would cost a round trip of its own). An error of any
        statement aborts the rest of it, `COMMIT` included, and raises once the block is left;
        the transaction is rolled back then, before the connection goes back to the pool.
        (Not psycopg's `transaction()`, which in a pipeline syncs at its start and its end.)
        Cut, as `_transaction`'s, if the block takes longer than `bound` seconds."""
        with self._connection(bound) as conn:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    yield conn
                    conn.execute("COMMIT")
            except BaseException:
                if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                    with suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _snapshot(self) -> Iterator[Conn]:
        """A read-only transaction whose queries all see one moment (several reads that belong
        together: a service's incidents, its firing set, its monitor)."""
        with self._transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    # The store as a whole. ---------------------------------------------------------------------

    @_port_errors
    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1").fetchone()

    @_port_errors
    def verify(self) -> None:
        """The schema is this pagerd's version and every table of it is there (the server
        checks its own pages; a corrupt one is its error, reported as any other)."""
        with self._transaction() as conn:
            check_version(conn)
            missing = missing_tables(conn)
        if missing:
            raise StoreError(f"{self.where}: tables missing: {', '.join(missing)}")

    def statistics(self) -> StorageStatistics:
        """No size: the database is on another host, shared by every node (its size is the
        server's figure to watch, not this machine's disk), and this is read at each metrics
        scrape on the event loop, where a query must not run."""
        return StorageStatistics(bytes_on_disk=None)

    # Writes. ---------------------------------------------------------------------------------

    @_port_errors
    def write(self, batch: Sequence[Write], fence: Fence | None = None) -> None:
        """Apply `batch` in one transaction, fenced: every shard it touches (a transition's
        service's; an attempt's notification's, as stored; a handled event's, as queued) must
        be leased to `fence.node` under `fence.epochs[shard]` and not expired, checked under a
        share lock of those leases that a `claim` by another node waits for. Else nothing is
        written and `Fenced` names the shards lost. A write touching no shard (a clock mark)
        needs no fence; one that touches any without a fence is refused (`Fenced`).

        One round trip, whatever the batch: the transaction (its `BEGIN`, the fence's check,
        every table's statement, `COMMIT`) goes as one pipeline, and the check runs in the
        server (`_FENCE`), where a lost shard raises an error that aborts the rest of the
        pipeline and rolls the transaction back before anything of it is committed."""
        folded = fold(batch, self.origin)
        statements = rows.statements(folded)
        touched = {shard_of(t.after.name) for t in batch if isinstance(t, Transition)}
        attempts = [a.id for a in batch if isinstance(a, Attempt)]
        handled = [h.id for h in batch if isinstance(h, Handled)]
        lent: Conn | None = None
        try:
            with self._pipelined() as conn:
                lent = conn
                if touched or attempts or handled:
                    conn.execute(_FENCE, _fence_arguments(fence, touched, attempts, handled))
                for statement, values in statements:
                    conn.execute(statement, (values,))
                if folded.clock is not None:
                    _record_clock(conn, self.node, folded.clock)
        except psycopg.Error as exc:
            if exc.sqlstate == FENCED_STATE:
                raise _fenced(exc) from None
            if isinstance(exc, psycopg.errors.UndefinedFunction) and lent is not None:
                # The session lost the fence's function: something between pagerd and the
                # server reset it (a transaction-pooling proxy). This connection goes (the pool
                # makes a new one, with the function), and the write is retried as any other
                # that met an unavailable database, rather than fail the same way for ever.
                lent.close()
                raise StoreUnavailable(f"{self.where}: {SESSION_RESET}") from None
            raise

    # Start-up and the outbox's reads. --------------------------------------------------------

    @_port_errors
    def load_states(self, *, shards: Collection[int] | None = None) -> dict[str, ServiceState]:
        where, of = _of_shards(shards)
        with self._snapshot() as conn:
            return reads.load_states(conn.execute, _STATES, where, of)

    @_port_errors
    def last_silence_id(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT max(id) FROM silences").fetchone()
        return 0 if row is None or row[0] is None else int(str(row[0]))

    @_port_errors
    def firing_services(self, sources: Collection[Source]) -> dict[Source, str]:
        """One query for all of `sources`, by the index `firing_source` (migration 3)."""
        wanted = sorted({(s.integration, s.key) for s in sources})
        if not wanted:
            return {}
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT ON (f.integration, f.key) f.integration, f.key, f.service"
                " FROM firing AS f JOIN unnest(%s::text[], %s::text[]) AS w (integration, key)"
                " ON f.integration = w.integration AND f.key = w.key"
                " JOIN incidents AS i ON i.service = f.service AND i.closed_at IS NULL"
                " ORDER BY f.integration, f.key, f.service",
                ([i for i, _ in wanted], [k for _, k in wanted]),
            ).fetchall()
        return {Source(str(i), str(k)): str(service) for i, k, service in rows}

    @_port_errors
    def silence_service(self, id: int) -> str | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT service FROM silences WHERE id = %s AND active", (id,)
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
        where, of = _of_shards(shards)
        with self._connection() as conn:
            found = conn.execute(
                f"SELECT {reads.UNDELIVERED_COLUMNS} FROM notifications"
                " WHERE state IN ('pending', 'retrying')"
                " AND (%s::text IS NULL OR channel = %s::text)"
                " AND (%s::float8 IS NULL OR next_attempt_at IS NULL OR next_attempt_at <= %s)"
                f" AND {where} ORDER BY seq LIMIT %s",
                (channel, channel, due_by, due_by, *of, limit),
            ).fetchall()
        return [reads.undelivered(row) for row in found]

    @_port_errors
    def next_retry_at(
        self, channel: str, after: float, *, shards: Collection[int] | None = None
    ) -> float | None:
        where, of = _of_shards(shards)
        with self._connection() as conn:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM notifications"
                " WHERE state IN ('pending', 'retrying') AND channel = %s"
                f" AND next_attempt_at > %s AND {where}",
                (channel, after, *of),
            ).fetchone()
        return None if row is None or row[0] is None else float(str(row[0]))

    @_port_errors
    def undelivered_elsewhere(
        self, channels: Sequence[str], limit: int
    ) -> list[tuple[str, Undelivered]]:
        with self._connection() as conn:
            found = conn.execute(
                f"SELECT {reads.UNDELIVERED_COLUMNS}, id FROM notifications"
                " WHERE state IN ('pending', 'retrying') AND NOT channel = ANY(%s)"
                " ORDER BY seq LIMIT %s",
                (list(channels), limit),
            ).fetchall()
        return [(row[14], reads.undelivered(row)) for row in found]

    @_port_errors
    def failed_counts(self) -> dict[tuple[str, int], int]:
        with self._connection() as conn:
            return {
                (service, incident): count
                for service, incident, count in conn.execute(
                    "SELECT n.service, n.incident, count(*) FROM notifications n JOIN incidents i"
                    " ON i.service = n.service AND i.number = n.incident"
                    " WHERE n.state = 'failed' AND i.closed_at IS NULL GROUP BY 1, 2"
                )
            }

    # Status and history. ---------------------------------------------------------------------

    @_port_errors
    def deliveries(self, service: str, incident: int) -> list[Delivery]:
        with self._connection() as conn:
            found = conn.execute(
                f"SELECT {reads.DELIVERY_COLUMNS} FROM notifications"
                " WHERE id >= %s AND id < %s ORDER BY seq",
                notification_ids(service, incident),
            ).fetchall()
        return [reads.delivery(row) for row in found]

    @_port_errors
    def latest_incident(self, service: str) -> int | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT max(number) FROM incidents WHERE service = %s", (service,)
            ).fetchone()
        return None if row is None or row[0] is None else int(str(row[0]))

    @_port_errors
    def history(self, service: str, incident: int) -> History | None:
        """`pagerd.storage.history.read`, its sources read in one snapshot."""
        with self._snapshot() as conn:
            return history.read(conn.execute, _HISTORY, service, incident)

    # Retention. ------------------------------------------------------------------------------

    @_port_errors
    def prune(
        self, before: float, after: tuple[float, int] = (-math.inf, 0), budget: int = PRUNE_ROWS
    ) -> Pruned:
        """As the SQLite adapter's `prune` (oldest closed incidents first, in transactions of
        at most `budget` rows, a service's latest incident and one with a notification still
        to deliver kept), and answers of the inbox older than `ANSWERS_KEPT`. Several nodes
        may prune at once: each transaction takes a lock all prunes share, so they take turns
        rather than delete the same rows in different orders (a deadlock)."""
        count = 0
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, LOCK_PRUNE))
            count += _rowcount(
                conn.execute(
                    "DELETE FROM answers WHERE id IN (SELECT id FROM answers WHERE answered_at"
                    " < clock_timestamp() - make_interval(secs => %s) ORDER BY answered_at"
                    " LIMIT %s)",
                    (ANSWERS_KEPT, budget),
                )
            )
            count += _rowcount(
                conn.execute(
                    "DELETE FROM silences WHERE id IN (SELECT id FROM silences WHERE NOT active"
                    " AND least(ends_at, coalesce(ended_at, ends_at)) < %s"
                    " AND id < (SELECT max(id) FROM silences) LIMIT %s)",
                    (before, max(budget - count, 0)),
                )
            )
            candidates = conn.execute(
                "SELECT closed_at, seq, service, number FROM incidents"
                " WHERE closed_at IS NOT NULL AND closed_at < %s AND (closed_at, seq) > (%s, %s)"
                " ORDER BY closed_at, seq LIMIT %s",
                (before, *after, budget),
            ).fetchall()
            return history.prune_oldest(
                candidates, functools.partial(_prune_incident, conn), count, budget, after
            )

    # SMS replies. ----------------------------------------------------------------------------

    @_port_errors
    def reply_code(self, address: str, service: str, incident: int, at: float) -> int:
        """As the SQLite adapter's, under a lock of the phone's that every node takes: two
        nodes paging one phone at once never give it one code twice."""
        with self._transaction() as conn:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (LOCK_CLASS + LOCK_REPLY_CODE, address),
            )
            row = conn.execute(
                "SELECT code FROM reply_codes WHERE address = %s AND service = %s"
                " AND incident = %s",
                (address, service, incident),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE reply_codes SET sent_at = %s WHERE address = %s AND code = %s",
                    (at, address, row[0]),
                )
                return int(str(row[0]))
            code = reads.next_reply_code(
                conn.execute(
                    "SELECT r.code, i.closed_at FROM reply_codes r JOIN incidents i"
                    " ON i.service = r.service AND i.number = r.incident WHERE r.address = %s",
                    (address,),
                ),
                at,
            )
            conn.execute(
                "INSERT INTO reply_codes (address, code, service, incident, sent_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (address, code) DO UPDATE SET"
                " service = excluded.service, incident = excluded.incident,"
                " sent_at = excluded.sent_at",
                (address, code, service, incident, at),
            )
            return code

    @_port_errors
    def take_reply(
        self, message_id: str, address: str, code: int | None, at: float
    ) -> ReplyCode | NoReply:
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM sms_replies WHERE message_id IN"
                " (SELECT message_id FROM sms_replies WHERE at < %s LIMIT 10)",
                (at - REPLAY_WINDOW,),
            )
            # Two nodes taking one message at once: the second waits on the first's key, then
            # inserts nothing: "replayed".
            taken = conn.execute(
                "INSERT INTO sms_replies (message_id, at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (message_id, at),
            )
            if taken.rowcount == 0:
                return "replayed"
            return reads.reply_to(conn.execute, _REPLIES, address, code)

    @_port_errors
    def open_codes(self, address: str, limit: int) -> list[OpenCode]:
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT r.code, r.service, r.incident FROM reply_codes r JOIN incidents i"
                " ON i.service = r.service AND i.number = r.incident"
                " WHERE r.address = %s AND i.closed_at IS NULL"
                " ORDER BY r.sent_at DESC, r.code LIMIT %s",
                (address, limit),
            ).fetchall()
        return [OpenCode(int(code), service, int(incident)) for code, service, incident in found]

    # Overrides. ------------------------------------------------------------------------------

    @_port_errors
    def overrides(self) -> list[Override]:
        with self._connection() as conn:
            found = conn.execute(
                f"SELECT {_OVERRIDE} FROM overrides WHERE removed_at IS NULL ORDER BY id"
            ).fetchall()
        return [Override(*row) for row in found]

    @_port_errors
    def add_override(self, override: Override, at: float) -> Override:
        o = override
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO overrides (schedule, by_person, for_person, starts_at, ends_at,"
                " created_at, made_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (o.schedule, o.by, o.for_, o.start, o.end, at, o.made_by),
            ).fetchone()
        assert row is not None
        return attrs.evolve(override, id=int(str(row[0])))

    @_port_errors
    def remove_override(self, id: int, by: str | None = None, at: float = 0.0) -> Override | None:
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE overrides SET removed_at = %s, removed_by = %s WHERE id = %s AND"
                f" removed_at IS NULL RETURNING {_OVERRIDE}",
                (at, by, id),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "DELETE FROM overrides WHERE removed_at IS NOT NULL AND id NOT IN (SELECT id"
                    " FROM overrides WHERE removed_at IS NOT NULL ORDER BY removed_at DESC, id"
                    " DESC LIMIT %s)",
                    (MAX_REMOVED_KEPT,),
                )
        return None if row is None else Override(*row)

    @_port_errors
    def removed_overrides(self, schedule: str, after: float, limit: int) -> list[Removal]:
        with self._connection() as conn:
            found = conn.execute(
                f"SELECT {_OVERRIDE}, removed_by, removed_at FROM overrides WHERE schedule = %s"
                " AND removed_at IS NOT NULL AND ends_at > %s"
                " ORDER BY removed_at DESC, id DESC LIMIT %s",
                (schedule, after, limit),
            ).fetchall()
        return [Removal(Override(*row[:-2]), row[-2], row[-1]) for row in reversed(found)]

    @_port_errors
    def prune_overrides(self, before: float) -> int:
        with self._connection() as conn:
            return _rowcount(conn.execute("DELETE FROM overrides WHERE ends_at < %s", (before,)))

    # The clock. ------------------------------------------------------------------------------

    @_port_errors
    def restart_clock(self, reading: Reading) -> tuple[Reading | None, float]:
        """Record this node's `reading` (and give back the one it recorded last); move nothing.

        On SQLite one pagerd owns every stored deadline, and they are in its frame: a start
        moves them by how far its frame stepped against the time that truly passed. Here every
        node reads and writes the same deadlines while the others run, each in its own frame,
        anchored to its own wall clock: what they share is wall-clock time, so the nodes'
        clocks must agree (NTP), and a step seen by one node is that node's to log, not a
        reason to move deadlines every other node is keeping. So nothing moves: 0.0."""
        with self._transaction() as conn:
            last = _last_clock(conn, self.node)
            _record_clock(conn, self.node, reading)
        return last, 0.0

    # The cluster (`pagerd.storage.cluster.Cluster`). --------------------------------------------

    @_port_errors
    def join(self, node: str, ttl: float, *, run: str, config: str = "") -> list[Node]:
        """The name's row is taken by `run` only if it is its own already or has expired: a
        second process of a name that a live run holds leaves that run's row as it is, and
        sees it (another run) in what is given back."""
        with self._pipelined(LEASE_BOUND) as conn:
            conn.execute(
                "INSERT INTO nodes (name, expires_at, run, config) VALUES"
                " (%s, clock_timestamp() + make_interval(secs => %s), %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at,"
                " run = excluded.run, config = excluded.config"
                " WHERE nodes.run = excluded.run OR nodes.expires_at <= clock_timestamp()",
                (node, ttl, run, config),
            )
            # Nodes gone for a day are forgotten: a renamed or retired node leaves no row.
            conn.execute(
                "DELETE FROM nodes WHERE expires_at < clock_timestamp() - interval '1 day'"
            )
            cursor = conn.execute(
                "SELECT name, extract(epoch FROM expires_at - clock_timestamp())::float8, run,"
                " config FROM nodes WHERE expires_at > clock_timestamp() ORDER BY name"
            )
        return [Node(name, remaining, r, c) for name, remaining, r, c in cursor.fetchall()]

    @_port_errors
    def leave(self, node: str, *, run: str) -> None:
        with self._pipelined(LEASE_BOUND) as conn:
            conn.execute("DELETE FROM nodes WHERE name = %s AND run = %s", (node, run))
            conn.execute(
                "UPDATE leases SET expires_at = '-infinity' WHERE owner = %s AND run = %s",
                (node, run),
            )

    @_port_errors
    def claim(
        self,
        node: str,
        shards: Collection[int],
        ttl: float,
        *,
        run: str,
        anew: Collection[int] = (),
    ) -> dict[int, int]:
        """Each of `shards` free, expired, released or this run's taken (or renewed) for `ttl`
        seconds of the database's clock. The leases are locked for update, in shard order (as
        fenced writes lock them for share), so a claim waits for every write fenced by a shard
        it takes, and that write, committed first, is seen by the new owner. The owner is the
        run: another run of the same name is a change of owner, never a renewal."""
        wanted = sorted({int(s) for s in shards if 0 <= s < SHARDS})
        with self._connection(LEASE_BOUND) as conn:
            found = conn.execute(
                "WITH locked AS (SELECT shard FROM leases WHERE shard = ANY(%(shards)s)"
                " ORDER BY shard FOR UPDATE) UPDATE leases AS l SET"
                " epoch = CASE WHEN l.owner = %(node)s AND l.run = %(run)s"
                " AND l.expires_at > clock_timestamp() AND NOT l.shard = ANY(%(anew)s)"
                " THEN l.epoch ELSE l.epoch + 1 END,"
                " owner = %(node)s, run = %(run)s,"
                " expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)"
                " FROM locked WHERE l.shard = locked.shard AND ((l.owner = %(node)s"
                " AND l.run = %(run)s) OR l.owner IS NULL OR l.expires_at <= clock_timestamp())"
                " RETURNING l.shard, l.epoch",
                {"shards": wanted, "node": node, "ttl": ttl, "run": run, "anew": sorted(anew)},
            ).fetchall()
        return {int(str(shard)): int(str(epoch)) for shard, epoch in found}

    @_port_errors
    def release(self, node: str, shards: Collection[int], *, run: str) -> None:
        with self._connection(LEASE_BOUND) as conn:
            conn.execute(
                "UPDATE leases SET expires_at = '-infinity' WHERE owner = %s AND run = %s"
                " AND shard = ANY(%s)",
                (node, run, sorted(shards)),
            )

    @_port_errors
    def leases(self) -> list[Lease]:
        with self._connection(LEASE_BOUND) as conn:
            found = conn.execute(
                "SELECT shard, owner, epoch, CASE WHEN expires_at = '-infinity' THEN -1e9"
                " ELSE greatest(extract(epoch FROM expires_at - clock_timestamp()), -1e9)"
                " END::float8 FROM leases ORDER BY shard"
            ).fetchall()
        return [Lease(int(str(s)), owner, int(str(e)), float(str(r))) for s, owner, e, r in found]

    @_port_errors
    def put(self, node: str, service: str, event: bytes, at: float) -> int:
        """Queue `event` and notify `INBOX_CHANNEL` with its shard, at commit. Puts of one shard
        take turns (a lock per shard, to commit): ids are given and committed in the same order
        within a shard, so that an owner that took up to id N of a shard never sees a smaller
        one of that shard appear later."""
        shard = shard_of(service)
        # One round trip: the transaction goes as one pipeline, its id read once committed.
        with self._pipelined() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS + LOCK_INBOX, shard))
            cursor = conn.execute(
                "INSERT INTO inbox (shard, service, event, at, node) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id",
                (shard, service, event, at, node),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (INBOX_CHANNEL, str(shard)))
        row = cursor.fetchone()
        assert row is not None
        return int(str(row[0]))

    @_port_errors
    def put_many(self, node: str, items: Sequence[tuple[str, bytes, float]]) -> list[int]:
        """As `put`, in one transaction: the shards' locks taken in shard order (two batches
        never wait for each other in a cycle), the rows inserted in the order of `items` (one
        statement: ids are drawn from the sequence as the rows go in, so sorted they are the
        items' in order), each shard notified once. One round trip (`_pipelined`)."""
        if not items:
            return []
        shards = sorted({shard_of(service) for service, _, _ in items})
        with self._pipelined() as conn:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, s) FROM unnest(%s::int[]) AS s ORDER BY s",
                (LOCK_CLASS + LOCK_INBOX, shards),
            )
            cursor = conn.execute(
                "INSERT INTO inbox (shard, service, event, at, node)"
                " SELECT shard, service, event, at, %s FROM unnest(%s::smallint[], %s::text[],"
                " %s::bytea[], %s::float8[]) WITH ORDINALITY AS i (shard, service, event, at, n)"
                " ORDER BY n RETURNING id",
                (
                    node,
                    [shard_of(service) for service, _, _ in items],
                    [service for service, _, _ in items],
                    [event for _, event, _ in items],
                    [at for _, _, at in items],
                ),
            )
            conn.execute(
                "SELECT pg_notify(%s, s::text) FROM unnest(%s::int[]) AS s",
                (INBOX_CHANNEL, shards),
            )
        ids = sorted(int(str(id)) for (id,) in cursor.fetchall())
        assert len(ids) == len(items)
        return ids

    @_port_errors
    def take(
        self, shards: Collection[int], after: int, limit: int, *, skip: Collection[str] = ()
    ) -> list[Queued]:
        with self._connection() as conn:
            found = conn.execute(
                "SELECT id, shard, service, event, at, node FROM inbox"
                " WHERE shard = ANY(%s) AND id > %s AND NOT service = ANY(%s::text[])"
                " ORDER BY id LIMIT %s",
                (sorted(shards), after, sorted(skip), limit),
            ).fetchall()
        return [
            Queued(int(str(id)), int(str(shard)), service, bytes(event), at, node)
            for id, shard, service, event, at, node in found
        ]

    @_port_errors
    def answers(self, ids: Sequence[int]) -> dict[int, str]:
        with self._connection() as conn:
            found = conn.execute(
                "SELECT id, answer FROM answers WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        return {int(str(id)): str(answer) for id, answer in found}

    @_port_errors
    def next_ids(self, name: str, count: int) -> range:
        """`count` ids of the counter `name`, given in one update of its row (a block of ids is
        contiguous, which a PostgreSQL sequence does not promise under concurrency). The
        counter of "silence" never starts below the silences stored."""
        if count < 0:
            raise StoreError(f"next_ids: count must not be negative, not {count}")
        floor = "(SELECT coalesce(max(id), 0) + 1 FROM silences)" if name == "silence" else "1"
        with self._connection() as conn:
            row = conn.execute(
                f"INSERT INTO counters (name, next) VALUES (%(name)s, {floor} + %(count)s)"
                f" ON CONFLICT (name) DO UPDATE SET next = greatest(counters.next, {floor})"
                " + %(count)s RETURNING next - %(count)s",
                {"name": name, "count": count},
            ).fetchone()
        assert row is not None
        start = int(str(row[0]))
        return range(start, start + count)

    def wait(self, channels: Collection[str], timeout: float) -> list[tuple[str, str]]:
        """Block until a notification on one of `channels` arrives or `timeout` passes, on a
        connection of its own (not the pool's: it must stay listening between calls).

        A lost connection (the server restarted) raises `StoreUnavailable`, and the next call
        connects and listens again: what was notified meanwhile is lost, so a caller that sees
        the error must look again (`take`, `answers`) rather than wait for a notification."""
        with self._listener_lock:
            try:
                conn = self._listen(channels)
                found: list[tuple[str, str]] = []
                for note in conn.notifies(timeout=timeout, stop_after=1):
                    found.append((note.channel, note.payload))
                # And whatever came with it, without waiting.
                for note in conn.notifies(timeout=0.0):
                    found.append((note.channel, note.payload))
                return [(c, p) for c, p in found if c in channels]
            except psycopg.Error as exc:
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
                raise self._error(exc) from None

    def _listen(self, channels: Collection[str]) -> Conn:
        if self._listener is None or self._listener.closed:
            self._listener = psycopg.Connection.connect(
                # Idle between notifications: keepalives are what notice a dead server.
                make_conninfo(self._dsn, **client_settings(self._dsn)),
                autocommit=True,
                connect_timeout=max(2, math.ceil(self._connect_timeout)),
                application_name=_application("pagerd-listen", self.node),
            )
            self._listening = set()
        listener = self._listener
        with self._watchdog.watching(listener, LEASE_BOUND):
            for channel in sorted(set(channels) - self._listening):
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.add(channel)
        return listener


def _configure(conn: Conn) -> None:
    """Each connection of the pool as it is opened: the fence's function made in its session."""
    conn.execute(_FENCE_FUNCTION)


def _said_nothing(conn: Conn) -> bool:
    """Whether an idle connection of the pool can be lent without the round trip that checks
    it (raises if it is known broken). A live server sends an idle connection of the pool
    nothing (it listens to no channel); one that restarts or ends the session says so (its
    farewell, then the socket's end), which is then waiting to be read. So only a connection
    with something to read needs the round trip that finds out: otherwise it is one round trip
    more on every call, a third of a read's time and half of a write's."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    return not readable


def port_error(
    exc: BaseException, dsn: str, connect_timeout: float, last_connect_error: str | None = None
) -> StoreError:
    """The port's error for psycopg's: what failed, in the server's own words (its primary
    message: the detail that may quote a row's values is left out), never the DSN. A pool that
    found no connection in time says why its last attempt to make one failed
    (`last_connect_error`), not only that it timed out."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    said = redact((primary or str(exc) or type(exc).__name__).strip(), dsn)
    where = describe(dsn)
    if isinstance(exc, PoolTimeout):
        if last_connect_error is not None:
            said = redact(last_connect_error, dsn)
        return StoreUnavailable(f"{where}: no connection within {connect_timeout:g}s ({said})")
    kind = StoreUnavailable if isinstance(exc, _UNAVAILABLE) else StoreError
    return kind(f"{where}: {said}")


# For `pagerd migrate` and `pagerd --check`: one connection, no pool. ------------------------


@contextmanager
def _connection(config: StorageConfig) -> Iterator[Conn]:
    assert config.dsn is not None
    dsn = config.dsn.value
    try:
        with psycopg.Connection.connect(
            make_conninfo(dsn, **client_settings(dsn)),
            autocommit=True,
            connect_timeout=max(2, math.ceil(config.connect_timeout)),
            # The node's own link settings: a database cut mid-migration fails the command in
            # seconds instead of hanging it, and the DSN's own `options` are kept.
            options=session_options(dsn, config.statement_timeout),
            application_name="pagerd-migrate",
        ) as conn:
            yield conn
    except psycopg.Error as exc:
        raise port_error(exc, dsn, config.connect_timeout) from None


MIGRATE_PRIVILEGES: Final = (
    "the role pagerd connects as must own the database (CREATE DATABASE ... OWNER that role), or"
    " at least have CREATE on its schema public (GRANT CREATE ON SCHEMA public TO that role)"
)
"""What `pagerd migrate` adds to a permission denied: on PostgreSQL 15 only the database's owner
may create tables in `public` by default."""


TEMPORARY_PRIVILEGE: Final = (
    "the role pagerd connects as may not create temporary objects in this database, and a node"
    " makes its fence check a function of each session's (GRANT TEMPORARY ON DATABASE ... TO"
    " that role)"
)
"""What `pagerd --check` says where a node could not start: a database hardened with `REVOKE
ALL ON DATABASE ... FROM PUBLIC` takes TEMPORARY away too (found in review: `--check` said ok,
the node then failed to open a connection)."""


def migrate_schema(config: StorageConfig) -> tuple[int, int]:
    """Bring `config`'s database to this pagerd's schema version: (from, to)."""
    dsn = config.dsn.value if config.dsn is not None else ""
    with _connection(config) as conn:
        try:
            return migrate(conn)
        except SchemaMismatch as exc:
            raise SchemaMismatch(f"{describe(dsn)}: {exc}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            # `permission denied for schema public` alone does not say what to grant.
            said = port_error(exc, dsn, config.connect_timeout)
            raise StoreError(f"{said}: {MIGRATE_PRIVILEGES}") from None


def check_schema(config: StorageConfig) -> str:
    """What `pagerd --check` says of `config`'s database when it answers at this pagerd's
    schema version; `StoreError` (naming `pagerd migrate` where that is the cure) if not."""
    dsn = config.dsn.value if config.dsn is not None else ""
    with _connection(config) as conn:
        conn.execute("SELECT 1")
        try:
            check_version(conn)
        except SchemaMismatch as exc:
            raise SchemaMismatch(f"{describe(dsn)}: {exc}") from None
        row = conn.execute(
            "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
        ).fetchone()
        if row is None or not row[0]:
            raise StoreError(f"{describe(dsn)}: {TEMPORARY_PRIVILEGE}")
    return f"PostgreSQL schema version {SCHEMA_VERSION}"


# Helpers. ----------------------------------------------------------------------------------------


SESSION_RESET: Final = (
    "the connection's session lost pagerd's fence function (reset by something between pagerd"
    " and PostgreSQL? pagerd needs a session per connection: no transaction pooling)"
)

FENCED_STATE: Final = "PGRF1"
"""The SQLSTATE `_FENCE` raises (a code of pagerd's own, in no standard class)."""

_FENCE_FUNCTION: Final = f"""CREATE FUNCTION pg_temp.pagerd_fence(f_node text, f_run text,
    f_epochs bigint[], f_touched integer[], f_attempts text[], f_handled bigint[])
RETURNS void LANGUAGE plpgsql AS $fence$
DECLARE
    f_held integer[];
    f_lost integer[] := '{{}}';
    s integer;
BEGIN
    IF cardinality(f_attempts) > 0 OR cardinality(f_handled) > 0 THEN
        SELECT array_agg(DISTINCT t.shard) INTO f_touched FROM (
            SELECT unnest(f_touched) AS shard
            UNION ALL SELECT shard FROM notifications WHERE id = ANY(f_attempts)
            UNION ALL SELECT shard FROM inbox WHERE id = ANY(f_handled)
        ) AS t;
    END IF;
    SELECT coalesce(array_agg(l.shard), '{{}}') INTO f_held FROM (
        SELECT shard, owner, run, epoch, expires_at FROM leases WHERE shard = ANY(f_touched)
        ORDER BY shard FOR SHARE
    ) AS l WHERE l.owner = f_node AND l.run = f_run AND l.expires_at > clock_timestamp()
        AND l.epoch = f_epochs[l.shard + 1];
    FOREACH s IN ARRAY coalesce(f_touched, '{{}}') LOOP
        IF NOT s = ANY(f_held) THEN
            f_lost := f_lost || s;
        END IF;
    END LOOP;
    IF cardinality(f_lost) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '{FENCED_STATE}', MESSAGE = 'fenced',
            DETAIL = array_to_string(f_lost, ',');
    END IF;
END
$fence$"""
"""The fence of a write, checked in the server, in the write's transaction, before its
statements (`_FENCE`): the shards it touches (its transitions' services', given; its attempts'
notifications' and its handled events', as stored) must each be leased to the fence's run of
its node under the fence's epoch (`f_epochs[shard + 1]`), unexpired by the clock now (not the
transaction's start: the lock may have been waited for). Their leases are locked for share in
shard order, as a `claim` locks them for update: a claim waits for the write, and the write for
a claim; each is checked once locked, by the clock then. A lost shard raises `FENCED_STATE`,
its detail the shards lost, which aborts the rest of the write's pipeline. No node (NULL): every
shard touched is lost.

A function of the session (`pg_temp`), made on each connection as the pool opens it: nothing to
migrate, and its plans are kept for the connection's life (a `DO` block, planned at each run,
cost a millisecond of the server's time a commit)."""

_FENCE: Final = (
    "SELECT pg_temp.pagerd_fence(%s::text, %s::text, %s::bigint[], %s::integer[], %s::text[],"
    " %s::bigint[])"
)


def _application(what: str, node: str) -> str:
    """A session's `application_name`: what it is and the node's name, within the 63 bytes
    PostgreSQL keeps (it would cut the name and say so in a NOTICE)."""
    return f"{what} {node}".encode()[:63].decode(errors="ignore")


def _fence_arguments(
    fence: Fence | None, shards: Collection[int], attempts: Sequence[str], handled: Sequence[int]
) -> tuple[str | None, str | None, list[int | None], list[int], list[str], list[int]]:
    """`_FENCE`'s parameters: no node (so every shard touched is lost) if there is no fence;
    the epochs by shard (element shard + 1, NULL where not held)."""
    epochs: list[int | None] = [None] * SHARDS
    if fence is not None:
        for shard, epoch in fence.epochs.items():
            if 0 <= shard < SHARDS:
                epochs[shard] = epoch
    node, run = (None, None) if fence is None else (fence.node, fence.run)
    return node, run, epochs, sorted(shards), list(attempts), list(handled)


def _fenced(exc: psycopg.Error) -> Fenced:
    """The `Fenced` of `_FENCE`'s error."""
    detail = exc.diag.message_detail or ""
    return Fenced({int(s) for s in detail.split(",") if s.strip().isdigit()})


def _of_shards(shards: Collection[int] | None) -> tuple[str, tuple[list[int], ...]]:
    """(condition, parameters) of a query's rows being of `shards`' services (any, if None)."""
    if shards is None:
        return "true", ()
    return "shard = ANY(%s)", (sorted(shards),)


def _rowcount(cursor: psycopg.Cursor[Any]) -> int:
    return max(cursor.rowcount, 0)


def _record_clock(conn: Conn, node: str, reading: Reading) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"clock/{node}", msgspec.json.encode(attrs.asdict(reading)).decode()),
    )


def _last_clock(conn: Conn, node: str) -> Reading | None:
    row = conn.execute("SELECT value FROM meta WHERE key = %s", (f"clock/{node}",)).fetchone()
    if row is None:
        return None
    try:
        return msgspec.json.decode(str(row[0]), type=Reading)
    except (msgspec.DecodeError, TypeError):
        return None


def _prune_incident(conn: Conn, service: str, number: int, budget: int) -> int | None:
    """Delete one incident's history, its own row last: the rows deleted (0 if it is kept), or
    None if `budget` ran out first."""
    latest = conn.execute("SELECT max(number) FROM incidents WHERE service = %s", (service,))
    found = latest.fetchone()
    if found is not None and found[0] == number:
        return 0
    first, end = notification_ids(service, number)
    if conn.execute(
        "SELECT 1 FROM notifications WHERE id >= %s AND id < %s"
        " AND state IN ('pending', 'retrying') LIMIT 1",
        (first, end),
    ).fetchone():
        return 0
    count = 0
    for statement, key in (
        (
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
            " WHERE service = %s AND incident = %s LIMIT %s)",
            (service, number),
        ),
        (
            "DELETE FROM delivery_attempts WHERE seq IN (SELECT seq FROM delivery_attempts"
            " WHERE notification >= %s AND notification < %s LIMIT %s)",
            (first, end),
        ),
        (
            "DELETE FROM notifications WHERE seq IN (SELECT seq FROM notifications"
            " WHERE id >= %s AND id < %s LIMIT %s)",
            (first, end),
        ),
    ):
        count += _rowcount(conn.execute(statement, (*key, budget - count)))
        if count >= budget:
            return None
    conn.execute("DELETE FROM incidents WHERE service = %s AND number = %s", (service, number))
    return count + 1


_STATES: Final = reads.StateQueries(
    incidents=(
        "SELECT m.service, m.last, i.number, i.opened_at, i.message, i.alerts, i.round,"
        " i.level, i.deadline, i.acknowledged_at, i.acknowledged_by, i.exhausted,"
        " i.heartbeat_only, i.held_by_alert, i.acknowledged_via, i.round_base,"
        " i.silenced FROM (SELECT service, max(number) AS last FROM incidents"
        " WHERE {where} GROUP BY service) AS m LEFT JOIN incidents AS i"
        " ON i.service = m.service AND i.closed_at IS NULL"
    ),
    firing="SELECT service, integration, key FROM firing WHERE {where}",
    started=(
        "SELECT service, integration, key, starts_at, resolved_at FROM alert_starts WHERE {where}"
    ),
    heartbeats="SELECT service, interval, due_at, last_at FROM heartbeats WHERE {where}",
    silences=(
        "SELECT service, id, starts_at, ends_at, reason, by, created_at, ended_at,"
        " ended_by FROM silences WHERE active AND {where} ORDER BY id"
    ),
)
"""The services' states at start-up, in one snapshot (see `pagerd.storage.reads`)."""

_REPLIES: Final = reads.ReplyQueries(
    latest=(
        "SELECT service, incident FROM reply_codes WHERE address = %s ORDER BY sent_at DESC LIMIT 1"
    ),
    of_code="SELECT service, incident FROM reply_codes WHERE address = %s AND code = %s",
    known="SELECT 1 FROM reply_codes WHERE address = %s LIMIT 1",
)
"""Which incident an SMS reply answers (see `pagerd.storage.reads.reply_to`)."""

_HISTORY: Final = history.Queries(
    incident=(
        "SELECT opened_at, closed_at, message FROM incidents WHERE service = %s AND number = %s"
    ),
    count_events="SELECT count(*) FROM events WHERE service = %s AND incident = %s",
    select_events=(
        "SELECT at, seq, op, detail, by, peer_uid, peer_user, peer_pid, integration, via"
        " FROM events WHERE service = %s AND incident = %s ORDER BY seq {order} LIMIT %s"
    ),
    count_decided="SELECT count(*) FROM notifications WHERE id >= %s AND id < %s",
    select_decided=(
        "SELECT created_at, seq, id, channel, address, round, level, via, not_before FROM"
        " notifications WHERE id >= %s AND id < %s ORDER BY created_at {order}, seq {order}"
        " LIMIT %s"
    ),
    count_attempts=(
        "SELECT count(*) FROM delivery_attempts WHERE notification >= %s AND notification < %s"
    ),
    select_attempts=(
        "SELECT a.at, a.seq, n.id, n.channel, n.address, n.round, n.level, a.outcome,"
        " a.provider_id, a.error FROM delivery_attempts a JOIN notifications n"
        " ON n.id = a.notification WHERE a.notification >= %s AND a.notification < %s"
        " ORDER BY a.at {order}, a.seq {order} LIMIT %s"
    ),
)
"""An incident's history, from its three sources (see `pagerd.storage.history`)."""
