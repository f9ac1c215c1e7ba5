"""A real PostgreSQL for the tests: a fresh database of their own, dropped afterwards.

Which server: `$PAGERD_TEST_POSTGRES` (a DSN of a user that may create databases) if set; else
the one on 127.0.0.1:5432 as user postgres, if it answers (this project's machines run one);
else a throwaway cluster made with `initdb` and started with `pg_ctl` in a temporary folder (the
binaries found on PATH or in /usr/lib/postgresql/*/bin), stopped at the end of the session;
else every test that needs one is skipped, saying so in capitals.

Each user (a test module, say) takes a database of its own (`pagerd_test_<random>`), at this
pagerd's schema (`migrated`) or empty (`empty`), and drops it when done; tests that share one
empty it between them (`truncate`), which is much faster than a database each. Other tests (the
cluster's, the three-node ones) use the same: `with postgres.migrated() as dsn: ...`, or the
`pg_dsn` fixture (module-scoped) with `clean_pg` (per test).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import conninfo, sql

from pagerd.storage.postgresql.schema import SCHEMA_VERSION, migrate

ENV: Final = "PAGERD_TEST_POSTGRES"
LOCAL: Final = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
MISSING: Final = (
    "NO POSTGRESQL FOR THE TESTS: NONE AT $PAGERD_TEST_POSTGRES OR 127.0.0.1:5432, AND NO"
    " initdb/pg_ctl TO START ONE (apt-get install postgresql): THE POSTGRESQL TESTS DID NOT RUN"
)


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _binaries() -> Path | None:
    """The folder of initdb and pg_ctl, newest PostgreSQL first."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


class Throwaway:
    """A PostgreSQL cluster of its own, made with `initdb` in a temporary folder and run with
    `pg_ctl` on a free port: the session's server when none answers, and the server of the tests
    that stop and start it (a restart, a failover), which must never touch a shared one.
    initdb refuses root: as root, the cluster is made and run as user nobody."""

    def __init__(self, bin: Path) -> None:
        self.bin = bin
        self.folder = Path(tempfile.mkdtemp(prefix="pagerd-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["runuser", "-u", "nobody", "--"]
        try:
            self._run([str(bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    @property
    def dsn(self) -> str:
        """Its admin DSN."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=3"

    def _run(self, args: list[str]) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start it, and return once it accepts connections."""
        self._run(
            [
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
                "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                " -c fsync=off", "-w", "start",
            ]
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop it: `fast` (sessions ended, a clean shutdown, as an operator's restart) or
        `immediate` (no shutdown at all: as a crash, or a failover's old primary)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def close(self) -> None:
        """Stop it if it runs, and remove it."""
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _throwaway(bin: Path) -> str | None:
    """Start a cluster for this session, stopped at exit: its admin DSN."""
    try:
        server = Throwaway(bin)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        server.start()
    except (OSError, subprocess.SubprocessError):
        server.close()
        return None
    atexit.register(server.close)
    return server.dsn


@contextlib.contextmanager
def own_server() -> Iterator[Throwaway]:
    """A throwaway server of the caller's own, started, that it may stop and start; removed
    afterwards. Skips the test, loudly, where PostgreSQL is not installed."""
    bin = _binaries()
    if bin is None:
        pytest.skip(MISSING)
    server = Throwaway(bin)
    try:
        server.start()
        yield server
    finally:
        server.close()


@functools.cache
def server() -> str | None:
    """The admin DSN of the tests' server (found or started once a session), None if none."""
    given = os.environ.get(ENV)
    if given:
        return given
    if _answers(LOCAL):
        return LOCAL
    bin = _binaries()
    return None if bin is None else _throwaway(bin)


def admin() -> str:
    """The admin DSN; skips the test, loudly, if there is no PostgreSQL at all."""
    dsn = server()
    if dsn is None:
        pytest.skip(MISSING)
    return dsn


def _with_database(dsn: str, name: str) -> str:
    return conninfo.make_conninfo(dsn, dbname=name)


@contextlib.contextmanager
def empty() -> Iterator[str]:
    """A new, empty database of the tests' server: its DSN. Dropped afterwards, with whatever
    connections are still open to it."""
    dsn = admin()
    name = f"pagerd_test_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def migrated(version: int = SCHEMA_VERSION) -> Iterator[str]:
    """A new database at schema `version`: its DSN."""
    with empty() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, version)
        yield dsn


def drop_role(role: str, within: float = 30.0) -> None:
    """Drop a role a test made, once its sessions have ended: a session (a pool's, closing)
    still owns its temporary objects (pagerd's fence function), and the role cannot be dropped
    before they are gone."""
    with psycopg.connect(admin(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        deadline = time.monotonic() + within
        while True:
            try:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                return
            except psycopg.errors.DependentObjectsStillExist:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def truncate(dsn: str) -> None:
    """Empty every table of pagerd's (ids start again from 1), and free every lease: a database
    as `migrated` made it. `DELETE`, not `TRUNCATE`: on tables of a few rows it takes a few
    milliseconds where `TRUNCATE` (new files for each table) takes half a second."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename NOT IN ('pagerd_schema', 'leases')"
            )
        ]
        for table in tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        conn.execute(
            "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false)"
            " FROM pg_sequences WHERE schemaname = current_schema()"
        )
        conn.execute("UPDATE leases SET owner = NULL, epoch = 0, expires_at = '-infinity'")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    """A database at this pagerd's schema, for the tests of one module."""
    with migrated() as dsn:
        yield dsn


@pytest.fixture
def clean_pg(pg_dsn: str) -> str:
    """The module's database, emptied for this test."""
    truncate(pg_dsn)
    return pg_dsn
