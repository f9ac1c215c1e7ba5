"""The `log` transport: each notification appended to a JSON-lines file, fsync'd.

It is the transport of the quick start and of dry runs, and what tests read to see who was paged.
Concurrent sends share one write and one fsync (the first sender writes for everyone waiting), so
a storm costs one fsync per batch, not per notification.

Each line's `message` is what the person paged would read through the channel the log stands in
for (`words`): the config's `sms` template for an SMS target, an email's subject and body for an
email one, the `slack` template for Slack, with the acknowledge links where that channel's pages
carry them (`http.public_url`). So the quick start shows what a real page would say.

The file is meant to be read with `cat` and `tail -f`, and it holds what any client sent (an
alert's message): every character that is not printable (C1 controls, bidi overrides, line
separators) is written as a JSON escape, so the line is the same JSON and nothing in it can act
on a terminal or reorder what a person reads.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import attrs
import trio

from pager.domain import Notify
from pager.messages import short
from pager.ports import TransientError
from pager.protocol import encode
from pager.timefmt import isoformat
from pagerd.delivery.wording import PLAIN, Wording
from pagerd.storage.offload import Offload
from pagerd.timing.clock import Clock


def words(n: Notify, wording: Wording = PLAIN) -> str:
    """What the person paged would read through the channel the log stands in for, worded by
    that channel's templates with its links: an SMS's text, an email's subject, a blank line
    and its body, a Slack page's text; a webhook's `text`."""
    channel = n.target.channel
    if channel == "sms":
        return wording.sms(n)
    if channel == "email":
        return f"{wording.subject(n)}\n\n{wording.body(n)}"
    if channel == "slack":
        return wording.slack(n)
    return short(n)


def record(n: Notify, at: float, wording: Wording = PLAIN) -> dict[str, object]:
    return {
        "time": isoformat(at),
        "id": n.id,
        "key": n.key,
        "service": n.service,
        "incident": n.incident_id,
        "round": n.round,
        "level": n.level,
        "channel": n.target.channel,
        "target": str(n.target) if n.target.channel in ("slack", "webhook") else n.target.address,
        "message": words(n, wording),
        "alert": n.message,
        "opened_at": isoformat(n.opened_at),
        "person": n.person or None,
        "via": n.via or None,
    }


def line(n: Notify, at: float, wording: Wording = PLAIN) -> bytes:
    """The JSON line of `n`, printable characters only (see the module's docstring)."""
    data = encode(record(n, at, wording))
    if data.isascii():
        return data
    text = data.decode()
    if text[:-1].isprintable():
        return data
    return "".join(c if c.isprintable() or c == "\n" else _escape(c) for c in text).encode()


def _escape(c: str) -> str:
    """`c` as a JSON string escape (a surrogate pair beyond the BMP, as JSON has it)."""
    code = ord(c)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


@attrs.define
class _Flush:
    lines: list[bytes] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)
    error: OSError | None = None


class LogTransport:
    def __init__(
        self, path: Path, offload: Offload, clock: Clock, wording: Wording = PLAIN
    ) -> None:
        """`wording` says what each page says (the running config's templates and links)."""
        self.path = path
        self._wording = wording
        self._offload = offload
        self._clock = clock
        self._open = _Flush()
        self._writing = False

    async def send(self, notification: Notify) -> str | None:
        flush = self._open
        flush.lines.append(line(notification, self._clock.wall_now(), self._wording))
        if not self._writing:
            self._writing = True
            try:
                # Shielded: the writer writes for every waiting sender, so it must finish.
                with trio.CancelScope(shield=True):
                    while self._open.lines:
                        current, self._open = self._open, _Flush()
                        data = b"".join(current.lines)
                        try:
                            await self._offload(partial(self._append, data))
                        except OSError as exc:
                            current.error = exc
                        current.done.set()
            finally:
                self._writing = False
        await flush.done.wait()
        if flush.error is not None:
            raise TransientError(f"cannot write {self.path}: {flush.error.strerror or flush.error}")
        return None

    def _open_file(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            return os.open(self.path, flags, 0o640)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the first write only
            return os.open(self.path, flags, 0o640)

    def _append(self, data: bytes) -> None:
        fd = self._open_file()
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # Disk full half-way: cut back, so the next attempt does not start mid-line.
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
