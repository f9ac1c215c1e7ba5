"""The test's TCP proxy (`tests/tcpproxy.py`) itself, against a real echo server on loopback:
it forwards, a drop resets and refuses, a stall forwards nothing until healed. The cluster
tests trust it to cut nodes from PostgreSQL, so it is tested on its own first."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.tcpproxy import proxied


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        more = sock.recv(65536)
        if not more:
            break
        got += more
    return got


def test_forwards_drops_and_stalls(echo: tuple[str, int]) -> None:
    with proxied(echo) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            assert _round_trip(sock, b"hello") == b"hello"
            proxy.stall()
            sock.sendall(b"held")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):  # nothing crosses while stalled
                sock.recv(10)
            proxy.heal()
            sock.settimeout(5)
            assert _round_trip(sock, b"") == b"" and sock.recv(10) == b"held"
            proxy.drop()
            with pytest.raises(OSError):  # reset: the next read fails or sees the end
                if sock.recv(10) == b"":
                    raise ConnectionResetError
        with (  # refused: reset at once (as the connection is made, or at the first read)
            pytest.raises(OSError),
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused,
        ):
            if refused.recv(10) == b"":
                raise ConnectionResetError
        proxy.heal()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            assert _round_trip(sock, b"again") == b"again"
        assert proxy.connections == 2
