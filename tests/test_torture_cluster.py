"""The cluster torture, quick mode (the long one: `python -m tests.torture_cluster`): three
real nodes on PostgreSQL, a storm of events to random nodes, and a few faults (kill -9,
SIGSTOP past the lease, cut from the database), checked against the model of what was
answered ok."""

from __future__ import annotations

from pathlib import Path

from tests import postgres, torture_cluster

pg_dsn = postgres.pg_dsn
clean_pg = postgres.clean_pg


def test_a_storm_through_kills_pauses_and_cuts_loses_nothing_and_doubles_nothing(
    tmp_path: Path, clean_pg: str
) -> None:
    report = torture_cluster.run(tmp_path, rounds=4, services=30, seed=20261224, dsn=clean_pg)
    print(report.summary())
    # The seed's four faults: one of each kind.
    assert report.faults == {"kill": 1, "pause": 1, "drop": 1, "stall": 1}
    assert report.problems == [], report.summary()
    assert report.rounds == 4 and report.events_ok > 150 and report.notifications > 30
