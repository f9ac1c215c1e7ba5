"""Backups: `pagerd backup` copies what a copy of the file misses, and a restored backup never
gives a new page an old page's idempotency key, while a re-sent page keeps its own."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
from contextlib import closing
from pathlib import Path

import trio
import trio.testing

from pagerd.config import Config
from pagerd.main import main
from pagerd.storage.sqlite.store import Store, database_file
from tests.harness import connect, notifications, running, settle
from tests.history import incident
from tests.processes import PAGERD, Pagerd, pager
from tests.servers import Answer, HttpServer


def incidents(path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT service, number FROM incidents ORDER BY 1, 2").fetchall()


def restore(backup: Path, database: Path) -> None:
    """The documented way: with pagerd stopped, the backup replaces the database and its WAL."""
    for leftover in ("-wal", "-shm"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)
    shutil.copyfile(backup, database)


async def test_a_backup_taken_while_pagerd_runs_has_its_last_commit(
    autojump_clock: trio.testing.MockClock, config: Config, tmp_path: Path
) -> None:
    dest, copied = tmp_path / "backup.db", tmp_path / "copied.db"
    with trio.fail_after(60):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api", message="down")
            await settle()
            shutil.copyfile(database_file(config.state_dir), copied)  # what `cp` would give: no WAL
            assert main(["backup", "--config", str(config.path), str(dest)]) == 0
            await conn.request("alert", service="web")
    assert incidents(dest) == [("api", 1)]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    # The reason for the command: the file alone lacks what is still in the WAL.
    with closing(sqlite3.connect(copied)) as conn:
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    assert tables == 0
    with closing(Store.open(dest)) as store:  # a backup is a database pagerd opens as it is
        assert set(store.load_states()) == {"api"}


def test_backup_refuses_to_overwrite_without_force(
    config: Config, tmp_path: Path, capsys: object
) -> None:
    Store.open(database_file(config.state_dir)).close()
    dest = tmp_path / "backup.db"
    dest.write_text("precious")
    assert main(["backup", "--config", str(config.path), str(dest)]) == 1
    assert dest.read_text() == "precious"
    assert (
        main(["backup", "--database", str(database_file(config.state_dir)), str(dest), "--force"])
        == 0
    )
    assert incidents(dest) == []
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_backup_of_no_database_or_a_bad_config_says_so_and_writes_nothing(
    config: Config, tmp_path: Path
) -> None:
    dest = tmp_path / "backup.db"
    assert main(["backup", "--database", str(tmp_path / "none.db"), str(dest)]) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nnot_a_key = 1\n")
    assert main(["backup", "--config", str(bad), str(dest)]) == 78
    assert not dest.exists()


async def test_pages_after_restoring_an_old_backup_never_reuse_a_key(
    autojump_clock: trio.testing.MockClock, config: Config, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    with trio.fail_after(3600):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            assert main(["backup", "--config", str(config.path), str(backup)]) == 0
            await conn.request("healthy", service="api")
            await conn.request("alert", service="api")  # api#2: lost with this database
            await settle()
        before = notifications(config)
        restore(backup, database_file(config.state_dir))
        async with running(config), connect(config.socket) as conn:
            await conn.request("healthy", service="api")
            await conn.request("alert", service="api")  # api#2 again: the number is reused
            await settle()
    after = notifications(config)[len(before) :]
    lost = [n for n in before if n["incident"] == "api#2"]
    assert {n["id"] for n in after} == {n["id"] for n in lost}  # the same steps, by id
    assert len(lost) == 2
    assert not {n["key"] for n in after} & {n["key"] for n in before}


def test_a_page_re_sent_after_kill_9_keeps_its_key(tmp_path: Path) -> None:
    with HttpServer() as http:
        # The provider takes the first request and never answers: pagerd is killed meanwhile,
        # in the window where the send is done and not yet recorded.
        http.answers.append(Answer(200, hang=30))
        http.default = Answer(200)
        config = tmp_path / "pager.toml"
        config.write_text(
            '[daemon]\nsocket = "run/pager.sock"\nstate_dir = "state"\n'
            '[channels.webhook]\ntransport = "webhook"\n'
            "[policies.p]\n[[policies.p.levels]]\n"
            f'targets = ["webhook:{http.url}/hook"]\nack_timeout = "1h"\n'
            '[services.api]\npolicy = "p"\n'
        )
        daemon = Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")
        try:
            daemon.start()
            assert pager(daemon.socket, "alert", "api").returncode == 0
            first = http.wait_for(1)[0]
            daemon.kill()
            daemon.start()
            second = http.wait_for(2)[1]
        finally:
            daemon.stop()
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"]
    assert first.headers["idempotency-key"].startswith(first.json()["id"] + "~")


def crash_image(store: Store, folder: Path) -> Path:
    """The database's files as a `kill -9` would leave them: the file and its WAL, as on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{store.path}{suffix}", folder / f"pager.db{suffix}")
    return folder / "pager.db"


def add_incidents(store: Store, *numbers: int) -> None:
    for n in numbers:
        incident(store, "api", n, closed_at=float(n))


def test_restore_replaces_the_database_and_its_wal_and_saves_what_it_replaced(
    tmp_path: Path,
) -> None:
    backup_file = tmp_path / "backup.db"
    with closing(Store.open(tmp_path / "live" / "pager.db")) as store:
        add_incidents(store, 1)
        assert main(["backup", "--database", str(store.path), str(backup_file)]) == 0
        add_incidents(store, 2, 3)  # in the WAL only
        database = crash_image(store, tmp_path / "state")
        by_hand = crash_image(store, tmp_path / "by-hand")
    # By hand, the old WAL is left beside the restored file: SQLite replays it onto it.
    shutil.copyfile(backup_file, by_hand)
    with closing(sqlite3.connect(by_hand)) as conn:
        mixed = conn.execute("SELECT number FROM incidents ORDER BY 1").fetchall()
    assert mixed != [(1,)], mixed
    assert main(["restore", "--database", str(database), str(backup_file)]) == 0
    assert incidents(database) == [("api", 1)]
    (saved,) = database.parent.glob("pager.db.before-restore.*")
    assert incidents(saved) == [("api", n) for n in (1, 2, 3)]
    with closing(Store.open(database)) as store:
        assert store.latest_incident("api") == 1


async def test_restore_refuses_while_pagerd_runs_and_refuses_what_is_not_a_backup(
    autojump_clock: trio.testing.MockClock, config: Config, tmp_path: Path
) -> None:
    backup_file, junk = tmp_path / "backup.db", tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with trio.fail_after(60):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            await settle()
            assert main(["backup", "--config", str(config.path), str(backup_file)]) == 0
            assert main(["restore", "--config", str(config.path), str(backup_file)]) == 1
    assert main(["restore", "--config", str(config.path), str(junk)]) == 1
    assert main(["restore", "--config", str(config.path), str(tmp_path / "none.db")]) == 1
    assert list(config.state_dir.glob("pager.db.before-restore*")) == []
    assert incidents(database_file(config.state_dir)) == [("api", 1)]


def test_pagerd_backup_beside_the_real_running_daemon(daemon: Pagerd, tmp_path: Path) -> None:
    dest = tmp_path / "backup.db"
    daemon.start()
    assert pager(daemon.socket, "alert", "api").returncode == 0
    made = subprocess.run(
        [*PAGERD, "backup", "--config", str(daemon.config), str(dest)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "schema version" in made.stdout
    assert pager(daemon.socket, "ping").returncode == 0  # undisturbed
    assert incidents(dest) == [("api", 1)]
