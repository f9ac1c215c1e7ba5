"""The PostgreSQL database's layout: numbered migrations (`migrations/NNNN_*.sql`), the version
a database is at (table `pagerd_schema`), and the step from any version to this pagerd's.

Unlike SQLite's, this schema is never changed by the daemon: several nodes share it, and a node
of a new version must not change the tables under a node of the old one. `pagerd migrate` does
it, once, run by the operator (`migrate`); a node refuses to start on any other version than
its own (`check_version`). Each migration is one transaction (PostgreSQL's DDL is
transactional): a failed one leaves the database as it was.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

import psycopg
from psycopg import sql

from pagerd.storage.port import StoreError

SCHEMA_VERSION: Final = 4
"""The layout this pagerd makes and expects; one migration file per version."""

VERSION_TABLE: Final = "pagerd_schema"
LOCK_CLASS: Final = 0x70616765  # "page": the first key of every advisory lock pagerd takes
LOCK_MIGRATE: Final = 1
"""The second key of the lock that `migrate` holds: two `pagerd migrate` at once take turns."""

TABLES: Final = (
    "incidents", "notifications", "delivery_attempts", "events", "meta", "firing", "heartbeats",
    "reply_codes", "sms_replies", "alert_starts", "silences", "overrides", "nodes", "leases",
    "inbox", "answers", "counters",
)  # fmt: skip
"""The tables of `SCHEMA_VERSION` (`verify` checks that each is there)."""

_NAME: Final = re.compile(r"(\d{4})_\w+\.sql")


class SchemaMismatch(StoreError):
    """The database is not at this pagerd's schema version: `pagerd migrate` (or a pagerd of
    its version) is what to run."""


def migrations() -> dict[int, str]:
    """Version N -> the SQL that makes a database of version N - 1 one of version N."""
    found: dict[int, str] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match is not None:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    assert sorted(found) == list(range(1, SCHEMA_VERSION + 1)), sorted(found)
    return found


def version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The database's schema version: 0 if pagerd never made its tables there. `StoreError` if
    it has pagerd's tables but no version (not made by `pagerd migrate`)."""
    cur = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, to_regclass('incidents') IS NOT NULL",
        (VERSION_TABLE,),
    )
    row = cur.fetchone()
    assert row is not None
    if not row[0]:
        if row[1]:
            raise StoreError(
                "the database has an incidents table but no pagerd_schema: it is not pagerd's"
                " (give pagerd a database of its own)"
            )
        return 0
    found = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
    return 0 if found is None or found[0] is None else int(str(found[0]))


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], target: int = SCHEMA_VERSION
) -> tuple[int, int]:
    """Bring the database to version `target`, in one transaction: (from, to). A database newer
    than `target` is refused, never taken back."""
    steps = migrations()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, LOCK_MIGRATE))
        before = version(conn)
        if before > target:
            raise SchemaMismatch(
                f"the database has schema version {before}, newer than this pagerd knows"
                f" ({target}): it was migrated by a newer pagerd. Run that version"
            )
        if before == 0:
            conn.execute(
                f"CREATE TABLE {VERSION_TABLE} (version integer NOT NULL,"
                " migrated_at timestamptz NOT NULL DEFAULT now())"
            )
        for step in range(before + 1, target + 1):
            conn.execute(sql.SQL(steps[step]))
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (step,))
    return before, target


def check_version(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """`SchemaMismatch` unless the database is at `SCHEMA_VERSION`, saying what to run."""
    found = version(conn)
    if found == SCHEMA_VERSION:
        return
    if found == 0:
        raise SchemaMismatch(
            f"the database has no pagerd schema yet: run `pagerd migrate` to make it"
            f" (schema version {SCHEMA_VERSION})"
        )
    if found < SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database has schema version {found}, older than this pagerd's"
            f" ({SCHEMA_VERSION}): run `pagerd migrate` to upgrade it (stop the older nodes"
            " first)"
        )
    raise SchemaMismatch(
        f"the database has schema version {found}, newer than this pagerd's ({SCHEMA_VERSION}):"
        " it was migrated by a newer pagerd. Run that version"
    )


def missing_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Tables of `TABLES` the database does not have (in the connection's search path)."""
    cur = conn.execute(
        "SELECT t, to_regclass(t) IS NULL FROM unnest(%s::text[]) AS t", (list(TABLES),)
    )
    return [str(name) for name, missing in cur.fetchall() if missing]
