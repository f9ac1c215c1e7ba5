"""End to end over HTTP: the real `pagerd` process, paged by httpx and by the docs' own curl
commands, on the real clock (waits poll with a deadline, never a fixed sleep)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Final

import httpx
import pytest

from tests.processes import CONFIG, Pagerd, pager, read_jsonl, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.e2e

DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "http.md"
KEY: Final = "e2e-key-7d41c0a9b3f2"


def start(tmp_path: Path, text: str) -> Pagerd:
    (tmp_path / "pager.toml").write_text(text)
    daemon = Pagerd(tmp_path / "pager.toml", tmp_path / "run" / "pager.sock", tmp_path / "err.log")
    daemon.start()
    return daemon


def notified(tmp_path: Path) -> list[dict[str, object]]:
    return read_jsonl(tmp_path / "state" / "notifications.jsonl")


def test_a_rest_alert_pages_and_bad_requests_change_nothing(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "ops.key").write_text(KEY + "\n")
    http = f"""
[http]
listen = "127.0.0.1:{port}"
max_body_bytes = 2048
workers = 2

[integrations.ops]
type = "rest"
key_file = "ops.key"
"""
    daemon = start(tmp_path, CONFIG + http)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/-/ready").status_code == 200
            good = {"authorization": f"Bearer {KEY}"}
            wrong = client.post(
                "/alert", json={"service": "web"}, headers={"authorization": "Bearer no"}
            )
            assert wrong.status_code == 401
            big = client.post("/alert", content=b"{" + b" " * 4096 + b"}", headers=good)
            assert big.status_code == 413
            bad = client.post("/alert", content=b'{"service": "web",', headers=good)
            assert bad.status_code == 400
            response = client.post(
                "/alert", json={"service": "api", "message": "down"}, headers=good
            )
            assert response.status_code == 200
            wait_for(lambda: len(notified(tmp_path)) == 2, 10, "level 1 of api notified")
            assert {n["service"] for n in notified(tmp_path)} == {"api"}
            assert client.get("/status/web", headers=good).json()["state"] == "healthy"
        metrics = pager(daemon.socket, "metrics").stdout
        assert 'pagerd_http_auth_failures_total{integration_type="rest"} 1' in metrics
        history = pager(daemon.socket, "history", "api").stdout
        assert "alert via ops: down" in history
        assert daemon.terminate() == 0  # SIGTERM: a clean stop, HTTP included
    finally:
        daemon.stop()
    for text in (daemon.stderr(), metrics, history):
        assert KEY not in text


def _doc_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_docs_curl_examples_work_against_a_real_pagerd(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip(
            "curl is NOT installed on this machine: the curl examples of docs/http.md were NOT "
            "run (install it: apt-get install curl)"
        )
    port = free_port()
    # The keys and their header files, made as the docs make them (but the `chown`: pagerd runs
    # as this test's user here).
    (making,) = [block for block in _doc_blocks("sh") if "openssl rand" in block]
    making = "\n".join(line for line in making.splitlines() if not line.startswith("chown "))
    for name in ("ops-scripts", "backups"):
        script = making.replace("/etc/pager/", f"{tmp_path}/").replace("ops-scripts", name)
        subprocess.run(["sh", "-ec", script], check=True, timeout=30)
        for made in (f"keys/{name}.key", f"keys/{name}.header"):
            assert (tmp_path / made).stat().st_mode & 0o777 == 0o600, made
        key = (tmp_path / "keys" / f"{name}.key").read_text().strip()
        header = (tmp_path / "keys" / f"{name}.header").read_text()
        assert header == f"Authorization: Bearer {key}\n" and len(key) == 64
    (config,) = _doc_blocks("toml")
    config = config.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    config = config.replace("/etc/pager/", f"{tmp_path}/")
    base = """
[daemon]
socket = "run/pager.sock"
state_dir = "state"
[channels.email]
transport = "log"
[policies.payments]
[[policies.payments.levels]]
targets = ["email:alice@example.com"]
[services.payments-api]
policy = "payments"
[services.nightly-backup]
policy = "payments"
heartbeat = "25h"
[people.alice]
email = "alice@example.com"
[people.bob]
email = "bob@example.com"
[schedules.payments-primary]
timezone = "Europe/London"
[[schedules.payments-primary.layers]]
people = ["alice", "bob"]
shift = "1w"
start = 2024-01-01
handoff = "09:00"
"""
    daemon = start(tmp_path, base + config)
    try:
        commands = [
            line
            for block in _doc_blocks("sh")
            for line in block.splitlines()
            if line.startswith("curl ")
        ]
        assert len(commands) == 12
        outputs = []
        for command in commands:
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            command = command.replace("/etc/pager/", f"{tmp_path}/")
            done = subprocess.run(
                ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
        assert outputs[0].startswith('{"ok":true,"service":"payments-api","state":"unhealthy"')
        wait_for(lambda: len(notified(tmp_path)) == 1, 10, "payments-api notified")
        history = pager(daemon.socket, "history", "payments-api").stdout
        assert "alert via ops-scripts: p99 over 2s" in history
        assert '"integration":"ops-scripts"' in outputs[3]
        oncall = json.loads(outputs[6])["schedules"][0]
        assert oncall["schedule"] == "payments-primary" and oncall["on_call"] in ("alice", "bob")
        override = json.loads(outputs[7])["override"]
        assert override["by"] == "bob" and override["from"] == "2030-05-01T09:00:00+01:00"
        checked_in = json.loads(outputs[8])
        assert checked_in["service"] == "nightly-backup" and checked_in["state"] == "healthy"
        assert checked_in["heartbeat"]["every"] == "1d1h"  # 25h, as durations are shown
        started, listed, ended = (json.loads(out) for out in outputs[9:12])
        assert started["silence"]["id"] == 1 and started["silence"]["by"] == "ops-scripts"
        assert [s["reason"] for s in listed["silences"]] == ["db migration"]
        assert ended["silence"]["ended_by"] == "ops-scripts"
    finally:
        daemon.stop()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, alive (not yet reaped zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_front_processes_are_replaced_after_kill_9_and_go_with_their_core(
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "ops.key").write_text(KEY + "\n")
    http = f"""
[http]
listen = "127.0.0.1:{port}"
workers = 2

[integrations.ops]
type = "rest"
key_file = "ops.key"
"""
    daemon = start(tmp_path, CONFIG + http)
    try:
        assert daemon.proc is not None
        core = daemon.proc.pid
        wait_for(lambda: "http on " in daemon.stderr(), 30, "the front processes serving")
        assert len(_children(core)) == 2
        first = _children(core)
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: first[0] not in _children(core), 10, "the killed front gone")
        wait_for(lambda: len(_children(core)) == 2, 30, "a front in its place")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            good = {"authorization": f"Bearer {KEY}"}
            response = client.post("/alert", json={"service": "api"}, headers=good)
            assert response.status_code == 200
        metrics = pager(daemon.socket, "metrics").stdout
        assert "pagerd_http_fronts_replaced_total 1" in metrics
        fronts = _children(core)
        daemon.kill()  # kill -9 of the core: its fronts see their channel close, and exit
        wait_for(lambda: not any(_alive(pid) for pid in fronts), 10, "the fronts gone")
    finally:
        daemon.stop()
