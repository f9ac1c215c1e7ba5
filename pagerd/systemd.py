"""systemd integration, written here rather than imported: the notify protocol (a datagram to
`$NOTIFY_SOCKET`) and socket activation (`$LISTEN_PID`, `$LISTEN_FDS` from fd 3). Without those
variables, nothing here does anything, and nothing fails."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Final

log = logging.getLogger(__name__)

LISTEN_FDS_START: Final = 3


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self._address = address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        watchdog: int | None = None
        usec = env.pop("WATCHDOG_USEC", None)
        pid = env.pop("WATCHDOG_PID", None)
        if usec is not None and (pid is None or pid == str(os.getpid())):
            try:
                watchdog = int(usec) or None
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        """Send `KEY=VALUE` fields in one datagram; a failure is logged, never raised."""
        if self._sock is None or self._address is None:
            return
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        try:
            self._sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self._address, exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The sockets systemd passed us (socket activation), or none. Like `sd_listen_fds(1)`, the
    variables are removed so that no child process takes them for its own."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", None), env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    if pid != str(os.getpid()):
        return []  # meant for another process
    try:
        n = int(count)
    except ValueError:
        log.warning("ignoring LISTEN_FDS=%r: not a number", count)
        return []
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + n):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets
