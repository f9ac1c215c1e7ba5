"""PostgreSQL as the operator meets it: `[storage]` in the config, `pagerd migrate`, `pagerd
--check`, a node refusing a schema not its own, the migrations one by one, and a DSN's password
kept out of every message. Against a real server (tests/postgres.py)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from pager.domain import ServiceState
from pager.shards import SHARDS, shard_of
from pagerd.config import ConfigError, from_dict
from pagerd.config.storage import describe, redact
from pagerd.storage.cluster import INBOX_CHANNEL
from pagerd.storage.port import Fence, StoreError, StoreUnavailable, Transition
from pagerd.storage.postgresql.schema import SCHEMA_VERSION, SchemaMismatch, migrate, migrations
from pagerd.storage.postgresql.store import Store
from tests import postgres
from tests.processes import CONFIG, PAGERD

PASSWORD = "s3cret-Pa55word"


def _config(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "pager.toml"
    path.write_text(CONFIG + "\n[storage]\n" + storage)
    return path


def _pagerd(*args: str, credentials: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    if credentials is not None:
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
    return subprocess.run(
        [*PAGERD, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def _storage(data: dict[str, Any], tmp_path: Path) -> Any:
    table = {"daemon": {"allow_no_services": True}, "storage": data}
    return from_dict(table, tmp_path / "pager.toml").storage


# The config. -------------------------------------------------------------------------------------


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    assert _storage({}, tmp_path).backend == "sqlite"


def test_a_postgresql_storage_is_read_with_its_durations(tmp_path: Path) -> None:
    storage = _storage(
        {
            "backend": "postgresql",
            "dsn": "host=db.example.com dbname=pagerd user=pagerd",
            "pool_size": 8,
            "connect_timeout": "3s",
            "statement_timeout": "1m",
        },
        tmp_path,
    )
    assert storage.backend == "postgresql" and storage.pool_size == 8
    assert (storage.connect_timeout, storage.statement_timeout) == (3.0, 60.0)
    assert storage.dsn.value == "host=db.example.com dbname=pagerd user=pagerd"
    assert "db.example.com" not in repr(storage)  # a Secret: never shown


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"backend": "mysql"}, 'storage.backend: expected "sqlite" or "postgresql"'),
        ({"backend": "postgresql"}, "storage.dsn: required"),
        ({"dsn": "host=x"}, 'storage.dsn: only for backend = "postgresql"'),
        ({"backend": "postgresql", "dsn": "host=x", "pool_size": 0}, "storage.pool_size"),
        ({"backend": "postgresql", "dsn": "host=x", "connect_timeout": "0s"}, "connect_timeout"),
        ({"backend": "postgresql", "dsn": "host=x", "statement_timeout": 5}, "duration string"),
        ({"backend": "postgresql", "dsn": "no equals"}, "not a PostgreSQL connection string"),
        ({"backend": "postgresql", "dsn": "host=x bogus_opt=1"}, "unknown parameter 'bogus_opt'"),
        ({"backend": "postgresql", "dsn": "postgresql://x/p?nope=1"}, "unknown parameter 'nope'"),
        ({"backend": "postgresql", "dsn": "host=x", "dsn_credential": "db"}, "not dsn and"),
        ({"backend": "postgresql", "dsn": "host=x", "replicas": 2}, "storage.replicas: unknown"),
    ],
)
def test_a_bad_storage_is_a_clear_error(data: dict[str, Any], error: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _storage(data, tmp_path)
    assert error in raised.value.report()


def test_a_password_in_the_config_s_dsn_is_refused_without_being_shown(tmp_path: Path) -> None:
    for dsn in (f"host=x password={PASSWORD}", f"postgresql://pagerd:{PASSWORD}@x/pagerd"):
        with pytest.raises(ConfigError) as raised:
            _storage({"backend": "postgresql", "dsn": dsn}, tmp_path)
        assert "holds a password" in raised.value.report()
        assert PASSWORD not in raised.value.report()


def test_a_bad_dsn_credential_is_named_without_its_content(tmp_path: Path) -> None:
    (tmp_path / "db").write_text(f"password={PASSWORD} not a dsn\n")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    old = os.environ.get("CREDENTIALS_DIRECTORY")
    os.environ.update(environ)
    try:
        with pytest.raises(ConfigError) as raised:
            _storage({"backend": "postgresql", "dsn_credential": "db"}, tmp_path)
    finally:
        if old is None:
            del os.environ["CREDENTIALS_DIRECTORY"]
        else:
            os.environ["CREDENTIALS_DIRECTORY"] = old
    assert "storage.dsn_credential: not a PostgreSQL connection string" in raised.value.report()
    assert PASSWORD not in raised.value.report()


def test_redact_takes_out_the_dsn_and_its_password() -> None:
    dsn = f"host=x user=pagerd password={PASSWORD}"
    text = f"failed for {dsn}; and {PASSWORD}; postgresql://u:{PASSWORD}@h/db"
    assert PASSWORD not in redact(text, dsn)


# The adapter's errors. ---------------------------------------------------------------------------


def test_a_database_that_cannot_be_reached_is_unavailable_and_its_password_never_shown() -> None:
    dsn = f"host=127.0.0.1 port=1 user=pagerd password={PASSWORD} dbname=nowhere"
    with pytest.raises(StoreUnavailable) as raised:
        Store.open(dsn, connect_timeout=1.0)
    assert PASSWORD not in str(raised.value)
    assert '"nowhere" on 127.0.0.1:1' in str(raised.value)


def test_a_wrong_password_is_refused_without_being_shown() -> None:
    admin = postgres.admin()
    # A name of its own: a role of the same name left by another run (one that logged in and
    # owns its sessions' objects) cannot be dropped, and must not fail this test.
    user = f"pagerd_test_pw_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'right'")
    try:
        dsn = conninfo.make_conninfo(admin, user=user, password=PASSWORD)
        with pytest.raises(StoreError) as raised:
            Store.open(dsn, connect_timeout=2.0)
        assert PASSWORD not in str(raised.value)
    finally:
        postgres.drop_role(user)


def test_a_node_refuses_a_database_not_at_its_schema_version() -> None:
    with postgres.empty() as dsn:
        with pytest.raises(SchemaMismatch, match="run `pagerd migrate` to make it"):
            Store.open(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, SCHEMA_VERSION - 1)
        with pytest.raises(
            SchemaMismatch,
            match=rf"^{re.escape(describe(dsn))}: .*older than this pagerd.s.*pagerd migrate",
        ):
            Store.open(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            conn.execute("INSERT INTO pagerd_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
            with pytest.raises(SchemaMismatch, match="newer than this pagerd knows"):
                migrate(conn)
        with pytest.raises(SchemaMismatch, match="newer than this pagerd's"):
            Store.open(dsn)


# The migrations, one by one. ---------------------------------------------------------------------


def test_each_migration_upgrades_the_version_before_it_with_its_data() -> None:
    """Every version made from the one before, holding data: the data is still there and the
    store of this version reads it. (Version 1 is the storage's tables, 2 the cluster's.)"""
    assert sorted(migrations()) == list(range(1, SCHEMA_VERSION + 1))
    with postgres.empty() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert migrate(conn, 1) == (0, 1)
            conn.execute(
                "INSERT INTO incidents (service, shard, number, opened_at, message, alerts,"
                " round, level, deadline, exhausted) VALUES ('api', %s, 1, 1000, 'down', 1, 1,"
                " 1, 1060, false)",
                (shard_of("api"),),
            )
            for version in range(2, SCHEMA_VERSION + 1):
                assert migrate(conn, version) == (version - 1, version)
        store = Store.open(dsn, node="n")
        try:
            store.verify()
            state = store.load_states()["api"]
            assert state.incident is not None and state.incident.deadline == 1060
            epochs = store.claim("n", range(SHARDS), 60.0, run=store.origin)
            after = ServiceState("api", 1, None)
            store.write([Transition(state, after, (), 1100.0)], Fence("n", epochs, store.origin))
            assert store.load_states()["api"] == after
        finally:
            store.close()


# `pagerd migrate` and `pagerd --check`. ----------------------------------------------------------


def test_migrate_makes_then_keeps_the_schema_and_check_reads_it(tmp_path: Path) -> None:
    with postgres.empty() as dsn:
        (tmp_path / "db").write_text(dsn + "\n")
        config = _config(tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\n')
        creds = ["--credentials", str(tmp_path)]
        before = _pagerd("--config", str(config), "--check", *creds)
        assert before.returncode == 1, before.stderr
        assert "no pagerd schema yet: run `pagerd migrate`" in before.stderr
        made = _pagerd("migrate", "--config", str(config), *creds)
        assert made.returncode == 0, made.stderr
        assert f"schema made, version {SCHEMA_VERSION}" in made.stdout
        again = _pagerd("migrate", "--config", str(config), *creds)
        assert f"schema version {SCHEMA_VERSION}, already this pagerd's" in again.stdout
        checked = _pagerd("--config", str(config), "--check", *creds)
        assert checked.returncode == 0, checked.stderr
        assert f"PostgreSQL schema version {SCHEMA_VERSION})" in checked.stdout


def test_migrate_says_from_which_version_it_upgraded(tmp_path: Path) -> None:
    with postgres.migrated(SCHEMA_VERSION - 1) as dsn:
        (tmp_path / "db").write_text(dsn)
        config = _config(tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\n')
        done = _pagerd("migrate", "--config", str(config), "--credentials", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert f"schema version {SCHEMA_VERSION - 1} -> {SCHEMA_VERSION}" in done.stdout


def test_migrate_and_check_fail_on_a_database_they_cannot_reach_without_its_password(
    tmp_path: Path,
) -> None:
    (tmp_path / "db").write_text(f"host=127.0.0.1 port=1 user=x password={PASSWORD}")
    config = _config(
        tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\nconnect_timeout = "2s"\n'
    )
    for args in (["migrate"], ["--check"]):
        done = _pagerd(*args, "--config", str(config), "--credentials", str(tmp_path))
        assert done.returncode == 1, done.stderr
        assert "127.0.0.1:1" in done.stderr
        assert PASSWORD not in done.stdout + done.stderr


def test_migrate_refuses_a_sqlite_config(tmp_path: Path) -> None:
    config = _config(tmp_path, 'backend = "sqlite"\n')
    done = _pagerd("migrate", "--config", str(config))
    assert done.returncode == 78
    assert "SQLite upgrades its own schema" in done.stderr


def test_wait_reconnects_after_its_connection_is_lost() -> None:
    """The listening connection cut (as by a server restart): that wait fails as unavailable,
    the next one listens again on a new connection and hears what is put from then on."""
    with postgres.migrated() as dsn:
        store = Store.open(dsn, node="n", pool_size=1)
        try:
            assert store.wait([INBOX_CHANNEL], 0.0) == []
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'pagerd-listen n' AND datname = current_database()"
                )
            with pytest.raises(StoreUnavailable):
                store.wait([INBOX_CHANNEL], 5.0)
            assert store.wait([INBOX_CHANNEL], 0.0) == []  # listening again
            store.put("n", "api", b"alert", 1000.0)
            assert store.wait([INBOX_CHANNEL], 10.0) == [(INBOX_CHANNEL, str(shard_of("api")))]
        finally:
            store.close()


# What a node says when it cannot start. -----------------------------------------------------------


def test_a_node_that_cannot_reach_the_database_at_start_says_why_in_its_last_line(
    tmp_path: Path,
) -> None:
    """Not a dozen two-line warnings of psycopg's pool, and a last line that keeps the reason
    (an operator's start printed 12 and ended on "no connection within 5s" alone)."""
    (tmp_path / "db").write_text(f"host=127.0.0.1 port=1 user=x password={PASSWORD}")
    config = _config(
        tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\nconnect_timeout = "2s"\n'
    )
    done = _pagerd("--config", str(config), "--credentials", str(tmp_path))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert not [line for line in lines if "psycopg" in line], done.stderr
    assert lines[-1].endswith(
        'cannot start: PostgreSQL database "(default)" on 127.0.0.1:1: no connection within 2s'
        ' (connection failed: connection to server at "127.0.0.1", port 1 failed:'
        " Connection refused)"
    ), done.stderr
    assert PASSWORD not in done.stderr


def test_a_node_refusing_the_schema_at_start_names_the_database_and_its_host(
    tmp_path: Path,
) -> None:
    with postgres.migrated(SCHEMA_VERSION - 1) as dsn:
        (tmp_path / "db").write_text(dsn)
        config = _config(tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\n')
        done = _pagerd("--config", str(config), "--credentials", str(tmp_path))
        where = describe(dsn)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"cannot start: {where}: " in last and "run `pagerd migrate`" in last, last


def test_migrate_without_the_right_to_create_tables_says_what_the_role_needs(
    tmp_path: Path,
) -> None:
    """PostgreSQL 15 lets only the database's owner create tables in `public`: a role that
    merely logs in is told to own the database, or to be granted CREATE on the schema."""
    user = f"pagerd_nocreate_{os.getpid()}"
    with postgres.empty() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {user}")
        conn.execute(f"CREATE ROLE {user} LOGIN")
        try:
            (tmp_path / "db").write_text(conninfo.make_conninfo(dsn, user=user))
            config = _config(tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\n')
            done = _pagerd("migrate", "--config", str(config), "--credentials", str(tmp_path))
        finally:
            conn.execute(f"DROP ROLE IF EXISTS {user}")
    assert done.returncode == 1, done.stderr
    assert "permission denied for schema public" in done.stderr
    assert "must own the database" in done.stderr
    assert "GRANT CREATE ON SCHEMA public" in done.stderr


def test_check_says_a_role_without_temporary_cannot_run_a_node(tmp_path: Path) -> None:
    """A database hardened with `REVOKE ALL ... FROM PUBLIC` takes TEMPORARY away, and a node
    makes its fence a function of each session's: `--check` says so, rather than ok (review:
    it said ok, and the node then could not start)."""
    role = f"pagerd_test_notemp_{secrets.token_hex(4)}"
    with postgres.migrated() as dsn:
        name = str(conninfo.conninfo_to_dict(dsn)["dbname"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            conn.execute(f"GRANT CONNECT ON DATABASE {name} TO {role}")
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            )
            conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        try:
            (tmp_path / "db").write_text(conninfo.make_conninfo(dsn, user=role))
            config = _config(tmp_path, 'backend = "postgresql"\ndsn_credential = "db"\n')
            creds = ["--credentials", str(tmp_path)]
            refused = _pagerd("--config", str(config), "--check", *creds)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"GRANT TEMPORARY ON DATABASE {name} TO {role}")
            granted = _pagerd("--config", str(config), "--check", *creds)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP OWNED BY {role}")
            postgres.drop_role(role)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "GRANT TEMPORARY ON DATABASE" in refused.stderr
    assert granted.returncode == 0, granted.stderr
