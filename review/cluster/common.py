"""Helpers for the review's attack scripts: a database of our own (`pagerd_review_*`, dropped
after), and the test harness's real nodes (`tests.cluster`). Run each script from the worktree
root: `.venv/bin/python -m review.cluster.NAME`."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg
from psycopg import conninfo, sql

from pagerd.storage.postgresql.schema import migrate

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


@contextlib.contextmanager
def database(migrated: bool = True) -> Iterator[str]:
    name = f"pagerd_review_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = conninfo.make_conninfo(ADMIN, dbname=name)
    try:
        if migrated:
            with psycopg.connect(dsn, autocommit=True) as conn:
                migrate(conn)
        yield dsn
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
