"""The kill -9 torture test, quick mode (the long one: `python -m tests.torture`)."""

from __future__ import annotations

from pathlib import Path

from tests.torture import run


def test_kill_9_storm_loses_nothing_acknowledged_and_doubles_nothing(tmp_path: Path) -> None:
    report = run(tmp_path, rounds=4, services=20, seed=20261127)
    assert report.problems == [], report.summary()
    assert report.rounds == 4 and report.events_ok > 100 and report.notifications > 20
