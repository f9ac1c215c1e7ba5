"""Databases made by every earlier pagerd open, upgrade to today's layout, and still page.

tests/schemas has one SQL script per layout ever shipped (made from git history by
`tests/schemas/make.py`): each holds an open incident whose escalation deadline has not passed
and a notification never delivered.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import trio
import trio.testing

from pager.domain import Source
from pager.schedules import Override
from pagerd.config import Config
from pagerd.storage.port import StoreError
from pagerd.storage.sqlite import schema
from pagerd.storage.sqlite.schema import SCHEMA_VERSION
from pagerd.storage.sqlite.store import Store, database_file, stored_overrides
from tests.harness import T0, notifications, running, settle, steps

SCRIPTS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))


def layout(path: Path) -> dict[str, object]:
    """What makes a layout: the version, each table's columns and each index's definition."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "columns": {t: conn.execute(f"PRAGMA table_xinfo({t})").fetchall() for t in tables},
            "indexes": conn.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
            ).fetchall(),
            "tables": conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall(),
        }


def make(path: Path, script: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(script.read_text())


def test_there_is_a_script_for_each_layout_shipped() -> None:
    assert len(SCRIPTS) == 9


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
async def test_a_database_of_an_earlier_version_upgrades_and_still_pages(
    autojump_clock: trio.testing.MockClock, config: Config, script: Path, tmp_path: Path
) -> None:
    make(database_file(config.state_dir), script)
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with trio.fail_after(3600):
        async with running(config):
            await settle()
            assert layout(database_file(config.state_dir)) == layout(fresh)
            await trio.sleep(600)
    assert steps(config) == [
        ("api#2", 1, 1, "sms:+14155550100"),  # never delivered: delivered at once
        ("api#2", 1, 2, "email:lead@example.com"),  # the deadline, T0 + 4 minutes, fired
    ]
    # Decided before notifications had an origin: re-sent with the key it had, its id.
    first = notifications(config)[0]
    assert first["key"] == first["id"]
    with closing(Store.open(database_file(config.state_dir))) as store:
        assert [d.state for d in store.deliveries("api", 2)] == ["sent", "sent", "sent"]
        assert store.latest_incident("api") == 2
        # The history written before the upgrade is still there.
        history = store.history("api", 2)
        assert history is not None and history.opened_at == T0 - 60


def test_an_upgraded_database_is_the_same_as_a_new_one_even_when_opened_twice(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    for script in SCRIPTS:
        old = tmp_path / f"{script.stem}.db"
        make(old, script)
        Store.open(old).close()
        Store.open(old).close()
        assert layout(old) == layout(fresh), script.stem


def test_a_database_of_a_newer_version_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "pager.db"
    Store.open(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this pagerd knows") as error:
        Store.open(path)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(error.value)
    assert "upgrade" in str(error.value) or "Run that version" in str(error.value)
    assert layout(path)["user_version"] == SCHEMA_VERSION + 1


def test_a_database_with_tables_but_no_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pager.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE mine (x)")
    with pytest.raises(StoreError, match="not pagerd's"):
        Store.open(path)


def test_a_version_7_database_keeps_what_fires_and_gains_heartbeats(tmp_path: Path) -> None:
    """Step 7 (the heartbeats) over a database of version 7 (the firing set, step 6): what was
    firing for an open incident is loaded as before, and no monitor is made up."""
    old = tmp_path / "v7.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 7):
            conn.executescript(schema._MIGRATIONS[step])
        conn.execute(
            "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
            " deadline, exhausted) VALUES ('api', 1, 1.0, 'down', 1, 1, 1, 301.0, 0)"
        )
        conn.execute("INSERT INTO firing VALUES ('api', 'am', 'fp1')")
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        state = store.load_states()["api"]
    assert layout(old) == layout(fresh)
    assert layout(old)["user_version"] == SCHEMA_VERSION == 17
    assert state.firing == {Source("am", "fp1")}
    assert state.heartbeat is None
    assert state.incident is not None and not state.incident.heartbeat_only


def test_a_version_8_database_infers_which_open_incidents_a_plain_alert_holds(
    tmp_path: Path,
) -> None:
    """Step 8 (`held_by_alert`) over a database of version 8: an open incident with nothing
    firing through integrations was opened by plain alerts, which only `healthy` ends: held, so
    no integration's resolve closes it after the upgrade. One with something firing is not known
    to have had a plain alert: not held, so the integration's last resolve closes it as before.
    One a missed heartbeat alone opened stays the check-in's; closed ones are left as they were."""
    old = tmp_path / "v8.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 8):
            conn.executescript(schema._MIGRATIONS[step])
        conn.executemany(
            "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
            " deadline, exhausted, closed_at, heartbeat_only)"
            " VALUES (?, ?, 1.0, 'down', 1, 1, 1, ?, 0, ?, ?)",
            [
                ("cron", 1, None, 5.0, 0),  # closed
                ("cron", 2, 301.0, None, 0),  # open, nothing firing: a plain alert's
                ("prom", 1, 301.0, None, 0),  # open, firing through Alertmanager
                ("beat", 1, 301.0, None, 1),  # open for a missed heartbeat alone
            ],
        )
        conn.execute("INSERT INTO firing VALUES ('prom', 'am', 'fp1')")
        conn.execute("INSERT INTO heartbeats VALUES ('beat', 60.0, NULL, 0.5)")
        conn.execute("PRAGMA user_version = 8")
        conn.commit()
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        states = store.load_states()
    assert layout(old) == layout(fresh)
    held = {name: s.incident.held_by_alert for name, s in states.items() if s.incident}
    assert held == {"cron": True, "prom": False, "beat": False}
    with closing(sqlite3.connect(old)) as conn:
        closed = conn.execute(
            "SELECT held_by_alert FROM incidents WHERE service = 'cron' AND number = 1"
        ).fetchone()
    assert closed == (0,)


def test_a_version_11_database_keeps_what_fires_and_remembers_no_start(tmp_path: Path) -> None:
    """Step 11 (`alert_starts`) over a database of version 11: what fires still fires, and no
    startsAt is made up, so every firing is taken as new, as it was (`ServiceState.started`)."""
    old = tmp_path / "v11.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 11):
            conn.executescript(schema._MIGRATIONS[step])
        conn.execute(
            "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
            " deadline, exhausted) VALUES ('api', 1, 1.0, 'down', 1, 1, 1, 301.0, 0)"
        )
        conn.execute("INSERT INTO firing VALUES ('api', 'am', 'fp1')")
        conn.execute("PRAGMA user_version = 11")
        conn.commit()
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        state = store.load_states()["api"]
    assert layout(old) == layout(fresh)
    assert state.firing == {Source("am", "fp1")} and state.started == {}


def test_a_version_12_database_gains_silences_and_keeps_its_open_incidents(
    tmp_path: Path,
) -> None:
    """Step 12 (silences) over a database of version 12: its open incident is loaded as before,
    held by no silence, and the service has none; silence ids start at 1."""
    old = tmp_path / "v12.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 12):
            conn.executescript(schema._MIGRATIONS[step])
        conn.execute(
            "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
            " deadline, exhausted, held_by_alert) VALUES ('api', 1, 1.0, 'down', 1, 1, 1, 301.0,"
            " 0, 1)"
        )
        conn.execute("PRAGMA user_version = 12")
        conn.commit()
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        state = store.load_states()["api"]
        assert store.last_silence_id() == 0
    assert layout(old) == layout(fresh)
    assert state.incident is not None and state.incident.deadline == 301.0
    assert not state.incident.silenced and state.incident.held_by_alert
    assert state.silences == ()


def test_a_version_14_database_keeps_its_notifications_and_gains_overrides(
    tmp_path: Path,
) -> None:
    """Step 14 (people and schedules): an undelivered notification of version 14 is read back as
    it was (step 1, reached directly), and overrides can be stored."""
    old = tmp_path / "v14.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 14):
            conn.executescript(schema._MIGRATIONS[step])
        conn.execute(
            "INSERT INTO notifications (id, service, incident, round, level, channel, address,"
            " message, opened_at, created_at) VALUES ('api#1/1/1/email:a@example.com', 'api', 1,"
            " 1, 1, 'email', 'a@example.com', 'down', 1.0, 1.0)"
        )
        conn.execute("PRAGMA user_version = 14")
        conn.commit()
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        (row,) = store.undelivered(10)
        assert row.notify.id == "api#1/1/1/email:a@example.com" and row.notify.via == ""
        added = store.add_override(Override(0, "primary", "bob", None, 10.0, 20.0), 5.0)
        assert store.overrides() == [added] and added.id == 1
    assert layout(old) == layout(fresh)


def test_a_version_16_database_keeps_its_overrides_and_gains_who_made_and_removed_them(
    tmp_path: Path,
) -> None:
    """Step 16: an override of version 16 is kept, made by nobody known; `pagerd --check` reads
    it from a database not yet upgraded (read only) as from one upgraded; it can be removed,
    its record kept with who removed it."""
    (tmp_path / "state").mkdir()
    old = database_file(tmp_path / "state")
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(schema._BASE)
        for step in range(schema.BASE_VERSION, 16):
            conn.executescript(schema._MIGRATIONS[step])
        conn.execute(
            "INSERT INTO overrides (schedule, by_person, for_person, starts_at, ends_at,"
            " created_at) VALUES ('primary', 'bob', 'alice', 10.0, 20.0, 5.0)"
        )
        conn.execute("PRAGMA user_version = 16")
        conn.commit()
    kept = Override(1, "primary", "bob", "alice", 10.0, 20.0)
    assert stored_overrides(old.parent) == [kept]
    fresh = tmp_path / "fresh.db"
    Store.open(fresh).close()
    with closing(Store.open(old)) as store:
        assert store.overrides() == [kept]
        assert store.remove_override(1, "root", 12.0) == kept
        assert store.removed_overrides("primary", 11.0, 5)[0].by == "root"
    assert stored_overrides(old.parent) == []
    assert layout(old) == layout(fresh)
