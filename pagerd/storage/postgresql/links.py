"""How pagerd's connections to PostgreSQL notice a server or a network that went away, and how
no call on one can block for ever.

Three failures, three answers:

- A server that vanished (host down, a partition that drops packets): TCP alone notices after
  the kernel's ~15 minutes of retransmissions, and an idle connection (the `LISTEN` one) never.
  `tcp_user_timeout` (data unacknowledged that long fails the connection) and keepalives (an
  idle connection is probed) make a call fail in seconds (`client_settings`), unless the DSN
  sets them itself.
- A client that vanished mid-transaction: the server keeps its locks (a fenced write holds its
  leases FOR SHARE, and every other node's claim waits on them) until it notices. The session
  settings (`session_options`) end an idle transaction, and a wait for a lock, after a few
  seconds, and have the server probe its side of the connection as the client does.
- A middlebox that accepts and acknowledges but forwards nothing (a stall): neither TCP
  timeouts nor keepalives fire (the middlebox answers them) and the server never sees the
  query, so no server-side timeout applies either. `Watchdog` bounds every call from this side:
  past its bound the connection's socket is shut down, the call fails (`StoreUnavailable`), and
  the pool replaces the connection.

Blocking, thread-safe: the store's calls run in worker threads.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from pagerd.config.storage import milliseconds

log = logging.getLogger("pagerd.postgresql")

Conn = psycopg.Connection[TupleRow]

USER_TIMEOUT: Final = 5.0
"""Seconds data sent may stay unacknowledged before the connection fails (both ends): half the
default lease (10 s), so a round stuck on a dead server fails in time for the next one to be
tried while the node still holds its shards by its own clock (`lease_ttl - margin`, 8 s). A
busy server is not affected: its kernel acknowledges what it has not yet answered."""
KEEPALIVE_IDLE: Final = 5
KEEPALIVE_INTERVAL: Final = 1
KEEPALIVE_COUNT: Final = 3
"""An idle connection is probed after 5 s, then each second; 3 probes unanswered and it fails:
a dead server noticed within ~8 s on the `LISTEN` connection, which is idle between
notifications (the inbox polls meanwhile, as a backstop)."""
IDLE_IN_TRANSACTION: Final = 5.0
"""Seconds a transaction may sit idle (its client said nothing) before the server ends it and
releases its locks: pagerd sends a transaction's statements back to back, so only a client
that vanished (or is paused, SIGSTOP) waits that long; another node's claim waits no longer on
its lease locks. Below the default lease's margin."""
LOCK_TIMEOUT: Final = 5.0
"""Seconds a statement waits for a lock before it fails (`StoreUnavailable`, retried): a claim
behind a write whose client stalled, a write behind a claim. Lock waits are short otherwise
(one transaction's own statements)."""
STALL_GRACE: Final = 2.0
"""Seconds past the server's own limit (`statement_timeout`, or `lock_timeout` for lease
calls) that a call may take before `Watchdog` cuts its connection: time for the server's answer
(the cancellation) to arrive when the link works."""

_CLIENT: Final = {
    "keepalives": "1",
    "keepalives_idle": str(KEEPALIVE_IDLE),
    "keepalives_interval": str(KEEPALIVE_INTERVAL),
    "keepalives_count": str(KEEPALIVE_COUNT),
    "tcp_user_timeout": str(milliseconds(USER_TIMEOUT)),
}


def client_settings(dsn: str) -> dict[str, str]:
    """The libpq settings pagerd adds to `dsn`'s: those it does not set itself (a DSN that
    names one, or turns keepalives off, is obeyed). Ignored by libpq on a Unix socket."""
    given = conninfo_to_dict(dsn)
    if given.get("keepalives") == "0":
        return {k: v for k, v in _CLIENT.items() if k == "tcp_user_timeout" and k not in given}
    return {k: v for k, v in _CLIENT.items() if k not in given}


def session_options(dsn: str, statement_timeout: float) -> str:
    """The `options` connection setting: the DSN's own, then the session settings pagerd wants
    and the DSN's `options` does not set (`-c name=value` each)."""
    given = str(conninfo_to_dict(dsn).get("options") or "")
    wanted = {
        "statement_timeout": milliseconds(statement_timeout),
        "idle_in_transaction_session_timeout": milliseconds(IDLE_IN_TRANSACTION),
        "lock_timeout": milliseconds(LOCK_TIMEOUT),
        # The server's end of the same link: it notices a vanished client as fast.
        "tcp_user_timeout": milliseconds(USER_TIMEOUT),
        "tcp_keepalives_idle": KEEPALIVE_IDLE,
        "tcp_keepalives_interval": KEEPALIVE_INTERVAL,
        "tcp_keepalives_count": KEEPALIVE_COUNT,
    }
    added = [f"-c {name}={value}" for name, value in wanted.items() if name not in given]
    return " ".join([given, *added]).strip()


class PoolLog(logging.Filter):
    """psycopg_pool's own log, made pagerd's: each of its records, warnings ("error connecting in
    'pagerd-…': connection failed: … Connection refused", two lines each, a dozen at a start with
    the database down, found by an operator) included, goes to pagerd's log at DEBUG, and the
    reason of the last failed connection of each pool is kept, for the error that says the pool
    has no connection (psycopg's own says only that it timed out). One for the process: the
    pools are told apart by their names."""

    _installed: PoolLog | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, str] = {}

    @classmethod
    def installed(cls) -> PoolLog:
        """The filter, on the `psycopg.pool` logger once."""
        with cls._lock:
            if cls._installed is None:
                cls._installed = PoolLog()
                logging.getLogger("psycopg.pool").addFilter(cls._installed)
            return cls._installed

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "error connecting in %r: %s" and len(args) == 2:
            # libpq's message: its first line says why, the rest is advice ("Is the server
            # running...?"). It names the host and port, never the password.
            self._last[str(args[0])] = str(args[1]).strip().splitlines()[0].strip()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("psycopg.pool: %s", " ".join(record.getMessage().split()))
        return False

    def last_error(self, pool: str) -> str | None:
        """Why `pool`'s last connection attempt failed (None if none has)."""
        return self._last.get(pool)

    def forget(self, pool: str) -> None:
        self._last.pop(pool, None)


class Watchdog:
    """Bounds each call on a connection: one past its time has its socket shut down, so that
    the thread blocked on it gets an error instead of waiting for a link that forwards
    nothing. One thread, started at the first call, asleep until the earliest deadline."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._watched: dict[int, tuple[float, Conn]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.cuts = 0
        """Connections cut, in all."""

    @contextmanager
    def watching(self, conn: Conn, seconds: float) -> Iterator[None]:
        """Cut `conn` if the block still runs `seconds` from now."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="pagerd-pg-watchdog", daemon=True
                )
                self._thread.start()
            self._next += 1
            token = self._next
            self._watched[token] = (time.monotonic() + seconds, conn)
            self._lock.notify()
        try:
            yield
        finally:
            with self._lock:
                # Gone already if it was cut: the error the call gets then is the one to raise.
                self._watched.pop(token, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                late = [(t, c) for t, (at, c) in self._watched.items() if at <= now]
                for token, conn in late:
                    del self._watched[token]
                    self.cuts += 1
                    _cut(conn)
                earliest = min((at for at, _ in self._watched.values()), default=math.inf)
                self._lock.wait(None if earliest == math.inf else max(0.0, earliest - now))


def _cut(conn: Conn) -> None:
    """Shut the connection's socket down under the thread using it: its wait wakes up and
    fails (the connection is lost), and the pool discards it. The file descriptor stays the
    connection's, closed by its owner."""
    try:
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()  # not closed: libpq closes its own descriptor
        log.error("a call on PostgreSQL got no answer in time: its connection is cut")
    except (OSError, psycopg.Error) as exc:  # already closed: nothing left to cut
        log.warning("cannot cut a stalled PostgreSQL connection: %s", exc)
