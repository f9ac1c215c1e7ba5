"""End to end: the real `pagerd` process driven by the real `pager` command, killed with -9.

These run on the real clock (a separate process cannot share a MockClock), with acknowledgement
timeouts of a few seconds, and wait by polling with a deadline, never by a fixed sleep.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pager.timefmt import timestamp
from tests.processes import CONFIG, PAGER, PAGERD, Pagerd, pager, read_jsonl, wait_for
from tests.servers import Answer, HttpServer, free_port

pytestmark = pytest.mark.e2e


def log_of(d: Pagerd) -> list[dict[str, Any]]:
    return read_jsonl(d.config.parent / "state" / "notifications.jsonl")


def steps(d: Pagerd, service: str) -> list[tuple[int, int, str]]:
    return [
        (n["round"], n["level"], f"{n['channel']}:{n['target']}")
        for n in log_of(d)
        if n["service"] == service
    ]


LEVEL1 = [(1, 1, "email:alice@example.com"), (1, 1, "sms:+14155550100")]
LEVEL2 = [(1, 2, "email:lead@example.com")]


def test_kill_9_mid_incident_then_escalation_continues_on_time(daemon: Pagerd) -> None:
    daemon.start()
    assert pager(daemon.socket, "alert", "api", "p99 > 2s").returncode == 0
    wait_for(lambda: len(steps(daemon, "api")) == 2, 30, "level 1 of api notified")
    daemon.kill()
    daemon.start()  # back before api's deadline: level 2 must come at the deadline, not before
    wait_for(lambda: len(steps(daemon, "api")) == 3, 30, "level 2 of api notified")
    assert sorted(steps(daemon, "api")) == LEVEL1 + LEVEL2
    (level2,) = [n for n in log_of(daemon) if n["level"] == 2]
    late = timestamp(level2["time"]) - (timestamp(level2["opened_at"]) + 2.0)
    assert 0 <= late < 1.5, f"level 2 was {late:.3f}s late"

    assert pager(daemon.socket, "alert", "web").returncode == 0
    wait_for(lambda: len(steps(daemon, "web")) == 2, 30, "level 1 of web notified")
    daemon.kill()
    time.sleep(2.5)  # the real process is down while web's deadline passes: that is the test
    started = time.time()
    daemon.start()
    wait_for(lambda: len(steps(daemon, "web")) == 3, 30, "overdue level 2 of web notified")
    assert sorted(steps(daemon, "web")) == LEVEL1 + LEVEL2
    assert timestamp(log_of(daemon)[-1]["time"]) - started < 2.0  # at once on start

    status = pager(daemon.socket, "--json", "status", "api")
    assert status.returncode == 0, status.stderr
    incident = json.loads(status.stdout)["incident"]
    assert incident["level"] == 2 and incident["alerts"] == 1
    assert sorted(steps(daemon, "api")) == LEVEL1 + LEVEL2  # nothing sent twice, two kills


def test_sigterm_stops_cleanly_and_state_survives(daemon: Pagerd) -> None:
    daemon.start()
    assert pager(daemon.socket, "alert", "api").returncode == 0
    assert pager(daemon.socket, "ack", "api", "--by", "bob").returncode == 0
    assert daemon.terminate() == 0
    assert not daemon.socket.exists()
    assert "stopped" in daemon.stderr()
    daemon.start()
    status = json.loads(pager(daemon.socket, "status", "--json", "api").stdout)
    assert status["incident"]["acknowledged"] is True
    assert status["incident"]["acknowledged_by"] == "bob"


def test_pager_exit_codes_and_output(daemon: Pagerd) -> None:
    down = pager(daemon.socket, "ping")
    assert down.returncode == 69
    assert "cannot reach pagerd" in down.stderr

    daemon.start()
    usage = subprocess.run([*PAGER, "alert"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    refused = pager(daemon.socket, "ack", "api")
    assert refused.returncode == 1
    assert "no_open_incident" in refused.stderr
    unknown = pager(daemon.socket, "alert", "nope")
    assert unknown.returncode == 1 and "unknown_service" in unknown.stderr

    opened = pager(daemon.socket, "alert", "api", "disk full")
    assert opened.returncode == 0
    assert "api: unhealthy, incident api#1" in opened.stdout
    table = pager(daemon.socket, "status")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "STATE", "INCIDENT"]
    assert lines[1].split()[:3] == ["api", "unhealthy", "api#1"]
    assert lines[2].split()[:2] == ["web", "healthy"]

    every = json.loads(pager(daemon.socket, "status", "--json").stdout)
    assert [s["service"] for s in every["services"]] == ["api", "web"]
    one = json.loads(pager(daemon.socket, "--json", "status", "api").stdout)
    assert set(one) == {"service", "state", "incident"}
    assert set(one["incident"]) >= {
        "id",
        "level",
        "acknowledged",
        "alerts",
        "opened_at",
        "next_escalation_at",
        "exhausted",
    }


def test_pagerd_refuses_a_second_instance(daemon: Pagerd) -> None:
    daemon.start()
    second = subprocess.run(
        [*PAGERD, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 1
    assert "another pagerd" in second.stderr
    assert "Traceback" not in second.stderr
    assert pager(daemon.socket, "ping").returncode == 0


def test_pagerd_check_exits_78_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('"sms:+14155550100"', '"sms:555"'))
    result = subprocess.run(
        [*PAGERD, "--config", str(bad), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 78
    assert "policies.fast.levels[0].targets[1]: not an E.164 phone number" in result.stderr


TWILIO = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"

[channels.sms]
transport = "twilio"
account_sid = "AC123"
auth_token_file = "token"
sender = "+14155550199"
api_base = "http://127.0.0.1:{port}"
timeout = "1s"
retry_initial = "200ms"
retry_max = "500ms"

[policies.sms]
[[policies.sms.levels]]
targets = ["sms:+14155550100", "sms:+14155550101"]
ack_timeout = "1h"

[services.api]
policy = "sms"
"""


def twilio_daemon(tmp_path: Path, port: int) -> Pagerd:
    (tmp_path / "token").write_text("secret-token")
    config = tmp_path / "pager.toml"
    config.write_text(TWILIO.replace("{port}", str(port)))
    return Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")


def test_kill_9_before_delivery_then_delivered_once_after_restart(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: the provider is down
    daemon = twilio_daemon(tmp_path, port)
    try:
        daemon.start()
        assert pager(daemon.socket, "alert", "api", "down").returncode == 0
        wait_for(
            lambda: "retrying" in pager(daemon.socket, "status", "api").stdout,
            10,
            "a failed attempt recorded",
        )
        daemon.kill()  # decided and committed, not delivered
        with HttpServer(port) as provider:
            daemon.start()
            wait_for(lambda: len(provider.requests) >= 2, 30, "both SMS delivered")
            status = json.loads(pager(daemon.socket, "--json", "status", "api").stdout)
            wait_for(
                lambda: all(
                    n["state"] == "sent"
                    for n in json.loads(pager(daemon.socket, "--json", "status", "api").stdout)[
                        "incident"
                    ]["notifications"]
                ),
                10,
                "both marked sent",
            )
            time.sleep(1.0)  # any duplicate would have been sent by now (retries are 200ms)
        assert sorted(r.form()["To"] for r in provider.requests) == [
            "+14155550100",
            "+14155550101",
        ]
        assert status["incident"]["failed_deliveries"] == 0
    finally:
        daemon.stop()


def test_permanent_failure_shows_in_pager_status(tmp_path: Path) -> None:
    with HttpServer() as provider:
        provider.default = Answer(400, {"code": 21211, "message": "not a valid phone number"})
        daemon = twilio_daemon(tmp_path, provider.port)
        try:
            daemon.start()
            assert pager(daemon.socket, "alert", "api").returncode == 0
            wait_for(
                lambda: "2 FAILED" in pager(daemon.socket, "status").stdout,
                10,
                "failures flagged in the status table",
            )
            detail = pager(daemon.socket, "status", "api").stdout
            time.sleep(0.5)
        finally:
            daemon.stop()
    assert len(provider.requests) == 2  # not retried
    assert "failed" in detail and "21211" in detail
    assert "secret-token" not in detail


def test_a_heartbeat_survives_kill_9_and_its_miss_pages_once_at_the_deadline(
    tmp_path: Path,
) -> None:
    """`pager heartbeat` against the real process: the deadline committed before "ok" survives
    kill -9, fires at its time (not at the restart, not forgotten), and the next check-in
    closes the incident the miss opened."""
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG + '\n[services.cron]\npolicy = "fast"\nheartbeat = "5s"\n')
    d = Pagerd(config, tmp_path / "run" / "pager.sock", tmp_path / "pagerd.log")
    try:
        d.start()
        checked = pager(d.socket, "--json", "heartbeat", "cron")
        assert checked.returncode == 0, checked.stderr
        due = timestamp(json.loads(checked.stdout)["heartbeat"]["due_at"])
        d.kill()
        d.start()  # back before the deadline: nothing at once, the page at the deadline
        wait_for(lambda: len(steps(d, "cron")) == 2, 15, "the missed heartbeat paged")
        assert sorted(steps(d, "cron")) == LEVEL1
        first = log_of(d)[0]
        assert "no heartbeat for 5s" in first["message"]
        assert 0 <= timestamp(first["time"]) - due < 1.5
        back = pager(d.socket, "--json", "heartbeat", "cron")
        assert back.returncode == 0 and json.loads(back.stdout)["state"] == "healthy"
        refused = pager(d.socket, "heartbeat", "api")
        assert refused.returncode == 1 and "no heartbeat configured" in refused.stderr
    finally:
        d.stop()
