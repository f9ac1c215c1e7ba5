"""systemd integration, written here rather than imported: the notify protocol (a datagram to
`$NOTIFY_SOCKET`) and socket activation (`$LISTEN_PID`, `$LISTEN_FDS` from fd 3). Without those
variables, nothing here does anything, and nothing fails."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Final

log = logging.getLogger("pagerd.systemd")

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
                watchdog = int(usec) if int(usec) > 0 else None
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

    def extend(self, seconds: float, status: str = "") -> None:
        """Ask for `seconds` more to start (or stop) than the unit's timeout allows, from now."""
        usec = max(int(seconds * 1e6), 1)
        self.send(f"EXTEND_TIMEOUT_USEC={usec}", *([f"STATUS={status}"] if status else []))

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


class ActivationError(Exception):
    """The sockets systemd passed cannot be used; the message says which and why, in one line."""


RESERVED_NAMES: Final = frozenset({"http"})
"""Names of passed sockets that are not the event socket: `http` is the HTTP front door's (a TCP
socket). The event socket is the one with any other name (the shipped `pagerd.socket` leaves
systemd's default, the unit's name, `pagerd.socket`)."""


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[tuple[str, socket.socket]]:
    """The sockets systemd passed us (socket activation), each with its name, or none. Like
    `sd_listen_fds_with_names(1)`, the variables are removed so that no child process takes them
    for its own. `ActivationError` if what was passed is not what pagerd can listen on."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", None), env.pop("LISTEN_FDS", None)
    names = env.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    if pid != str(os.getpid()):
        return []  # meant for another process
    try:
        n = int(count)
    except ValueError:
        log.warning("ignoring LISTEN_FDS=%r: not a number", count)
        return []
    if n <= 0:
        return []  # nothing passed: bind the configured path
    listed = names.split(":") if names is not None else ["unknown"] * n
    if len(listed) != n:
        raise ActivationError(
            f"socket activation: LISTEN_FDS={n} but LISTEN_FDNAMES names {len(listed)} sockets"
        )
    return adopt(range(LISTEN_FDS_START, LISTEN_FDS_START + n), listed)


def adopt(fds: Iterable[int], names: Sequence[str]) -> list[tuple[str, socket.socket]]:
    """Each passed fd as a socket, checked: a listening stream socket, or `ActivationError`."""
    adopted: list[tuple[str, socket.socket]] = []
    try:
        for fd, name in zip(fds, names, strict=True):
            adopted.append((name, _adopt(fd, name)))
    except BaseException:
        for _, sock in adopted:
            sock.close()
        raise
    return adopted


def _adopt(fd: int, name: str) -> socket.socket:
    where = f"socket activation: fd {fd} (named {name!r})"
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise ActivationError(f"{where} is not open") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"{where} is not a socket")
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"{where} is not a stream socket (use ListenStream=)")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ActivationError(f"{where} is not listening")
    except BaseException:
        sock.detach()  # not ours to close: the error ends the start anyway
        raise
    return sock


def event_socket(passed: Sequence[tuple[str, socket.socket]]) -> socket.socket | None:
    """The socket pagerd serves its protocol on, chosen by name from those systemd passed (None:
    none was passed, bind the configured path). The others are closed, each logged."""
    if not passed:
        return None
    candidates = [(name, sock) for name, sock in passed if name not in RESERVED_NAMES]
    names = ", ".join(repr(name) for name, _ in passed)
    if len(candidates) != 1:
        reserved = ", ".join(sorted(RESERVED_NAMES))
        raise ActivationError(
            f"socket activation: {len(candidates)} sockets for events among those passed "
            f"({names}); pagerd needs exactly one not named {reserved}"
        )
    name, chosen = candidates[0]
    if chosen.family != socket.AF_UNIX:
        raise ActivationError(
            f"socket activation: the event socket {name!r} is not a Unix socket (pagerd checks "
            "its peers' credentials: ListenStream=/run/pager/pager.sock)"
        )
    for other, sock in passed:
        if sock is not chosen:
            log.warning("socket activation: not using the socket named %r (not yet served)", other)
            sock.close()
    return chosen


def activated_sockets(
    passed: Sequence[tuple[str, socket.socket]],
) -> tuple[socket.socket | None, socket.socket | None]:
    """(the event socket, the HTTP front door's) among those systemd passed; None for one not
    passed (the configured address is bound instead)."""
    http = [sock for name, sock in passed if name == "http"]
    others = [(name, sock) for name, sock in passed if name != "http"]
    try:
        if len(http) > 1:
            raise ActivationError(
                f"socket activation: {len(http)} sockets named 'http'; one at most"
            )
        if http and http[0].family not in (socket.AF_INET, socket.AF_INET6):
            raise ActivationError(
                "socket activation: the socket named 'http' is not a TCP socket "
                "(ListenStream=127.0.0.1:8080, FileDescriptorName=http)"
            )
    except ActivationError:
        for _, sock in passed:
            sock.close()
        raise
    return event_socket(others), (http[0] if http else None)
