"""Accepting connections, and saying so once when the process runs out of files.

Trio's `serve_listeners` retries an accept that failed for want of file descriptors (EMFILE...)
every 0.1 s, logging a traceback each time: a flood of connections wrote some 30 tracebacks a
second per listener into the journal, and buried the one line that mattered. Here the same retry,
reported as one warning, then at most one line per `REPORT_EVERY` with how many accepts failed.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

log = logging.getLogger("pagerd.accept")

CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
RETRY_AFTER: Final = 0.1
REPORT_EVERY: Final = 10.0


class Shortage:
    """Accepts that failed for want of resources, reported at most once per `REPORT_EVERY`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0  # all of them, since the start
        self._reported_at: float | None = None
        self._unreported = 0

    def failed(self, exc: OSError) -> None:
        self.failures += 1
        self._unreported += 1
        now = trio.current_time()
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        again = (
            ""
            if self._reported_at is None
            else f" ({self._unreported} times since the last such line)"
        )
        log.warning(
            "%s: cannot accept a connection: %s (%s)%s; new ones wait in the backlog, retrying "
            "every %gs (raise LimitNOFILE= if this is the open-file limit)",
            self.what, name, os.strerror(exc.errno or 0), again, RETRY_AFTER,
        )  # fmt: skip
        self._reported_at = now
        self._unreported = 0


async def serve_listeners(
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
    *,
    what: str,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`trio.serve_listeners`, with a want of file descriptors reported as `Shortage` does."""
    shortage = Shortage(what)
    async with trio.open_nursery() as nursery:
        handlers = nursery if handler_nursery is None else handler_nursery
        for listener in listeners:
            nursery.start_soon(_accept, listener, handler, handlers, shortage)
        task_status.started(list(listeners))


async def _accept(
    listener: trio.abc.Listener[trio.SocketStream],
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    handlers: trio.Nursery,
    shortage: Shortage,
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                shortage.failed(exc)
                await trio.sleep(RETRY_AFTER)
            else:
                handlers.start_soon(_run, handler, stream)


async def _run(
    handler: Callable[[trio.SocketStream], Awaitable[object]], stream: trio.SocketStream
) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)
