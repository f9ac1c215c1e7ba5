"""`pagerd restore` restores what it checked: a copy taken with `cp pager.db*` after a crash is
a main file and its `-wal`; the check read both through SQLite, the restore copied the file's
bytes alone, which held no table at all, and pagerd started on an empty database (every open
incident gone). And the live database is never restored onto itself."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pagerd.main import main
from pagerd.storage.sqlite.backup import BackupError, restore
from pagerd.storage.sqlite.store import Store
from tests.history import incident


def open_incidents(path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(
            "SELECT service, number FROM incidents WHERE closed_at IS NULL ORDER BY 1, 2"
        ).fetchall()


def test_a_copy_with_its_wal_is_restored_with_it(tmp_path: Path) -> None:
    copy = tmp_path / "bk"
    copy.mkdir()
    with closing(Store.open(tmp_path / "live" / "pager.db")) as store:
        incident(store, "api", 1, closed_at=None)  # open, and in the WAL alone: no checkpoint yet
        for suffix in ("", "-wal", "-shm"):  # as `kill -9` leaves them, copied with `cp`
            shutil.copyfile(f"{store.path}{suffix}", copy / f"pager.db{suffix}")
    database = tmp_path / "state2" / "pager.db"
    assert main(["restore", "--database", str(database), str(copy / "pager.db")]) == 0
    assert not database.with_name("pager.db-wal").exists()
    assert open_incidents(database) == [("api", 1)]
    with closing(Store.open(database)) as store:
        assert store.latest_incident("api") == 1


def test_the_live_database_is_never_restored_onto_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "state" / "pager.db"
    with closing(Store.open(database)) as store:
        incident(store, "api", 1, closed_at=None)
        image = {s: Path(f"{database}{s}").read_bytes() for s in ("", "-wal")}
        # Also under another name for the same file.
        for named in (database, tmp_path / "state" / ".." / "state" / "pager.db"):
            with pytest.raises(BackupError, match="is the database it would replace"):
                restore(named, database)
        assert main(["restore", "--database", str(database), str(database)]) == 1
        assert {s: Path(f"{database}{s}").read_bytes() for s in ("", "-wal")} == image
    assert "is the database it would replace" in capsys.readouterr().err
    assert list(database.parent.glob("pager.db.before-restore*")) == []
    assert open_incidents(database) == [("api", 1)]
