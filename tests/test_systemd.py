"""systemd: the notify protocol, socket activation by the real `systemd-socket-activate`, reload
on SIGHUP, the watchdog, and the unit files checked by `systemd-analyze`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagerd.operations.systemd import Notifier, listen_fds
from tests.processes import PAGERD, pager, read_jsonl, wait_for

ROOT = Path(__file__).parent.parent


class NotifyListener:
    """Stands in for systemd's `$NOTIFY_SOCKET`: a datagram socket collecting messages."""

    def __init__(self, path: Path | None = None, abstract: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract is not None:
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def wait_for(self, key: str, within: float = 10.0, count: int = 1) -> list[dict[str, str]]:
        deadline = time.monotonic() + within
        while sum(1 for m in self.poll() if key in m) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key} within {within}s; got {self.messages}")
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path / "notify.sock")
    yield notify
    notify.close()


def test_notifier_sends_each_state(listener: NotifyListener) -> None:
    notifier = Notifier(listener.address, 4_000_000)
    assert notifier.watchdog_interval == 2.0
    notifier.ready("3 services")
    notifier.reloading()
    notifier.watchdog()
    notifier.extend(12.5, "waiting")
    notifier.stopping()
    notifier.close()
    listener.wait_for("STOPPING")
    ready, reloading, watchdog, extend, stopping = listener.messages
    assert extend == {"EXTEND_TIMEOUT_USEC": "12500000", "STATUS": "waiting"}
    assert ready == {"READY": "1", "STATUS": "3 services"}
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert watchdog == {"WATCHDOG": "1"}
    assert stopping == {"STOPPING": "1"}


def test_notifier_reaches_an_abstract_socket() -> None:
    listener = NotifyListener(abstract=f"pagerd-test-{os.getpid()}")
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address})
        notifier.ready()
        notifier.close()
        assert listener.wait_for("READY")[0]["READY"] == "1"
    finally:
        listener.close()


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready()  # no socket: a no-op, not an error
    assert listen_fds({}) == []


def test_listen_fds_for_another_process_are_ignored() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert listen_fds(env) == []
    assert "LISTEN_PID" not in env  # consumed, as sd_listen_fds(1) does


def test_watchdog_pid_of_another_process_disables_the_watchdog() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(env).watchdog_interval is None


CONFIG = """
[daemon]
socket = "pager.sock"
state_dir = "state"
[channels.email]
transport = "log"
[policies.p]
[[policies.p.levels]]
targets = ["email:alice@example.com"]
ack_timeout = "1h"
[services.api]
policy = "p"
"""


def test_socket_activation_notify_reload_watchdog_and_stop(
    tmp_path: Path, listener: NotifyListener
) -> None:
    activate = shutil.which("systemd-socket-activate")
    assert activate is not None, "systemd-socket-activate is needed (Debian package systemd)"
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    sock = tmp_path / "pager.sock"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": listener.address,
        "WATCHDOG_USEC": "400000",
    }
    log = (tmp_path / "pagerd.log").open("wb")
    proc = subprocess.Popen(
        [activate, "-l", str(sock), "-E", "NOTIFY_SOCKET", "-E", "WATCHDOG_USEC", "-E", "PATH",
         *PAGERD, "--config", str(config)],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(sock.exists, 10, "systemd-socket-activate listening")
        assert listener.poll() == []  # pagerd is not started until the first connection
        # This alert is what starts pagerd: it waits in the socket's backlog meanwhile.
        first = pager(sock, "alert", "api", "from the backlog")
        assert first.returncode == 0, first.stderr + (tmp_path / "pagerd.log").read_text()
        listener.wait_for("READY")
        assert "using the socket passed by systemd" in (tmp_path / "pagerd.log").read_text()
        listener.wait_for("WATCHDOG", count=3)

        config.write_text(CONFIG + '\n[services.web]\npolicy = "p"\n')
        proc.send_signal(signal.SIGHUP)
        listener.wait_for("READY", count=2)
        after_ready = [m for m in listener.messages if "READY" in m or "RELOADING" in m]
        assert [next(iter(m)) for m in after_ready] == ["READY", "RELOADING", "READY"]
        assert pager(sock, "alert", "web").returncode == 0  # added by the reload

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        listener.wait_for("STOPPING")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert sorted(n["service"] for n in read_jsonl(tmp_path / "state/notifications.jsonl")) == [
        "api",
        "web",
    ]


def test_invalid_config_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    log = (tmp_path / "pagerd.log").open("wb")
    proc = subprocess.Popen([*PAGERD, "--config", str(config)], stdout=log, stderr=log)
    try:
        sock = tmp_path / "pager.sock"
        wait_for(lambda: pager(sock, "ping").returncode == 0, 10, "pagerd up")
        config.write_text(CONFIG.replace('"email:alice@example.com"', '"sms:555"'))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in (tmp_path / "pagerd.log").read_text(), 10, "rejected")
        assert pager(sock, "alert", "api").returncode == 0
        status = json.loads(pager(sock, "--json", "status", "api").stdout)
        assert status["state"] == "unhealthy"
        text = (tmp_path / "pagerd.log").read_text()
        assert "policies.p.levels[0].targets[0]" in text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def _units(tmp_path: Path) -> list[Path]:
    """The units as shipped, with ExecStart pointed at this checkout's pagerd (verify insists
    that the program exists)."""
    service = (ROOT / "config" / "pagerd.service").read_text()
    assert "ExecStart=/opt/pagerd/bin/pagerd " in service
    (tmp_path / "pagerd.service").write_text(
        service.replace("/opt/pagerd/bin/pagerd", PAGERD[0] if len(PAGERD) == 1 else "/bin/true")
    )
    shutil.copy(ROOT / "config" / "pagerd.socket", tmp_path / "pagerd.socket")
    return [tmp_path / "pagerd.socket", tmp_path / "pagerd.service"]


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _units(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_service_passes_systemd_analyze_security(tmp_path: Path) -> None:
    _, service = _units(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=15", str(service)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert "Overall exposure level for pagerd.service: 1." in result.stdout


def test_units_follow_the_rules_the_issue_sets() -> None:
    service = (ROOT / "config" / "pagerd.service").read_text()
    socket_unit = (ROOT / "config" / "pagerd.socket").read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=pager",
        "ConfigurationDirectory=pager",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "User=pager",
    ):
        assert f"\n{line}\n" in service, line
    assert "WatchdogSec=" in service and "LoadCredential=" in service
    assert "RuntimeDirectory=" not in service  # the socket unit owns /run/pager
    assert "SocketMode=0660" in socket_unit and "SocketGroup=pager" in socket_unit


def test_the_service_starts_after_the_clock_is_synchronised() -> None:
    """Deadlines are stored as wall-clock times: a clock still wrong at boot would move them."""
    unit = (ROOT / "config" / "pagerd.service").read_text().splitlines()
    after = " ".join(line.split("=", 1)[1] for line in unit if line.startswith("After="))
    assert "time-sync.target" in after.split()


def test_odd_values_from_the_environment_are_ignored() -> None:
    # A negative period would ping in a tight loop; no sockets passed means none, not an error.
    assert Notifier.from_environ({"WATCHDOG_USEC": "-5"}).watchdog_interval is None
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0", "LISTEN_FDNAMES": ""}
    assert listen_fds(env) == []
