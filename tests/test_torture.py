"""The kill -9 torture tests, quick mode (the long ones: `python -m tests.torture` and
`python -m tests.torture_prune`)."""

from __future__ import annotations

from pathlib import Path

from tests import torture, torture_prune


def test_kill_9_storm_loses_nothing_acknowledged_and_doubles_nothing(tmp_path: Path) -> None:
    report = torture.run(tmp_path, rounds=4, services=20, seed=20261127)
    assert report.problems == [], report.summary()
    assert report.rounds == 4 and report.events_ok > 100 and report.notifications > 20


def test_kill_9_storm_with_pages_sent_by_worker_processes_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    report = torture.run(tmp_path, rounds=4, services=20, seed=20261201, workers=2)
    assert report.problems == [], report.summary()
    assert report.rounds == 4 and report.events_ok > 100 and report.notifications > 20


def test_kill_9_while_pruning_history_keeps_what_must_stay_and_leaves_no_orphans(
    tmp_path: Path,
) -> None:
    report = torture_prune.run(tmp_path, rounds=4, services=150, seed=20261128)
    assert report.problems == [], report.summary()
    assert report.killed_mid_pass == 4 and report.pruned > 50 and report.kept > 100
