"""`pager silence` and `pager simulate` from the real `pager` against the real `pagerd`: what an
operator types, and what the commands print; a silence survives `kill -9`."""

from __future__ import annotations

import json

import pytest

from tests.processes import Pagerd, pager

pytestmark = pytest.mark.e2e


def test_an_operator_silences_lists_simulates_and_ends(daemon: Pagerd) -> None:
    daemon.start()
    started = pager(daemon.socket, "silence", "api", "--for", "2h", "--reason", "db migration",
                    "--by", "alice")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("silence 1 of api: from ")
    assert started.stdout.rstrip().endswith("by alice: db migration")
    listed = pager(daemon.socket, "silence", "list")
    assert listed.stdout.splitlines()[0].split() == ["ID", "SERVICE", "FROM", "UNTIL", "BY",
                                                     "REASON"]  # fmt: skip
    status = pager(daemon.socket, "status", "api")
    assert "api silenced from " in status.stdout and "(silence 1)" in status.stdout
    simulated = pager(daemon.socket, "--json", "simulate", "api")
    events = [step["event"] for step in json.loads(simulated.stdout)["timeline"]]
    assert events == ["held", "notify", "notify", "exhausted"]
    wrong = pager(daemon.socket, "silence", "nope", "--for", "1h", "--reason", "x")
    assert wrong.returncode == 1 and "unknown_service" in wrong.stderr
    usage = pager(daemon.socket, "silence", "api")
    assert usage.returncode == 2 and "--for DURATION or --until TIME" in usage.stderr
    daemon.kill()
    daemon.start()
    again = pager(daemon.socket, "--json", "silence", "list", "api")
    assert [s["reason"] for s in json.loads(again.stdout)["silences"]] == ["db migration"]
    ended = pager(daemon.socket, "silence", "end", "1")
    assert ended.returncode == 0 and ended.stdout.startswith("silence 1 of api ended by ")
    gone = pager(daemon.socket, "silence", "end", "1")
    assert gone.returncode == 1 and "not_found" in gone.stderr
