"""The `pager` client on its own: fast to start, and exit codes without a daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pager import cli


def test_client_does_not_import_trio_or_the_daemon() -> None:
    code = (
        "import sys, pager.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('trio', 'pagerd', 'cattrs')]; "
        "sys.exit(', '.join(bad) or None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_unreachable_daemon_exits_69(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--socket", str(tmp_path / "none.sock"), "alert", "api"]) == 69
    assert "cannot reach pagerd" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["frobnicate"])
    assert excinfo.value.code == 2


def test_socket_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAGER_SOCKET", str(tmp_path / "from-env.sock"))
    assert cli.main(["ping"]) == 69
    assert "from-env.sock" in capsys.readouterr().err


def test_table_of_statuses() -> None:
    text = cli.render(
        "status",
        {
            "services": [
                {"service": "api", "state": "healthy", "incident": None},
                {
                    "service": "web",
                    "state": "unhealthy",
                    "incident": {
                        "id": "web#2",
                        "level": 2,
                        "acknowledged": True,
                        "acknowledged_by": "bob",
                        "alerts": 3,
                        "opened_at": "2027-01-15T08:00:00.000Z",
                        "next_escalation_at": None,
                        "exhausted": False,
                        "failed_deliveries": 1,
                    },
                },
            ]
        },
    )
    rows = [line.split() for line in text.splitlines()]
    header, web, api = rows  # the unhealthy first
    assert header == [
        "SERVICE", "STATE", "INCIDENT", "LEVEL", "ACK", "ALERTS", "OPENED", "NEXT", "DELIVERY"
    ]  # fmt: skip
    assert api == ["api", "healthy", "-", "-", "-", "-", "-", "-", "-"]
    assert web == [
        "web", "unhealthy", "web#2", "2", "bob", "3", "2027-01-15T08:00:00.000Z", "-", "1", "FAILED"
    ]  # fmt: skip


def test_an_acknowledgement_that_expires_is_labelled_in_next() -> None:
    """Under `ack_expiry`, an acknowledged incident's `next_escalation_at` is when the ack
    expires, not a page: NEXT says so, wide or narrow, and so does the one-line summary."""
    incident = {
        "id": "web#2",
        "level": 1,
        "acknowledged": True,
        "acknowledged_by": "bob",
        "acknowledged_via": "sms",
        "alerts": 1,
        "opened_at": "2027-01-15T08:00:00.000Z",
        "next_escalation_at": "2027-01-15T12:00:00.000Z",
        "ack_expires_at": "2027-01-15T12:00:00.000Z",
        "exhausted": False,
        "failed_deliveries": 0,
    }
    reply = {"services": [{"service": "web", "state": "unhealthy", "incident": incident}]}
    wide = cli.render("status", reply).splitlines()[1]
    assert "ack expires 2027-01-15T12:00:00.000Z" in wide
    narrow = cli.render("status", reply, width=70, today="2027-01-15").splitlines()[1]
    assert "ack expires 12:00:00Z" in narrow and len(narrow) <= 70, narrow
    # From a pagerd before `ack_expires_at`: the same, read from next_escalation_at.
    older = {**incident}
    del older["ack_expires_at"]
    assert "ack expires 2027-01-15T12:00:00.000Z" in cli.render(
        "status", {"services": [{"service": "web", "state": "unhealthy", "incident": older}]}
    )
    single = {"service": "web", "state": "unhealthy", "incident": incident}
    assert cli.render("ack", single) == (
        "web: unhealthy, incident web#2 acknowledged by bob via sms (the acknowledgement"
        " expires at 2027-01-15T12:00:00.000Z: policy ack_expiry), level 1 notified, 1 alert(s)"
    )
    forever = {**incident, "next_escalation_at": None, "ack_expires_at": None}
    assert "ack expires" not in cli.render(
        "status", {"services": [{"service": "web", "state": "unhealthy", "incident": forever}]}
    )
