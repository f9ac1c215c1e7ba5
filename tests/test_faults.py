"""Resource faults with the real process: a full disk, a corrupt or locked database, clock jumps."""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from pagerd.config import Config
from pagerd.storage.sqlite.store import Store
from tests.harness import connect, running, steps, write_config
from tests.processes import CONFIG, PAGERD, Pagerd, pager


def status(d: Pagerd, service: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(pager(d.socket, "--json", "status", service).stdout)
    return result


def test_full_disk_gives_clear_errors_and_pagerd_recovers_by_itself(daemon: Pagerd) -> None:
    daemon.start()
    assert pager(daemon.socket, "alert", "api").returncode == 0
    assert daemon.proc is not None
    # Every write past the first byte of any file now fails, as on a full disk.
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    refused = pager(daemon.socket, "alert", "web", "during the outage")
    ack = pager(daemon.socket, "ack", "api")
    web = status(daemon, "web")
    api = status(daemon, "api")
    resource.prlimit(
        daemon.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    again = pager(daemon.socket, "alert", "web", "after")
    assert refused.returncode == 75 and "unavailable" in refused.stderr  # try again later
    assert ack.returncode == 75 and "unavailable" in ack.stderr
    assert web["state"] == "healthy"  # nothing half-written is visible
    assert api["incident"]["acknowledged"] is False  # type: ignore[index]
    assert again.returncode == 0
    assert daemon.proc.poll() is None  # still running
    daemon.stop()
    conn = sqlite3.connect(daemon.config.parent / "state" / "pager.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_corrupt_database_stops_start_up_and_is_left_alone(tmp_path: Path) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "pager.db"
    garbage = b"this is not a database, and it must not become an empty one\n" * 100
    db.write_bytes(garbage)
    result = subprocess.run(
        [*PAGERD, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and str(db) in result.stderr
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == garbage


def test_a_corrupt_page_deep_in_the_history_stops_start_up(tmp_path: Path) -> None:
    # A valid header and schema, so that opening and loading the state work: only the check of
    # every page, which runs beside the load, finds the damage.
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "pager.db"
    Store.open(db).close()
    conn = sqlite3.connect(db)
    rows = ((f"svc-{i}", "x" * 50) for i in range(20_000))
    with conn:
        conn.executemany(
            "INSERT INTO events (service, incident, at, op, detail) VALUES (?, 1, 0, 'alert', ?)",
            rows,
        )
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with db.open("r+b") as file:
        file.seek((pages - 5) * 4096 + 100)  # inside one of the events table's last pages
        file.write(b"\xff" * 2000)
    damaged = db.read_bytes()
    result = subprocess.run(
        [*PAGERD, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and f"database {db} is corrupt" in result.stderr
    assert "more lines" in result.stderr  # the check's report is cut short, not 100 lines
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == damaged


def test_locked_database_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    (tmp_path / "state").mkdir()
    holder = sqlite3.connect(tmp_path / "state" / "pager.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = subprocess.run(
            [*PAGERD, "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert "locked" in result.stderr and "Traceback" not in result.stderr


async def test_a_wall_clock_step_while_running_neither_fires_nor_delays_timers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config: Config = write_config(tmp_path)
    real = time.time
    with trio.fail_after(24 * 3600):
        async with running(config), connect(config.socket) as conn:
            await conn.request("alert", service="api")
            monkeypatch.setattr(time, "time", lambda: real() + 3600)  # an hour forward
            await trio.sleep(299)
            before = len(steps(config))
            monkeypatch.setattr(time, "time", lambda: real() - 7200)  # two hours back
            await trio.sleep(2)
            after = len(steps(config))
    assert before == 2  # level 1 only: the jump forward fired nothing early
    assert after == 3  # level 2 on time (5 minutes), the jump back delayed nothing
