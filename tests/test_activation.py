"""Socket activation's edge cases: whatever systemd (or a misconfigured unit) passes, pagerd
either serves on the right socket or says in one line why it cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagerd.operations.systemd import (
    ActivationError,
    activated_sockets,
    adopt,
    event_socket,
    listen_fds,
)
from tests.processes import CONFIG, PAGERD, pager, wait_for


@pytest.fixture
def unix_listening(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "passed.sock"))
    sock.listen()
    yield sock
    sock.close()


def _adopt_copies(*socks: socket.socket, names: list[str]) -> list[tuple[str, socket.socket]]:
    # adopt() owns what it is given: give it copies, the fixtures close the originals.
    return adopt([os.dup(s.fileno()) for s in socks], names)


def test_the_event_socket_is_the_one_not_named_http(
    unix_listening: socket.socket, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as http:
        http.bind(("127.0.0.1", 0))
        http.listen()
        for names in (["http", "pagerd.socket"], ["pagerd.socket", "http"]):
            passed = _adopt_copies(
                *([http, unix_listening] if names[0] == "http" else [unix_listening, http]),
                names=names,
            )
            chosen = event_socket(passed)
            assert chosen is not None
            assert chosen.getsockname() == str(tmp_path / "passed.sock")
            chosen.close()
            assert all(sock.fileno() == -1 for _, sock in passed if sock is not chosen)


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["http"], "0 sockets for events among those passed ('http')"),
        (["a", "b"], "2 sockets for events among those passed ('a', 'b')"),
    ],
)
def test_names_that_leave_no_single_event_socket(
    unix_listening: socket.socket, names: list[str], error: str
) -> None:
    passed = _adopt_copies(*[unix_listening] * len(names), names=names)
    try:
        with pytest.raises(ActivationError, match=error.replace("(", r"\(").replace(")", r"\)")):
            event_socket(passed)
    finally:
        for _, sock in passed:
            sock.close()


def test_an_event_socket_that_is_not_a_unix_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        passed = _adopt_copies(tcp, names=["pagerd.socket"])
        with pytest.raises(ActivationError, match="is not a Unix socket"):
            event_socket(passed)
        passed[0][1].close()


def test_names_and_count_must_agree() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "pagerd.socket"}
    with pytest.raises(ActivationError, match="LISTEN_FDS=2 but LISTEN_FDNAMES names 1"):
        listen_fds(env)


# The real daemon, given fd 3 as systemd gives it: what it says and how it exits.
WRAPPER = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES=sys.argv[2])
os.execv(sys.argv[3], sys.argv[3:])
"""


def _start_with_fd3(tmp_path: Path, fd: int, name: str = "pagerd.socket") -> subprocess.Popen[str]:
    config = tmp_path / "pager.toml"
    config.write_text(CONFIG)
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(fd), name, *PAGERD, "--config", str(config)],
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cannot_start(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    (line,) = err.splitlines()
    assert "Traceback" not in err
    return line


def test_fd_3_that_is_not_a_socket(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        line = _cannot_start(_start_with_fd3(tmp_path, read))
    finally:
        os.close(read)
        os.close(write)
    assert line.endswith(
        "cannot start: socket activation: fd 3 (named 'pagerd.socket') is not a socket"
    )


def test_a_datagram_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        line = _cannot_start(_start_with_fd3(tmp_path, udp.fileno()))
    assert line.endswith("is not a stream socket (use ListenStream=)")


def test_a_unix_socket_that_is_not_listening(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.bind(str(tmp_path / "idle.sock"))
        line = _cannot_start(_start_with_fd3(tmp_path, idle.fileno()))
    assert line.endswith("(named 'pagerd.socket') is not listening")


def test_only_an_http_socket_and_not_tcp(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "http.sock"))
        sock.listen()
        line = _cannot_start(_start_with_fd3(tmp_path, sock.fileno(), name="http"))
    assert "the socket named 'http' is not a TCP socket" in line


def test_a_good_socket_is_served(tmp_path: Path) -> None:
    path = tmp_path / "passed.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        proc = _start_with_fd3(tmp_path, sock.fileno())
        try:
            wait_for(lambda: pager(path, "ping", timeout=5).returncode == 0, 30, "pagerd serves")
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_the_http_socket_is_kept_for_the_front_door(
    unix_listening: socket.socket, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as http:
        http.bind(("127.0.0.1", 0))
        http.listen()
        passed = _adopt_copies(http, unix_listening, names=["http", "pagerd.socket"])
        events, front = activated_sockets(passed)
        assert events is not None and front is not None
        assert events.getsockname() == str(tmp_path / "passed.sock")
        assert front.getsockname() == http.getsockname()
        events.close()
        front.close()
        # Only the http socket passed: the event socket is bound from the config.
        (only,) = _adopt_copies(http, names=["http"])
        assert activated_sockets([only]) == (None, only[1])
        only[1].close()


def test_an_http_socket_that_is_not_tcp(unix_listening: socket.socket) -> None:
    passed = _adopt_copies(unix_listening, names=["http"])
    with pytest.raises(ActivationError, match="the socket named 'http' is not a TCP socket"):
        activated_sockets(passed)
    assert all(sock.fileno() == -1 for _, sock in passed)
