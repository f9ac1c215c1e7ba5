"""A TCP proxy for tests that cut a pagerd node from PostgreSQL: it forwards connections to
`upstream`, and a test can `drop` them (every connection reset, new ones refused until `heal`)
or `stall` them (connections stay open, but nothing crosses either way until `heal`: a
partition as the node sees it, where only timeouts tell), or `freeze` the connections open now
while new ones pass (a flow stuck in a middlebox), forwarding what they hold once thawed.

Threads, not Trio: it serves processes the test started (pagerd nodes), whatever the test's own
event loop is doing. Each connection has two pump threads; `close` ends them all.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["pass", "drop", "stall"]


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._mode: Mode = "pass"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._frozen: set[int] = set()  # the sockets `freeze` holds (by id)
        self._closed = False
        self.connections = 0
        """Connections accepted and forwarded, in all."""
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> Mode:
        return self._mode

    def drop(self) -> None:
        """Reset every connection, and refuse new ones, until `heal`."""
        with self._lock:
            self._mode = "drop"
            pairs, self._pairs = self._pairs, []
            self._changed.notify_all()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def stall(self) -> None:
        """Forward nothing either way, on open connections and new ones, until `heal`."""
        with self._lock:
            self._mode = "stall"
            self._changed.notify_all()

    def freeze(self) -> int:
        """Forward nothing either way on the connections open now, until `thaw`; new ones
        pass. How many were frozen."""
        with self._lock:
            self._frozen = {id(s) for pair in self._pairs for s in pair}
            self._changed.notify_all()
            return len(self._pairs)

    def thaw(self) -> None:
        """Let the frozen connections forward again, what they held first."""
        with self._lock:
            self._frozen = set()
            self._changed.notify_all()

    def heal(self) -> None:
        with self._lock:
            self._mode = "pass"
            self._changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs, self._pairs = self._pairs, []
            self._changed.notify_all()
        self._listener.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                refuse = self._closed or self._mode == "drop"
            if refuse:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
                self.connections += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([source], [], [], 0.2)
                with self._lock:
                    while (
                        self._mode == "stall" or id(source) in self._frozen
                    ) and not self._closed:
                        self._changed.wait()
                    if self._closed:
                        return
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except (OSError, ValueError):  # reset, or closed by `drop` (select of fd -1)
            for sock in (source, sink):
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a dropped network path looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def proxied(upstream: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
