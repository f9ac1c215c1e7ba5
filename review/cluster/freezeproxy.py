"""A `tests.tcpproxy.TcpProxy` that can freeze the connections open now while new ones pass: one
flow stuck in a middlebox (HAProxy, a NAT, a load balancer that "accepts and acknowledges but
forwards nothing", as pagerd's docs put it), the node's other and later connections fine. Thawed,
a frozen flow forwards what it holds, as a middlebox does when it recovers."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from tests.tcpproxy import TcpProxy, _reset


class FreezeProxy(TcpProxy):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._frozen: set[int] = set()
        super().__init__(upstream)

    def freeze(self) -> int:
        """Freeze every connection open now (both ways); new ones pass. How many."""
        with self._lock:
            self._frozen = {id(s) for pair in self._pairs for s in pair}
            self._changed.notify_all()
            return len(self._pairs)

    def thaw(self) -> None:
        with self._lock:
            self._frozen = set()
            self._changed.notify_all()

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
        except (OSError, ValueError):
            for sock in (source, sink):
                _reset(sock)


_ = threading  # the parent's threads run `_pump`
