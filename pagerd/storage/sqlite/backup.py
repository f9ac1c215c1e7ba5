"""`pagerd backup`: a consistent copy of the database, taken while pagerd runs; `pagerd restore`.

Copying `pager.db` with `cp` is wrong: pagerd's database is in WAL mode, so its most recent
commits are in `pager.db-wal` until a checkpoint moves them into the file, and a copy of the
file alone is an older database, or a torn one if a checkpoint ran during the copy. Here the
database is opened read-only beside the running daemon (a reader does not hold up its writer in
WAL mode), and SQLite's online backup copies one consistent snapshot, WAL included, into a new
file, which is fsync'd and checked before it takes the destination's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

import attrs

from pagerd.storage.sqlite.schema import SCHEMA_VERSION
from pagerd.storage.sqlite.store import DATABASE_NAME

SAVED_AS: Final = DATABASE_NAME + ".before-restore.TIMESTAMP"
"""What `restore` names the database it replaces, beside it (`TIMESTAMP` like
`20261130T210200Z`, then `.1`, `.2`... if taken): never a copy an earlier restore saved."""


class BackupError(Exception):
    """The backup was not made; the message says why. Nothing was left at the destination."""


@attrs.frozen
class Backup:
    path: Path
    bytes: int
    schema_version: int


def backup(database: Path, dest: Path, *, force: bool = False) -> Backup:
    """Copy `database` to `dest`; refuse to replace an existing `dest` unless `force`."""
    if not database.is_file():
        raise BackupError(f"no database at {database}")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists: choose another name, or pass --force to replace it")
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder: name the file to write")
    temporary = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        # It holds addresses and webhook URLs: readable by its owner alone, like the original.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        version, check, _ = _snapshot(database, temporary)
        if check != "ok":
            raise BackupError(f"the copy does not pass SQLite's check: {check}")
        _fsync(temporary)
        if force:
            os.replace(temporary, dest)
        else:
            try:
                os.link(temporary, dest)  # fails if `dest` appeared meanwhile: never replaced
            except FileExistsError:
                raise BackupError(f"{dest} exists: choose another name, or pass --force") from None
        _fsync(dest.parent)
        return Backup(dest, dest.stat().st_size, version)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot back up {database} to {dest}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _snapshot(source: Path, dest: Path) -> tuple[int, str, set[str]]:
    """Copy the database at `source` into `dest` with SQLite's online backup: one consistent
    snapshot, whatever commits meanwhile, and the commits still in `source`'s WAL included. What
    the copy holds: its schema version, its quick_check, its tables."""
    conn = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest)
        try:
            conn.backup(target)  # one step
            version = int(target.execute("PRAGMA user_version").fetchone()[0])
            check = str(target.execute("PRAGMA quick_check").fetchone()[0])
            tables = {str(r[0]) for r in target.execute("SELECT name FROM sqlite_master")}
        finally:
            target.close()
    finally:
        conn.close()
    return version, check, tables


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@attrs.frozen
class Restored:
    path: Path
    saved: Path | None  # where the database it replaced was saved, if there was one
    schema_version: int


def restore(backup_file: Path, database: Path) -> Restored:
    """Make `backup_file` the database at `database`, with pagerd stopped.

    Copying a backup over `pager.db` by hand goes wrong if a `pager.db-wal` is left beside it:
    SQLite replays that log, the replaced database's, onto the restored file. Here the database
    being replaced is first saved (a consistent copy, WAL included, as
    `pager.db.before-restore.TIMESTAMP`, never over an earlier one), its WAL and shared-memory
    files are removed, and a copy of the backup, taken through SQLite (the backup's own `-wal`
    included, if one is beside it) and checked, takes its name. The state folder's lock is held
    throughout: a running pagerd makes this refuse, and so does the database itself as BACKUP.
    """
    _check_backup(backup_file)
    if _same_file(backup_file, database):
        raise BackupError(
            f"{backup_file} is the database it would replace: restore a copy `pagerd backup` made"
        )
    state = database.parent
    try:
        state.mkdir(parents=True, exist_ok=True)
        lock = os.open(state / "pagerd.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot use state folder {state}: {exc}") from None
    temporary = database.with_name(f".{database.name}.restoring-{os.getpid()}")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"pagerd is running on {state}: stop it first") from None
        saved = None
        if database.exists():
            saved = _save(database)
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        # Read through SQLite, as the check above read it: a copy of the file's bytes alone
        # would leave out the commits in a `-wal` beside the backup (a `cp pager.db*` after a
        # crash held no table at all in the file), and restore what was not checked.
        version, check, tables = _snapshot(backup_file, temporary)
        _verify(backup_file, version, check, tables)
        _fsync(temporary)
        for leftover in _companions(database):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        os.replace(temporary, database)
        _fsync(state)
        return Restored(database, saved, version)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot restore {backup_file} to {database}: {exc}") from None
    finally:
        for leftover in (temporary, *_companions(temporary)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        os.close(lock)


def _save(database: Path) -> Path:
    """A consistent copy of `database` beside it, under a name no earlier restore used: the
    first restore's copy is the original database, and a second restore must not replace it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{database.name}.before-restore.{stamp}"
    for counter in itertools.count(1):
        try:
            return backup(database, database.with_name(name)).path
        except BackupError:
            if not database.with_name(name).exists():
                raise
            name = f"{database.name}.before-restore.{stamp}.{counter}"
    raise AssertionError("unreachable")


def _check_backup(path: Path) -> int:
    """The backup's schema version, once it is known to be a whole pagerd database this pagerd
    can open."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = str(conn.execute("PRAGMA quick_check").fetchone()[0])
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a database pagerd can restore: {exc}") from None
    return _verify(path, version, check, tables)


def _verify(path: Path, version: int, check: str, tables: set[str]) -> int:
    if check != "ok":
        raise BackupError(f"{path} does not pass SQLite's check: {check}")
    if "incidents" not in tables or version == 0:
        raise BackupError(f"{path} is not a pagerd database")
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{path} has schema version {version}, newer than this pagerd knows "
            f"({SCHEMA_VERSION}): restore it with the pagerd that made it"
        )
    return int(version)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # `b` does not exist yet
        return False


def _companions(database: Path) -> tuple[Path, Path]:
    return database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")
