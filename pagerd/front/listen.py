"""The daemon's Unix socket: bound safely, never stolen from a live daemon, removed on exit."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Final

import attrs
import trio

BACKLOG: Final = 1024
PROBE_TIMEOUT: Final = 1.0


class SocketInUse(Exception):
    pass


@attrs.frozen
class UnixListener:
    listener: trio.SocketListener
    path: Path
    identity: tuple[int, int]  # (st_dev, st_ino) of the socket file we created

    def remove(self) -> None:
        """Unlink the socket file if it is still ours (a newer daemon may have replaced it)."""
        try:
            st = self.path.lstat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) == self.identity:
            self.path.unlink(missing_ok=True)


async def open_unix_listener(path: Path, mode: int = 0o660) -> UnixListener:
    """Listen on `path`, replacing a stale socket file; `SocketInUse` if a daemon answers there."""
    if _socket_file_exists(path):
        if await _answers(path):
            raise SocketInUse(f"another pagerd is already listening on {path}")
        os.unlink(path)  # stale: left by a daemon that died
    # A plain socket, bound here rather than by Trio, which would use a worker thread for the
    # path lookup: binding a local path is quick, and a thread would let MockClock jump meanwhile.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Created with the final mode: no window in which the socket is open to everybody.
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    st = os.lstat(path)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    return UnixListener(listener, path, (st.st_dev, st.st_ino))


def _socket_file_exists(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    return True


async def _answers(path: Path) -> bool:
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        with trio.move_on_after(PROBE_TIMEOUT) as scope:
            try:
                await probe.connect(str(path))
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    return False
                if exc.errno == errno.EAGAIN:
                    return True  # listening, with a full backlog
                raise
            return True
        # A daemon too busy to accept within the timeout is still a live daemon.
        return scope.cancelled_caught
