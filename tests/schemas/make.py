"""Writes the SQL scripts beside this file: a database as each shipped pagerd made it.

Each script is the schema of one commit of `pagerd/store.py` (taken from git history, as that
commit's `Store.open` ran it, with the `user_version` it set), then the same data: service api
with a closed incident #1 and an open #2 at level 1 whose deadline (T0 + 5 minutes) has not
passed, one notification of #2 sent and one never delivered. Layouts that changed without a
version bump (columns, tables and indexes added or dropped under `user_version` 1) each have
their own script, and so has each of them as the first version-2 pagerd upgraded it (it ran its
`CREATE ... IF NOT EXISTS` script over whatever was there).

    .venv/bin/python -m tests.schemas.make     # after a schema change, to add its layout
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The commits whose schema differs from the one before, oldest first.
LAYOUTS = {
    "v1-7267cae": "7267cae",  # the first: notifications without attempts, no history tables
    "v1-d924603": "d924603",  # delivery attempts: columns and a table added, still version 1
    "v1-24522c5": "24522c5",  # the events table added, still version 1
    "v1-b73fb3b": "b73fb3b",  # notifications' UNIQUE constraint and an index dropped, still 1
    "v2-07f1158": "07f1158",  # version 2: the incidents_closed index
}
FIRST_V2 = "07f1158"

T0 = 1_800_000_000.0


def schema(commit: str) -> tuple[str, int]:
    source = subprocess.run(
        ["git", "show", f"{commit}:pagerd/store.py"],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    ).stdout
    sql = re.search(r'_SCHEMA(?::\s*Final)?\s*=\s*"""(.*?)"""', source, re.S)
    version = re.search(r"SCHEMA_VERSION(?::\s*Final)?\s*=\s*(\d+)", source)
    assert sql is not None and version is not None, commit
    return sql.group(1).strip() + "\n", int(version.group(1))


def data(conn: sqlite3.Connection) -> str:
    """The rows, for the columns this layout has."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(notifications)")}
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    incident = (
        "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
        " deadline, acknowledged_at, acknowledged_by, exhausted, closed_at) VALUES\n"
        f"  ('api', 1, {T0 - 7200}, 'old', 1, 1, 1, NULL, NULL, NULL, 0, {T0 - 3600}),\n"
        f"  ('api', 2, {T0 - 60}, 'disk full', 3, 1, 1, {T0 + 240}, NULL, NULL, 0, NULL);\n"
    )
    sent = ("api#2/1/1/email:alice@example.com", "email", "alice@example.com", "sent")
    pending = ("api#2/1/1/sms:+14155550100", "sms", "+14155550100", "pending")
    names = "id, service, incident, round, level, channel, address, message, opened_at,"
    names += " created_at, state"
    rows = []
    for nid, channel, address, state in (sent, pending):
        rows.append(
            f"  ('{nid}', 'api', 2, 1, 1, '{channel}', '{address}', 'disk full', {T0 - 60},"
            f" {T0 - 60}, '{state}')"
        )
    notifications = f"INSERT INTO notifications ({names}) VALUES\n" + ",\n".join(rows) + ";\n"
    if "attempts" in columns:
        notifications += (
            f"UPDATE notifications SET attempts = 1, sent_at = {T0 - 59} WHERE state = 'sent';\n"
        )
    if "delivery_attempts" in tables:
        notifications += (
            "INSERT INTO delivery_attempts (notification, at, outcome) VALUES"
            f" ('{sent[0]}', {T0 - 59}, 'sent');\n"
        )
    if "events" in tables:
        notifications += (
            "INSERT INTO events (service, incident, at, op, detail) VALUES"
            f" ('api', 2, {T0 - 60}, 'alert', 'disk full');\n"
        )
    return incident + notifications


def script(commits: list[str]) -> str:
    """The database as these pagerd versions made it, one after the other, with the data."""
    conn = sqlite3.connect(":memory:")
    parts = []
    for i, commit in enumerate(commits):
        sql, version = schema(commit)
        conn.executescript(sql)
        parts.append(f"-- the schema of pagerd {commit} (user_version {version})\n{sql}")
        parts.append(f"PRAGMA user_version = {version};\n")
        if i == 0:
            rows = data(conn)
            conn.executescript(rows)
            parts.append(rows)
    conn.close()
    return "\n".join(parts)


def main() -> None:
    for name, commit in LAYOUTS.items():
        header = "-- Made by tests/schemas/make.py from git history: do not edit.\n"
        (HERE / f"{name}.sql").write_text(header + script([commit]))
        if commit != FIRST_V2:
            (HERE / f"{name}-then-v2.sql").write_text(header + script([commit, FIRST_V2]))


if __name__ == "__main__":
    main()
