"""What `pager` prints for a reply: `--json` gives scripts the daemon's error too, an ack says
who acknowledged, and a removed service's incident ends in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pager import cli
from tests.fake_pagerd import fake_pagerd

REJECTED = {
    "ok": False,
    "error": {
        "code": "invalid_config",
        "message": "the config was not reloaded",
        "errors": ["policies.p.repeat: must be 0 or more"],
    },
}


def test_json_prints_an_error_reply_on_stdout_and_the_readable_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = REJECTED
        assert cli.main(["--socket", str(fake.path), "--json", "reload"]) == 1
        json_out = capsys.readouterr()
        assert cli.main(["--socket", str(fake.path), "reload"]) == 1
        text_out = capsys.readouterr()
    assert json.loads(json_out.out) == REJECTED
    assert json_out.err == text_out.err
    assert "pager: invalid_config: the config was not reloaded" in json_out.err
    assert text_out.out == ""  # without --json, stdout stays empty as before


def test_json_on_success_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {"ok": True, "version": "1.0"}
        assert cli.main(["--socket", str(fake.path), "--json", "ping"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": "1.0"}  # "ok" dropped, as always


def _incident(**changes: Any) -> dict[str, Any]:
    return {
        "service": "api",
        "state": "unhealthy",
        "incident": {
            "id": "api#1",
            "level": 1,
            "acknowledged": True,
            "acknowledged_by": "alice",
            "alerts": 2,
            **changes,
        },
    }


def test_an_ack_says_who_acknowledged() -> None:
    assert cli.render("ack", _incident()) == (
        "api: unhealthy, incident api#1 acknowledged by alice, level 1 notified, 2 alert(s)"
    )
    assert "incident api#1 acknowledged, level" in cli.render(
        "ack", _incident(acknowledged_by=None)
    )
    assert "alice" not in cli.render("alert", _incident(acknowledged=False))


def test_a_removed_services_incident_ends_in_one_line() -> None:
    reason = "service removed from the config"
    history = {
        "incident": "api#1",
        "message": "down",
        "closed_at": "t3",
        "timeline": [
            {"at": "t1", "event": "alert", "detail": "down"},
            {"at": "t2", "event": "removed", "detail": reason},
            {"at": "t2", "event": "closed"},
        ],
    }
    lines = cli.render("history", history).splitlines()
    assert lines[-1] == f"  t2  closed: {reason}"
    assert len(lines) == 3
    healthy = {**history, "timeline": [history["timeline"][0], {"at": "t2", "event": "closed"}]}
    assert cli.render("history", healthy).splitlines()[-1] == "  t2  closed"


def test_heartbeat_sends_the_op_and_prints_the_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitor = {
        "every": "5m",
        "due_at": "2027-01-15T08:05:00.000Z",
        "last_at": "2027-01-15T08:00:00.000Z",
        "missed": False,
    }
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {
            "ok": True, "service": "cron", "state": "healthy", "incident": None,
            "heartbeat": monitor,
        }  # fmt: skip
        assert cli.main(["--socket", str(fake.path), "heartbeat", "cron"]) == 0
        sent = fake.requests()
    assert sent == [{"op": "heartbeat", "service": "cron"}]
    assert capsys.readouterr().out == (
        "cron: healthy\n"
        "heartbeat every 5m: next check-in due by 2027-01-15T08:05:00.000Z"
        " (last 2027-01-15T08:00:00.000Z)\n"
    )


def test_status_of_a_service_shows_its_monitor_under_the_table() -> None:
    status = {"service": "cron", "state": "unhealthy", "incident": None}
    missed = {"every": "1h", "due_at": None, "last_at": "2027-01-15T08:00:00.000Z", "missed": True}
    waiting = {"every": "1h", "due_at": None, "last_at": None, "missed": False}
    assert cli.render("status", {**status, "heartbeat": missed}).endswith(
        "\n\nheartbeat every 1h: MISSED: no check-in since 2027-01-15T08:00:00.000Z"
    )
    assert cli.render("status", {**status, "heartbeat": waiting}).endswith(
        "\n\nheartbeat every 1h: waiting for the first check-in"
    )
    assert "heartbeat" not in cli.render("status", status)


def test_a_heartbeat_refused_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_pagerd(tmp_path) as fake:
        fake.reply = {
            "ok": False,
            "error": {"code": "bad_request", "message": "api has no heartbeat configured"},
        }
        assert cli.main(["--socket", str(fake.path), "heartbeat", "api"]) == 1
    assert "pager: bad_request: api has no heartbeat configured" in capsys.readouterr().err
