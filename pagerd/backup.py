"""`pagerd backup`: a consistent copy of the database, taken while pagerd runs.

Copying `pager.db` with `cp` is wrong: pagerd's database is in WAL mode, so its most recent
commits are in `pager.db-wal` until a checkpoint moves them into the file, and a copy of the
file alone is an older database, or a torn one if a checkpoint ran during the copy. Here the
database is opened read-only beside the running daemon (a reader does not hold up its writer in
WAL mode), and SQLite's online backup copies one consistent snapshot, WAL included, into a new
file, which is fsync'd and checked before it takes the destination's name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import attrs


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
        source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            target = sqlite3.connect(temporary)
            try:
                source.backup(target)  # one step: one snapshot, whatever commits meanwhile
                version = target.execute("PRAGMA user_version").fetchone()[0]
                check = target.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                target.close()
        finally:
            source.close()
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
